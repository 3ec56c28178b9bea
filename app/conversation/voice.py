"""Microphone feed → endpointer → Agent: hands-free or push-to-talk. No Qt.

While the agent listens, one endpointer cuts the user's turns. While it thinks or speaks,
another one listens for the user talking over it (barge-in, see `audio.bargein`): its
first confirmed speech holds the reply, and its utterance goes to `Agent.barge_in`, which
interrupts or resumes. The agent's own voice is removed first by echo cancellation (mode
"aec": the endpointer judges AEC3's output and cuts the linear canceller's beside it, for
Whisper to read); in "half-duplex" mode what is heard while the agent is busy is dropped.
The blocks come from a `MicFeed` (capture, level, echo cancellation, mute).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from app.conversation.agent import Agent
from app.conversation.events import ErrorOccurred, State, TurnMetrics
from app.conversation.mic import SAMPLE_RATE, MicFeed
from audio.bargein import DuplexMode, DuplexSettings, Endpointers
from audio.devices import DeviceInfo
from audio.echo import FarEnd
from audio.endpointing import Endpointer, Paused, Speaking, SpeechStarted, Utterance
from engines.protocols import Audio

_BLOCK_MS = 10
"""Short microphone blocks: each one ends sooner, so a barge-in pauses the reply sooner."""
_LISTENING = (State.LISTENING, State.HEARING)
_REPLYING = (State.THINKING, State.SPEAKING)

Stretch = Literal["turn", "reply", "reply, no canceller"]
"""What an endpointer listens for: the user's turn, or the user talking over a reply
(without a working echo canceller, only loud voice counts)."""
_REPLY_STRETCHES = ("reply", "reply, no canceller")


class ListenMode(StrEnum):
    HANDS_FREE = "hands-free"
    PUSH_TO_TALK = "push-to-talk"


class VoiceLoop:
    def __init__(self, agent: Agent, make_endpointer: Endpointers,
                 mode: ListenMode = ListenMode.HANDS_FREE) -> None:
        self.agent = agent
        self.make_endpointer = make_endpointer
        self.mode = mode
        self.feed = MicFeed(agent.publish, self._far_end, on_no_canceller=self._no_canceller)
        self._held: list[Audio] | None = None
        self._finished: asyncio.Queue[asyncio.Task[TurnMetrics | None]] = asyncio.Queue()
        self._turns: set[asyncio.Task[TurnMetrics | None]] = set()

    # -- commands (from the GUI or the CLI) ------------------------------------------------
    def press_to_talk(self) -> None:
        """Start recording a push-to-talk turn; talking over the agent stops it."""
        if self.agent.state == State.SPEAKING:
            self.agent.interrupt()
        self._held = []

    def release_to_talk(self) -> None:
        held, self._held = self._held, None
        if held:
            self._start(self.agent.hear(np.concatenate(held), time.perf_counter()))

    # -- the loop --------------------------------------------------------------------------
    async def run(self, mic: DeviceInfo, max_turns: int | None = None) -> list[TurnMetrics]:
        """Answer utterances until `max_turns` (or forever); the microphone stays open."""
        turns: list[TurnMetrics] = []
        with self.feed.capture(mic, _BLOCK_MS):
            listener = asyncio.create_task(self._listen())
            finished: asyncio.Future[asyncio.Task[TurnMetrics | None]] | None = None
            try:
                while max_turns is None or len(turns) < max_turns:
                    finished = asyncio.ensure_future(self._finished.get())
                    await asyncio.wait({finished, listener},
                                       return_when=asyncio.FIRST_COMPLETED)
                    if not finished.done():  # the listener died: say why, don't hang
                        finished.cancel()
                        listener.result()
                    result = finished.result().result()
                    if result is not None:
                        turns.append(result)
            finally:
                listener.cancel()
                if finished is not None:
                    finished.cancel()
                for task in self._turns:
                    task.cancel()
        return turns

    def _start(self, turn: Coroutine[Any, Any, TurnMetrics | None]) -> None:
        """Run a turn beside the listener (which must keep hearing barge-ins meanwhile);
        `run` collects it when it ends."""
        task = asyncio.ensure_future(turn)
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
        task.add_done_callback(self._finished.put_nowait)

    async def _listen(self) -> None:
        """Every block: level meter, push-to-talk recording, or endpointing: of the user's
        turn while the agent listens, of a barge-in while it replies (unless half-duplex)."""
        endpointer: Endpointer | None = None
        stretch: Stretch | None = None
        position = 0
        holding = False
        while True:
            (heard, linear), arrived = await self.feed.next()
            duplex = self.agent.settings.duplex
            if self._held is not None and not self.feed.muted:
                self._held.append(heard)
            wanted = self._stretch(duplex)
            if wanted != stretch:
                if holding:  # the barge-in was cut off (mute, Stop): let the reply go on
                    self.agent.carry_on()
                    holding = False
                stretch, position = wanted, 0
                endpointer = self._endpointer(wanted, duplex)
            if endpointer is None:
                continue
            position += len(heard)
            # over a reply, what the user said is read from the linear canceller's output
            twin = linear if stretch in _REPLY_STRETCHES else None
            for event in endpointer.push(heard, twin):
                if isinstance(event, SpeechStarted):
                    if stretch in _REPLY_STRETCHES:
                        self.agent.hold()
                        holding = True
                    else:
                        self.agent.user_started_speaking()
                elif isinstance(event, Paused):
                    if stretch not in _REPLY_STRETCHES:
                        self.agent.guess(event.audio)
                elif isinstance(event, Speaking):
                    if stretch not in _REPLY_STRETCHES:
                        self.agent.read_ahead(event.audio)
                elif isinstance(event, Utterance):
                    # the last voiced sample was heard (stream end - its position) before
                    ended_at = arrived - (position / SAMPLE_RATE - event.end_s)
                    if stretch in _REPLY_STRETCHES:
                        self._start(self.agent.barge_in(event.audio, ended_at, event.twin))
                        holding = False
                    else:
                        self._start(self.agent.hear(event.audio, ended_at))
                    stretch = None  # a fresh endpointer for whatever comes next
                    break

    def _stretch(self, duplex: DuplexSettings) -> Stretch | None:
        if self.feed.muted or self._held is not None or self.mode != ListenMode.HANDS_FREE:
            return None
        if self.agent.state in _LISTENING:
            return "turn"
        if self.agent.state not in _REPLYING or duplex.mode == DuplexMode.HALF_DUPLEX:
            return None
        if duplex.mode == DuplexMode.VAD_THRESHOLD:
            return "reply, no canceller"
        echo = self.feed.echo
        if self.feed.echo_missing:  # it would hear itself (in the echo bench, every reply)
            return None
        if echo is None:  # nothing plays live (a file, or silence): nothing echoes
            return "reply"
        # While AEC3 (re)learns the echo path the agent's voice leaks through, and Whisper
        # turns a leak into words: better not to listen for a second or two (as LiveKit).
        return None if echo.warming_up else "reply"

    def _endpointer(self, stretch: Stretch | None, duplex: DuplexSettings
                    ) -> Endpointer | None:
        if stretch == "turn":
            return self.make_endpointer()
        if stretch is None:
            return None
        return self.make_endpointer.during_reply(duplex, echo_cancelled=stretch == "reply")

    def _far_end(self) -> FarEnd | None:
        """What to cancel: the speaker's output in mode "aec". The canceller runs while the
        agent listens too, so it stays converged between replies."""
        if self.agent.settings.duplex.mode != DuplexMode.AEC:
            return None
        return self.agent.output.far_end

    def _no_canceller(self) -> None:
        self.agent.publish(ErrorOccurred(
            "Echo cancellation is unavailable, so Parley does not listen while "
            "it speaks.", "Esc or Space stop a reply; install pywebrtc-audio "
            "(make setup) to talk over it."))
