"""Unit: the settings file becomes typed settings, and a change says what must start again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.settings import RELOADS, defaults, load_settings, reloads, user_config_path
from app.settings_schema import SettingError
from audio.bargein import DuplexMode
from engines.errors import ParleyError


def _write(text: str) -> None:
    user_config_path().write_text(text, encoding="utf-8")


def test_the_defaults_are_read_into_typed_sections(user_dirs: Path) -> None:
    settings = load_settings()
    assert settings.llm.max_tokens == defaults()["llm"]["max_tokens"]
    assert settings.duplex.mode is DuplexMode.AEC
    assert settings.cloud.instructions == settings.llm.system_prompt  # the persona, once
    assert settings.model("stt") == "whisper-base"


def test_the_users_file_and_then_the_command_line_override_the_defaults(
        user_dirs: Path) -> None:
    _write('[llm]\ntemperature = 1\n[stt]\nlanguage = "de"\n')
    settings = load_settings({"stt": {"language": "fr"}, "models": {"llm": None}})
    assert settings.llm.temperature == 1.0 and isinstance(settings.llm.temperature, float)
    assert settings.stt.language == "fr"  # the flag wins over the file
    assert settings.model("llm") == defaults()["models"]["llm"]  # an unset flag changes nothing
    assert settings.cloud.language == "fr"


def test_a_misspelt_key_is_named_with_the_keys_that_exist(user_dirs: Path) -> None:
    _write("[vad]\nhangover = 300\n")
    with pytest.raises(ParleyError, match=r"Unknown setting 'hangover' in \[vad\]") as err:
        load_settings()
    assert "hangover_ms" in err.value.hint


def test_a_value_of_the_wrong_kind_is_refused_with_where_to_fix_it(user_dirs: Path) -> None:
    _write('[vad]\nhangover_ms = "abc"\n')
    with pytest.raises(SettingError, match=r'\[vad\] hangover_ms = "abc" is not allowed: '
                                           r"it must be a whole number from 0 to 10000") as err:
        load_settings()
    assert str(user_config_path()) in err.value.hint
    _write("")
    with pytest.raises(SettingError, match=r'mode = "bogus".*"aec", "vad-threshold"') as err:
        load_settings({"duplex": {"mode": "bogus"}})
    assert "command-line flag" in err.value.hint
    with pytest.raises(ParleyError, match=r"Unknown settings section \[sound\]"):
        load_settings({"sound": {"volume": 3}})


def test_a_change_is_checked_and_leaves_the_settings_it_came_from_alone(
        user_dirs: Path) -> None:
    before = load_settings()
    after = before.updated({"llm": {"system_prompt": "Be a pirate."}, "tts": {"length_scale": 2}})
    assert after.llm.system_prompt == after.cloud.instructions == "Be a pirate."
    assert after.tts.length_scale == 2.0
    assert before.llm.system_prompt != "Be a pirate."
    with pytest.raises(SettingError, match=r'temperature = "hot" .* from 0 to 2') as err:
        before.updated({"llm": {"temperature": "hot"}})
    assert "apply it again" in err.value.hint


def test_an_engine_gets_its_section_without_the_agents_keys_or_unset_ones(
        user_dirs: Path) -> None:
    options = load_settings().engine_options("llm")
    assert options == {"n_ctx": 2048, "n_threads": 2, "prompt_cache": True}
    assert "noise_scale" not in load_settings().engine_options("tts")


@pytest.mark.parametrize(("changes", "again"), [
    ({"tts": {"length_scale": 1.2}}, {"tts"}),
    ({"stt": {"language": "de"}}, {"stt", "cloud"}),
    ({"llm": {"n_ctx": 4096}}, {"llm"}),
    ({"llm": {"temperature": 0.2, "max_tokens": 64}}, set()),  # the next turn reads them
    ({"llm": {"system_prompt": "Hi."}}, {"cloud"}),
    ({"vad": {"hangover_ms": 400}}, {"vad"}),
    ({"duplex": {"mode": "half-duplex"}}, {"cloud"}),
    ({"ui": {"theme": "dark"}}, set()),
])
def test_a_change_says_what_must_start_again(changes: dict[str, dict[str, object]],
                                             again: set[str]) -> None:
    assert reloads(changes) == again


def test_the_reload_table_names_only_real_settings(user_dirs: Path) -> None:
    settings = load_settings()
    for name in RELOADS:
        section, _, key = name.partition(".")
        fields = {f.name for f in dataclasses.fields(getattr(settings, section))}
        assert not key or key in fields, name
