"""Capture and playback through real PortAudio streams on a private PulseAudio server.

Speech goes into the virtual mic with paplay and must come out of Capture; what Playback
plays must appear on the speaker's monitor, on time, and stop when flushed.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from audio.capture import Capture
from audio.devices import DeviceInfo, list_devices, pick_device
from audio.playback import Playback
from audio.wav import read_wav
from engines.errors import AudioError
from engines.protocols import Audio
from tests.pulse import PulseAudio
from tests.waiting import blocking_until


def _speech(tmp_path: Path, text: str = "The quick brown fox jumps over the lazy dog.") -> Path:
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return path


def _best_match(signal: Audio, source: Audio) -> tuple[int, float]:
    """Offset of `source` inside `signal` and their normalised correlation there."""
    n = len(signal) + len(source)
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(source, size)), size)
    lag = int(np.argmax(xc[: len(signal) - len(source) + 1]))
    seg = signal[lag:lag + len(source)]
    return lag, float(np.dot(seg, source) / (np.linalg.norm(seg) * np.linalg.norm(source)))


def _quiet_after_sound(blocks: list[tuple[float, Audio]], rate: int, quiet_s: float) -> bool:
    """The captured blocks hold a sound and then `quiet_s` of silence."""
    audio = np.concatenate([b for _, b in blocks]) if blocks else np.zeros(0, np.float32)
    sounding = np.flatnonzero(np.abs(audio) > 0.02)
    return bool(sounding.size) and audio.size - int(sounding[-1]) > quiet_s * rate


def _loud(x: Audio, rate: int, threshold: float = 0.02) -> np.ndarray:
    """Indices of 5 ms windows whose peak exceeds `threshold` (sound, not silence)."""
    win = rate // 200
    frames = np.abs(x[: len(x) // win * win]).reshape(-1, win).max(axis=1)
    return np.flatnonzero(frames > threshold) * win


def test_devices_are_listed(pulse: PulseAudio) -> None:
    names = [d.name for d in list_devices()]
    assert "pulse" in names
    assert pick_device(None, "input").inputs > 0
    assert pick_device(None, "output").outputs > 0


def test_capture_hears_speech_played_into_the_mic(pulse: PulseAudio, tmp_path: Path) -> None:
    path = _speech(tmp_path)
    source = read_wav(path)
    blocks: list[tuple[float, Audio]] = []

    def on_audio(block: Audio) -> None:
        blocks.append((time.monotonic(), block))

    with Capture(pick_device(None, "input"), on_audio) as cap:
        opened = time.monotonic()
        blocking_until(lambda: blocks, 5, "the first captured block")
        played = time.monotonic()
        pulse.play_into_mic(path)
        ended = time.monotonic()
        # the speech and the silence after it have come through
        blocking_until(lambda: blocks[-1][0] > ended + 0.2
                       and _quiet_after_sound(blocks, 16000, 0.2), 5,
                       "the captured speech to end in silence")
    assert cap.overflows == 0

    times = np.array([t for t, _ in blocks])
    sizes = np.array([len(b) for _, b in blocks])
    got = np.concatenate([b for _, b in blocks])
    assert all(b.dtype == np.float32 and b.ndim == 1 for _, b in blocks)
    lag, corr = _best_match(got, source)
    assert corr > 0.9, f"captured audio does not match what was played (r={corr:.3f})"

    gaps = np.diff(times)
    onset = int(_loud(source, 16000)[0])
    delivered = times[np.searchsorted(np.cumsum(sizes), lag + onset + 1)]
    print(f"\ncapture: r={corr:.3f}; first block {1000 * (times[0] - opened):.0f} ms after "
          f"start; {len(blocks)} blocks of median {np.median(sizes):.0f} samples; callback "
          f"gap median {1000 * np.median(gaps):.1f} ms, max {1000 * gaps.max():.1f} ms; "
          f"paplay start to speech onset delivered "
          f"{1000 * (delivered - played - onset / 16000):.0f} ms")
    assert np.median(gaps) == pytest.approx(0.030, abs=0.005)
    assert gaps.max() < 0.25


def test_playback_reaches_the_speaker_and_counts_what_it_played(
    pulse: PulseAudio, tmp_path: Path
) -> None:
    path = _speech(tmp_path)
    voice = read_wav(path, rate=22050)
    rec = pulse.record_speaker(tmp_path / "speaker.wav")
    rec.wait_flowing()
    with Playback(pick_device(None, "output")) as out:
        written = time.monotonic()
        out.write(voice, 22050)
        assert not out.is_idle
        assert out.wait_idle(timeout=len(voice) / 22050 + 2)
        idle = time.monotonic()
        latency = out.output_latency
        assert out.played_seconds == pytest.approx(len(voice) / 22050, abs=0.001)
        assert out.queued_samples == 0
        rec.wait_for_quiet_after_sound(since=idle)  # what the device held has been heard
        assert out.underflows == 0
    rec.stop()

    recorded = read_wav(rec.path)
    source = read_wav(path)
    lag, corr = _best_match(recorded, source)
    assert corr > 0.9, f"the speaker monitor does not carry what was played (r={corr:.3f})"
    heard, spoken = _loud(recorded, 16000), _loud(source, 16000)
    first = (lag + int(spoken[0])) * rec.rate // 16000
    delay = rec.time_of(first) - written - spoken[0] / 16000
    print(f"\nplayback: r={corr:.3f}; write to monitor {1000 * delay:.0f} ms; wait_idle after "
          f"{idle - written:.3f} s for {len(voice) / 22050:.3f} s of audio; voiced span "
          f"{(heard[-1] - heard[0]) / 16000:.3f} s on the monitor vs "
          f"{(spoken[-1] - spoken[0]) / 16000:.3f} s in the file; PortAudio output latency "
          f"{1000 * latency:.0f} ms")
    assert -0.02 < delay < 0.3  # a null sink renders 10 ms blocks ahead of the clock
    assert (heard[-1] - heard[0]) / 16000 == pytest.approx((spoken[-1] - spoken[0]) / 16000,
                                                          abs=0.02)


def test_flush_silences_playback_at_once(pulse: PulseAudio, tmp_path: Path) -> None:
    rate = 16000
    t = np.arange(3 * rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    rec = pulse.record_speaker(tmp_path / "flush.wav")
    rec.wait_flowing()
    with Playback(pick_device(None, "output")) as out:
        written = time.monotonic()
        out.write(tone, rate)
        blocking_until(lambda: out.played_seconds >= 0.6, 5, "0.6 s of the tone to be played")
        flushed = time.monotonic()
        out.flush()
        assert out.is_idle
        assert out.queued_samples == 0
        played = out.played_seconds
        rec.wait_for_quiet_after_sound(since=flushed, quiet_s=0.5)  # listen a while
        assert out.played_seconds == played, "nothing may play after a flush"
    rec.stop()

    recorded = read_wav(rec.path, rate=48000)
    loud = _loud(recorded, 48000, threshold=0.1)
    assert len(loud), "the tone never reached the speaker"
    started, stopped = rec.time_of(int(loud[0])), rec.time_of(int(loud[-1]))
    print(f"\nflush: sound stopped {1000 * (stopped - flushed):.0f} ms after flush(); "
          f"started {1000 * (started - written):.0f} ms after write(); played_seconds "
          f"{played:.3f} vs {(loud[-1] - loud[0]) / 48000:.3f} s on the monitor")
    assert 0.4 < played < 0.9
    assert stopped - flushed < 0.15
    assert (loud[-1] - loud[0]) / 48000 == pytest.approx(played, abs=0.05)


def test_devices_are_picked_by_number_exact_name_or_unique_part(pulse: PulseAudio) -> None:
    assert pick_device("PULSE", "input").name == "pulse"
    assert pick_device("puls", "output").name == "pulse"
    assert pick_device(" 1 ", "input").index == 1
    assert pick_device("", "output") == pick_device(None, "output")
    with pytest.raises(AudioError, match="matches several") as err:
        pick_device("ul", "input")  # pULse and defaULt: refuse to guess
    assert "pulse" in err.value.message and "default" in err.value.message


def test_unknown_device_names_the_ones_that_exist(pulse: PulseAudio) -> None:
    with pytest.raises(AudioError) as err:
        pick_device("no-such-microphone", "input")
    assert "no-such-microphone" in err.value.message
    assert "pulse" in err.value.message
    assert "--input-device" in err.value.hint
    with pytest.raises(AudioError) as err:
        pick_device(99, "output")
    assert "99" in err.value.message and "--output-device" in err.value.hint


def test_a_device_that_cannot_open_gives_a_readable_error(pulse: PulseAudio) -> None:
    ghost = DeviceInfo(99, "Ghost Mic", inputs=1, outputs=1, default_rate=44100)
    with pytest.raises(AudioError, match="Cannot record from Ghost Mic"):
        Capture(ghost, lambda block: None).start()
    with pytest.raises(AudioError, match="Cannot play sound on Ghost Mic"):
        Playback(ghost).start()
