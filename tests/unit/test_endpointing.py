"""The endpointer turns a stream into utterances: real speech with webrtcvad, and exact
timing rules with a VAD whose answers are known in advance."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import webrtcvad

from audio.endpointing import Endpointer, Event, Paused, Speaking, SpeechStarted, Utterance
from audio.wav import read_wav
from engines.protocols import Audio, EngineStats, VADEngine

RATE = 16000
FRAME = 480


class WebRtcVad:
    """The smallest VADEngine around webrtcvad, so these tests need no engine package."""

    sample_rate = RATE
    frame_samples = FRAME
    overlapping = True

    def __init__(self, aggressiveness: int = 2) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._stats = EngineStats("webrtcvad", "webrtcvad")

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def load(self) -> None:
        """webrtcvad has no model to load."""

    def close(self) -> None:
        """Nothing to release."""

    def is_speech(self, frame: Audio) -> bool:
        pcm = (np.clip(frame, -1, 1) * 32767).astype(np.int16).tobytes()
        return bool(self._vad.is_speech(pcm, RATE))


class LoudVad(WebRtcVad):
    """Voiced exactly when a frame is loud: lets the tests state times to the sample."""

    def is_speech(self, frame: Audio) -> bool:
        return bool(np.abs(frame).max() > 0.1)


def _run(ep: Endpointer, stream: Audio, seed: int = 0) -> list[tuple[float, Event]]:
    """Push the stream in random-length chunks; each event with the stream time it came."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, Event]] = []
    pos = 0
    while pos < len(stream):
        n = int(rng.integers(1, 3000))
        chunk = stream[pos:pos + n]
        pos += len(chunk)
        out += [(pos / RATE, e) for e in ep.push(chunk)]
    return out + [(pos / RATE, e) for e in ep.flush()]


def _utterances(events: list[tuple[float, Event]]) -> list[Utterance]:
    return [e for _, e in events if isinstance(e, Utterance)]


