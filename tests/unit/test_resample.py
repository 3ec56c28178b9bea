"""Mono conversion and sample-rate conversion keep the sound, whatever the input shape."""

from __future__ import annotations

import numpy as np
import pytest

from audio.resample import StreamResampler, resample, to_mono
from engines.protocols import Audio


def _tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> Audio:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: Audio, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.array([-32768, 0, 16384], dtype=np.int16), [-1.0, 0.0, 0.5]),
        (np.array([-(2**31), 2**30], dtype=np.int32), [-1.0, 0.5]),
        (np.array([0, 128, 192], dtype=np.uint8), [-1.0, 0.0, 0.5]),
        (np.array([-2.0, 0.25, 3.0], dtype=np.float64), [-1.0, 0.25, 1.0]),
        (np.array([[0.5, -0.5], [1.0, 0.0]], dtype=np.float32), [0.0, 0.5]),
        (np.array([[16384], [-16384]], dtype=np.int16), [0.5, -0.5]),
    ],
    ids=["int16", "int32", "uint8", "float64-clipped", "stereo", "one-column"],
)
def test_to_mono_scales_and_mixes(samples: np.ndarray, expected: list[float]) -> None:
    mono = to_mono(samples)
    assert mono.dtype == np.float32
    assert mono.ndim == 1
    np.testing.assert_allclose(mono, expected, atol=1e-6)


def test_to_mono_never_returns_a_view_of_the_input() -> None:
    buffer = np.zeros((4, 1), dtype=np.float32)  # like a device buffer reused after a callback
    mono = to_mono(buffer)
    buffer[:] = 1.0
    assert not mono.any()


def test_to_mono_rejects_what_is_not_audio() -> None:
    with pytest.raises(ValueError, match="1-D or"):
        to_mono(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="integers or floats"):
        to_mono(np.array(["a", "b"]))


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (22050, 16000), (8000, 16000),
                                          (16000, 44100)])
def test_resample_keeps_length_pitch_and_level(src: int, dst: int) -> None:
    out = resample(_tone(440, src), src, dst)
    assert out.dtype == np.float32
    assert len(out) == pytest.approx(dst, abs=1)
    assert _peak_hz(out, dst) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(out[100:-100] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resample_mixes_channels_and_handles_equal_rates_and_empty_input() -> None:
    stereo = np.stack([_tone(440, 16000), -_tone(440, 16000)], axis=1)
    assert not resample(stereo, 16000, 16000).any()  # opposite channels cancel
    assert resample(np.zeros(0, dtype=np.float32), 48000, 16000).size == 0
    with pytest.raises(ValueError, match="positive"):
        resample(_tone(440, 16000), 0, 16000)


@pytest.mark.parametrize(("src", "dst"), [(44100, 16000), (16000, 22050), (16000, 16000)])
def test_stream_resampler_matches_one_shot_across_odd_chunks(src: int, dst: int) -> None:
    x = _tone(300, src, seconds=2.0) + _tone(1234, src, seconds=2.0, amp=0.2)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=60, replace=False))
    stream = StreamResampler(src, dst)
    pieces = [stream.process(c) for c in np.split(x, cuts)] + [stream.flush()]
    assert all(p.dtype == np.float32 for p in pieces)
    np.testing.assert_allclose(np.concatenate(pieces), resample(x, src, dst), atol=1e-5)


def test_stream_resampler_takes_device_blocks_and_restarts_after_flush() -> None:
    stream = StreamResampler(48000, 16000)
    block = np.stack([_tone(440, 48000, 0.03)] * 2, axis=1)  # 30 ms stereo, as a device gives
    first = np.concatenate([stream.process(block) for _ in range(10)] + [stream.flush()])
    second = np.concatenate([stream.process(block) for _ in range(10)] + [stream.flush()])
    assert len(first) == len(second) == 4800
    np.testing.assert_allclose(first, second, atol=1e-6)
