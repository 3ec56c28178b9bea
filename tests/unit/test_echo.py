"""Echo cancellation: the speaker's own sound is removed from the microphone, the user's
voice is kept, and the reference lines up with the capture by time."""

from __future__ import annotations

import ctypes.util

import numpy as np
import pytest
import soxr

from audio.echo import RATE, Cancelled, EchoCanceller, FarEnd, StreamClock, make_echo_canceller
from engines.protocols import Audio
from tests.speech import espeak

DEVICE_RATE = 48000


AGENT = ("The moon is about three hundred and eighty four thousand kilometres away. "
         "Light takes a little over a second to get there.")
USER = "Wait, stop, tell me about the sun instead please."


def voice(text: str, seconds: float, voice: str = "en-us") -> Audio:
    """`text` spoken by espeak-ng at -20 dBFS, cut or padded to `seconds`."""
    x = espeak(text, voice=voice)
    x = 0.1 * x / np.sqrt(np.mean(x**2))
    n = int(seconds * RATE)
    return np.pad(x, (0, max(0, n - len(x))))[:n].astype(np.float32)


def room(far: Audio, delay_ms: int, seed: int) -> Audio:
    """What a microphone hears of `far`: delayed, reverberant (RT60 0.3 s), 6 dB down."""
    rng = np.random.default_rng(seed)
    taps = int(0.3 * RATE)
    rir = rng.standard_normal(taps) * np.exp(-6.9 * np.arange(taps) / (0.3 * RATE))
    rir /= np.sqrt(np.sum(rir**2))
    echo = np.convolve(far, rir)[:len(far)] * 0.5
    delay = int(delay_ms * RATE / 1000)
    return np.concatenate([np.zeros(delay), echo])[:len(far)].astype(np.float32)


def play_and_record(far: Audio, mic: Audio, playback_ahead_ms: float,
                    late_ms: float = 0.0) -> Audio:
    """Run the app's two callbacks on a simulated clock: the speaker's (20 ms blocks at
    48 kHz, stamped when handed over, `playback_ahead_ms` before the microphone's block
    arrives) and the microphone's (30 ms blocks); each callback runs up to `late_ms` late.
    Returns the canceller's two outputs."""
    rng = np.random.default_rng(3)
    far_end = FarEnd(DEVICE_RATE)
    canceller = make_echo_canceller(far_end)
    assert canceller is not None
    device = soxr.resample(far, RATE, DEVICE_RATE).astype(np.float32)
    block, played, out = DEVICE_RATE // 50, 0, []
    for start in range(0, len(mic) - 480 + 1, 480):
        arrived = (start + 480) / RATE
        while played / DEVICE_RATE <= arrived + playback_ahead_ms / 1000:
            far_end.push(device[played:played + block],
                         played / DEVICE_RATE + rng.uniform(0, late_ms / 1000))
            played += block
        out.append(canceller.process(mic[start:start + 480],
                                     start / RATE + rng.uniform(0, late_ms / 1000)))
    linear = [o.linear for o in out if o.linear is not None]
    return Cancelled(np.concatenate([o.audio for o in out]),
                     np.concatenate(linear) if len(linear) == len(out) else None)


def db(x: Audio) -> float:
    return float(10 * np.log10(np.mean(np.square(x)) + 1e-20))


@pytest.mark.parametrize("delay_ms", [10, 60, 150])
@pytest.mark.parametrize("playback_ahead_ms", [0, 40])
def test_the_agents_voice_is_removed_from_the_microphone(delay_ms: int,
                                                         playback_ahead_ms: float) -> None:
    far = voice(AGENT, 8.0)
    mic = room(far, delay_ms, seed=2)
    out = play_and_record(far, mic, playback_ahead_ms).audio
    settled = slice(2 * RATE, len(out))
    assert db(mic[settled]) - db(out[settled]) > 20  # echo return loss enhancement


def test_late_and_bursty_callbacks_do_not_throw_the_reference_off() -> None:
    far = voice(AGENT, 8.0)
    mic = room(far, 60, seed=2)
    out = play_and_record(far, mic, 20, late_ms=100).audio
    settled = slice(2 * RATE, len(out))
    assert db(mic[settled]) - db(out[settled]) > 20


def test_the_users_voice_survives_while_the_agent_talks() -> None:
    far = voice(AGENT, 9.0)
    user = np.concatenate([np.zeros(4 * RATE), voice(USER, 5.0, "en-gb")]).astype(np.float32)
    echo = room(far, 60, seed=2)
    out = play_and_record(far, echo + user, 20).audio
    echo_only, talking = slice(2 * RATE, 4 * RATE), slice(4 * RATE, len(out))
    assert db(out[talking]) > db(user[talking]) - 10  # the user is barely quieter
    assert db(out[talking]) > db(out[echo_only]) + 15  # and far above what is left of echo


