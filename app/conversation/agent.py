"""The conversation: hear → transcribe → think → speak, as plain asyncio with no Qt.

The GUI, the headless CLI and the tests drive this same object and subscribe to the same
events. Each turn streams the LLM reply through a sentence splitter into TTS, so the first
words are spoken while the rest is still being generated. A reply can be cut short (Stop,
or the user talking over it); the history then keeps only the words the user heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.conversation.context import Here
from app.conversation.events import (
    Announcement,
    AssistantDelta,
    AssistantDone,
    ErrorOccurred,
    EventBus,
    Interrupted,
    InterruptionIgnored,
    State,
    TurnMetrics,
    UserSaid,
)
from app.conversation.interruption import from_the_user
from app.conversation.metrics import (
    AUDIO_SECONDS,
    END_OF_TURN_WAIT,
    STT,
    TTS_AUDIO_SECONDS,
    TTS_MS,
    turn_times,
)
from app.conversation.outputs import AudioOutput
from app.conversation.sentences import SentenceSplitter
from app.conversation.spoken import Spoken
from app.conversation.tooluse import ROUNDS, ToolUse
from app.tools import ToolRegistry
from audio.bargein import DuplexSettings
from engines.client import EngineClient
from engines.errors import ParleyError, WorkerError
from engines.protocols import Audio, ChatMessage, ToolCall, ToolSpec, Transcript

log = logging.getLogger(__name__)

SAY_AGAIN = "Sorry, I didn't catch that. Could you say it again?"


@dataclass(frozen=True)
class AgentSettings:
    system_prompt: str
    max_tokens: int = 160
    temperature: float = 0.7
    first_piece_min_chars: int = 10
    first_piece_max_words: int = 6
    ask_again_below: float | None = None
    """A transcript less sure than this (its mean log-probability) is not answered: the
    user is asked to say it again, rather than answered a guess. None: always answer."""
    duplex: DuplexSettings = field(default_factory=DuplexSettings)
    """Whether, and how, the user can talk over a reply."""


@dataclass
class _Reply:
    """The reply being spoken, and where its audio starts in the output's running total."""

    turn: int
    starts_at: float
    spoken: Spoken = field(default_factory=Spoken)
    heard_text: str | None = None
    """Set when the reply was interrupted: the only part of it that counts."""