def _check_pairs(events: list[tuple[float, Event]]) -> None:
    """Every utterance comes after exactly one SpeechStarted of its own."""
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, Utterance] * (len(kinds) // 2)
    for (_, started), (_, utt) in zip(events[::2], events[1::2], strict=True):
        assert isinstance(started, SpeechStarted) and isinstance(utt, Utterance)
        assert started.at_s == utt.start_s


_NOISE = np.random.default_rng(0)


def _silence(seconds: float) -> Audio:
    """A quiet room (not zeros, so every position in the stream is recognisable).
    Durations in these tests are multiples of the 30 ms frame."""
    return _NOISE.normal(0, 0.001, round(seconds * RATE)).astype(np.float32)


def _loud(seconds: float) -> Audio:
    return _silence(seconds) + np.float32(0.5)


def _at(seconds: float) -> int:
    return round(seconds * RATE)


# --- exact rules, with the known-answer VAD -------------------------------------------


def test_adapter_satisfies_the_protocol() -> None:
    assert isinstance(WebRtcVad(), VADEngine)


def test_utterance_has_pre_roll_tail_and_exact_times() -> None:
    stream = np.concatenate([_silence(1.2), _loud(1.2), _silence(1.5)])
    events = _run(Endpointer(LoudVad()), stream)
    _check_pairs(events)
    (started_at, started), (ended_at, utt) = events
    assert isinstance(started, SpeechStarted) and isinstance(utt, Utterance)
    assert started.at_s == 1.2
    assert 1.41 <= started_at < 1.41 + 3000 / RATE  # once min_speech_ms has been voiced
    assert (utt.start_s, utt.end_s) == (1.2, 2.4)
    assert 3.0 <= ended_at < 3.0 + 3000 / RATE  # once hangover_ms has been quiet
    # 300 ms of pre-roll, the speech, 200 ms of tail: sample for sample
    np.testing.assert_array_equal(utt.audio, stream[_at(0.9):_at(2.6)])


def test_chunking_does_not_change_the_result() -> None:
    stream = np.concatenate([_silence(0.5), _loud(0.7), _silence(0.8), _loud(0.4),
                             _silence(1.0)])
    whole = Endpointer(LoudVad())
    at_once = [(0.0, e) for e in whole.push(stream) + whole.flush()]
    assert len(_utterances(at_once)) == 2
    for seed in range(3):
        pieces = _run(Endpointer(LoudVad()), stream, seed)
        assert [type(e) for _, e in pieces] == [type(e) for _, e in at_once]
        for a, b in zip(_utterances(pieces), _utterances(at_once), strict=True):
            assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
            np.testing.assert_array_equal(a.audio, b.audio)


def test_a_twin_stream_is_cut_at_the_same_places() -> None:
    """Over a reply the VAD judges AEC3's output, and the same stretch of the linear
    canceller's output is what Whisper reads."""
    stream = np.concatenate([_silence(0.5), _loud(0.7), _silence(0.8), _loud(0.4),
                             _silence(1.0)])
    twin = -stream  # any other version of the same samples; the VAD never sees it
    ep, rng, pos, events = Endpointer(LoudVad()), np.random.default_rng(1), 0, []
    while pos < len(stream):
        n = int(rng.integers(1, 3000))
        events += ep.push(stream[pos:pos + n], twin[pos:pos + n])
        pos += n
    utts = [e for e in events + ep.flush() if isinstance(e, Utterance)]
    assert len(utts) == 2
    for utt in utts:
        assert utt.twin is not None
        np.testing.assert_array_equal(utt.twin, -utt.audio)
    # without a twin there is none
    assert all(u.twin is None for u in _utterances(_run(Endpointer(LoudVad()), stream)))


def test_blips_shorter_than_min_speech_are_ignored() -> None:
    assert _run(Endpointer(LoudVad()), np.concatenate(
        [_silence(0.9), _loud(0.15), _silence(0.9), _loud(0.09), _silence(0.9)])) == []
    events = _run(Endpointer(LoudVad()), np.concatenate(
        [_silence(0.9), _loud(0.21), _silence(0.9)]))
    assert len(_utterances(events)) == 1


def test_pre_roll_stops_at_the_stream_start_and_at_the_previous_utterance() -> None:
    stream = np.concatenate([_silence(0.09), _loud(0.51), _silence(0.36), _loud(0.48),
                             _silence(0.9)])
    first, second = _utterances(_run(Endpointer(LoudVad(), hangover_ms=300), stream))
    np.testing.assert_array_equal(first.audio, stream[:_at(0.8)])
    assert second.start_s == 0.96
    # The first utterance's tail ends at 0.8 s; the pre-roll resumes at the next frame.
    np.testing.assert_array_equal(second.audio, stream[_at(0.81):_at(1.64)])


def test_pauses_shorter_than_the_hangover_stay_in_one_utterance() -> None:
    stream = np.concatenate([_silence(0.6), _loud(0.6), _silence(0.9), _loud(0.6),
                             _silence(2.1)])
    assert len(_utterances(_run(Endpointer(LoudVad()), stream))) == 2
    ep = Endpointer(LoudVad())
    ep.hangover_ms = 1000
    (utt,) = _utterances(_run(ep, stream))
    assert (utt.start_s, utt.end_s) == (0.6, 2.7)


def test_a_pause_offers_the_utterance_as_it_will_be_cut_if_the_pause_ends_it() -> None:
    """The STT can start on a pause: if the user goes on, the next pause offers the longer
    utterance; if not, the utterance is the one offered, sample for sample."""
    stream = np.concatenate([_silence(0.6), _loud(0.6), _silence(0.45), _loud(0.6),
                             _silence(1.2)])
    events = _run(Endpointer(LoudVad(), pause_ms=240), stream)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, Paused, Paused, Utterance]
    (_, first), (second_at, second), (ended_at, utt) = events[1:]
    assert isinstance(first, Paused) and isinstance(second, Paused)
    assert isinstance(utt, Utterance)
    assert len(first.audio) < len(second.audio)
    np.testing.assert_array_equal(second.audio, utt.audio)
    assert 2.49 <= second_at < 2.49 + 3000 / RATE  # 240 ms into the pause
    assert ended_at - second_at >= 0.3  # the hangover's rest: the time the STT gains
    # a pause shorter than the tail would cut short: it waits for the tail
    early = _run(Endpointer(LoudVad(), pause_ms=60), stream)
    np.testing.assert_array_equal([e for _, e in early if isinstance(e, Paused)][-1].audio,
                                  utt.audio)
    # off by default
    assert Paused not in [type(e) for _, e in _run(Endpointer(LoudVad()), stream)]


def test_while_the_user_speaks_their_words_so_far_are_offered_between_two_words() -> None:
    """Every `speaking_ms` or so the words so far can be read ahead: at the first gap
    after that time, never mid-word, each offer the start of the next, and never once the
    pause has begun (that is `Paused`'s)."""
    words = [_loud(0.3), _silence(0.06)] * 8  # eight words, 0.36 s apart
    stream = np.concatenate([_silence(0.6), *words, _silence(1.2)])
    events = _run(Endpointer(LoudVad(), speaking_ms=1000, pause_ms=240), stream)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, Speaking, Speaking, Paused, Utterance]
    first, second, utt = events[1][1], events[2][1], events[-1][1]
    assert isinstance(first, Speaking) and isinstance(second, Speaking)
    assert isinstance(utt, Utterance)
    # 1 s or more after the utterance's start (its pre-roll's) or the last offer
    assert len(first.audio) >= RATE and len(second.audio) - len(first.audio) >= RATE
    assert len(second.audio) < len(utt.audio)
    for offer in (first, second):
        assert np.abs(offer.audio[-FRAME:]).max() < 0.1  # it ends in a gap, not mid-word
        assert np.abs(offer.audio[-2 * FRAME:-FRAME]).max() > 0.1  # right after a word
        np.testing.assert_array_equal(offer.audio, utt.audio[:len(offer.audio)])
    # off by default
    assert Speaking not in [type(e) for _, e in _run(Endpointer(LoudVad()), stream)]


