"""Where a turn's wait went: the metrics the agents write become the stages the panel, the
CSV and the Markdown export show, end to end from the user's last word to Parley's voice."""

from __future__ import annotations

import pytest

from app.conversation import metrics
from app.conversation.metrics import STAGES, stage_times

SPOKEN = {"end_of_turn_wait": 600.0, "stt": 180.0, "audio_seconds": 2.4, "llm_first_token": 250.0,
          "llm_first_piece": 410.0, "tts_first_audio": 90.0, "tts_ms": 600.0,
          "tts_audio_seconds": 3.1, "tokens_per_s": 28.0,
          "end_of_speech_to_first_audio": 1_730.0}
"""A spoken local turn's `metrics_ms`, as `parley talk --metrics-json` writes it."""


def test_a_spoken_turn_becomes_end_of_turn_transcribe_first_token_phrase_and_audio() -> None:
    stages = stage_times(SPOKEN)
    assert tuple(stages) == STAGES  # in time order, ready to stack end to end
    # the first phrase is timed from the same request as the first token: its stage is the
    # time after the token; Other is the rest (handing the turn over, queues)
    assert stages == {"End of turn": 600.0, "Transcribe": 180.0, "First token": 250.0,
                      "First phrase": 160.0, "First audio": 90.0, "Other": 450.0}
    assert sum(stages.values()) == pytest.approx(SPOKEN["end_of_speech_to_first_audio"])


def test_a_typed_turn_has_no_transcribe_stage_and_a_cloud_turn_only_the_headline() -> None:
    typed = {k: v for k, v in SPOKEN.items()
             if k not in ("end_of_turn_wait", "stt", "audio_seconds")}
    assert list(stage_times(typed)) == ["First token", "First phrase", "First audio", "Other"]
    cloud = {"end_of_speech_to_first_audio": 900.0, "end_of_speech_to_first_sound": 950.0,
             "end_of_speech_to_speech_stopped": 500.0, "speech_stopped_to_first_audio": 400.0}
    assert stage_times(cloud) == {"End of turn": 500.0, "Other": 400.0}


def test_no_stage_is_negative_when_rounded_stages_overfill_the_headline() -> None:
    """The metrics JSON keeps 0.1 ms: read back, the stages can add up to a hair more."""
    rounded = {"stt": 100.1, "llm_first_token": 200.1, "llm_first_piece": 300.0,
               "tts_first_audio": 50.1, "end_of_speech_to_first_audio": 450.1}
    stages = stage_times(rounded)
    assert stages["Other"] == 0.0
    assert min(stages.values()) >= 0.0


def test_the_names_are_the_metrics_json_keys_that_scripts_read() -> None:
    """Renaming a constant's value would break every reader of `--metrics-json`."""
    assert {name: key for name, key in vars(metrics).items()
            if name.isupper() and isinstance(key, str) and key not in STAGES} == {
        "AUDIO_SECONDS": "audio_seconds",
        "END_OF_SPEECH_TO_FIRST_AUDIO": "end_of_speech_to_first_audio",
        "END_OF_SPEECH_TO_FIRST_SOUND": "end_of_speech_to_first_sound",
        "END_OF_SPEECH_TO_SPEECH_STOPPED": "end_of_speech_to_speech_stopped",
        "END_OF_TURN_WAIT": "end_of_turn_wait",
        "LLM_FIRST_PIECE": "llm_first_piece",
        "LLM_FIRST_TOKEN": "llm_first_token",
        "SPEECH_STOPPED_TO_FIRST_AUDIO": "speech_stopped_to_first_audio",
        "STT": "stt",
        "TOKENS_PER_S": "tokens_per_s",
        "TTS_AUDIO_SECONDS": "tts_audio_seconds",
        "TTS_FIRST_AUDIO": "tts_first_audio",
        "TTS_MS": "tts_ms",
    }
