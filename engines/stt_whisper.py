"""Speech to text with faster-whisper (CTranslate2 Whisper models).

int8 on two threads with greedy decoding is the measured sweet spot for a laptop CPU; the
caller has already cut the audio at speech boundaries, so Whisper's own VAD stays off.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.errors import ModelError
from engines.model_ref import ModelRef
from engines.models import reinstall_hint
from engines.protocols import Audio, EngineStats, Transcript

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

_REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
"""Without tokenizer.json faster-whisper would try to fetch one from the hub."""


_FIRST_TOKENS = 12
_TOKENS_PER_S = 7
"""A short window's decode stops after this many tokens, plus these per second of audio."""
_WORD = re.compile(r"[\w']+")


def _said_once(text: str) -> str:
    """The text up to where it starts again from its first words (three, or the last two
    when the repeat was cut short)."""
    words = text.split()
    keys = [" ".join(_WORD.findall(w.lower())) for w in words]
    for i in range(2, len(words) - 1):
        again = keys[i:i + 3]
        if again == keys[:len(again)]:
            return " ".join(words[:i])
    return text


class WhisperSTT:
    """Transcribes one endpointed utterance of 16 kHz mono audio at a time.

    Options: `language` ("en"; None or "auto" detects it, at ~0.9 s extra per call),
    `compute_type` ("int8"), `cpu_threads` (2), `beam_size` (1), `window_s` (30: the
    encoder reads a 30 s window, the utterance padded with silence, as Whisper was trained;
    shorter: the utterance padded to that many seconds only, a fraction of the cost for a
    short question).
    """

    sample_rate: int = 16000

    def __init__(self, ref: ModelRef, options: Mapping[str, Any]) -> None:
        self._ref = ref
        language = options.get("language", "en")
        self._language: str | None = None if language in (None, "", "auto") else str(language)
        self._compute_type = str(options.get("compute_type", "int8"))
        self._cpu_threads = int(options.get("cpu_threads", 2))
        self._beam_size = int(options.get("beam_size", 1))
        self._window_s = float(options.get("window_s", 30))
        self._model: WhisperModel | None = None
        self._stats = EngineStats(name="faster-whisper", model=ref.name)

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def load(self) -> None:
        if self._model is not None:
            return
        folder = self._ref.path
        hint = reinstall_hint(self._ref)
        if not folder.is_dir():
            raise ModelError(
                f"The Whisper model folder for '{self._ref.name}' is missing: {folder}", hint
            )
        missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise ModelError(
                f"The Whisper model folder for '{self._ref.name}' is incomplete "
                f"(missing {', '.join(missing)}): {folder}",
                hint,
            )
        from faster_whisper import WhisperModel

        start = time.perf_counter()
        try:
            self._model = WhisperModel(
                str(folder),
                device="cpu",
                compute_type=self._compute_type,
                cpu_threads=self._cpu_threads,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(
                f"The Whisper model '{self._ref.name}' could not be loaded; its files are "
                f"corrupt or truncated ({exc}): {folder}",
                hint,
            ) from exc
        self._stats.load_seconds = time.perf_counter() - start

    def close(self) -> None:
        self._model = None

    def transcribe(self, audio: Audio) -> Transcript:
        self.load()
        assert self._model is not None
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        start = time.perf_counter()
        seconds = len(samples) / self.sample_rate
        logprob: float | None
        if self._window_s < 30 and seconds < 30 and self._language is not None:
            (text, logprob), language = self._in_short_window(samples), self._language
        else:
            segments, info = self._model.transcribe(
                samples, language=self._language, beam_size=self._beam_size, vad_filter=False
            )
            # `segments` is lazy: decoding happens while it is consumed.
            read = list(segments)
            text = " ".join(segment.text.strip() for segment in read).strip()
            logprob = min((float(s.avg_logprob) for s in read), default=None)
            language = str(info.language)
        self._stats.calls += 1
        self._stats.last_call_ms = {"transcribe": (time.perf_counter() - start) * 1000.0}
        return Transcript(text, language, seconds, logprob)

    def _in_short_window(self, samples: np.ndarray) -> tuple[str, float]:
        """One greedy decode of the utterance padded to `window_s` only, with faster-whisper's
        own feature extractor, prompt and CTranslate2 model; the text and its tokens' mean
        log-probability, reckoned as faster-whisper reckons `avg_logprob`."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        assert model is not None and self._language is not None
        extractor = model.feature_extractor
        features = extractor(samples)[:, :-1]  # its last frame is the reflection padding's
        frames = max(features.shape[-1], round(self._window_s * extractor.sampling_rate
                                               / extractor.hop_length))
        features = np.pad(features, ((0, 0), (0, frames - features.shape[-1])),
                          constant_values=float(features.min()))
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                              task="transcribe", language=self._language)
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        # Padded to a few seconds only, Whisper may not end: it says the words again and
        # again ("Why is this sky blue? Why is this sky blue? …"). Speech is ~4 tokens a second.
        longest = min(model.max_length, round(_FIRST_TOKENS + _TOKENS_PER_S * len(samples)
                                              / extractor.sampling_rate))
        result = model.model.generate(
            model.encode(np.ascontiguousarray(features)), [prompt], beam_size=self._beam_size,
            max_length=longest, suppress_blank=True, return_scores=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, (-1,)) or ()))[0]
        tokens = result.sequences_ids[0]
        # the score is the summed log-probability over the length (length penalty 1)
        logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        return _said_once(str(tokenizer.decode(tokens)).strip()), float(logprob)