class Agent(EventBus):
    def __init__(self, engines: EngineClient, output: AudioOutput, settings: AgentSettings,
                 clock: Callable[[], float] = time.perf_counter,
                 tools: ToolRegistry | None = None, here: Here | None = None) -> None:
        """`tools` are offered to the model. `here` tells it where the user is (after the
        system prompt) and when each message was said (a note before it, kept in the
        history so earlier prompts stay the same)."""
        super().__init__()
        self.tools = ToolUse(tools, self.publish) if tools is not None else None
        self.here = here
        self.engines, self.output, self.settings, self.clock = engines, output, settings, clock
        self.history: list[ChatMessage] = [ChatMessage("system", settings.system_prompt)]
        self.generation = 0
        self._turns = 0
        self._one_turn_at_a_time = asyncio.Lock()
        self._reply: _Reply | None = None
        self._guess: tuple[Audio, asyncio.Task[Transcript | None]] | None = None
        """What the user said before their latest pause, being transcribed (see `guess`)."""
        self._note: ChatMessage | None = None
        """The note for the turn the user has begun to speak, read ahead by the LLM."""
        self._reading: asyncio.Task[None] | None = None
        """The user's words so far being transcribed and read ahead (see `read_ahead`)."""
        self.turns: list[TurnMetrics] = []
        """Every completed turn's metrics, for reports."""
        engines.on_restart = lambda err: self.publish(ErrorOccurred(err.message, err.hint))

    def interrupt(self, by: str = "stop") -> None:
        """Stop speaking now: newer generation, worker told to drop older work, audio flushed,
        and the reply cut to the words heard. `by` is "stop" (a command) or "speech".

        What the device was already given still plays out, so it counts as heard.
        """
        reply = self._reply
        if reply is not None and reply.heard_text is None:
            played = max(0.0, self.output.played_seconds() - reply.starts_at)
            reply.heard_text = reply.spoken.heard(played)
            self.publish(Interrupted(reply.turn, reply.heard_text, by))
        self.generation += 1
        self.engines.cancel(self.generation)
        self.output.flush()

    def hold(self) -> None:
        """The user may be talking over the reply: silence it, but let the LLM and TTS go on
        so that nothing is lost if it was only a cough (`barge_in` decides)."""
        self.output.pause()

    def carry_on(self) -> None:
        """Resume a held reply: it was not an interruption after all."""
        self.output.resume()

    async def barge_in(self, audio: Audio, ended_at: float, linear: Audio | None = None
                       ) -> TurnMetrics | None:
        """Speech heard during a reply (held since it began). With words in it that are not
        the reply's own echo, it interrupts the reply and is answered; otherwise the reply
        carries on.

        `audio` went through AEC3, which leaves no trace of the agent's voice but clips the
        start of the user's: it decides. `linear`, the same speech through the linear
        canceller only, keeps the user's words whole: what was said is read from it, unless
        it makes no sense on its own (then from `audio`).
        """
        reply = self._reply
        turn = reply.turn if reply else self._turns
        said = reply.spoken.text() if reply is not None else ""
        started = self.clock()
        try:
            transcript = await self._transcribe(audio, turn, self.generation)
        except ParleyError as err:
            self.carry_on()
            self.publish(ErrorOccurred(err.message, err.hint))
            return None
        text = transcript.text.strip() if transcript is not None else ""
        log.info("heard over the reply: %r", text)
        if not from_the_user(text, said):
            self.carry_on()
            if reply is not None:
                self.publish(InterruptionIgnored(reply.turn))
            return None
        assert transcript is not None
        self.interrupt("speech")
        if linear is not None:
            try:
                whole = await self._transcribe(linear, turn, self.generation)
            except ParleyError as err:  # the clipped reading will do
                log.warning("could not read the interruption in full: %s", err.message)
                whole = None
            if whole is not None and from_the_user(whole.text, said):
                log.info("read in full: %r", whole.text)
                transcript, text = whole, whole.text.strip()
        metrics = {END_OF_TURN_WAIT: (started - ended_at) * 1000,
                   STT: (self.clock() - started) * 1000, AUDIO_SECONDS: transcript.audio_seconds}
        async with self._one_turn_at_a_time:
            self._turns += 1
            return await self._answer(self._turns, self.generation, text, ended_at, metrics)

    async def hear(self, audio: Audio, ended_at: float) -> TurnMetrics | None:
        """One spoken turn. `ended_at` is the clock time of the user's last voiced sample."""
        async with self._one_turn_at_a_time:
            return await self._hear(audio, ended_at)

    async def say(self, text: str) -> TurnMetrics | None:
        """A typed turn: the same pipeline without the STT stage."""
        async with self._one_turn_at_a_time:
            self._turns += 1
            return await self._answer(self._turns, self.generation, text.strip(), self.clock(),
                                      {})

    def guess(self, audio: Audio) -> None:
        """The user paused: transcribe what they said so far now, so that if the pause ends
        their turn (the same audio reaches `hear`) the transcript is ready or nearly."""
        if self.state not in (State.LISTENING, State.HEARING):
            return
        task = asyncio.ensure_future(self._transcribe(audio, self._turns + 1, self.generation))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a stale guess's
        self._guess = (audio, task)

    async def _hear(self, audio: Audio, ended_at: float) -> TurnMetrics | None:
        self._turns += 1
        turn, generation = self._turns, self.generation
        self.set_state(State.TRANSCRIBING)
        started = self.clock()
        guess, self._guess = self._guess, None
        note, self._note = self._note, None
        try:
            if guess is not None and np.array_equal(guess[0], audio):
                transcript = await guess[1]
            else:
                transcript = await self._transcribe(audio, turn, generation)
        except ParleyError as err:
            self._fail(err)
            return None
        heard = self.clock()
        if transcript is None or not transcript.text.strip():
            self.set_state(State.LISTENING)
            return None
        metrics = {END_OF_TURN_WAIT: (started - ended_at) * 1000, STT: (heard - started) * 1000,
                   AUDIO_SECONDS: transcript.audio_seconds}
        floor = self.settings.ask_again_below
        unsure = floor is not None and (transcript.logprob or 0.0) < floor
        return await self._answer(turn, generation, transcript.text.strip(), ended_at, metrics,
                                  note, unsure)

    async def _transcribe(self, audio: Audio, turn: int, generation: int) -> Transcript | None:
        """A worker that died mid-call is restarted by the client (which reports it through
        `on_restart`); the audio is tried once more so the user's words are not lost."""
        try:
            return await self.engines.transcribe(audio, turn, generation)
        except WorkerError:
            return await self.engines.transcribe(audio, turn, generation)

    def user_started_speaking(self) -> None:
        """The endpointer heard speech begin. While the user talks the LLM reads the turn's
        note ahead: on two cores it reads ~20 tokens a second, so after the turn its ~60
        tokens took most of the 3-4 s to the first word."""
        if self.state != State.LISTENING:
            return
        self.set_state(State.HEARING)
        self._note = ChatMessage("system", self.here.note()) if self.here is not None else None
        task = asyncio.ensure_future(self._prefill([]))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # only a head start

    def read_ahead(self, audio: Audio) -> asyncio.Task[None] | None:
        """The user is mid-turn: transcribe their words so far and let the LLM read them,
        so that once the turn is over only the last few words are left to read. One at a
        time (returns None while one is under way): the final transcription must not queue
        behind several of these."""
        if self.state != State.HEARING or (self._reading and not self._reading.done()):
            return None
        self._reading = asyncio.ensure_future(self._read_ahead(audio, self.generation))
        self._reading.add_done_callback(lambda t: t.cancelled() or t.exception())
        return self._reading

    async def _read_ahead(self, audio: Audio, generation: int) -> None:
        transcript = await self.engines.transcribe(audio, self._turns + 1, generation)
        # Whisper ends a fragment as a sentence ("What is the capital of?"): the words only
        words = transcript.text.strip().rstrip(".?!,;:…") if transcript is not None else ""
        if words and self.state == State.HEARING and generation == self.generation:
            await self._prefill([ChatMessage("user", words)])

    async def _prefill(self, said: list[ChatMessage]) -> None:
        """Let the LLM read the turn's prompt as far as it is known: the note, and `said`."""
        note = [self._note] if self._note is not None else []
        specs = self.tools.specs() if self.tools else []
        await self.engines.prefill([*self._prompt(), *note, *said], self._turns + 1,
                                   self.generation, self.settings.max_tokens, specs)

    async def _answer(self, turn: int, generation: int, user_text: str, ended_at: float,
                      metrics: dict[str, float], note: ChatMessage | None = None,
                      unsure: bool = False) -> TurnMetrics | None:
        """`note`: the turn's note, if it was made (and read ahead) as the user spoke.
        `unsure`: the words were not heard clearly: ask for them again (the history keeps
        what was heard and the question, so the model knows)."""
        self.publish(UserSaid(turn, user_text))
        if self.here is not None:
            self.history.append(note or ChatMessage("system", self.here.note()))
        self.history.append(ChatMessage("user", user_text))
        try:
            try:
                return await self._reply_to(turn, generation, user_text, ended_at, metrics,
                                            unsure)
            except WorkerError:  # the worker died mid-reply; the client starts a new one
                self.output.flush()
                self._turns += 1  # the answer, again, in a turn of its own
                return await self._reply_to(self._turns, generation, user_text, ended_at,
                                            metrics, unsure)
        except ParleyError as err:
            self._fail(err)
            return None

    async def _reply_to(self, turn: int, generation: int, user_text: str, ended_at: float,
                        metrics: dict[str, float], unsure: bool) -> TurnMetrics:
        """Think and speak one reply. On a failure what the user heard of it is kept,
        unless the worker died: then the reply is given again, from the start."""
        self.set_state(State.THINKING)
        asked = self.clock()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        marks: dict[str, float] = {}
        current = self._reply = _Reply(turn, self.output.played_seconds())
        speaker = asyncio.create_task(self._speak(pieces, turn, generation, marks,
                                                  current.spoken))
        said: list[str] = []

        def say(piece: str) -> None:
            marks.setdefault("first_piece", self.clock())
            self.publish(AssistantDelta(turn, f" {piece}" if said else piece))
            said.append(piece)
            pieces.put_nowait(piece)

        tokens = {"prompt": 0, "completion": 0}
        try:
            if unsure:
                say(SAY_AGAIN)
            else:
                await self._model_reply(turn, generation, user_text, say, marks, tokens)
            pieces.put_nowait(None)
            await speaker
            await self.output.drain()
        except ParleyError as err:
            speaker.cancel()  # it may have failed too (a dead worker fails both streams)
            with contextlib.suppress(asyncio.CancelledError, ParleyError):
                await speaker
            self._reply = None
            if said and current.heard_text is None:  # ends the cut reply's line or bubble
                self.publish(AssistantDone(turn, " ".join(said) + " …"))
            if not isinstance(err, WorkerError):
                self._keep_reply(current, " ".join(said))
            raise
        reply = self._keep_reply(current, " ".join(said))
        if current.heard_text is None:
            self.publish(AssistantDone(turn, reply))
        metrics.update(turn_times(asked, ended_at, marks, tokens["completion"]))
        result = TurnMetrics(turn, user_text, reply, metrics, tokens)
        self.turns.append(result)
        self.publish(result)
        self.set_state(State.LISTENING)
        return result

    async def _model_reply(self, turn: int, generation: int, user_text: str,
                           say: Callable[[str], None], marks: dict[str, float],
                           tokens: dict[str, int]) -> None:
        """The model's reply, in up to `ROUNDS` calls: a tool's result goes back to it."""
        if self.tools is not None:
            self.history += await self.tools.settle(turn, user_text)
        for round_ in range(1, ROUNDS + 1):
            specs = self.tools.specs() if self.tools else []
            call = await self._think(turn, generation, specs, round_ < ROUNDS, say, marks,
                                     tokens)
            if call is None or self.tools is None or generation != self.generation:
                break
            outcome = await self.tools.run(turn, call)
            if isinstance(outcome, str):  # a question: the call waits for the answer
                say(outcome)
                break
            self.history += outcome

    async def _think(self, turn: int, generation: int, specs: list[ToolSpec], may_call: bool,
                     say: Callable[[str], None], marks: dict[str, float],
                     tokens: dict[str, int]) -> ToolCall | None:
        """One model call: its words go to `say` in speakable pieces; returns the tool call
        it made, if any. A reply cut by the token limit ends at its
        last whole piece, never mid-word."""
        splitter = SentenceSplitter(self.settings.first_piece_min_chars,
                                    self.settings.first_piece_max_words)
        call: ToolCall | None = None
        finish = ""
        async for token in self.engines.generate(
                self._prompt(), turn, generation, self.settings.max_tokens,
                self.settings.temperature, specs, may_call):
            if generation != self.generation:
                break
            marks.setdefault("first_token", self.clock())
            marks["last_token"] = self.clock()
            call = token.tool_call or call
            if token.done:
                finish = token.finish
                tokens["prompt"] += token.prompt_tokens
                tokens["completion"] += token.completion_tokens
                marks.update(token.stats)  # the engine's own account (ENGINE_REPORTED)
            for piece in splitter.push(token.text):
                say(piece)
        if finish != "length":
            for piece in splitter.flush():
                say(piece)
        return call

    def _prompt(self) -> list[ChatMessage]:
        """The history, the system prompt ending with where the user is."""
        first, *rest = self.history
        if self.here is None or first.role != "system":
            return self.history
        return [ChatMessage("system", f"{first.content.rstrip()} {self.here.place()}"), *rest]

    async def announce(self, text: str) -> None:
        """Say something unprompted (a timer went off), between turns, never over one."""
        async with self._one_turn_at_a_time:
            self.publish(Announcement(text))
            self.history.append(ChatMessage("assistant", text))
            pieces: asyncio.Queue[str | None] = asyncio.Queue()
            for piece in (text, None):
                pieces.put_nowait(piece)
            try:
                await self._speak(pieces, self._turns, self.generation, {}, Spoken())
                await self.output.drain()
            except ParleyError as err:
                self.publish(ErrorOccurred(err.message, err.hint))
            self.set_state(State.LISTENING)

    async def _speak(self, pieces: asyncio.Queue[str | None], turn: int, generation: int,
                     marks: dict[str, float], spoken: Spoken) -> None:
        """Synthesize pieces in order and send them out; runs beside the LLM stream."""
        marks[TTS_MS], marks[TTS_AUDIO_SECONDS] = 0.0, 0.0
        while (piece := await pieces.get()) is not None:
            sent = self.clock()
            marks.setdefault("first_piece_sent", sent)
            spoken.begin(piece)
            async for chunk in self.engines.synthesize(piece, turn, generation):
                if generation != self.generation:
                    return
                if "first_audio" not in marks:
                    marks["first_audio"] = self.clock()
                    self.set_state(State.SPEAKING)
                seconds = len(chunk.samples) / chunk.sample_rate
                marks[TTS_AUDIO_SECONDS] += seconds
                spoken.add(seconds)
                self.output.write(chunk.samples, chunk.sample_rate)
            marks[TTS_MS] += (self.clock() - sent) * 1000

    def _keep_reply(self, current: _Reply, reply: str) -> str:
        """Add the reply to the history, or only its heard part if it was interrupted;
        returns what was kept. The reply can no longer be interrupted."""
        self._reply = None
        if current.heard_text is not None:
            reply = current.heard_text
        reply = reply.strip()
        if reply:
            self.history.append(ChatMessage("assistant", reply))
        return reply

    def _fail(self, err: ParleyError) -> None:
        self.publish(ErrorOccurred(err.message, err.hint))
        self.set_state(State.LISTENING)
