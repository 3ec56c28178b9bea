"""Unattended running for kiosk mode: a fresh conversation after a silence, and recovery
from a lost audio device or a dead engine worker, with nobody there to fix anything. No Qt:
the kiosk window shows what this says (`on_status`) and the events it causes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app.control.controller import Controller
from app.conversation.events import (
    AgentEvent,
    AssistantDelta,
    ConversationOpened,
    MicLevel,
    State,
    StateChanged,
    TurnMetrics,
    UserSaid,
)
from engines.errors import ParleyError

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
RETRY_EVERY_S = 5.0
"""How often a missing device is looked for again."""
MIC_SILENT_S = 6.0
"""An open microphone reports its level ~20 times a second, silence included: none for
this long means its stream has died (unplugged, or PulseAudio restarted)."""


class Caretaker:
    """Watches the Controller once a second and repairs what it can while nobody talks."""

    def __init__(self, controller: Controller, idle_s: float,
                 on_status: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.controller = controller
        self.idle_s = idle_s
        self.turns = 0
        """Turns heard since the last fresh conversation (none: nothing to reset)."""
        self._on_status = on_status
        self._clock = clock
        self._last_activity = self._last_level = clock()
        self._next_retry = 0.0
        self._problem = ""
        controller.subscribe(self.on_event)

    def on_event(self, event: AgentEvent) -> None:
        now = self._clock()
        if isinstance(event, MicLevel):
            self._last_level = now
        elif isinstance(event, ConversationOpened):
            self.turns, self._last_activity = 0, now
        elif isinstance(event, StateChanged | UserSaid | AssistantDelta | TurnMetrics):
            self.turns += isinstance(event, UserSaid)
            self._last_activity = now

    def fresh_start(self) -> None:
        """A kiosk starts on its welcome, not in the last visitor's conversation (which
        stays stored). Called once the Controller has started."""
        self._last_level = self._clock()
        if self.controller.turns(self.controller.conversation_id):
            self.controller.new_conversation()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            await self.check()

    async def check(self) -> None:
        """Idle reset and repairs happen only between turns: never under someone talking."""
        ctl = self.controller
        if not ctl.started or ctl.state != State.LISTENING:
            return
        now = self._clock()
        if self.turns and now - self._last_activity >= self.idle_s:
            log.info("kiosk: %.0f s without a turn, starting a new conversation", self.idle_s)
            ctl.new_conversation()
        problem = self.problem()
        if problem != self._problem:
            if problem:
                log.warning("kiosk: %s", problem)
            else:
                log.warning("kiosk: recovered (%s)", self._problem)
            self._problem = problem
            self._on_status(problem)
        if problem and now >= self._next_retry:
            await self._repair()
            self._next_retry = self._clock() + RETRY_EVERY_S

    def problem(self) -> str:
        """What is broken now, in the visitor's words ("" when all is well)."""
        ctl = self.controller
        if not ctl.engines_alive:
            return "My thinking engine stopped. I'm starting it again…"
        if ctl.mic is None:
            return "I can't find a microphone. Trying again…"
        if ctl.speaker is None:
            return "I can't find a speaker. Trying again…"
        if self._clock() - self._last_level > MIC_SILENT_S:
            return "The microphone stopped. Reconnecting…"
        return ""

    async def _repair(self) -> None:
        """A dead worker is started again with its models before the next visitor speaks;
        devices are reopened."""
        ctl = self.controller
        if not ctl.engines_alive:
            try:
                await ctl.restart_engines()
            except ParleyError as err:  # tried again at the next check
                log.warning("kiosk: the engines did not start again: %s", err)
            return
        audio = ctl.settings.audio
        self._last_level = self._clock()  # a fresh stream gets its time to report
        await ctl.set_devices(audio.input_device or None, audio.output_device or None,
                              remember=False)
