# The two commands a user needs are `make run` and `make test`; both set up first.
PY := .venv/bin/python

.PHONY: setup run test lint bench bundle models-archive

setup:
	@packaging/setup.sh

run: setup
	.venv/bin/parley

lint: setup
	.venv/bin/ruff check app engines audio tests
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache

bundle: setup
	packaging/bundle.sh

models-archive: setup
	.venv/bin/parley models export --defaults dist/parley-models.tar

# The tests include the bundle's own (tests/bundle), so CI builds it every run.
test: lint bundle
	$(PY) -m pytest -p no:cacheprovider

bench: setup
	$(PY) -m tests.bench.pipeline
	$(PY) -m tests.bench.gui_loop
	$(PY) -m tests.bench.echo
	$(PY) -m tests.bench.quality
	$(PY) -m tests.bench.live
	$(PY) -m tests.bench.hearing
