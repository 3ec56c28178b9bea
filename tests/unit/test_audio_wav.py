"""WAV in and out: any file shape reads as 16 kHz mono, bad files fail in plain words."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.resample import resample
from audio.wav import WavWriter, iter_wav, read_wav
from engines.errors import AudioError
from engines.protocols import Audio

SUBTYPE_TOLERANCE = {"PCM_U8": 0.02, "PCM_16": 2e-4, "PCM_24": 1e-5, "PCM_32": 1e-5,
                     "FLOAT": 1e-5, "DOUBLE": 1e-5}


def _tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> Audio:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("subtype", list(SUBTYPE_TOLERANCE))
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_read_wav_gives_16k_mono_float_for_any_file(
    tmp_path: Path, rate: int, channels: int, subtype: str
) -> None:
    tone = _tone(440, rate, 0.5)
    # Stereo files carry the tone at full and half level: the mix is their average.
    data = np.stack([tone, tone * 0.5], axis=1)[:, :channels]
    path = tmp_path / "in.wav"
    sf.write(path, data, rate, subtype=subtype)

    audio = read_wav(path)

    expected = resample(tone * (0.75 if channels == 2 else 1.0), rate, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == len(expected)
    np.testing.assert_allclose(audio, expected, atol=SUBTYPE_TOLERANCE[subtype] * 2)


def test_read_wav_converts_to_any_rate_and_reads_flac(tmp_path: Path) -> None:
    path = tmp_path / "in.flac"
    sf.write(path, _tone(440, 44100, 1.0), 44100)
    assert len(read_wav(path, rate=22050)) == 22050
    assert len(read_wav(str(path))) == 16000


def test_iter_wav_yields_the_same_audio_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    sf.write(path, np.stack([_tone(300, 44100, 3.3)] * 2, axis=1), 44100, subtype="FLOAT")
    blocks = list(iter_wav(path, block_seconds=0.25))
    assert all(b.dtype == np.float32 and len(b) <= 4400 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), read_wav(path), atol=1e-5)


def test_iter_wav_keeps_memory_bounded_on_a_ten_minute_file(tmp_path: Path) -> None:
    rate, minutes = 48000, 10
    path = tmp_path / "long.wav"
    second = (_tone(440, rate, 1.0) * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as f:
        ten_seconds = np.tile(second[:, None], (10, 2))
        for _ in range(minutes * 6):
            f.write(ten_seconds)
    whole_file_bytes = minutes * 60 * 16000 * 4  # the decoded result alone: 38 MB

    tracemalloc.start()
    try:
        total = largest = 0
        for block in iter_wav(path, block_seconds=1.0):
            total += len(block)
            largest = max(largest, len(block))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total == minutes * 60 * 16000
    assert largest <= 1.1 * 16000
    assert peak < whole_file_bytes / 10, f"peak {peak / 1e6:.1f} MB"


def test_wav_writer_appends_16bit_pcm_and_converts_rates(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    voice = _tone(220, 22050, 1.0)
    with WavWriter(path, 16000) as writer:
        for chunk in np.array_split(_tone(440, 16000, 1.0), 7):
            writer.write(chunk, 16000)
        assert path.stat().st_size >= 2 * 16000, "chunks are written as they come"
        writer.silence(0.5)
        for chunk in np.array_split(voice, 9):  # another rate, in pieces
            writer.write(chunk, 22050)
        writer.write((np.stack([voice, voice], axis=1) * 32767).astype(np.int16), 22050)

    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert writer.frames == info.frames == 16000 + 8000 + 16000 + 16000
    assert writer.seconds == pytest.approx(3.5)
    audio = read_wav(path)
    np.testing.assert_allclose(audio[:16000], _tone(440, 16000, 1.0), atol=1e-4)
    assert not audio[16000:24000].any()
    # Both 22.05 kHz writes are one continuous stream: no seam where they meet.
    np.testing.assert_allclose(audio[24000:], resample(np.tile(voice, 2), 22050, 16000),
                               atol=2e-4)


def test_wav_writer_clips_instead_of_wrapping(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    with WavWriter(path, 16000) as writer:
        writer.write(np.full(1000, 1.5, dtype=np.float32), 16000)
        writer.write(np.full(1000, -1.0, dtype=np.float32), 48000)
    audio = read_wav(path)
    assert audio.min() >= -1.0 and audio[:900].min() > 0.99


def test_wav_writer_says_when_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="Cannot write") as err:
        WavWriter(tmp_path / "no-such-folder" / "out.wav")
    assert "folder" in err.value.hint


def _text(p: Path) -> None:
    p.write_text("this is a shopping list, not a recording\n")


def _zero_bytes(p: Path) -> None:
    p.write_bytes(b"")


def _zero_frames(p: Path) -> None:
    sf.write(p, np.zeros((0, 1), dtype=np.float32), 16000)


def _damaged(p: Path) -> None:
    sf.write(p, _tone(440, 16000, 0.1), 16000)
    p.write_bytes(p.read_bytes()[:30])  # the header is cut off in the middle


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "text": (_text, "is not an audio file"),
    "zero-bytes": (_zero_bytes, "is empty"),
    "zero-frames": (_zero_frames, "contains no sound"),
    "damaged": (_damaged, "damaged or in an encoding"),
}


@pytest.mark.parametrize("reader", [read_wav, iter_wav], ids=["read_wav", "iter_wav"])
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_raise_audio_error_in_plain_words(
    tmp_path: Path, kind: str, reader: Callable[[Path], object]
) -> None:
    make, says = BAD_FILES[kind]
    path = tmp_path / "input.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        reader(path)  # iter_wav checks the file at the call, before the first block
    assert says in err.value.message
    assert "input.wav" in err.value.message
    assert err.value.hint
    assert "Error" not in err.value.message.split("(")[0], "no library jargon up front"


@pytest.mark.parametrize("reader", [read_wav, iter_wav], ids=["read_wav", "iter_wav"])
def test_missing_file_and_folder_raise_audio_error(
    tmp_path: Path, reader: Callable[[Path], object]
) -> None:
    with pytest.raises(AudioError, match="does not exist") as err:
        reader(tmp_path / "nowhere.wav")
    assert "path" in err.value.hint
    with pytest.raises(AudioError, match="is a folder"):
        reader(tmp_path)