def test_long_speech_is_split_at_max_utterance_without_losing_audio() -> None:
    stream = np.concatenate([_silence(0.9), _loud(5.1), _silence(0.9)])
    events = _run(Endpointer(LoudVad(), max_utterance_s=2.1), stream)
    _check_pairs(events)
    utts = _utterances(events)
    assert [(u.start_s, u.end_s) for u in utts] == [(0.9, 2.7), (2.7, 4.8), (4.8, 6.0)]
    assert all(len(u.audio) <= _at(2.1) for u in utts)
    # back to back: together the pieces are exactly the stream from pre-roll to tail
    np.testing.assert_array_equal(np.concatenate([u.audio for u in utts]),
                                  stream[_at(0.6):_at(6.2)])


def test_flush_emits_speech_cut_off_by_the_end_of_the_stream() -> None:
    ep = Endpointer(LoudVad())
    stream = np.concatenate([_silence(0.6), _loud(0.9), _silence(0.01)])
    assert [type(e) for e in ep.push(stream)] == [SpeechStarted]
    (utt,) = ep.flush()
    assert isinstance(utt, Utterance)
    assert (utt.start_s, utt.end_s) == (0.6, 1.5)
    np.testing.assert_array_equal(utt.audio, stream[_at(0.3):])  # the odd samples too
    # a new stream starts at 0 s
    _, (_, again) = _run(ep, np.concatenate([_silence(0.3), _loud(0.6), _silence(0.9)]))
    assert isinstance(again, Utterance) and again.start_s == 0.3
    assert ep.flush() == []


# --- real speech, with webrtcvad -----------------------------------------------------


@pytest.fixture(scope="module")
def phrases(tmp_path_factory: pytest.TempPathFactory) -> list[Audio]:
    folder = tmp_path_factory.mktemp("speech")
    # espeak-ng probes PulseAudio even when writing a file, and with no server it leaves a
    # runtime link in ~/.config/pulse: point it at a socket that does not exist instead.
    env = {**os.environ, "PULSE_SERVER": f"unix:{folder}/no-server",
           "PULSE_RUNTIME_PATH": str(folder), "PULSE_COOKIE": str(folder / "cookie")}
    texts = [("en-us", "Turn on the lights in the kitchen, please."),
             ("en+f3", "What is the weather like tomorrow?"),
             ("en-us", "Thank you very much.")]
    out = []
    for i, (voice, text) in enumerate(texts):
        path = folder / f"{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, env=env)
        out.append(read_wav(path))
    return out


def _voiced_span(x: Audio) -> tuple[float, float]:
    """Where the sound really starts and ends (espeak pads its output a little)."""
    win = 80
    peaks = np.abs(x[:len(x) // win * win]).reshape(-1, win).max(axis=1)
    loud = np.flatnonzero(peaks > 0.02)
    return loud[0] * win / RATE, (loud[-1] + 1) * win / RATE


def test_real_speech_gives_one_utterance_per_phrase(phrases: list[Audio]) -> None:
    a, b, c = phrases
    s, _ = _voiced_span(a)
    blip = a[_at(s + 0.5):][:_at(0.06)]  # 60 ms of a word: webrtcvad voices 5 frames
    gap = [np.zeros(_at(t), dtype=np.float32) for t in (1.0, 1.2, 1.0, 1.0, 1.0)]
    parts = [gap[0], a, gap[1], b, gap[2], blip, gap[3], c, gap[4]]
    stream = np.concatenate(parts)
    stream += np.random.default_rng(7).normal(0, 0.001, len(stream)).astype(np.float32)
    offsets = np.cumsum([0] + [len(p) for p in parts]) / RATE
    truth = [(offsets[i] + _voiced_span(p)[0], offsets[i] + _voiced_span(p)[1])
             for i, p in ((1, a), (3, b), (7, c))]

    events = _run(Endpointer(WebRtcVad()), stream)

    _check_pairs(events)
    utts = _utterances(events)
    assert len(utts) == 3, [(u.start_s, u.end_s) for u in utts]
    for utt, (start, end) in zip(utts, truth, strict=True):
        assert utt.start_s == pytest.approx(start, abs=0.1)
        # webrtcvad keeps voicing 2-3 frames after speech (its own hangover), and a fading
        # syllable stays voiced below our loudness threshold: end_s may run a little late
        assert -0.06 <= utt.end_s - end <= 0.2
        # the audio holds 300 ms of pre-roll and ends 200 ms after the last voiced frame
        at = _at(utt.start_s - 0.3)
        np.testing.assert_array_equal(utt.audio, stream[at:_at(utt.end_s + 0.2)])
