"""The house rules: floors that keep the code's shape as it grows (issue 12, "one house").

1. No module in app/, engines/ or audio/ is longer than 450 lines: past that, a module
   does more than one thing; split it.
2. At most 8 loose modules sit directly in app/ (`__init__.py` counts): the rest of the
   app lives in its packages (conversation, commands, control, cloud, gui).
3. The import contracts in pyproject.toml hold: the engines import nothing of the audio
   layer or the app, the audio layer nothing of the app, and the GUI package is the only
   Qt importer. `make lint` runs them too (`lint-imports`); here they fail `pytest` alone.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "engines", "audio")
MAX_LINES = 450
MAX_LOOSE_IN_APP = 8
QT_CONTRACT = "The GUI package is the only Qt importer"


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if "__pycache__" not in p.parts)


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def test_no_module_is_longer_than_450_lines() -> None:
    too_long = {str(p.relative_to(ROOT)): n for p in _modules()
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert too_long == {}, f"over {MAX_LINES} lines, split them: {too_long}"


def test_app_has_at_most_8_loose_modules() -> None:
    loose = sorted(p.name for p in (ROOT / "app").glob("*.py"))
    assert len(loose) <= MAX_LOOSE_IN_APP, (
        f"{len(loose)} modules directly in app/ ({', '.join(loose)}); at most "
        f"{MAX_LOOSE_IN_APP}: move some into its packages")


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), f"{lint_imports} is missing: pip install -e '.[dev]'"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = result.stdout.count(" KEPT")
    assert kept == len(_contracts()), result.stdout  # every contract was checked


def test_the_qt_contract_names_every_part_of_app_but_the_gui() -> None:
    """A new package or loose module in app/ is Qt-free unless it is part of the GUI."""
    contract = next(c for c in _contracts() if c["name"] == QT_CONTRACT)
    parts = {f"app.{p.stem}" for p in (ROOT / "app").iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py")
             or (p.is_dir() and (p / "__init__.py").exists())}
    assert set(contract["source_modules"]) == parts - {"app.gui"}  # type: ignore[arg-type]
