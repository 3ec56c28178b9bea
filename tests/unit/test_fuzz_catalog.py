"""Unit, fuzzed: whatever the model catalog holds, and whatever a user types as a source,
the catalog loads with every rule kept or is refused with a ModelError, within a deadline,
never with another exception. The rules matter: a catalog name becomes a folder in the
models folder, and a source becomes a download."""

from __future__ import annotations

import copy
import datetime
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engines.errors import ModelError
from engines.model_ref import KINDS
from engines.models.catalog import (
    DEFAULT_CATALOG,
    FORMAT_KINDS,
    Catalog,
    HubSource,
    check_source,
    load_catalog,
    parse_hf,
    parse_pypi,
)
from engines.models.store import download_path

_FUZZ = settings(deadline=datetime.timedelta(seconds=2), database=None, max_examples=200,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
"""A loader that hangs or crawls fails the deadline; nothing is kept between runs."""
_FEWER = settings(_FUZZ, max_examples=100)
"""For whole catalogs written out (20 kB of TOML each)."""

_REAL_TEXT = DEFAULT_CATALOG.read_text(encoding="utf-8")
_REAL = tomllib.loads(_REAL_TEXT)

_SCALARS = (st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
            | st.datetimes() | st.dates() | st.times())
_TOML_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                            max_leaves=8)
"""Anything TOML can hold."""

_HOSTILE_NAMES = st.sampled_from([
    "", ".", "..", "../x", "../../etc/passwd", "a/b", "/abs", "a\\b", "..\\x", "C:x", "x:y",
    " ", "\x00", "a\x00b", "~", "CON", "x" * 300, "é", "\u202e", "*", "?", "-rf", ".hidden"])
_URLS = st.sampled_from([
    "https://", "https:///x", "https://host", "https://host/x.gguf", "http://example.com/x",
    "http://127.0.0.1:8000/x", "http://[::1]/x", "https://[::1/x", "https://h:99999/x",
    "https://h:abc/x", "https://h:-1/x", "https://h:/x", "https://user@/x", "file:///etc/x",
    "ftp://h/x", "hf://", "hf://org", "hf://org/repo", "hf://org/repo/", "hf://org/repo/f",
    "hf://org/..@x/e.gguf", "hf://org/repo@/f", "hf://org/repo/../f", "hf://-o/r/f",
    "hf://org/repo@main/a/b", "pypi://", "pypi://x==1/", "pypi://x==1/m", "pypi://x==/m",
    "pypi://x=1/m", "pypi://x==1/../m", "https://h/%2e%2e/x", "https://h/../../x",
    "javascript:x", "\x00", "https://h\x00/x", "https://h/\n"])
_SHAS = st.sampled_from(["", "0" * 63, "0" * 65, "A" * 64, "g" * 64, "0" * 64, " " + "0" * 63])
_NEAR = (_HOSTILE_NAMES | _URLS | _SHAS | st.sampled_from(sorted(FORMAT_KINDS))
         | st.sampled_from(list(KINDS)) | st.sampled_from([-1, 0, 2**63 - 1, -(2**63)])
         | st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 0.5])
         | st.lists(_URLS | _HOSTILE_NAMES, max_size=3) | _TOML_VALUES)
