"""`python -m tests.bench.echo`: does Parley hear itself, and does it hear you over itself?

A simulated room: the agent's replies (real Piper speech) go to a "speaker" in blocks (as
`Playback` opens the device), reach the "microphone" through a room (decaying-noise
impulse response, RT60 0.3 s), 60 ms later and 6 dB down, with noise; in half the trials
an espeak-ng user talks over the reply, as loud as the echo. Each trial runs through the
app's own parts on a simulated clock with jittery callbacks: `FarEnd` fed by the playback
blocks, the `EchoCanceller`, the barge-in endpointer (`Endpointers.during_reply`), Whisper
on what it cuts, and the `from_the_user` decision. A pause stops the speaker at its next block
(what the device already holds still plays), so the echo really stops.

Reported per mode: ERLE (dB, echo-only trials, after the first 2 s), self-interruptions
(the agent cut its own reply) and false pauses over the echo-only trials, the share of
user interruptions committed, and the delay from the user's first word to the speaker
going silent (p50/p90), with the part of it before the detector first hears voice in
the cancelled audio (AEC3 holds back the start of the user's words while the agent
talks), and the share of the user's words in the transcript of a committed interruption:
read from the linear canceller's output as the app does, and from AEC3's alone.
`--min-speech-ms 90,60` adds one aec row per value, side by side on the same trials.

Every run hears the same trials: Piper speaks the replies without its random variation
(`noise_scale` 0), and the room's jitter and noise are seeded. (With Piper's default
variation each run heard different replies, and the false pauses alone went from 0 to 13.)
Writes bench-results/echo.json and echo.md.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.conversation.interruption import from_the_user
from app.conversation.session import endpointer_factory, resolve_models
from app.settings import load_settings
from audio.bargein import DuplexMode, DuplexSettings, Endpointers
from audio.echo import Cancelled, FarEnd, make_echo_canceller
from audio.endpointing import Endpointer, SpeechStarted, Utterance
from audio.playback import BLOCK_MS
from audio.resample import resample
from engines.builtin import default_registry
from engines.protocols import Audio, STTEngine, TTSEngine
from tests.speech import espeak

RATE = 16000
DEVICE_RATE = 48000
PLAY_BLOCK = DEVICE_RATE * BLOCK_MS // 1000  # as Playback opens the device
MIC_BLOCK = 160  # 10 ms, as VoiceLoop opens Capture
ECHO_DELAY_S = 0.060
ECHO_GAIN = 10 ** (-6 / 20)
NOISE_DBFS = -60
DEVICE_AHEAD_S = 2 * BLOCK_MS / 1000
"""The speaker's buffer: a block is handed over this long before it sounds (two blocks,
PortAudio's reported output latency on PulseAudio)."""
MIC_LATE_S = 0.020
"""A microphone block arrives this long after its last sample was captured."""
JITTER_S = 0.010
"""Callbacks run up to this much later than due (a busy 2-core machine)."""
GAP_S = 1.5

REPLIES = [
    "The moon is about three hundred and eighty four thousand kilometres away. Light "
    "takes a little over a second to cross that distance.",
    "Paris is the capital of France. It is famous for its museums, its cafes and the "
    "Eiffel Tower.",
    "A spider has eight legs. Insects, on the other hand, have six.",
    "For dinner tonight you could try a simple pasta with tomatoes, garlic and basil. It "
    "takes about twenty minutes.",
    "The sky looks blue because air scatters blue sunlight more than red light. At sunset "
    "the light travels further, so it turns orange.",
    "To sleep better, keep a regular bedtime and avoid screens for an hour before bed.",
    "Here is a joke. Why did the scarecrow win an award? Because he was outstanding in "
    "his field.",
    "Water boils at one hundred degrees Celsius at sea level. On a high mountain it boils "
    "at a lower temperature.",
    "The Pacific is the largest ocean on Earth. It covers about a third of the planet's "
    "surface.",
    "Once upon a time a small dragon lived in a cave by the sea. Every morning it flew "
    "over the waves to watch the sun rise.",
]
USERS = [
    ("Wait, stop for a moment.", "en-gb"),
    ("How far away is the moon?", "en-us"),
    ("Hold on, I have another question.", "en-us+m3"),
    ("No, tell me about the weather instead.", "en-gb"),
    ("Tell me a story about a dragon.", "en-us"),
    ("Sorry, can you say that again?", "en-us+f2"),
    ("Why is the sky blue?", "en-gb"),
    ("Thanks, that is enough.", "en-us+m3"),
]


