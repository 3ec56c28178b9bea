"""Unit: the schema names every setting, agrees with the dataclasses and with the values its
consumers know, and a settings file that cannot be read says which line to fix."""

from __future__ import annotations

import math
import re
import typing
from pathlib import Path

import pytest

from app.settings import RESOURCES, Settings, load_settings, user_config_path
from app.settings_schema import SCHEMA, WHISPER_LANGUAGES, SettingError
from engines.errors import ParleyError
from engines.rkllm.boards import PROFILES

_DERIVED = {("cloud", "instructions"), ("cloud", "language")}


def _fields() -> dict[str, dict[str, typing.Any]]:
    """Section → key → the dataclass field's type, minus the fields filled from others."""
    hints = typing.get_type_hints(Settings)
    return {section: {key: hint for key, hint in typing.get_type_hints(hints[section]).items()
                      if (section, key) not in _DERIVED}
            for section in hints}


def test_every_key_of_every_section_has_a_rule_of_its_fields_type() -> None:
    fields = _fields()
    assert {s: set(keys) for s, keys in SCHEMA.items()} == {s: set(k) for s, k in fields.items()}
    for section, keys in fields.items():
        for key, hint in keys.items():
            kinds = [k for k in typing.get_args(hint) or (hint,) if k is not type(None)]
            assert kinds == [SCHEMA[section][key].kind], f"[{section}] {key}"


def test_every_number_has_finite_bounds() -> None:
    for section, rules in SCHEMA.items():
        for key, rule in rules.items():
            if rule.kind in (int, float):
                assert math.isfinite(rule.low) and math.isfinite(rule.high), f"[{section}] {key}"


def test_the_defaults_and_every_boards_profile_follow_the_rules(user_dirs: Path) -> None:
    settings = load_settings()  # resources/parley.toml is checked as it is read
    for profile in PROFILES.values():
        assert settings.updated({"llm": profile.llm_defaults()}).llm.n_ctx == profile.n_ctx


def test_the_choices_are_the_ones_their_consumers_know() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from PySide6.QtWidgets import QApplication

    from app.gui.settings_dialog import _DUPLEX
    from app.gui.theme import apply_theme

    assert tuple(_LANGUAGE_CODES) == WHISPER_LANGUAGES
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    themes = SCHEMA["ui"]["theme"].choices or ()
    assert [apply_theme(app, t) for t in themes if t != "system"] == ["light", "dark"]
    assert SCHEMA["duplex"]["mode"].choices == tuple(mode for mode, _ in _DUPLEX)


@pytest.mark.parametrize(("section", "key", "value", "held"), [
    ("llm", "temperature", 1, 1.0),  # TOML's 1 is a float setting's 1.0
    ("audio", "input_device", 3, "3"),  # a device by its index
    ("tts", "speaker", 0, "0"),
    ("stt", "language", "auto", "auto"),
    ("llm", "chat_template", "llama3", "llama3"),
    ("cloud", "noise_reduction", "", ""),
])
def test_values_that_follow_a_rule_are_held_as_its_type(
        user_dirs: Path, section: str, key: str, value: object, held: object) -> None:
    got = load_settings().updated({section: {key: value}}).value(section, key)
    assert got == held and type(got) is type(held)


@pytest.mark.parametrize(("section", "key", "value", "words"), [
    ("vad", "hangover_ms", 1.7, "whole number"),  # never cut to 1 behind the user's back
    ("vad", "hangover_ms", True, "hangover_ms = true"),
    ("llm", "temperature", math.nan, "temperature = nan"),
    ("llm", "seed", 2**64, "4294967295"),
    ("models", "llm", "", "non-empty text"),
    ("audio", "output_device", -1, "an index (0 or more)"),
    ("cloud", "eagerness", "x" * 500, "xxx…"),  # a long value is cut short in the message
    ("ui", "theme", "blue", '"system", "light", "dark"'),
    ("stt", "language", "xx", "Whisper"),
])
def test_a_value_that_breaks_its_rule_is_refused_in_words(
        user_dirs: Path, section: str, key: str, value: object, words: str) -> None:
    with pytest.raises(SettingError) as err:
        load_settings().updated({section: {key: value}})
    assert f"[{section}] {key} = " in err.value.message and words in err.value.message
    assert len(err.value.message) < 200


def test_the_hint_lists_every_language(user_dirs: Path) -> None:
    with pytest.raises(SettingError) as err:
        load_settings({"stt": {"language": "xx"}})
    assert all(f" {code}," in err.value.hint or f" {code}." in err.value.hint
               for code in WHISPER_LANGUAGES)


@pytest.mark.parametrize(("content", "words"), [
    (b'[stt]\nlanguage = "de"\n[vad]\npre_roll_ms = "\xff"\n',
     "not UTF-8 text (byte 0xff on line 4)"),
    (b"[vad]\nhangover_ms = \n", "not valid TOML: Invalid value (at line 2, column 15)"),
    (b"[llm]\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    (b"vad = 3\n", "The settings section vad = 3 is not allowed: it must be a table"),
])
def test_a_file_that_cannot_be_read_names_itself_and_the_line(
        user_dirs: Path, content: bytes, words: str) -> None:
    user_config_path().write_bytes(content)
    with pytest.raises(ParleyError) as err:
        load_settings()
    assert words in err.value.message
    assert str(user_config_path()) in str(err.value)


def test_the_ranges_noted_in_the_defaults_file_are_the_schemas() -> None:
    noted = re.compile(r"^#? ?(\w+) = [^#]*# (-?[\w.]+) … (-?[\w.]+)")
    section, found = "", 0
    for line in (RESOURCES / "parley.toml").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^\[(\w+)\]", line)
        section = heading[1] if heading else section
        match = noted.match(line)
        if match:
            rule = SCHEMA[section][match[1]]
            assert (_bound(match[2]), _bound(match[3])) == (rule.low, rule.high), line
            found += 1
    assert found == 26


def _bound(text: str) -> float:
    return float(int(text, 16)) if text.startswith("0x") else float(text)
