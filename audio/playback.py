"""Speaker output that can be interrupted mid-word and knows how much was actually played.

A callback-mode stream pulls from a queue we own, so `write` never blocks the agent,
`pause` and `flush` silence speech within one block (barge-in), and the callback's own
count of samples handed to the device tells which words the user has heard. Every block
handed to the device, silence included, also goes to `far_end`: the echo canceller's
reference.
"""

from __future__ import annotations

import threading
import time as clock
from collections import deque
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from audio.devices import DeviceInfo, open_stream
from audio.echo import FarEnd
from audio.resample import resample
from engines.errors import AudioError
from engines.protocols import Audio

BLOCK_MS = 20
"""Each callback hands the device this much; PortAudio keeps two blocks queued (its
reported output latency), so a pause or flush is heard that much later. Measured on
PulseAudio (tests/e2e/test_audio_devices.py): 20 ms blocks fall silent 42-50 ms after
`flush`, 15 ms blocks 29-40 ms (both also with both cores busy), 10 ms blocks underflow
on every callback. 15 ms is not used: with it, the echo bench's AEC3 (pywebrtc-audio)
cancelled 10 dB less and paused on its own voice 10 times in 32 replies, not 0."""


class Playback:
    """Play mono audio on `device` at its default rate, converting whatever is written.

    Each `write` is resampled on its own: TTS delivers whole sentences, so there is no
    boundary to smooth over, and nothing is held back inside a streaming resampler.
    """

    def __init__(self, device: DeviceInfo, block_ms: int = BLOCK_MS) -> None:
        if device.outputs < 1:
            raise AudioError(f"{device.name} has no outputs, so it cannot play sound.",
                             "Choose a speaker with --output-device.")
        self.device = device
        self.rate = device.default_rate
        self.block_ms = block_ms
        self.underflows = 0
        """Callbacks that came too late for the device; audible as clicks or gaps."""
        self._lock = threading.Lock()
        self._queue: deque[Audio] = deque()
        self._offset = 0
        self._queued = 0
        self._played = 0
        self._idle = threading.Event()
        self._idle.set()
        self._paused = False
        self._stream: Any = None
        self.far_end = FarEnd(self.rate)
        """What the device was given and when, for echo cancellation."""

    @property
    def played_samples(self) -> int:
        """Samples (at `rate`) the callback has handed to the device so far."""
        return self._played

    @property
    def played_seconds(self) -> float:
        return self._played / self.rate

    @property
    def queued_samples(self) -> int:
        """Samples written but not yet played; the next write starts this far ahead."""
        return self._queued

    @property
    def output_latency(self) -> float:
        """Seconds from handing a sample to the device until it is heard (PortAudio's
        estimate), to subtract from `played_seconds` when judging what was heard."""
        return float(self._stream.latency) if self._stream is not None else 0.0

    @property
    def is_idle(self) -> bool:
        return self._idle.is_set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until everything queued has been handed to the device; False on timeout.

        The last `output_latency` seconds may still be sounding when this returns.
        """
        return self._idle.wait(timeout)

    def write(self, samples: npt.ArrayLike, sample_rate: int) -> None:
        """Queue audio (any layout, int or float) for playing after what is queued."""
        audio = resample(samples, sample_rate, self.rate)
        if not audio.size:
            return
        with self._lock:
            self._queue.append(audio)
            self._queued += audio.size
            self._idle.clear()

    def flush(self) -> None:
        """Drop everything not yet played, and any pause: stop speaking now."""
        with self._lock:
            self._paused = False
            self._queue.clear()
            self._offset = 0
            self._queued = 0
            self._idle.set()

    def pause(self) -> None:
        """Play silence but keep what is queued: the user may be interrupting."""
        self._paused = True

    def resume(self) -> None:
        """Carry on from where `pause` stopped."""
        self._paused = False

    def start(self) -> None:
        if self._stream is not None:
            return
        self._stream = open_stream(self.device, "output", self.rate, self.block_ms,
                                   self._callback)

    def close(self) -> None:
        """Stop the stream (what the device already has still plays out) and drop the rest."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        self.flush()

    def _callback(self, outdata: np.ndarray[Any, Any], frames: int, time: Any,
                  status: Any) -> None:
        if status.output_underflow:
            self.underflows += 1
        n = 0
        with self._lock:
            while n < frames and self._queue and not self._paused:
                head = self._queue[0]
                take = min(frames - n, head.size - self._offset)
                outdata[n:n + take] = head[self._offset:self._offset + take, None]
                n += take
                self._offset += take
                if self._offset == head.size:
                    self._queue.popleft()
                    self._offset = 0
            self._played += n
            self._queued -= n
            if not self._queue and not self._idle.is_set():
                self._idle.set()
        outdata[n:] = 0
        self.far_end.push(outdata[:, 0], clock.perf_counter(),
                          after_gap=bool(status.output_underflow))

    def __enter__(self) -> Playback:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
