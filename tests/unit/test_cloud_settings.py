"""Parley's settings become a GA Realtime session the service accepts, in every turn mode."""

from __future__ import annotations

from typing import Any

import pytest

from app.cloud.settings import TURN_DETECTION, CloudSettings, session_config
from app.settings import load_settings
from engines.errors import ParleyError
from tests.realtime_server import CLIENT_EVENTS, validate


def _cloud(**cloud: Any) -> CloudSettings:
    return load_settings().updated({"cloud": cloud}).cloud


@pytest.mark.parametrize("mode", TURN_DETECTION)
def test_each_turn_mode_is_a_valid_session_update(user_dirs: Any, mode: str) -> None:
    settings = _cloud(turn_detection=mode)
    session = session_config(settings, [])
    validate(CLIENT_EVENTS, {"type": "session.update", "session": session})
    detection = session["audio"]["input"]["turn_detection"]
    assert (detection or {}).get("type") == (None if mode == "push_to_talk" else mode)
    assert settings.server_interrupts == (mode != "push_to_talk")


def test_the_persona_and_language_come_from_the_local_settings(user_dirs: Any) -> None:
    settings = load_settings().updated({"llm": {"system_prompt": "You are a pirate."},
                                        "stt": {"language": "de"}})
    session = session_config(settings.cloud, [])
    assert session["instructions"] == "You are a pirate."
    assert session["audio"]["input"]["transcription"]["language"] == "de"
    settings = settings.updated({"stt": {"language": "auto"}})
    assert "language" not in session_config(settings.cloud, [])["audio"]["input"][
        "transcription"]


def test_no_noise_reduction_leaves_it_out(user_dirs: Any) -> None:
    session = session_config(_cloud(noise_reduction=""), [])
    assert "noise_reduction" not in session["audio"]["input"]


def test_an_unknown_turn_mode_is_named_with_the_choices(user_dirs: Any) -> None:
    with pytest.raises(ParleyError, match="turn_detection") as err:
        _cloud(turn_detection="telepathy")
    assert "server_vad" in str(err.value)
