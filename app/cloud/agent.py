"""The conversation on the OpenAI Realtime API, with the local Agent's face: the same events,
`history`, `turns`, `say`, `interrupt` and `state`, so the window, storage and CLI render a
cloud conversation unchanged and can hand the history back to local mode.

The server listens (its own VAD), transcribes and answers with audio; this object streams
the microphone up, plays the reply deltas as they arrive, stops the reply the moment the
user talks over it (telling the server how much was really heard), runs tools, and turns
server events into Parley's events.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RateLimitsUpdatedEvent,
    RealtimeErrorEvent,
    RealtimeResponseUsage,
    RealtimeServerEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioDoneEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
)

from app.cloud.audio import Cut, MicEncoder, ReplyPlayer, Speaker
from app.cloud.errors import describe
from app.cloud.link import Link
from app.cloud.settings import RATE, CloudSettings, session_config
from app.conversation.events import (
    Announcement,
    AssistantDelta,
    AssistantDone,
    ErrorOccurred,
    EventBus,
    Interrupted,
    RateLimit,
    RateLimitsUpdated,
    State,
    ToolCalled,
    ToolFinished,
    TurnMetrics,
    UserSaid,
)
from app.conversation.metrics import (
    END_OF_SPEECH_TO_FIRST_AUDIO,
    END_OF_SPEECH_TO_FIRST_SOUND,
    END_OF_SPEECH_TO_SPEECH_STOPPED,
    SPEECH_STOPPED_TO_FIRST_AUDIO,
)
from app.tools import Toolbox, ToolRegistry, default_tools
from engines.protocols import Audio, ChatMessage


@dataclass
class _Turn:
    number: int
    ended_at: float
    """Clock time of the user's last voiced sample (or of sending a typed turn)."""
    done: asyncio.Future[TurnMetrics | None]
    user_text: str = ""
    reply: str = ""
    marks: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    """(call_id, name, arguments) the current response asked for."""