"""Values a catalog editor (or an attacker who can write it) might put anywhere."""


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One catalog file, rewritten by each example."""
    return tmp_path_factory.mktemp("fuzz") / "models.toml"


def _keeps_its_promises(catalog: Catalog) -> None:
    """What the installer and resolver trust without checking again."""
    for kind in KINDS:
        assert catalog.get(catalog.defaults[kind]).kind == kind
    if catalog.low_memory is not None:
        assert catalog.low_memory.below > 0
        for kind, name in catalog.low_memory.defaults.items():
            assert catalog.get(name).kind == kind
    for entry in catalog.entries():
        assert FORMAT_KINDS[entry.format] == entry.kind
        for name in (entry.name, *(f.name for f in entry.files)):
            assert name not in ("", ".", "..") and not re.search(r"[/\\:]", name), name
        for file in entry.files:
            assert file.sources
            for source in file.sources:
                check_source(source)
            for sha in (file.sha256, *(file.part_sha256 or ())):
                assert sha is None or re.fullmatch(r"[0-9a-f]{64}", sha)
        assert entry.approx_size is None or isinstance(entry.approx_size, int)
        str(entry.size)  # the sum of its files, or None


def _load(path: Path) -> None:
    try:
        catalog = load_catalog(path)
    except ModelError as err:
        assert err.message and err.hint
        return
    _keeps_its_promises(catalog)


def _places(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value in a document, tables and arrays included."""
    items = (doc.items() if isinstance(doc, dict)
             else enumerate(doc) if isinstance(doc, list) else [])
    return [p for key, value in items for p in [(*at, key), *_places(value, (*at, key))]]


def _mutate(doc: dict[str, Any], place: tuple[Any, ...], value: Any, drop: bool) -> None:
    parent = doc
    for key in place[:-1]:
        parent = parent[key]
    if drop:
        del parent[place[-1]]
    else:
        parent[place[-1]] = value


def test_the_shipped_catalog_keeps_every_promise() -> None:
    _keeps_its_promises(load_catalog())


@_FEWER
@given(data=st.data())
def test_a_real_catalog_with_keys_dropped_or_changed_loads_or_is_refused(
        path: Path, data: st.DataObject) -> None:
    doc = copy.deepcopy(_REAL)
    for _ in range(data.draw(st.integers(1, 3))):
        places = _places(doc)
        if not places:
            break
        place = data.draw(st.sampled_from(places))
        _mutate(doc, place, data.draw(_NEAR), drop=data.draw(st.booleans()))
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    _load(path)


@_FEWER
@given(document=st.dictionaries(st.sampled_from(["models", "defaults"]) | st.text(max_size=8),
                                _TOML_VALUES | st.lists(st.dictionaries(
                                    st.sampled_from(["name", "kind", "format", "files",
                                                     "path", "sources", "sha256", "size",
                                                     "approx_size", "tuning", "part_sha256"]),
                                    _NEAR, max_size=8), max_size=3), max_size=3))
def test_any_toml_document_loads_or_is_refused(path: Path, document: dict[str, Any]) -> None:
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    _load(path)


@_FUZZ
@example(data=b"\xff\xfe", at=0, cut=0)  # not UTF-8
@given(data=st.binary(max_size=100) | st.text(max_size=100).map(str.encode),
       at=st.integers(0, 25_000), cut=st.integers(0, 100))
def test_any_bytes_in_the_real_catalog_load_or_are_refused(
        path: Path, data: bytes, at: int, cut: int) -> None:
    real = _REAL_TEXT.encode()
    at %= len(real) + 1
    path.write_bytes(real[:at] + data + real[at + cut:])
    _load(path)


_URLISH = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["", "https://", "http://", "hf://", "pypi://", "file://", "HTTPS://"]),
    st.lists(st.sampled_from([*"ab0.-_/:@[]%=?#\\ \x00", "..", "==", "::1"]), max_size=20
             ).map("".join))


@_FUZZ
@example(url="https://[::1/x")
@example(url="https://h:99999/x")
@given(url=_URLS | _URLISH | st.text(max_size=60))
def test_any_source_is_accepted_or_refused_in_words(url: str) -> None:
    for parse in (parse_hf, parse_pypi):
        try:
            source = parse(url)
        except ModelError as err:
            assert url in err.message and err.hint
            continue
        if isinstance(source, HubSource):  # its parts become folders under the models folder
            assert source.repo_id.count("/") == 1
            assert not {".", "..", ""} & {*source.repo_id.split("/"), *source.path.split("/")}
    try:
        check_source(url)
    except ModelError as err:
        assert err.message and err.hint
        return
    if url.startswith(("https://", "http://", "hf://")):
        try:  # what `parley models pull URL` does next
            folder = download_path(url)
        except ModelError:
            return
        assert ".." not in folder.parts
