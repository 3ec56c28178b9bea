"""Acoustic echo cancellation: remove what the speaker played from what the microphone hears.

The reference ("far end") must be exactly what went to the speaker, lined up in time with
the capture. `FarEnd` keeps the last seconds of the speaker's signal at 16 kHz on the
`time.perf_counter` clock (the playback callback writes it); `EchoCanceller` reads it in
lockstep with the microphone and runs WebRTC's AEC3 (pywebrtc-audio) on 10 ms frames, and
speexdsp's linear canceller beside it (`audio.linear_echo` says why).

Both streams are stamped when their callback runs, not when PortAudio guesses the sound
reaches the air: the reference then *leads* the echo by the two device latencies plus the
acoustic path, which AEC3's own delay estimator finds. A reference that lagged the echo
could not be cancelled at all, so a lead is the safe side to err on. Callbacks on a busy
machine run late and in bursts, so each stream's timeline is taken from its earliest
looking stamps (`StreamClock`), and the reference is read in lockstep with the microphone,
re-anchored only when the two timelines really moved apart.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import NamedTuple, Protocol

import numpy as np

from audio.linear_echo import make_linear_echo_canceller
from audio.resample import StreamResampler
from engines.protocols import Audio

log = logging.getLogger(__name__)

RATE = 16000
FRAME = RATE // 100
"""AEC3 works on 10 ms frames."""
_RESYNC_S = 0.06
"""Re-anchor the reference when the clocks drift further apart than this."""
_WARM_UP_S = 2.0
"""Seconds of the agent's voice AEC3 needs to learn the room (about 30 dB after that)."""
_ACTIVE = 10 ** (-50 / 20)
"""A reference frame louder than -50 dBFS teaches the canceller something."""
_MAX_WAIT = 8
"""Frames of microphone held back waiting for their reference before silence is used
instead (the speaker stream stopped)."""


class StreamClock:
    """When a stream's sample 0 was (or will be) at the device, on the perf_counter clock.

    Each callback stamps the index of its first sample. A late callback makes the start
    look later, a burst after a stall makes it look earlier; the earliest of the last few
    seconds wins, which errs towards a leading reference. When every recent stamp says the
    stream moved later (samples were lost), the older ones are dropped at once.
    """

    def __init__(self, window: int = 150, recent: int = 25, shift_s: float = 0.03) -> None:
        self._starts: deque[float] = deque(maxlen=window)
        self._recent = recent
        self._shift_s = shift_s
        self._lock = threading.Lock()

    def stamp(self, index: float, at: float) -> None:
        with self._lock:
            self._starts.append(at - index / RATE)
            if len(self._starts) > self._recent:
                recent = list(self._starts)[-self._recent:]
                if min(recent) > min(self._starts) + self._shift_s:
                    self._starts = deque(recent, maxlen=self._starts.maxlen)

    def start(self) -> float | None:
        with self._lock:
            return min(self._starts) if self._starts else None


class FarEnd:
    """A ring of the speaker's signal at 16 kHz, written from the playback thread."""

    def __init__(self, rate: int, seconds: float = 3.0) -> None:
        self._resampler = StreamResampler(rate, RATE)
        self._rate = rate
        self._ring = np.zeros(round(seconds * RATE), dtype=np.float32)
        self._written = 0
        self._pushed = 0
        """Device-rate samples pushed so far."""
        self.clock = StreamClock()
        self.gaps = 0
        """Underruns so far."""
        self._lock = threading.Lock()

    def push(self, block: Audio, played_at: float, after_gap: bool = False) -> None:
        """Add the mono block (at the device rate) handed to the device at `played_at`.

        `after_gap`: the device ran dry before this block (an underrun), which shifts the
        echo in time; AEC3 takes a second or more to find it again, and the agent's voice
        leaks through meanwhile (`gaps` lets the canceller say so).
        """
        self.gaps += after_gap
        self._write(self._resampler.process(block))
        self.clock.stamp(self._pushed * RATE / self._rate, played_at)
        self._pushed += len(block)

    def _write(self, out: Audio) -> None:
        with self._lock:
            size = len(self._ring)
            out = out[-size:]
            start = self._written % size
            first = min(len(out), size - start)
            self._ring[start:start + first] = out[:first]
            self._ring[:len(out) - first] = out[first:]
            self._written += len(out)

    @property
    def written(self) -> int:
        """Samples of the stream written so far (the resampler holds a few back)."""
        return self._written

    def index_at(self, t: float) -> int | None:
        """The stream index of what was played at time `t`; None before any playback."""
        start = self.clock.start()
        return None if start is None else round((t - start) * RATE)

    def read(self, start: int, n: int) -> Audio:
        """Samples [start, start + n) of the stream; silence where none is kept (yet)."""
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            size = len(self._ring)
            lo, hi = max(start, self._written - size), min(start + n, self._written)
            if hi > lo:
                out[lo - start:hi - start] = self._ring[np.arange(lo, hi) % size]
        return out