class CloudAgent(EventBus):
    def __init__(self, client: AsyncOpenAI, settings: CloudSettings, speaker: Speaker,
                 history: list[ChatMessage] | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 tools: ToolRegistry | None = None) -> None:
        """`tools`: a toolbox its owner starts and closes (one per process, so each
        reminder is said once, by the conversation the owner routes it to); without one
        the agent builds, starts and closes its own, announcing through `announce`."""
        super().__init__()
        self.settings = settings
        self.speaker = speaker
        self.clock = clock
        self.history = history or [ChatMessage("system", settings.instructions)]
        self.turns: list[TurnMetrics] = []
        self.rate_limits: tuple[RateLimit, ...] = ()
        self._own_tools: Toolbox | None = None
        if tools is None:
            tools = self._own_tools = default_tools(self.announce)
        self.tools = tools
        self.unsaid: list[str] = []
        """Announcements waiting for the turn under way or for the connection; a
        conversation closed before saying them leaves them here for another to say."""
        self.player = ReplyPlayer(speaker)
        self.link = Link(client, settings.model, settings.reconnect_attempts, self._open,
                         self._on_event, self._on_drop,
                         lambda err: self.publish(ErrorOccurred(err.message, err.hint)))
        self._mic = MicEncoder()
        self._sent: deque[tuple[float, float]] = deque(maxlen=2000)
        """(end of the appended audio in session ms, capture time of its last sample)."""
        self._sent_ms = 0.0
        self._turn: _Turn | None = None
        self._count = 0
        self._response: str | None = None
        self._dropped: set[str] = set()
        """Responses the user talked over: their late deltas are not played."""
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the Agent's face ------------------------------------------------------------------
    async def run(self) -> None:
        """Hold the session open (reconnecting) until cancelled; raises CloudError if the
        cloud cannot be reached or the key is refused."""
        if self._own_tools is not None:
            self._own_tools.start()
        await self.link.run()

    async def close(self) -> None:
        if self._own_tools is not None:
            self._own_tools.close()
        self.player.stop()
        for task in list(self._tasks):
            task.cancel()

    def hear(self, block: Audio, captured_at: float) -> None:
        """A 16 kHz microphone block (on the loop thread); dropped while disconnected."""
        audio, samples = self._mic.encode(block)
        if samples and self.link.send({"type": "input_audio_buffer.append", "audio": audio}):
            self._sent_ms += samples * 1000 / RATE
            self._sent.append((self._sent_ms, captured_at))

    async def say(self, text: str) -> TurnMetrics | None:
        """A typed turn, answered aloud (an interrupted answer as far as it was heard);
        None if it failed."""
        if not self.link.connected.is_set():
            self.publish(ErrorOccurred("Not connected to OpenAI right now, so that was not sent.",
                                       "Wait for the connection to come back, or switch "
                                       "to local mode."))
            return None
        self._cut("stop")
        turn = self._begin(self.clock())
        self._user_said(turn, text.strip())
        self.link.send({"type": "conversation.item.create",
                        "item": {"type": "message", "role": "user",
                                 "content": [{"type": "input_text", "text": text.strip()}]}})
        self.link.send({"type": "response.create"})
        self.set_state(State.THINKING)
        return await turn.done

    def interrupt(self) -> None:
        """The Stop button: silence the reply now and tell the server what was heard."""
        self._cut("stop")

    def press_to_talk(self) -> None:
        """Push-to-talk: talking over the reply stops it; the buffer starts afresh."""
        self._cut("speech")
        self.link.send({"type": "input_audio_buffer.clear"})
        self._begin(self.clock())
        self.set_state(State.HEARING)

    def release_to_talk(self) -> None:
        if self._turn is not None:
            self._turn.ended_at = self._turn.marks["speech_stopped"] = self.clock()
        self.link.send({"type": "input_audio_buffer.commit"})
        self.link.send({"type": "response.create"})
        self.set_state(State.THINKING)

    def announce(self, text: str) -> None:
        """Something a tool wants said later (a timer ran out): the model says it, once
        the turn under way is over (one response at a time is all the API allows) and while
        connected (a reminder due at start-up waits for the session). Several due at
        once are told in one response: a second response.create would be refused."""
        self.unsaid.append(text)
        if len(self.unsaid) == 1:
            self._spawn(self._announce())

    async def _announce(self) -> None:
        while (self._turn is not None or self._response is not None
               or not self.link.connected.is_set()):
            await asyncio.sleep(0.1)
        said, self.unsaid = self.unsaid, []
        for text in said:
            self.publish(Announcement(text))
        self.link.send({"type": "conversation.item.create",
                        "item": {"type": "message", "role": "system",
                                 "content": [{"type": "input_text",
                                              "text": f"{' '.join(said)} Tell the user now."}]}})
        self.link.send({"type": "response.create"})

    # -- the connection --------------------------------------------------------------------
    async def _open(self, reconnecting: bool) -> None:
        """A new server session: settings, tools and the recent history (which may have
        been made in local mode)."""
        self._sent_ms, self._response = 0.0, None
        self._sent.clear()
        self.link.send({"type": "session.update",
                        "session": session_config(self.settings, self.tools.schemas())})
        recent = [m for m in self.history  # no time notes, no local tool calls
                  if m.role in ("user", "assistant") and m.content]
        for message in recent[-self.settings.history_items:]:
            kind = "input_text" if message.role == "user" else "output_text"
            self.link.send({"type": "conversation.item.create",
                            "item": {"type": "message", "role": message.role,
                                     "content": [{"type": kind, "text": message.content}]}})
        if reconnecting:
            self.publish(ErrorOccurred("Reconnected to OpenAI; the conversation goes on."))

    def _on_drop(self, attempt: int, cause: Exception) -> None:
        turn = self._turn
        if turn is not None:  # like a failed local turn: the history keeps what was heard
            self._keep(_heard_part(turn.reply, self.player.stop(), "first_audio" in turn.marks))
            self._close_turn(turn)
        self.set_state(State.LISTENING)
        self.publish(ErrorOccurred(
            f"Lost the connection to OpenAI ({cause or type(cause).__name__}); "
            f"reconnecting (attempt {attempt} of {self.settings.reconnect_attempts})…",
            "The conversation is restored when it is back; or switch to local mode."))

    def _on_event(self, event: RealtimeServerEvent) -> None:
        if isinstance(event, InputAudioBufferSpeechStartedEvent):
            self._cut("speech")
            self._begin(self.clock())
            self.set_state(State.HEARING)
        elif isinstance(event, InputAudioBufferSpeechStoppedEvent):
            turn = self._current()
            turn.ended_at = self._captured_at(event.audio_end_ms)
            turn.marks["speech_stopped"] = self.clock()
            self.set_state(State.THINKING)
        elif isinstance(event, ConversationItemInputAudioTranscriptionCompletedEvent):
            if event.transcript.strip():
                self._user_said(self._current(), event.transcript.strip())
        elif isinstance(event, ResponseCreatedEvent):
            self._response = event.response.id
            self._current()
        elif isinstance(event, ResponseAudioDeltaEvent):
            self._play(event)
        elif isinstance(event, ResponseAudioTranscriptDeltaEvent):
            if event.response_id not in self._dropped and self._turn is not None:
                self._turn.reply += event.delta
                self.publish(AssistantDelta(self._turn.number, event.delta))
        elif isinstance(event, ResponseAudioDoneEvent):
            self.player.finish(event.item_id)
        elif isinstance(event, ResponseFunctionCallArgumentsDoneEvent):
            if self._turn is not None:
                self._turn.calls.append(  # as text: the registry tells the model what is wrong
                    (str(event.call_id), str(event.name), str(event.arguments)))
        elif isinstance(event, ResponseDoneEvent):
            self._response_done(event)
        elif isinstance(event, RateLimitsUpdatedEvent):
            self.rate_limits = tuple(
                RateLimit(r.name or "", r.limit or 0, r.remaining or 0, r.reset_seconds or 0.0)
                for r in event.rate_limits)
            self.publish(RateLimitsUpdated(self.rate_limits))
        elif isinstance(event, RealtimeErrorEvent):
            self.publish(describe(event.error.message, event.error.code))
            if self.state == State.THINKING and self._response is None and self._turn:
                self._close_turn(self._turn)  # the request failed: no answer is coming
                self.set_state(State.LISTENING)

    # -- turns -----------------------------------------------------------------------------
    def _begin(self, ended_at: float) -> _Turn:
        """A new turn, or the open one if nothing has happened in it yet (a noise)."""
        turn = self._turn
        if turn is None or turn.user_text or turn.reply or self._response:
            if turn is not None:
                self._close_turn(turn)  # asked again before the answer: that turn is over
            self._count += 1
            turn = _Turn(self._count, ended_at, asyncio.get_running_loop().create_future())
            self._turn = turn
        turn.ended_at = ended_at
        return turn

    def _current(self) -> _Turn:
        """The turn under way; a response nobody asked for aloud (a timer) starts one."""
        return self._turn if self._turn is not None else self._begin(self.clock())

    def _user_said(self, turn: _Turn, text: str) -> None:
        turn.user_text = text
        self.history.append(ChatMessage("user", text))
        self.publish(UserSaid(turn.number, text))

    def _play(self, event: ResponseAudioDeltaEvent) -> None:
        if event.response_id in self._dropped or self._turn is None:
            return
        marks, now = self._turn.marks, self.clock()
        ahead = self.speaker.queued_samples / self.speaker.rate
        if self.player.play(event.item_id, event.delta) and "first_audio" not in marks:
            marks["first_audio"] = now
            marks["first_sound"] = now + ahead + self.speaker.output_latency
            self.set_state(State.SPEAKING)

    def _response_done(self, event: ResponseDoneEvent) -> None:
        response = event.response
        if response.id == self._response:
            self._response = None
        if response.id in self._dropped:
            self._dropped.discard(response.id)
            return
        turn = self._turn
        if turn is None:
            return
        _add_usage(turn.tokens, response.usage)
        if response.status == "completed" and turn.calls:
            calls, turn.calls = turn.calls, []
            self._spawn(self._run_tools(turn.number, calls))
            return
        if response.status in ("failed", "incomplete"):
            details = response.status_details
            error = details.error if details is not None else None
            reason = ((error.message if error else None) or (details.reason if details else None)
                      or response.status)
            self.publish(describe(f"the reply stopped early ({reason})",
                                  error.code if error else None))
        self._spawn(self._settle(turn))

    async def _run_tools(self, turn: int, calls: list[tuple[str, str, str]]) -> None:
        """Run the response's calls and ask for the answer. Nothing waits for a yes here:
        the model was told to get it before calling (`ToolRegistry.schemas`)."""
        for call_id, name, arguments in calls:
            self.publish(ToolCalled(turn, name, arguments))
            output = await self.tools.call(name, arguments)
            self.publish(ToolFinished(turn, name, output))
            self.link.send({"type": "conversation.item.create",
                            "item": {"type": "function_call_output", "call_id": call_id,
                                     "output": output}})
        self.link.send({"type": "response.create"})

    async def _settle(self, turn: _Turn) -> None:
        """The turn ends when its reply has been played (as in local mode)."""
        while self.player.sounding:
            await asyncio.sleep(0.02)
        if turn is self._turn:  # not cut short meanwhile
            self.publish(AssistantDone(turn.number, turn.reply.strip()))
            self._finish(turn, turn.reply.strip())

    def _finish(self, turn: _Turn, reply: str) -> None:
        """A turn answered (in full, or as far as the user let it): the history keeps the
        reply as heard, and its metrics are published."""
        self._keep(reply)
        result = TurnMetrics(turn.number, turn.user_text, reply, _stage_times(turn),
                             dict(turn.tokens))
        self.turns.append(result)
        self.publish(result)
        self._close_turn(turn, result)
        self.set_state(State.LISTENING)

    def _keep(self, reply: str) -> None:
        if reply:
            self.history.append(ChatMessage("assistant", reply))

    def _close_turn(self, turn: _Turn, result: TurnMetrics | None = None) -> None:
        if not turn.done.done():
            turn.done.set_result(result)
        if self._turn is turn:
            self._turn = None

    def _cut(self, by: str) -> None:
        """Barge-in or Stop: silence now, drop the rest of the response, truncate the item to
        what was played, and cancel the response unless the server does it itself."""
        turn, response = self._turn, self._response
        if turn is None or not (self.player.sounding or response):
            return
        cut = self.player.stop()
        if response is not None:
            self._dropped.add(response)
            if by == "stop" or not self.settings.server_interrupts:
                self.link.send({"type": "response.cancel"})
        if cut is not None:
            self.link.send({"type": "conversation.item.truncate", "item_id": cut.item_id,
                            "content_index": 0, "audio_end_ms": cut.played_ms})
        heard = _heard_part(turn.reply, cut, "first_audio" in turn.marks)
        self.publish(Interrupted(turn.number, heard, by))
        self._finish(turn, heard)

    def _captured_at(self, audio_ms: float) -> float:
        """When the microphone captured the sample at `audio_ms` of this session's audio."""
        for end_ms, at in self._sent:
            if end_ms >= audio_ms:
                return at - (end_ms - audio_ms) / 1000
        return self.clock()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _heard_part(reply: str, cut: Cut | None, sounded: bool) -> str:
    """The words of the reply the user heard, in proportion to the audio played."""
    reply = reply.strip()
    if cut is None:
        return reply if sounded else ""
    share = cut.played_ms / cut.received_ms if cut.received_ms else 0.0
    if share >= 1:
        return reply
    return reply[:int(len(reply) * share)].rsplit(" ", 1)[0].strip() if share > 0 else ""


