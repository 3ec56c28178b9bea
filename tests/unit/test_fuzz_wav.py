"""Unit, fuzzed: whatever file `parley talk` is given, `read_wav` and `iter_wav` answer
within a deadline with finite 16 kHz mono float32 audio or an AudioError in words, never
another exception, a numpy warning or memory out of proportion to the file."""

from __future__ import annotations

import datetime
import io
import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audio.wav import iter_wav, read_wav
from engines.errors import AudioError
from engines.protocols import Audio

_FUZZ = settings(deadline=datetime.timedelta(seconds=2), database=None, max_examples=150,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
"""A reader that hangs or crawls fails the deadline; nothing is kept between runs."""

_MEMORY = 2 << 20, 256
"""Peak bytes Python and numpy may take: 2 MiB, plus 256 per byte of the file (16 kHz
float32 from a 1 kHz 8-bit file is 64). A header that claims gigabytes, or a rate that
turns a kB into hours of audio, must not be believed."""

_PEAK = 4.0
"""Samples are read within [-1, 1]; resampling may ring past full scale, but never far."""

_SUBTYPES = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")

_FIELDS = {  # offset and struct format of each field of the header soundfile writes
    "riff size": (4, "<I"), "fmt size": (16, "<I"), "format code": (20, "<H"),
    "channels": (22, "<H"), "rate": (24, "<I"), "byte rate": (28, "<I"),
    "block align": (32, "<H"), "bits": (34, "<H"), "data size": (4, "<I"),
    "fact frames": (8, "<I"),
}
"""The chunks' own fields; "data size" and "fact frames" count from where that chunk
starts (a float WAV has a fact and a PEAK chunk before its data)."""
_EDGES = (0, 1, 2, 3, 7, 8, 16, 24, 32, 64, 255, 0x7FFF, 0xFFFE, 0xFFFF, 8000, 16000,
          48000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF)
"""Values at the edges of what each field can say: zero, one, a byte, the type's limits."""


def _real(subtype: str, channels: int = 1, frames: int = 160) -> bytes:
    """A small WAV (10 ms at 16 kHz by default), as a recorder writes it."""
    tone = 0.5 * np.sin(np.arange(frames * channels, dtype=np.float32) / 5)
    out = io.BytesIO()
    sf.write(out, tone.reshape(frames, channels), 16000, subtype=subtype, format="WAV")
    return out.getvalue()


_PCM16 = _real("PCM_16")


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file, rewritten by each example."""
    return tmp_path_factory.mktemp("fuzz") / "input.wav"


def _whole(path: Path) -> list[Audio]:
    return [read_wav(path)]


def _streamed(path: Path) -> list[Audio]:  # as `parley talk` reads its input
    return list(iter_wav(path, block_seconds=0.05))


def _reads_or_is_refused(path: Path, data: bytes) -> None:
    """Both readers: audio that keeps every promise, or an AudioError with a hint."""
    path.write_bytes(data)
    for read in (_whole, _streamed):
        tracemalloc.start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                blocks = read(path)
        except AudioError as err:
            assert err.message and err.hint and "input.wav" in err.message
            continue
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < _MEMORY[0] + _MEMORY[1] * len(data), f"{peak} bytes from {len(data)}"
        for block in blocks:
            assert block.dtype == np.float32 and block.ndim == 1
            assert np.isfinite(block).all() and np.abs(block).max(initial=0) <= _PEAK


@_FUZZ
@given(data=st.binary(max_size=600),
       head=st.sampled_from([b"", b"RIFF", b"RIFF\x00\x01\x00\x00WAVEfmt ", b"RIFX", b"RF64",
                             b"FORM", b"fLaC", b"OggS", b"caff", b"ID3"]))
def test_any_bytes_read_as_audio_or_are_refused(path: Path, data: bytes, head: bytes) -> None:
    _reads_or_is_refused(path, head + data)


@_FUZZ
@example(changes=[("rate", 1)], subtype="PCM_16", channels=1)
@example(changes=[("format code", 64)], subtype="PCM_U8", channels=1)  # G721: not seekable
@example(changes=[("data size", 0xFFFFFFFF), ("riff size", 0xFFFFFFFF)], subtype="FLOAT",
         channels=2)
@given(changes=st.lists(st.tuples(st.sampled_from(sorted(_FIELDS)),
                                  st.sampled_from(_EDGES) | st.integers(0, 0xFFFFFFFF)),
                        min_size=1, max_size=3),
       subtype=st.sampled_from(_SUBTYPES), channels=st.integers(1, 3))
def test_a_real_wav_with_mutated_header_fields_reads_or_is_refused(
        path: Path, changes: list[tuple[str, int]], subtype: str, channels: int) -> None:
    data = bytearray(_real(subtype, channels))
    for name, value in changes:
        offset, fmt = _FIELDS[name]
        chunk = name.split()[0].encode()
        if chunk in (b"data", b"fact"):
            if chunk not in data:
                continue
            offset += data.index(chunk)
        struct.pack_into(fmt, data, offset, value % (1 << 8 * struct.calcsize(fmt)))
    _reads_or_is_refused(path, bytes(data))


@_FUZZ
@given(data=st.binary(min_size=1, max_size=64), at=st.integers(0, 400),
       cut=st.integers(0, 64))
def test_random_bytes_spliced_into_a_real_wav_read_or_are_refused(
        path: Path, data: bytes, at: int, cut: int) -> None:
    at %= len(_PCM16) + 1
    _reads_or_is_refused(path, _PCM16[:at] + data + _PCM16[at + cut:])


@pytest.mark.parametrize(("subtype", "channels"),
                         [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 1), ("PCM_U8", 3)])
def test_a_real_wav_cut_at_every_offset_reads_or_is_refused(
        path: Path, subtype: str, channels: int) -> None:
    real = _real(subtype, channels, frames=24)
    for end in range(len(real) + 1):
        _reads_or_is_refused(path, real[:end])


@_FUZZ
@given(rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000])
       | st.integers(1000, 200_000),
       channels=st.integers(1, 6), subtype=st.sampled_from(_SUBTYPES),
       samples=st.lists(st.floats(-1.0, 1.0, width=32), min_size=1, max_size=400),
       loud=st.floats(1.0, 1e6))
def test_any_valid_wav_reads_as_finite_mono_at_16k(
        path: Path, rate: int, channels: int, subtype: str, samples: list[float],
        loud: float) -> None:
    frames = len(samples) // channels or 1
    data = np.resize(np.asarray(samples, dtype=np.float32) * loud, (frames, channels))
    sf.write(path, data, rate, subtype=subtype, format="WAV")
    whole = read_wav(path)
    streamed = np.concatenate([np.zeros(0, np.float32),
                               *iter_wav(path, block_seconds=0.01)])
    for audio in (whole, streamed):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.isfinite(audio).all() and np.abs(audio).max(initial=0) <= _PEAK
        assert abs(audio.size - frames * 16000 / rate) <= 2, (audio.size, frames, rate)
