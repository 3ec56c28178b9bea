"""Turn whatever a file or device delivers into the one shape engines take: mono float32.

Sample-rate conversion is soxr's job (band-limited, fast, streaming-capable); this module
only decides layout and scaling so every caller gets the same answer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from engines.protocols import Audio

_EMPTY: Audio = np.zeros(0, dtype=np.float32)


def to_mono(x: npt.ArrayLike) -> Audio:
    """Mix any layout down to mono float32 in [-1, 1].

    1-D input is already mono; 2-D input is (frames, channels), as soundfile and
    sounddevice deliver it. Integers are scaled by their full range (unsigned ones are
    centred first) so a 16-bit file and a float file of the same sound give the same
    samples; floats are clipped because out-of-range peaks would wrap in 16-bit output.
    The result never shares memory with `x`: device buffers are reused after a callback.
    """
    a = np.asarray(x)
    if a.ndim == 0 or a.ndim > 2:
        raise ValueError(f"audio must be 1-D or (frames, channels), got shape {a.shape}")
    if a.dtype.kind == "u":
        half = float(2 ** (8 * a.dtype.itemsize - 1))
        f = (a.astype(np.float64) - half) / half
    elif a.dtype.kind == "i":
        f = a.astype(np.float64) / float(2 ** (8 * a.dtype.itemsize - 1))
    elif a.dtype.kind == "f":
        f = a
    else:
        raise ValueError(f"audio samples must be integers or floats, got {a.dtype}")
    if f.ndim == 2:
        f = f.mean(axis=1) if f.shape[1] != 1 else f[:, 0]
    return np.ascontiguousarray(np.clip(f, -1.0, 1.0), dtype=np.float32)


def _check_rate(rate: int) -> None:
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")


def resample(x: npt.ArrayLike, src_rate: int, dst_rate: int) -> Audio:
    """Convert a whole signal at once (mixed to mono first, which is cheaper to resample)."""
    _check_rate(src_rate)
    _check_rate(dst_rate)
    mono = to_mono(x)
    if src_rate == dst_rate or mono.size == 0:
        return mono
    out: Audio = soxr.resample(mono, src_rate, dst_rate).astype(np.float32, copy=False)
    return out


class StreamResampler:
    """Resample a stream chunk by chunk without clicks at the chunk boundaries.

    A one-shot resample per chunk would treat each edge as the end of the signal; the
    streaming resampler carries its filter state across chunks instead. It holds back a
    few milliseconds of output, which `flush` releases at the end of the stream.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        _check_rate(src_rate)
        _check_rate(dst_rate)
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream = (
            None
            if src_rate == dst_rate
            else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32")
        )

    def process(self, chunk: npt.ArrayLike) -> Audio:
        """Convert one chunk (any layout); may return fewer samples than expected, or none."""
        mono = to_mono(chunk)
        if self._stream is None:
            return mono
        out: Audio = self._stream.resample_chunk(mono)
        return out

    def flush(self) -> Audio:
        """Release the held-back tail and reset, so the resampler can start a new stream."""
        if self._stream is None:
            return _EMPTY.copy()
        out: Audio = self._stream.resample_chunk(_EMPTY, last=True)
        self._stream.clear()
        return out
