"""Cut a continuous 16 kHz stream into utterances, using any VAD that judges single frames.

A VAD only says "this frame sounds like speech". Turning that into "the user said
something and has stopped" needs policy: keep a little audio from before the first voiced
frame (words start softly), wait out short pauses (people breathe mid-sentence), ignore
clicks, and never let one utterance grow without bound. That policy lives here, apart
from any concrete VAD, so backends stay swappable.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from engines.protocols import Audio, VADEngine

_EMPTY: Audio = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class SpeechStarted:
    """Speech was confirmed; `at_s` is where its first voiced frame began.

    Emitted once `min_speech_ms` of voice has been heard, so it lags `at_s` by about that
    much. Every `Utterance` is preceded by exactly one `SpeechStarted`.
    """

    at_s: float


@dataclass(frozen=True, eq=False)
class Utterance:
    """One stretch of speech. `start_s`/`end_s` are its first and last voiced samples;
    `audio` starts up to `pre_roll_ms` before `start_s` and runs a little past `end_s`.
    `twin`: the same stretch of the twin stream, when one was pushed."""

    audio: Audio
    start_s: float
    end_s: float
    twin: Audio | None = None


@dataclass(frozen=True, eq=False)
class Paused:
    """The user has paused for `pause_ms`: `audio` is the utterance as it will be cut if the
    pause turns out to end it (sample for sample), so its transcription can start before
    the hangover is over."""

    audio: Audio


@dataclass(frozen=True, eq=False)
class Speaking:
    """The user is mid-turn and between two words: `audio` is what they have said so far,
    so the words can be read before the turn is over."""

    audio: Audio


Event = SpeechStarted | Speaking | Paused | Utterance


Frame = tuple[Audio, Audio | None]
"""A VAD frame and the same samples of the twin stream, if any."""


class Endpointer:
    """Feed chunks of any length with `push`; get `SpeechStarted`/`Utterance` events back.

    All times are seconds of stream position (samples pushed since the start or the last
    `flush`), so they can be checked against the audio itself rather than a wall clock.
    """

    def __init__(
        self,
        vad: VADEngine,
        *,
        pre_roll_ms: int = 300,
        hangover_ms: int = 600,
        min_speech_ms: int = 200,
        max_utterance_s: float = 30.0,
        tail_ms: int = 200,
        pause_ms: int = 0,
        speaking_ms: int = 0,
    ) -> None:
        """`tail_ms` of audio after the last voiced frame is kept because VADs tend to
        miss soft word endings ("-s", "-t"); it never exceeds `hangover_ms`. After
        `pause_ms` of silence (at least the tail; 0: never) a `Paused` is emitted; at the
        first unvoiced frame once `speaking_ms` of the utterance have passed since its
        start or the last `Speaking` (0: never), a `Speaking`."""
        if max_utterance_s <= 0:
            raise ValueError(f"max_utterance_s must be positive, got {max_utterance_s}")
        self._vad = vad
        self.sample_rate = vad.sample_rate
        self._f = vad.frame_samples
        self._ring: deque[Frame] = deque(maxlen=self._frames(pre_roll_ms))
        self._min_frames = max(1, self._frames(min_speech_ms))
        self._max_samples = round(max_utterance_s * self.sample_rate)
        self._tail_ms = tail_ms
        self._pause_ms = pause_ms
        self._speaking_samples = round(speaking_ms * self.sample_rate / 1000)
        self._spoke_at = 0
        """Where the last `Speaking` (or the utterance) began, in stream samples."""
        self.hangover_ms = hangover_ms
        self._buf = _EMPTY
        self._twin_buf: Audio | None = None
        self._pos = 0
        self._seg: list[Frame] | None = None
        """Frames of the current candidate or confirmed utterance; None while idle."""
        self._seg_start = 0
        self._first_voiced: int | None = None
        self._last_voiced_end = 0
        self._voiced = 0
        self._silence = 0
        self._started = False

    @property
    def hangover_ms(self) -> int:
        """How long a pause must last before the utterance is over."""
        return self._hangover_ms

    @hangover_ms.setter
    def hangover_ms(self, ms: int) -> None:
        self._hangover_ms = ms
        self._hangover_frames = max(1, self._frames(ms))
        self._tail = min(round(self._tail_ms * self.sample_rate / 1000),
                         self._hangover_frames * self._f)
        self._pause_frames = max(self._frames(self._pause_ms), math.ceil(self._tail / self._f)) \
            if self._pause_ms else 0

    def _frames(self, ms: float) -> int:
        return math.ceil(ms * self.sample_rate / 1000 / self._f)

    def push(self, chunk: Audio, twin: Audio | None = None) -> list[Event]:
        """Add mono float32 samples at the VAD's rate; returns the events they complete.

        `twin`: another version of the same samples (e.g. less processed), cut at the
        same places into `Utterance.twin`. Push it with every chunk or with none.
        """
        samples = np.asarray(chunk, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"push takes mono samples, got shape {samples.shape}")
        if twin is not None and len(twin) != len(samples):
            raise ValueError(f"twin has {len(twin)} samples, chunk {len(samples)}")
        x = np.concatenate([self._buf, samples])
        if twin is not None and self._twin_buf is None:  # the twin stream starts here
            self._twin_buf = np.zeros_like(self._buf)
        t = None if twin is None else np.concatenate([self._twin_buf, twin])
        n = len(x) // self._f
        events: list[Event] = []
        for i in range(n):
            span = slice(i * self._f, (i + 1) * self._f)
            events.extend(self._frame(x[span], None if t is None else t[span]))
        self._buf = x[n * self._f:].copy()
        self._twin_buf = None if t is None else t[n * self._f:].copy()
        return events

    def flush(self) -> list[Event]:
        """End of stream: emit the utterance in progress, if any, and start afresh at 0 s."""
        events: list[Event] = []
        if self._seg is not None:
            self._seg.append((self._buf, self._twin_buf))
            events = self._close()
        self._buf = _EMPTY
        self._twin_buf = None
        self._pos = 0
        self._ring.clear()
        return events

    def _frame(self, frame: Audio, twin: Audio | None) -> list[Event]:
        p = self._pos
        self._pos += self._f
        voiced = self._vad.is_speech(frame)
        events: list[Event] = []
        if self._seg is None:
            if not voiced:
                self._ring.append((frame, twin))
                return events
            self._begin(p - len(self._ring) * self._f, list(self._ring))
            self._ring.clear()
        elif self._started and p + self._f - self._seg_start > self._max_samples:
            events.append(self._utterance(self._seg))
            # The speaker is still going: carry on in a fresh candidate, keeping the
            # pause count so a split right before the end does not yield a silent stub.
            silence = self._silence
            self._begin(p, [])
            self._silence = silence
        assert self._seg is not None
        self._seg.append((frame, twin))
        if voiced:
            if self._first_voiced is None:
                self._first_voiced = p
            self._voiced += 1
            self._last_voiced_end = p + self._f
            self._silence = 0
            if not self._started and self._voiced >= self._min_frames:
                self._started = True
                events.append(SpeechStarted(self._first_voiced / self.sample_rate))
        else:
            self._silence += 1
            if self._silence >= self._hangover_frames:
                events += self._close()
            elif self._started and self._silence == self._pause_frames:
                events.append(Paused(self._utterance(self._seg, self._end(self._seg)).audio))
            elif (self._started and self._speaking_samples and self._silence == 1
                  and p - self._spoke_at >= self._speaking_samples):
                self._spoke_at = p
                events.append(Speaking(self._utterance(self._seg, self._end(self._seg)).audio))
        return events

    def _begin(self, start: int, frames: list[Frame]) -> None:
        self._seg = frames
        self._seg_start = self._spoke_at = start
        self._first_voiced = None
        self._voiced = 0
        self._silence = 0
        self._started = False

    def _close(self) -> list[Event]:
        """The pause was long enough (or the stream ended): emit or drop the candidate."""
        assert self._seg is not None
        frames, self._seg = self._seg, None
        events: list[Event] = []
        keep_from = 0
        if self._started:
            end = self._end(frames)
            events.append(self._utterance(frames, end))
            keep_from = math.ceil(end / self._f)
        # Later frames are the next utterance's pre-roll, but none that was already sent.
        maxlen = self._ring.maxlen or 0
        self._ring.extend(frames[max(keep_from, len(frames) - maxlen):])
        return events

    def _end(self, frames: list[Frame]) -> int:
        """Where the utterance in `frames` ends: the tail after its last voiced frame."""
        length = sum(len(f) for f, _ in frames)
        return min(self._last_voiced_end + self._tail - self._seg_start, length)

    def _utterance(self, frames: list[Frame], end: int | None = None) -> Utterance:
        """The frames (up to sample `end`) as an utterance."""
        assert self._first_voiced is not None
        audio = np.concatenate([f for f, _ in frames])[:end]
        twins = [t for _, t in frames if t is not None]
        twin = np.concatenate(twins)[:end] if len(twins) == len(frames) else None
        return Utterance(audio, self._first_voiced / self.sample_rate,
                         self._last_voiced_end / self.sample_rate, twin)
