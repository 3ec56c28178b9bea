"""Microphone input as a stream of 16 kHz mono blocks, delivered from the audio thread.

The device is opened at its own rate and channel layout (what it supports best) and
converted here, rather than asking PortAudio for 16 kHz mono, which many devices refuse
or serve through a poor resampler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from audio.devices import DeviceInfo, open_stream
from audio.resample import StreamResampler
from engines.errors import AudioError
from engines.protocols import Audio

log = logging.getLogger(__name__)

RATE = 16000


class Capture:
    """Record from `device`, calling `on_audio` with each converted block (~`block_ms`).

    `on_audio` runs on PortAudio's thread: it should hand the block on (a queue) and return.
    An exception there is logged and the stream keeps running, so one bad block cannot
    silently stop the microphone.
    """

    def __init__(
        self, device: DeviceInfo, on_audio: Callable[[Audio], None], block_ms: int = 30
    ) -> None:
        if device.inputs < 1:
            raise AudioError(f"{device.name} has no inputs, so it cannot record.",
                             "Choose a microphone with --input-device.")
        self.device = device
        self.block_ms = block_ms
        self.overflows = 0
        """Blocks the device dropped because this process did not keep up."""
        self._on_audio = on_audio
        self._resampler = StreamResampler(device.default_rate, RATE)
        self._stream: Any = None

    def start(self) -> None:
        if self._stream is not None:
            return
        self._stream = open_stream(self.device, "input", self.device.default_rate,
                                   self.block_ms, self._callback)

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
            self._resampler.flush()  # a few ms held back; the next start is a new stream

    def _callback(self, indata: np.ndarray[Any, Any], frames: int, time: Any,
                  status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        try:
            block = self._resampler.process(indata)
            if block.size:
                self._on_audio(block)
        except Exception:
            log.exception("on_audio failed; the block was dropped")

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