def _add_usage(tokens: dict[str, int], usage: RealtimeResponseUsage | None) -> None:
    """Token counts of every response in the turn, summed (a tool call takes two)."""
    if usage is None:
        return
    inp, out = usage.input_token_details, usage.output_token_details
    counts = {"prompt": usage.input_tokens, "completion": usage.output_tokens,
              "total": usage.total_tokens,
              "input_audio": inp.audio_tokens if inp else None,
              "input_cached": inp.cached_tokens if inp else None,
              "output_audio": out.audio_tokens if out else None}
    for key, value in counts.items():
        if value is not None:
            tokens[key] = tokens.get(key, 0) + value


def _stage_times(turn: _Turn) -> dict[str, float]:
    """Milliseconds from the end of the user's speech, with the local mode's key for the
    headline number, so the panel, the export and the metrics JSON read both modes alike."""
    marks, out = turn.marks, {}
    if "first_audio" in marks:
        out[END_OF_SPEECH_TO_FIRST_AUDIO] = (marks["first_audio"] - turn.ended_at) * 1000
        out[END_OF_SPEECH_TO_FIRST_SOUND] = (marks["first_sound"] - turn.ended_at) * 1000
        if "speech_stopped" in marks:
            out[SPEECH_STOPPED_TO_FIRST_AUDIO] = (marks["first_audio"]
                                                  - marks["speech_stopped"]) * 1000
    if "speech_stopped" in marks:
        out[END_OF_SPEECH_TO_SPEECH_STOPPED] = (marks["speech_stopped"]
                                                - turn.ended_at) * 1000
    return out
