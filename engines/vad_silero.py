"""Voice activity detection with the Silero ONNX model on plain onnxruntime.

Silero ignores steady noise that fools WebRTC VAD; running the ONNX file directly avoids
the `silero-vad` package, whose dependencies pull in torch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engines.errors import ModelError
from engines.model_ref import ModelRef
from engines.models import reinstall_hint
from engines.protocols import Audio, EngineStats

if TYPE_CHECKING:
    import onnxruntime

_CONTEXT_SAMPLES = 64
"""Silero v5 expects each window prefixed with the last 64 samples of the one before."""


class SileroVAD:
    """`is_speech` on 32 ms frames (512 samples at 16 kHz); keeps the model's state between
    frames, so feed frames in order and call `reset()` between unrelated streams.

    Options: `threshold` (speech probability, default 0.5).
    """

    sample_rate: int = 16000
    frame_samples: int = 512
    overlapping: bool = False  # its recurrent state follows the stream

    def __init__(self, ref: ModelRef, options: Mapping[str, Any]) -> None:
        self._ref = ref
        self._threshold = float(options.get("threshold", 0.5))
        self._session: onnxruntime.InferenceSession | None = None
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)
        self._sr = np.array(self.sample_rate, dtype=np.int64)
        self._stats = EngineStats(name="silero-vad", model=ref.name)

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime

        path = self._ref.path
        if not path.is_file():
            raise ModelError(
                f"The Silero VAD model '{self._ref.name}' is missing: {path}",
                f"{reinstall_hint(self._ref)} Or choose the webrtcvad VAD.",
            )
        start = time.perf_counter()
        options = onnxruntime.SessionOptions()
        # One frame is ~0.1 ms of work: extra threads only cost wake-ups.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"The Silero VAD model '{self._ref.name}' could not be loaded; the file is "
                f"corrupt or truncated: {path}",
                reinstall_hint(self._ref),
            ) from exc
        names = {i.name for i in session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise ModelError(
                f"'{path}' is not a Silero VAD v5 model (inputs: {', '.join(sorted(names))}).",
                "Use the silero_vad.onnx shipped with silero-vad 5 or later.",
            )
        self._session = session
        self._stats.load_seconds = time.perf_counter() - start

    def close(self) -> None:
        self._session = None
        self.reset()

    def reset(self) -> None:
        """Forget the previous audio, e.g. when a new utterance or a new stream starts."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, frame: Audio) -> float:
        """The model's speech probability for this frame, for callers that want hysteresis."""
        if len(frame) != self.frame_samples:
            raise ValueError(
                f"Silero VAD needs frames of {self.frame_samples} samples, got {len(frame)}."
            )
        self.load()
        assert self._session is not None
        start = time.perf_counter()
        window: npt.NDArray[np.float32] = np.concatenate(
            (self._context, np.asarray(frame, dtype=np.float32))
        )
        prob, state = self._session.run(
            None, {"input": window[np.newaxis, :], "state": self._state, "sr": self._sr}
        )
        self._state = state
        self._context = window[-_CONTEXT_SAMPLES:]
        self._stats.calls += 1
        self._stats.last_call_ms = {"is_speech": (time.perf_counter() - start) * 1000.0}
        return float(prob[0, 0])

    def is_speech(self, frame: Audio) -> bool:
        return self.probability(frame) >= self._threshold
