"""A linear echo canceller (speexdsp's, from the system library) beside AEC3.

AEC3 removes the agent's voice almost entirely, but its suppressor also holds back the
first 50-300 ms of a user who talks over the agent, and Whisper then misreads what was
said ("How far away is the moon?" became "Our way is a move."). A linear canceller only
subtracts its estimate of the echo: a trace of the agent stays, but the user's words are
kept whole. So AEC3's output decides whether the user interrupted, and this one's output is
what Whisper reads. speexdsp is BSD-licensed and on every Debian system that has
PulseAudio (`libspeexdsp1`); the binding is the four functions used here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import numpy as np

from engines.protocols import Audio

log = logging.getLogger(__name__)

_SET_SAMPLING_RATE = 24
"""SPEEX_ECHO_SET_SAMPLING_RATE in speex/speex_echo.h."""
_FILTER_S = 0.5
"""The echo path it can model: the reference leads the echo by the device latencies
(~60-120 ms measured), then the room's reverberation (RT60 ~0.3 s)."""


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1")
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_echo_ctl.restype = ctypes.c_int
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p] * 4
    return lib


class LinearEchoCanceller:
    """`process(near, far)` on frames of `frame` samples at `rate`, float32 in and out."""

    def __init__(self, lib: ctypes.CDLL, rate: int, frame: int) -> None:
        self._lib = lib
        self._frame = frame
        self._state = lib.speex_echo_state_init(frame, round(_FILTER_S * rate))
        if not self._state:
            raise MemoryError("speex_echo_state_init failed")
        value = ctypes.c_int(rate)
        lib.speex_echo_ctl(self._state, _SET_SAMPLING_RATE, ctypes.byref(value))
        self._out = np.zeros(frame, dtype=np.int16)

    def process(self, near: Audio, far: Audio) -> Audio:
        if len(near) != self._frame or len(far) != self._frame:
            raise ValueError(f"frames must be {self._frame} samples")
        rec, play = _pcm(near), _pcm(far)
        self._lib.speex_echo_cancellation(self._state, rec.ctypes.data, play.ctypes.data,
                                          self._out.ctypes.data)
        return self._out.astype(np.float32) / 32768.0

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.speex_echo_state_destroy(state)


def _pcm(x: Audio) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def make_linear_echo_canceller(rate: int, frame: int) -> LinearEchoCanceller | None:
    """speexdsp's canceller, or None (logged) when the library is not installed: then
    Whisper reads AEC3's output, and may miss the first words of an interruption."""
    try:
        lib = _load()
    except (OSError, AttributeError) as e:
        log.warning("libspeexdsp is unavailable (%s): the first words said over Parley's "
                    "voice may be misheard. Install libspeexdsp1 to fix this.", e)
        return None
    return LinearEchoCanceller(lib, rate, frame)