@dataclass
class Trial:
    reply: Audio
    """The agent's reply at 16 kHz (played through the device at 48 kHz)."""
    text: str
    user: Audio | None = None
    user_at_s: float = 0.0
    """When the user's first word starts, from the start of the reply."""
    user_text: str = ""


@dataclass
class Outcome:
    pauses: list[float] = field(default_factory=list)
    """When the speaker went silent (held), from the start of the reply."""
    voiced: list[float] = field(default_factory=list)
    """For each pause, when the first frame the barge-in detector took for voice was
    captured: what comes before it is echo cancellation hiding the user's first word."""
    heard: list[str] = field(default_factory=list)
    committed: bool = False
    clipped: str = ""
    """The interruption as read from AEC3's output alone (the app reads the linear one)."""


def db(x: Audio) -> float:
    return float(10 * np.log10(np.mean(np.square(x)) + 1e-20))


def rms(x: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def room_response(seed: int) -> Audio:
    rng = np.random.default_rng(seed)
    taps = int(0.4 * RATE)
    rir = rng.standard_normal(taps) * np.exp(-6.9 * np.arange(taps) / (0.3 * RATE))
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def convolve(x: Audio, h: Audio) -> Audio:
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:len(x)]
    return y.astype(np.float32)


def onset(x: Audio) -> float:
    """Seconds to the first 10 ms frame above -40 dB of the loudest one: the first word."""
    frames = x[:len(x) // 160 * 160].reshape(-1, 160)
    level = np.sqrt(np.mean(frames**2, axis=1))
    return float(np.argmax(level > level.max() * 0.01) * 160 / RATE)


class Room:
    """The speaker, the room and the microphone on one simulated clock, run block by block
    through the app's barge-in path in one mode."""

    def __init__(self, endpointers: Endpointers, stt: STTEngine,
                 duplex: DuplexSettings, seed: int) -> None:
        self.mode = duplex.mode
        self.endpointers = endpointers
        self.duplex = duplex
        self.stt = stt
        self.rng = np.random.default_rng(seed)
        self.far_end = FarEnd(DEVICE_RATE)
        self.canceller = make_echo_canceller(self.far_end) if self.mode == DuplexMode.AEC else None
        self.clock = 0.0
        """Seconds of stream so far: both devices started together at 0."""
        self.played = 0
        """Device samples handed to the speaker so far."""
        self.mic_in: list[Audio] = []
        self.mic_out: list[Audio] = []

    def run(self, trial: Trial, rir: Audio) -> Outcome:
        """One reply (then a pause): the speaker plays it unless the user's speech holds
        it; an interruption that is committed stops it for good."""
        device = resample(trial.reply, RATE, DEVICE_RATE)
        total = (len(trial.reply) + int(GAP_S * RATE)) // MIC_BLOCK * MIC_BLOCK
        noise = self.rng.standard_normal(total).astype(np.float32) * 10 ** (NOISE_DBFS / 20)
        near = np.zeros(total, dtype=np.float32)
        if trial.user is not None:
            at = int(trial.user_at_s * RATE) - int(onset(trial.user) * RATE)
            user = trial.user[:max(0, total - at)]
            near[at:at + len(user)] = user
        start, start_played = self.clock, self.played
        delay = int((ECHO_DELAY_S + start_played / DEVICE_RATE - start) * RATE)
        """Microphone samples from the start of the trial to the echo of the reply's first
        sample: the speaker's stream runs a little ahead of the microphone's."""
        silences: list[list[int]] = []
        """[from, to) device samples of the reply the speaker held back; `to` is -1 while
        held, and what was already handed to the device still sounds."""
        outcome = Outcome()
        endpointer = self._endpointer()
        pushed = 0
        """Samples the current endpointer has heard."""
        echo = self._echo(trial.reply, silences, rir, total, delay)
        for first in range(0, total - MIC_BLOCK + 1, MIC_BLOCK):
            arrive = start + (first + MIC_BLOCK) / RATE + MIC_LATE_S
            # the speaker's callbacks run ahead of the sound by the device buffer
            while (self.played + PLAY_BLOCK) / DEVICE_RATE <= arrive + DEVICE_AHEAD_S:
                i = self.played - start_played
                block = device[i:i + PLAY_BLOCK]
                block = np.pad(block, (0, PLAY_BLOCK - len(block)))
                for lo, hi in silences:
                    end = PLAY_BLOCK if hi < 0 else max(0, hi - i)
                    block[max(0, lo - i):end] = 0
                late = self.rng.uniform(0, JITTER_S)
                self.far_end.push(block, self.played / DEVICE_RATE - DEVICE_AHEAD_S + late)
                self.played += PLAY_BLOCK
            span = slice(first, first + MIC_BLOCK)
            mic = echo[span] + near[span] + noise[span]
            self.mic_in.append(mic)
            captured = arrive - MIC_BLOCK / RATE + self.rng.uniform(0, JITTER_S)
            heard, linear = (Cancelled(mic, None) if self.canceller is None
                             else self.canceller.process(mic, captured))
            self.mic_out.append(heard)
            if self.mode == DuplexMode.AEC and self.canceller is not None:
                if self.canceller.warming_up:  # VoiceLoop stops listening, lets it play
                    endpointer = None
                    if silences and silences[-1][1] < 0:
                        silences[-1][1] = self.played - start_played
                        echo = self._echo(trial.reply, silences, rir, total, delay)
                elif endpointer is None:
                    endpointer, pushed = self._endpointer(), 0
            if endpointer is None or outcome.committed:
                continue
            pushed += len(heard)
            for event in endpointer.push(heard, linear):
                if isinstance(event, SpeechStarted):
                    # VoiceLoop holds the reply; the device plays what it already has
                    outcome.pauses.append(arrive + DEVICE_AHEAD_S - start)
                    outcome.voiced.append(arrive - MIC_LATE_S - start
                                          - (pushed / RATE - event.at_s))
                    silences.append([self.played - start_played, -1])
                elif isinstance(event, Utterance):
                    text = self.stt.transcribe(event.audio).text.strip()
                    if from_the_user(text, trial.text):
                        outcome.committed = True  # the rest of the reply is dropped
                        outcome.clipped = text
                        text = self._read_in_full(event, text, trial.text)
                    outcome.heard.append(text)
                    if not outcome.committed:  # resumed where it was (the bench skips over the gap)
                        silences[-1][1] = self.played - start_played
                    endpointer, pushed = self._endpointer(), 0
                echo = self._echo(trial.reply, silences, rir, total, delay)
        self.clock = start + total / RATE
        return outcome

    def _read_in_full(self, event: Utterance, text: str, reply: str) -> str:
        """As `Agent.barge_in`: what was said is read from the linear canceller's output."""
        if event.twin is None:
            return text
        whole = self.stt.transcribe(event.twin).text.strip()
        return whole if from_the_user(whole, reply) else text

    def _endpointer(self) -> Endpointer | None:
        """As VoiceLoop makes it for each stretch of a reply (in AEC mode it does not
        listen while the canceller learns the room)."""
        if self.mode == DuplexMode.HALF_DUPLEX:
            return None
        if self.canceller is None:
            return self.endpointers.during_reply(self.duplex, echo_cancelled=False)
        return None if self.canceller.warming_up else self.endpointers.during_reply(self.duplex)

    @staticmethod
    def _echo(reply: Audio, silences: list[list[int]], rir: Audio, total: int,
              delay: int) -> Audio:
        """What the microphone hears of the reply as the speaker really played it."""
        sounded = np.pad(reply, (0, max(0, total - len(reply))))[:total]
        for lo, hi in silences:
            sounded[round(lo * RATE / DEVICE_RATE):None if hi < 0 else
                    round(hi * RATE / DEVICE_RATE)] = 0
        wet = convolve(sounded, rir) * ECHO_GAIN
        return np.concatenate([np.zeros(delay, np.float32), wet])[:total]


def build_trials(tts: TTSEngine, n: int) -> tuple[list[Trial], list[Trial]]:
    """`n` echo-only trials and `n` with a user talking over, from real Piper replies."""
    rng = np.random.default_rng(7)
    replies = []
    for text in REPLIES:
        chunks = list(tts.synthesize(text))
        audio = np.concatenate([resample(c.samples, c.sample_rate, RATE) for c in chunks])
        replies.append((text, (0.1 * audio / rms(audio)).astype(np.float32)))  # -20 dBFS
    users = []
    for text, voice in USERS:
        speech = espeak(text, voice=voice)
        users.append(speech / rms(speech))
    alone = [Trial(replies[i % len(replies)][1], replies[i % len(replies)][0])
             for i in range(n)]
    over = []
    for i in range(n):
        text, reply = replies[(i + 3) % len(replies)]
        echo_level = 0.1 * ECHO_GAIN
        user = (users[i % len(users)] * echo_level).astype(np.float32)
        at = float(rng.uniform(0.8, max(1.0, len(reply) / RATE - 1.5)))
        over.append(Trial(reply, text, user, at, USERS[i % len(USERS)][0]))
    return alone, over


def words_kept(said: str, heard: str) -> float:
    """The share of the user's words that the transcript of the interruption holds."""
    want, got = re.findall(r"\w+", said.lower()), set(re.findall(r"\w+", heard.lower()))
    return sum(w in got for w in want) / len(want)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def bench(alone: list[Trial], over: list[Trial], endpointers: Endpointers,
          stt: STTEngine, duplex: DuplexSettings) -> dict[str, float | int | str | None]:
    mode = duplex.mode
    room = Room(endpointers, stt, duplex, seed=11)
    started = time.perf_counter()
    rir = room_response(0)  # one room: the canceller learns it once, as at home
    # echo-only and talked-over replies alternate, as in a conversation
    alone_out, over_out = [], []
    erle_in, erle_out = [], []
    for i, (a, o) in enumerate(zip(alone, over, strict=True)):
        before = sum(len(x) for x in room.mic_in)
        alone_out.append(room.run(a, rir))
        skip = 2 * RATE if i == 0 else 0  # the canceller's first seconds ever
        erle_in.append(np.concatenate(room.mic_in)[before + skip:])
        erle_out.append(np.concatenate(room.mic_out)[before + skip:])
        over_out.append(room.run(o, rir))
    wall = time.perf_counter() - started
    audio_s = room.clock
    n = min(sum(len(x) for x in erle_in), sum(len(x) for x in erle_out))
    erle = (db(np.concatenate(erle_in)[:n]) - db(np.concatenate(erle_out)[:n])
            if mode == DuplexMode.AEC else 0.0)
    stops = [(t, out, min(i for i, p in enumerate(out.pauses) if p >= t.user_at_s))
             for t, out in zip(over, over_out, strict=True)
             if out.committed and any(p >= t.user_at_s for p in out.pauses)]
    delays = [(out.pauses[i] - t.user_at_s) * 1000 for t, out, i in stops]
    heard_after = [(out.voiced[i] - t.user_at_s) * 1000 for t, out, i in stops]
    kept = [words_kept(t.user_text, o.heard[-1]) for t, o in zip(over, over_out, strict=True)
            if o.committed]
    kept_clipped = [words_kept(t.user_text, o.clipped)
                    for t, o in zip(over, over_out, strict=True) if o.committed]
    return {
        "mode": str(mode),
        "min_speech_ms": duplex.min_speech_ms,
        "erle_db": round(erle, 1),
        "replies": len(alone),
        "self_interruptions": sum(o.committed for o in alone_out),
        "false_pauses": sum(len(o.pauses) for o in alone_out),
        "interruptions": len(over),
        "detected": sum(o.committed for o in over_out),
        "detected_share": round(sum(o.committed for o in over_out) / len(over), 3),
        "delay_p50_ms": round(pct(delays, 0.5)) if delays else None,
        "delay_p90_ms": round(pct(delays, 0.9)) if delays else None,
        "first_voice_p50_ms": round(pct(heard_after, 0.5)) if heard_after else None,
        "first_voice_p90_ms": round(pct(heard_after, 0.9)) if heard_after else None,
        "user_words_kept": round(statistics.mean(kept), 3) if kept else 0.0,
        "user_words_kept_aec3_only": (round(statistics.mean(kept_clipped), 3)
                                      if kept_clipped else 0.0),
        "realtime_factor": round(wall / audio_s, 3),
        "self_heard": " | ".join(h for o in alone_out for h in o.heard if h)[:300],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=32, help="replies per kind (≥ 30)")
    parser.add_argument("--min-speech-ms", default="",
                        help="comma-separated values to compare in aec mode "
                             "(default: the configured [duplex] min_speech_ms)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    config = load_settings()
    models = resolve_models(config)
    registry = default_registry()
    stt = registry.create(models["stt"], config.engine_options("stt"))
    # without Piper's random variation, so that every run hears the same replies
    tts = registry.create(models["tts"], {**config.engine_options("tts"),
                                          "noise_scale": 0.0, "noise_w_scale": 0.0})
    assert isinstance(stt, STTEngine) and isinstance(tts, TTSEngine)
    stt.load()
    tts.load()
    alone, over = build_trials(tts, args.replies)
    tts.close()
    endpointers = endpointer_factory(config)
    duplex = config.duplex
    min_speech = [int(v) for v in args.min_speech_ms.split(",") if v] or [duplex.min_speech_ms]
    runs = [(DuplexMode.AEC, ms) for ms in min_speech] + [
        (mode, min_speech[0]) for mode in DuplexMode if mode != DuplexMode.AEC]
    rows = [bench(alone, over, endpointers, stt, DuplexSettings(mode, ms, duplex.gate_dbfs))
            for mode, ms in runs]
    stt.close()
    header = ("| mode | min speech ms | ERLE dB | self-interruptions | false pauses "
              "| interruptions detected "
              "| first word → silence p50 / p90 ms | of which first word → first voice "
              "heard p50 / p90 ms | user's words transcribed (from AEC3's output alone) "
              "| real-time factor |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
    lines = [header] + [
        f"| {r['mode']} | {r['min_speech_ms']} | {r['erle_db'] if r['mode'] == 'aec' else '—'} "
        f"| {r['self_interruptions']} / {r['replies']} | {r['false_pauses']} "
        f"| {r['detected']} / {r['interruptions']} ({100 * float(r['detected_share']):.0f} %) "
        f"| {r['delay_p50_ms'] or '—'} / {r['delay_p90_ms'] or '—'} "
        f"| {r['first_voice_p50_ms'] or '—'} / {r['first_voice_p90_ms'] or '—'} "
        f"| {100 * float(r['user_words_kept']):.0f} % "
        f"({100 * float(r['user_words_kept_aec3_only']):.0f} %) | {r['realtime_factor']} |"
        for r in rows]
    table = "\n".join(lines)
    print(table)
    for r in rows:
        if r["self_heard"]:
            print(f"{r['mode']}: heard over its own replies: {r['self_heard']}")
    args.out.mkdir(exist_ok=True)
    (args.out / "echo.json").write_text(json.dumps(rows, indent=2))
    (args.out / "echo.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
