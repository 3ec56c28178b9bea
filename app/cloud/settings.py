"""The Realtime session as Parley's settings describe it: the `[cloud]` section plus the
persona (`[llm] system_prompt`) and spoken language (`[stt] language`), which
`app.settings` fills in from the local settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RATE = 24000
"""The only PCM rate the Realtime API speaks, both ways."""

TURN_DETECTION = ("server_vad", "semantic_vad", "push_to_talk")


@dataclass(frozen=True)
class CloudSettings:
    """The [cloud] section (see resources/parley.toml for what each key means)."""

    model: str
    voice: str
    speed: float
    turn_detection: str
    vad_threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    eagerness: str
    transcription_model: str
    noise_reduction: str
    reconnect_attempts: int
    history_items: int
    instructions: str
    """The persona: [llm] system_prompt."""
    language: str
    """The spoken language: [stt] language."""

    @property
    def server_interrupts(self) -> bool:
        """With server or semantic VAD the server cancels a response the user talks over;
        in push-to-talk the client has to."""
        return self.turn_detection != "push_to_talk"


def session_config(s: CloudSettings, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The GA `session.update` payload, sent on every (re)connect (a new connection is a
    new server session)."""
    audio_format = {"type": "audio/pcm", "rate": RATE}
    turn: dict[str, Any] | None = None
    if s.turn_detection == "server_vad":
        turn = {"type": "server_vad", "threshold": s.vad_threshold,
                "prefix_padding_ms": s.prefix_padding_ms,
                "silence_duration_ms": s.silence_duration_ms,
                "create_response": True, "interrupt_response": True}
    elif s.turn_detection == "semantic_vad":
        turn = {"type": "semantic_vad", "eagerness": s.eagerness,
                "create_response": True, "interrupt_response": True}
    transcription: dict[str, str] = {"model": s.transcription_model}
    if s.language != "auto":
        transcription["language"] = s.language
    audio_input: dict[str, Any] = {"format": audio_format, "transcription": transcription,
                                   "turn_detection": turn}
    if s.noise_reduction:
        audio_input["noise_reduction"] = {"type": s.noise_reduction}
    return {"type": "realtime", "model": s.model, "output_modalities": ["audio"],
            "instructions": s.instructions,
            "audio": {"input": audio_input,
                      "output": {"format": audio_format,
                                 "voice": s.voice, "speed": s.speed}},
            "tools": tools,
            "tool_choice": "auto"}