class _Processor(Protocol):
    def process(self, near: Audio, far: Audio) -> Audio: ...


class Cancelled(NamedTuple):
    """What the microphone heard, in two versions of the same samples."""

    audio: Audio
    """AEC3's output: no trace of the agent, but while both talk the start of the user's
    words is held back too. For deciding whether the user spoke."""
    linear: Audio | None
    """Only the linear echo estimate removed: a trace of the agent, the user's words whole.
    For reading what the user said over the agent (None without speexdsp)."""


class EchoCanceller:
    """Feed microphone blocks (16 kHz, any length) with the time their first sample was
    captured; get the echo-cancelled signal back, in 10 ms frames.

    A frame whose reference the speaker's callback has not delivered yet is held back
    (up to `_MAX_WAIT` frames): cancelling against a made-up silent reference would teach
    AEC3 a wrong echo path.
    """

    def __init__(self, far: FarEnd, processor: _Processor,
                 linear: _Processor | None = None) -> None:
        self.far = far
        self._processor = processor
        self._linear = linear
        self._near = np.zeros(0, dtype=np.float32)
        self._mic = StreamClock()
        self._heard = 0
        """Microphone samples received so far."""
        self._cursor: int | None = None
        """Stream index of the far end that goes with the next near sample."""
        self._learned = 0
        """Frames of audible reference processed since the echo path last changed."""
        self._gaps = 0

    @property
    def warming_up(self) -> bool:
        """True until the canceller has heard enough of the agent to cancel it well: at
        first, and again after the echo moved (the speaker ran dry, or the reference had
        to be re-anchored: both happen on an overloaded machine)."""
        if self.far.gaps != self._gaps:
            log.info("the speaker ran dry: relearning the echo path")
            self._gaps, self._learned = self.far.gaps, 0
        return self._learned < _WARM_UP_S * 100

    def process(self, near: Audio, captured_at: float) -> Cancelled:
        self._mic.stamp(self._heard, captured_at)
        self._heard += len(near)
        mic_start = self._mic.start()
        assert mic_start is not None
        target = self.far.index_at(mic_start + (self._heard - len(near) - len(self._near))
                                   / RATE)
        if target is not None and (self._cursor is None
                                   or abs(self._cursor - target) > _RESYNC_S * RATE):
            if self._cursor is not None:
                log.info("echo reference re-anchored by %d samples", target - self._cursor)
                self._learned = 0  # the echo moved in AEC3's eyes: it has to find it again
            self._cursor = target
        x = np.concatenate([self._near, near])
        frames = len(x) // FRAME
        if self._cursor is not None:
            ready = (self.far.written - self._cursor) // FRAME
            frames = max(min(frames, ready), frames - _MAX_WAIT)
        self._near = x[max(frames, 0) * FRAME:]
        out, linear = [], []
        for i in range(frames):
            if self._cursor is None:
                far = np.zeros(FRAME, dtype=np.float32)
            else:
                far = self.far.read(self._cursor, FRAME)
                self._cursor += FRAME
                self._learned += float(np.sqrt(np.mean(np.square(far)))) > _ACTIVE
            mic = x[i * FRAME:(i + 1) * FRAME]
            out.append(self._processor.process(mic, far))
            if self._linear is not None:
                linear.append(self._linear.process(mic, far))
        return Cancelled(_joined(out), _joined(linear) if self._linear is not None else None)


def _joined(frames: list[Audio]) -> Audio:
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.float32)


def make_echo_canceller(far: FarEnd, linear: bool = True) -> EchoCanceller | None:
    """AEC3 from pywebrtc-audio, or None (with a warning) when it cannot be loaded; with
    speexdsp's linear canceller beside it if `linear` and it can be loaded."""
    try:
        from pywebrtc_audio import AudioProcessor
    except ImportError as e:
        log.warning("Echo cancellation is unavailable (%s): Parley would hear itself, so "
                    "it does not listen while it speaks (Esc or Space stop a reply). "
                    "Install pywebrtc-audio to talk over it.", e)
        return None
    processor = AudioProcessor(RATE, echo_cancellation=True, high_pass_filter=True)
    return EchoCanceller(far, processor,
                         make_linear_echo_canceller(RATE, FRAME) if linear else None)
