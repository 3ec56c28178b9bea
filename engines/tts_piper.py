"""Text to speech with Piper voices (VITS ONNX models) on onnxruntime.

Piper synthesises a sentence in a small fraction of its duration, so speaking sentence by
sentence lets playback start after the first one instead of after the whole reply.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.errors import ModelError, ParleyError
from engines.model_ref import ModelRef
from engines.models import reinstall_hint
from engines.protocols import AudioChunk, EngineStats

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig

_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][\"'\u201d\u2019)\]]))\s+|\n+")
"""After sentence punctuation (and a closing quote or bracket) plus space, or a line break.
Needing the space keeps "3.5" and "e.g.," whole."""


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, without surrounding whitespace."""
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part.strip()]


class PiperTTS:
    """Speaks text as one AudioChunk per sentence, each tagged with its sentence.

    Options: `length_scale` (above 1 speaks slower; default from the voice), `speaker`
    (id or name, multi-speaker voices only), `threads` (onnxruntime threads, default 2),
    `noise_scale` and `noise_w_scale` (the voice's random variation of timbre and timing;
    default from the voice; 0 makes the same text sound the same every time).
    """

    def __init__(self, ref: ModelRef, options: Mapping[str, Any]) -> None:
        self._ref = ref
        self._config = self._read_config()
        # Known before loading, so playback can be opened at the right rate up front.
        self.sample_rate: int = int(self._config["audio"]["sample_rate"])
        self._length_scale = _float_or_none(options.get("length_scale"))
        self._noise_scale = _float_or_none(options.get("noise_scale"))
        self._noise_w_scale = _float_or_none(options.get("noise_w_scale"))
        self._speaker_id = self._speaker(options.get("speaker"))
        self._threads = int(options.get("threads", 2))
        self._voice: PiperVoice | None = None
        self._syn_config: SynthesisConfig | None = None
        self._stats = EngineStats(name="piper", model=ref.name)

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def _read_config(self) -> dict[str, Any]:
        config_path = self._ref.path.with_name(self._ref.path.name + ".json")
        hint = reinstall_hint(self._ref)
        if not config_path.is_file():
            raise ModelError(
                f"The Piper voice '{self._ref.name}' has no config file: {config_path} "
                "is missing.",
                hint,
            )
        try:
            config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
            int(config["audio"]["sample_rate"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"The Piper voice config {config_path} is corrupt ({exc}).", hint
            ) from exc
        return config

    def _speaker(self, speaker: Any) -> int | None:
        """A speaker name or id, checked against the voice so mistakes fail early."""
        if speaker is None:
            return None
        names: dict[str, int] = self._config.get("speaker_id_map") or {}
        count = int(self._config.get("num_speakers", 1))
        if isinstance(speaker, str) and not speaker.isdigit():
            if speaker not in names:
                raise ParleyError(
                    f"The Piper voice '{self._ref.name}' has no speaker '{speaker}'.",
                    f"Use one of: {', '.join(sorted(names)) or 'none (single-speaker voice)'}.",
                )
            return names[speaker]
        speaker_id = int(speaker)
        if not 0 <= speaker_id < count:
            raise ParleyError(
                f"The Piper voice '{self._ref.name}' has no speaker {speaker_id}.",
                f"Use a speaker id from 0 to {count - 1}.",
            )
        return speaker_id

    def load(self) -> None:
        if self._voice is not None:
            return
        import onnxruntime
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        path = self._ref.path
        hint = reinstall_hint(self._ref)
        if not path.is_file():
            raise ModelError(f"The Piper voice '{self._ref.name}' is missing: {path}", hint)
        try:
            config = PiperConfig.from_dict(self._config)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"The Piper voice config for '{self._ref.name}' is corrupt ({exc}).", hint
            ) from exc
        start = time.perf_counter()
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = self._threads
        session_options.inter_op_num_threads = 1
        # Idle spinning after each sentence would steal a core from the LLM writing the next.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            # Built by hand rather than with PiperVoice.load, which cannot limit threads.
            session = onnxruntime.InferenceSession(
                str(path), sess_options=session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"The Piper voice '{self._ref.name}' could not be loaded; the file is corrupt "
                f"or truncated: {path}",
                hint,
            ) from exc
        self._voice = PiperVoice(session=session, config=config)
        self._syn_config = SynthesisConfig(
            speaker_id=self._speaker_id, length_scale=self._length_scale,
            noise_scale=self._noise_scale, noise_w_scale=self._noise_w_scale,
        )
        self._stats.load_seconds = time.perf_counter() - start

    def close(self) -> None:
        self._voice = None

    def synthesize(self, text: str) -> Generator[AudioChunk, None, None]:
        """Yields each sentence's audio as soon as it is ready (lazily: stop iterating to stop)."""
        self.load()
        assert self._voice is not None
        self._stats.calls += 1
        self._stats.last_call_ms = {}
        busy_ms = 0.0  # synthesis time only: the consumer's time between chunks is not ours
        for sentence in split_sentences(text):
            start = time.perf_counter()
            pieces = [
                chunk.audio_float_array
                for chunk in self._voice.synthesize(sentence, self._syn_config)
            ]
            busy_ms += (time.perf_counter() - start) * 1000.0
            if not pieces:  # nothing speakable, e.g. only punctuation
                continue
            self._stats.last_call_ms.setdefault("first_audio", busy_ms)
            self._stats.last_call_ms["total"] = busy_ms
            samples = np.concatenate(pieces).astype(np.float32, copy=False)
            yield AudioChunk(samples=samples, sample_rate=self.sample_rate, text=sentence)


def _float_or_none(value: Any) -> float | None:
    """An optional number from the settings: None leaves the voice's own default."""
    return None if value is None else float(value)
