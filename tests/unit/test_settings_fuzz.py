"""Unit, fuzzed: whatever the settings file, a flag or the window hands the loader, it
answers within a deadline with settings that follow every rule or with a ParleyError,
never with another exception."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.settings import RESOURCES, Settings, load_settings, user_config_path
from app.settings_schema import SCHEMA, Rule
from engines.errors import ParleyError

_FUZZ = settings(deadline=datetime.timedelta(seconds=2), database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
"""A loader that hangs or crawls fails the deadline; nothing is kept between runs."""

_SCALARS = (st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
            | st.datetimes() | st.dates() | st.times())
_TOML_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                            max_leaves=8)
"""Anything TOML can hold."""


def _near(rule: Rule) -> st.SearchStrategy[Any]:
    """Values a user might write for `rule`: its choices, numbers in and around its range,
    and now and then anything at all."""
    if rule.choices:
        ours = st.sampled_from(rule.choices)
    elif rule.kind in (int, float):
        low, high = int(rule.low) - 2, int(rule.high) + 2
        ours = st.integers(low, high) | st.floats(low, high) | st.sampled_from(
            [rule.low, rule.high, -math.inf, math.nan])
    else:
        ours = st.booleans() if rule.kind is bool else st.text(max_size=20)
    return ours | ours | _TOML_VALUES


def _section(name: str) -> st.SearchStrategy[dict[str, Any]]:
    keyed = st.sampled_from(sorted(SCHEMA[name])).flatmap(
        lambda key: st.tuples(st.just(key), _near(SCHEMA[name][key])))
    stray = st.tuples(st.text(max_size=8), _TOML_VALUES)
    return st.lists(keyed | keyed | stray, max_size=4).map(dict)


_DOCUMENTS = st.lists(
    st.sampled_from(sorted(SCHEMA)).flatmap(lambda name: st.tuples(st.just(name),
                                                                   _section(name)))
    | st.tuples(st.text(max_size=8), _TOML_VALUES), max_size=4).map(dict)
"""Settings files: real sections and keys mostly, with near and far values."""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The defaults, read once: a change from the window is laid on settings already read."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PARLEY_CONFIG", str(tmp_path_factory.mktemp("none") / "config.toml"))
        return load_settings()


def _follows_the_rules(result: Settings) -> None:
    for section, rules in SCHEMA.items():
        for key, rule in rules.items():
            value = result.value(section, key)
            assert value is None or rule.convert(value) == value, (section, key, value)


def _load() -> None:
    try:
        result = load_settings()
    except ParleyError:
        return
    _follows_the_rules(result)


@_FUZZ
@given(document=_DOCUMENTS)
def test_any_toml_document_loads_or_is_refused(user_dirs: Path, document: dict[str, Any]
                                               ) -> None:
    user_config_path().write_text(tomli_w.dumps(document), encoding="utf-8")
    _load()


@_FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       at=st.integers(0, 3000))
def test_any_bytes_in_a_real_settings_file_load_or_are_refused(
        user_dirs: Path, data: bytes, at: int) -> None:
    real = (RESOURCES / "parley.toml").read_bytes()
    at = at % (len(real) + 1)
    user_config_path().write_bytes(real[:at] + data + real[at + len(data) // 2:])
    _load()


@_FUZZ
@given(section=st.sampled_from(sorted(SCHEMA)), data=st.data())
def test_any_change_from_the_window_or_a_flag_is_applied_or_refused(
        user_dirs: Path, base: Settings, section: str, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(SCHEMA[section])))
    value = data.draw(_near(SCHEMA[section][key]) | st.none() | st.builds(object))
    try:
        result = base.updated({section: {key: value}})
    except ParleyError:
        if value is not None:  # a flag left unset changes nothing
            with pytest.raises(ParleyError):
                load_settings({section: {key: value}})
        return
    _follows_the_rules(result)
    assert result.value(section, key) == SCHEMA[section][key].convert(value)
