"""Read any audio file as 16 kHz mono, whole or in blocks, and write 16-bit WAVs as we go.

Everything the engines see comes through `read_wav`/`iter_wav`, so files of any rate,
channel count or sample format behave the same; failures become an `AudioError` that
says what is wrong with the file in plain words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import soundfile as sf

from audio.resample import StreamResampler, resample
from engines.errors import AudioError
from engines.models.store import special_kind
from engines.protocols import Audio

_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3", b"caff")
"""File starts that mean "audio, but not a kind we can decode" rather than "not audio"."""

_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
"""Sample formats that can hold NaN or infinity; integer PCM cannot."""

_MIN_RATE = 1000
"""No recorder writes less: such a rate is a damaged header, and believing it would turn
each sample into 16 or more (a 1 MB file at 1 Hz: 32 GB at 16 kHz)."""

_FORMATS_HINT = "Use a WAV, FLAC or OGG file, e.g. convert it with `sox in.mp3 out.wav`."


def _open(path: str | Path) -> sf.SoundFile:
    """Open for reading, or explain in plain words why this file cannot be used."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"The audio file {p} does not exist.", "Check the path and spelling.")
    if p.is_dir():
        raise AudioError(f"{p} is a folder, not an audio file.", "Give the path of a file.")
    special = special_kind(p)
    if special is not None:
        raise AudioError(f"{p} is {special}, not an audio file.",
                         "Give the path of a recording (a WAV, FLAC or OGG file).")
    try:
        f = sf.SoundFile(p)
    except sf.LibsndfileError as e:
        raise _unreadable(p, e.error_string) from e
    except OSError as e:
        raise AudioError(f"Cannot open the audio file {p}: {e.strerror}.",
                         "Check that the file is readable.") from e
    if f.frames == 0:
        f.close()
        raise AudioError(f"The audio file {p} contains no sound (zero samples).",
                         "Record or export it again.")
    if f.samplerate < _MIN_RATE:
        f.close()
        raise AudioError(f"The audio file {p} is damaged: its header gives a sample rate of "
                         f"{f.samplerate} Hz, and recordings have at least {_MIN_RATE} Hz.",
                         "Record or export it again.")
    if not f.seekable():  # libsndfile's ADPCM codecs (G721, G723) cannot say their length
        f.close()
        raise AudioError(f"{p} is audio in an encoding that cannot be read ({f.subtype}).",
                         _FORMATS_HINT)
    if f.subtype in _FLOAT_SUBTYPES:
        _check_finite(f, p)
    return f


def _check_finite(f: sf.SoundFile, p: Path) -> None:
    """Refuse float samples that are NaN or infinite, before any block is handed on.

    No recorder writes them, so the file is damaged; zeroing them would answer audio the
    user never recorded, and passed on they poison the VAD and resampler (numpy warnings,
    no turns). The whole file is scanned now, in blocks, so a bad file fails at the call.
    """
    start = 0
    for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if bad.size:
            f.close()
            raise AudioError(
                f"The audio file {p} is damaged: it holds samples that are not a number or "
                f"infinite (the first at {(start + bad[0]) / f.samplerate:.2f} s).",
                "Record or export it again; a float WAV holds numbers between -1 and 1.",
            )
        start += len(block)
    f.seek(0)


def _unreadable(p: Path, detail: str) -> AudioError:
    with p.open("rb") as fh:
        head = fh.read(4)
    if not head:
        return AudioError(f"The audio file {p} is empty (0 bytes).", "Record or export it again.")
    if head.startswith(_AUDIO_MAGIC):
        return AudioError(
            f"{p} looks like audio, but it is damaged or in an encoding that cannot be read "
            f"({detail.rstrip('.')}).",
            _FORMATS_HINT,
        )
    return AudioError(f"{p} is not an audio file.", _FORMATS_HINT)


def read_wav(path: str | Path, rate: int = 16000) -> Audio:
    """The whole file as mono float32 at `rate`: for short clips and tests."""
    with _open(path) as f:
        data = f.read(dtype="float32", always_2d=True)
        return resample(data, f.samplerate, rate)


def iter_wav(path: str | Path, rate: int = 16000, block_seconds: float = 1.0) -> Iterator[Audio]:
    """Stream the file as mono float32 blocks at `rate`, holding only one block in memory.

    The file is opened (and checked) now, so a bad path fails at the call, not at the first
    `next()`. Blocks are about `block_seconds` long; the first is shorter by the resampler's
    delay and the last holds the remainder.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    f = _open(path)
    return _blocks(f, rate, max(1, round(block_seconds * f.samplerate)))


def _blocks(f: sf.SoundFile, rate: int, frames: int) -> Iterator[Audio]:
    resampler = StreamResampler(f.samplerate, rate)
    with f:
        for block in f.blocks(blocksize=frames, dtype="float32", always_2d=True):
            out = resampler.process(block)
            if out.size:
                yield out
    tail = resampler.flush()
    if tail.size:
        yield tail


class WavWriter:
    """Append audio to a 16-bit mono WAV as it arrives (recordings, TTS dumps, test logs).

    Chunks at other rates are converted with a streaming resampler, so a stream written in
    pieces sounds the same as one written at once. The header is finalised on `close`.
    """

    def __init__(self, path: str | Path, rate: int = 16000) -> None:
        self.path = Path(path)
        self.rate = rate
        self.frames = 0
        self._resampler: StreamResampler | None = None
        try:
            self._file = sf.SoundFile(self.path, "w", samplerate=rate, channels=1,
                                      format="WAV", subtype="PCM_16")
        except (sf.LibsndfileError, OSError) as e:
            raise AudioError(f"Cannot write the audio file {self.path}: {e}.",
                             "Check that the folder exists and is writable.") from e

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def write(self, samples: npt.ArrayLike, sample_rate: int) -> None:
        """Append samples (any layout, int or float) recorded at `sample_rate`."""
        if self._resampler is not None and self._resampler.src_rate != sample_rate:
            self._drain()
        if self._resampler is None:
            self._resampler = StreamResampler(sample_rate, self.rate)
        self._put(self._resampler.process(samples))

    def silence(self, seconds: float) -> None:
        """Append `seconds` of digital silence (pending resampled audio goes first)."""
        self._drain()
        self._put(np.zeros(round(seconds * self.rate), dtype=np.float32))

    def close(self) -> None:
        if self._file.closed:
            return
        self._drain()
        self._file.close()

    def _drain(self) -> None:
        if self._resampler is not None:
            self._put(self._resampler.flush())
            self._resampler = None

    def _put(self, mono: Audio) -> None:
        if mono.size:
            # Resampling can overshoot full scale a little; 16-bit PCM would wrap around.
            self._file.write(np.clip(mono, -1.0, 1.0))
            self.frames += mono.size

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