def test_the_start_of_the_users_words_over_the_agent_is_kept_whole_in_the_linear_output(
        ) -> None:
    far = voice(AGENT, 9.0)
    said = voice(USER, 5.0, "en-gb")
    said = said[np.argmax(np.abs(said) > 0.01):]  # from its first sound
    user = np.zeros_like(far)
    user[4 * RATE:4 * RATE + len(said)] = said
    echo = room(far, 60, seed=2)
    out = play_and_record(far, echo + user, 20)
    assert out.linear is not None
    echo_only, first_words = slice(2 * RATE, 4 * RATE), slice(4 * RATE, 4 * RATE + RATE // 4)
    # AEC3 holds back the user's first quarter second; the linear canceller does not ...
    assert db(out.audio[first_words]) < db(user[first_words]) - 5
    assert abs(db(out.linear[first_words]) - db(user[first_words])) < 1.5
    # ... and what it leaves of the agent is well below the user's words
    assert db(out.linear[first_words] - user[first_words]) < db(user[first_words]) - 8
    assert db(echo[echo_only]) - db(out.linear[echo_only]) > 6


def test_without_speexdsp_the_canceller_runs_on_aec3_alone(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "/nonexistent/libspeexdsp.so")
    far = voice(AGENT, 4.0)
    out = play_and_record(far, room(far, 60, seed=2), 20)
    assert out.linear is None and len(out.audio) > 3 * RATE
    assert "Install libspeexdsp1" in caplog.text


def test_the_reference_is_read_for_the_time_the_microphone_block_was_captured() -> None:
    far_end = FarEnd(RATE)
    click = np.zeros(RATE, dtype=np.float32)
    click[4000] = 1.0
    far_end.push(click, played_at=10.0)
    index = far_end.index_at(10.25)
    assert index == 4000
    assert far_end.read(index, 1)[0] == 1.0
    assert not far_end.read(-10_000, 100).any()  # before anything was played: silence


class Recorder:
    """A stand-in processor that passes the microphone through and keeps each reference."""

    def __init__(self) -> None:
        self.references: list[Audio] = []

    def process(self, near: Audio, far: Audio) -> Audio:
        self.references.append(far)
        return near


def test_microphone_audio_waits_for_its_reference_rather_than_use_a_silent_one() -> None:
    far_end, recorder = FarEnd(RATE), Recorder()
    canceller = EchoCanceller(far_end, recorder)
    tone = np.full(RATE, 0.5, dtype=np.float32)
    far_end.push(tone[:800], played_at=0.0)
    first = canceller.process(np.zeros(1600, dtype=np.float32), captured_at=0.0).audio
    assert len(first) == 800  # only the 50 ms whose reference is known
    far_end.push(tone[800:], played_at=0.05)
    second = canceller.process(np.zeros(160, dtype=np.float32), captured_at=0.1).audio
    assert len(first) + len(second) == 1760
    assert all(r.min() == 0.5 for r in recorder.references)


def test_the_stream_timeline_ignores_late_callbacks_but_follows_lost_samples() -> None:
    clock, rng = StreamClock(), np.random.default_rng(5)
    for block in range(100):  # 20 ms blocks, each callback up to 15 ms late
        clock.stamp(block * 320, 1.0 + block * 0.02 + rng.uniform(0, 0.015))
    start = clock.start()
    assert start is not None and abs(start - 1.0) < 0.002
    for block in range(100, 130):  # 60 ms of samples were lost: the stream is later now
        clock.stamp(block * 320, 1.06 + block * 0.02 + rng.uniform(0, 0.015))
    start = clock.start()
    assert start is not None and abs(start - 1.06) < 0.005


def test_the_canceller_owns_up_to_learning_at_first_and_after_the_speaker_ran_dry() -> None:
    far = voice(f"{AGENT} {AGENT}", 12.0)
    far_end = FarEnd(DEVICE_RATE)
    canceller = make_echo_canceller(far_end)
    assert canceller is not None and canceller.warming_up
    device = soxr.resample(far, RATE, DEVICE_RATE).astype(np.float32)
    block, learned_at = DEVICE_RATE // 50, None
    for n, played in enumerate(range(0, len(device) - block, block)):
        far_end.push(device[played:played + block], played / DEVICE_RATE,
                     after_gap=n == 200)  # an underrun 4 s in
        canceller.process(np.zeros(320, np.float32), played / DEVICE_RATE)
        if learned_at is None and not canceller.warming_up:
            learned_at = n * 0.02
        if n == 200:
            assert canceller.warming_up
    assert learned_at is not None and 2.0 <= learned_at < 4.0  # 2 s of voice, pauses aside
    assert not canceller.warming_up
