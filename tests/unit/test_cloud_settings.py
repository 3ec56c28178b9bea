"""Parley's settings become a GA Realtime session the service accepts, in every turn mode."""

from __future__ import annotations

from typing import Any

import pytest

from app.cloud.settings import TURN_DETECTION, cloud_settings, session_config
from app.settings import load_config
from engines.errors import ParleyError
from tests.realtime_server import CLIENT_EVENTS, validate


def _config(**cloud: Any) -> Any:
    config = load_config()
    config["cloud"].update(cloud)
    return config


@pytest.mark.parametrize("mode", TURN_DETECTION)
def test_each_turn_mode_is_a_valid_session_update(user_dirs: Any, mode: str) -> None:
    settings = cloud_settings(_config(turn_detection=mode))
    session = session_config(settings, [])
    validate(CLIENT_EVENTS, {"type": "session.update", "session": session})
    detection = session["audio"]["input"]["turn_detection"]
    assert (detection or {}).get("type") == (None if mode == "push_to_talk" else mode)
    assert settings.server_interrupts == (mode != "push_to_talk")


def test_the_persona_and_language_come_from_the_local_settings(user_dirs: Any) -> None:
    config = _config()
    config["llm"]["system_prompt"] = "You are a pirate."
    config["stt"]["language"] = "de"
    session = session_config(cloud_settings(config), [])
    assert session["instructions"] == "You are a pirate."
    assert session["audio"]["input"]["transcription"]["language"] == "de"
    config["stt"]["language"] = "auto"
    assert "language" not in session_config(cloud_settings(config), [])["audio"]["input"][
        "transcription"]


def test_no_noise_reduction_leaves_it_out(user_dirs: Any) -> None:
    session = session_config(cloud_settings(_config(noise_reduction="")), [])
    assert "noise_reduction" not in session["audio"]["input"]


def test_an_unknown_turn_mode_is_named_with_the_choices(user_dirs: Any) -> None:
    with pytest.raises(ParleyError, match="turn_detection") as err:
        cloud_settings(_config(turn_detection="telepathy"))
    assert "server_vad" in err.value.hint
