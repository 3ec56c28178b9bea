"""Everything the window can ask of Parley, in plain asyncio with no Qt.

The GUI renders the events this publishes (through the local Agent's event bus) and calls
these methods; tests drive the same object. It holds one active `Conversation` (the local
Agent, or the cloud's while in cloud mode) and one `Listener` feeding it from the
microphone, and hands the other jobs to its parts: `Models` (the switcher), `Devices`,
`Conversations` (the store) and the usage sampler. The session's toolbox serves both modes,
and its reminders are said by the active conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from app.cloud.agent import CloudAgent
from app.cloud.apikey import load_key
from app.cloud.settings import CloudSettings
from app.cloud.voice import CloudVoice
from app.control.conversations import Conversations
from app.control.devices import Devices
from app.control.models import ModelRow, Models, Progress
from app.control.usage import sample_usage
from app.conversation.agent import Agent
from app.conversation.events import (
    AgentEvent,
    ErrorOccurred,
    ModeChanged,
    State,
    StateChanged,
    TurnMetrics,
)
from app.conversation.missing import MissingModel
from app.conversation.protocols import Conversation, Listener
from app.conversation.session import Session, agent_settings, endpointer_factory, open_session
from app.conversation.voice import ListenMode, VoiceLoop
from app.settings import Changes, Settings, reloads, save_user_settings
from app.storage import Storage, StoredTurn
from app.tools import Announce
from audio.bargein import DuplexMode, Endpointers
from audio.devices import DeviceInfo
from engines.errors import ParleyError
from engines.model_ref import Kind, ModelRef

_ENGINES: tuple[Kind, ...] = ("llm", "stt", "tts")


class Controller:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.session: Session | None = None
        self.conversation: Conversation | None = None
        """The local Agent, or the cloud conversation (sharing its history) in cloud mode."""
        self.listener: Listener | None = None
        self.audio = Devices(self.publish)
        self.conversations = Conversations(storage, self.publish)
        self._models = Models(lambda: self.settings, self.publish, self._choose)
        self._endpointers: Endpointers | None = None
        self._listen_mode = ListenMode.HANDS_FREE
        self._muted = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._voice_task: asyncio.Task[Any] | None = None
        self._cloud_task: asyncio.Task[None] | None = None
        self._subscribers: list[Callable[[AgentEvent], None]] = []
        self._announce_locally: Announce | None = None

    # -- what the window asks ----------------------------------------------------------------
    @property
    def agent(self) -> Agent:
        """The local conversation (always there once started: cloud mode borrows its history)."""
        assert self.session is not None, "start() first"
        return self.session.agent

    @property
    def started(self) -> bool:
        return self.session is not None

    @property
    def state(self) -> State:
        return self.conversation.state if self.conversation else State.LISTENING

    @property
    def cloud(self) -> CloudAgent | None:
        """The cloud conversation while in cloud mode."""
        return self.conversation if isinstance(self.conversation, CloudAgent) else None

    @property
    def cloud_settings(self) -> CloudSettings | None:
        return self.cloud.settings if self.cloud else None

    @property
    def conversation_id(self) -> int:
        return self.conversations.id

    @property
    def mic(self) -> DeviceInfo | None:
        return self.audio.mic

    @property
    def speaker(self) -> DeviceInfo | None:
        return self.audio.speaker

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def engines_alive(self) -> bool:
        """Whether the engine worker runs (it is started again on the next request)."""
        return self.session is None or self.session.engines.alive

    async def restart_engines(self) -> None:
        """Start a dead engine worker again with its models now, not on the next request,
        so whoever speaks next does not wait for it (a kiosk between visitors)."""
        if self.session is not None:
            await self.session.engines.revive()

    def active_models(self) -> dict[Kind, ModelRef]:
        return self._models.active()

    def turns(self, conversation_id: int) -> list[StoredTurn]:
        return self.conversations.turns(conversation_id)

    def devices(self) -> list[DeviceInfo]:
        return self.audio.available()

    # -- lifecycle ---------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[AgentEvent], None]) -> None:
        """Subscribe before start() to see the loading events too."""
        self._subscribers.append(callback)
        if self.session is not None:
            self.session.agent.subscribe(callback)

    def unsubscribe(self, callback: Callable[[AgentEvent], None]) -> None:
        """A closed window must not be sent events while the rest shuts down."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)
        if self.session is not None:
            self.session.agent.unsubscribe(callback)

    def publish(self, event: AgentEvent) -> None:
        if self.session is not None:
            self.session.agent.publish(event)
        else:
            for callback in self._subscribers:
                callback(event)

    async def start(self, without: Collection[Kind] = ()) -> None:
        """Load the models and open the devices. A missing device is reported, not fatal:
        the conversation then works by typing. So is a missing model of a kind in
        `without` (the user went on without it): what works without it does."""
        session = self.session = await open_session(self.settings, self.audio.output, without)
        reminders = self.session.toolbox.reminders
        self._announce_locally, reminders.announce = reminders.announce, self._announce
        self._models.session = self.session
        self.conversation = self.session.agent
        for callback in self._subscribers:
            self.agent.subscribe(callback)
        self.agent.subscribe(self.conversations.remember)
        try:
            latest = self.conversations.latest()
            if latest is not None:
                self.open_conversation(latest)
            else:
                self.new_conversation()
        except BaseException:  # e.g. an unusable history: a retry must not add a worker
            self.session = self._models.session = self.conversation = None
            await session.close()
            raise
        self._models.publish_loaded()
        self._models.publish_missing()
        if self.session.notice is not None:
            self.publish(ErrorOccurred(self.session.notice.message, self.session.notice.hint))
        audio = self.settings.audio
        await self.set_devices(audio.input_device or None, audio.output_device or None,
                               remember=False)
        self.storage.on_notice(lambda err: self.publish(ErrorOccurred(err.message, err.hint)))
        engines = self.session.engines
        self._tasks.append(asyncio.create_task(sample_usage(self.publish, lambda: engines.pid)))

    async def close(self) -> None:
        await self._close_cloud()
        for task in [*self._tasks, self._voice_task]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.audio.close()
        if self.session is not None:
            await self.session.close()

    # -- talking (to whichever mode is active) -----------------------------------------------
    async def send_text(self, text: str) -> TurnMetrics | None:
        if not text.strip() or self.conversation is None:
            return None
        if self.cloud is None and (refusal := self._models.unanswered()) is not None:
            self.publish(refusal)
            return None
        return await self.conversation.say(text)

    def stop_speaking(self) -> None:
        if self.conversation is not None:
            self.conversation.interrupt()

    def set_muted(self, muted: bool) -> None:
        self._muted = muted
        if self.listener is not None:
            self.listener.feed.muted = muted

    def set_mode(self, mode: ListenMode) -> None:
        """Local mode's listening; the cloud's turn detection is a cloud setting."""
        self._listen_mode = mode
        if isinstance(self.listener, VoiceLoop):
            self.listener.mode = mode

    def press_to_talk(self) -> None:
        if self.listener is not None:
            self.listener.press_to_talk()

    def release_to_talk(self) -> None:
        if self.listener is not None:
            self.listener.release_to_talk()

    def _announce(self, text: str) -> None:
        """A reminder went off: the conversation the user is in says it, so it is said
        once and in the voice they are hearing (there is one toolbox for both modes)."""
        if self.cloud is not None:
            self.cloud.announce(text)
        elif self._announce_locally is not None:
            self._announce_locally(text)

    # -- cloud mode --------------------------------------------------------------------------
    async def set_cloud(self, on: bool) -> bool:
        """Move the current conversation to the OpenAI Realtime API (on) or back to the
        local engines, at any time; the history goes both ways. False when cloud mode
        cannot start (no key, no speaker): the reason is published and local mode stays.

        Connecting happens in the background; if the key is refused or the connection is
        lost for good, the error is published and the conversation comes back to local."""
        if on == (self.cloud is not None):
            return True
        if not on:
            await self._stop_cloud()
            return True
        try:
            client = AsyncOpenAI(api_key=load_key())  # OPENAI_BASE_URL as the SDK reads it
        except ParleyError as err:
            self.publish(ErrorOccurred(err.message, err.hint))
            return False
        playback = self.audio.playback
        if playback is None:
            self.publish(ErrorOccurred("Cloud mode needs a speaker, and none is open.",
                                       "Choose one in Tools → Audio devices…"))
            return False
        self.agent.interrupt()
        await self._stop_listening()
        assert self.session is not None  # self.agent has checked
        cloud = CloudAgent(client, self.settings.cloud, playback, history=self.agent.history,
                           tools=self.session.toolbox)
        cloud.subscribe(self.publish)  # the window, storage and metrics see it all
        self.conversation = cloud
        self._cloud_task = asyncio.create_task(self._hold_cloud(cloud))
        self._start_listening()
        self.publish(ModeChanged("cloud"))
        return True

    async def _hold_cloud(self, cloud: CloudAgent) -> None:
        """The cloud session; when it ends in an error, back to local mode."""
        try:
            await cloud.run()
        except ParleyError as err:  # CloudError: refused key, gave up reconnecting
            self.publish(ErrorOccurred(err.message, f"{err.hint} Back in local mode."))
        except Exception as err:  # a bug must not leave the window deaf
            self.publish(ErrorOccurred(f"Cloud mode stopped: {err}", "Back in local mode."))
        if self.cloud is cloud:
            self._cloud_task = None  # this task: _stop_cloud must not wait for itself
            await self._stop_cloud()

    async def _stop_cloud(self) -> None:
        """Back to local: the microphone goes to the local voice loop again, and the
        local agent says what the cloud had no time to (a reminder due while connecting)."""
        if (cloud := self.cloud) is not None:
            await self._close_cloud()
            self._start_listening()
            self.publish(ModeChanged("local"))
            self.publish(StateChanged(self.agent.state))
            for text in cloud.unsaid:
                self._announce(text)

    async def _close_cloud(self) -> None:
        """End the cloud session; a reply under way ends as far as it was heard, which is
        what the history keeps."""
        cloud, task = self.cloud, self._cloud_task
        if cloud is None:
            return
        cloud.interrupt()
        self.conversation, self._cloud_task = self.agent, None
        await self._stop_listening()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await cloud.close()

    async def _restart_cloud(self) -> None:
        """A new cloud session with the current settings, devices and history."""
        if self.cloud is not None:
            await self._stop_cloud()
            await self.set_cloud(True)

    # -- devices -----------------------------------------------------------------------------
    async def set_devices(self, mic: str | int | None, speaker: str | int | None,
                          remember: bool = True) -> None:
        """(Re)open the microphone and speaker; failures are reported and leave typing working.
        In cloud mode the cloud session restarts on the new devices."""
        cloud = self.cloud is not None
        await self._stop_cloud()
        await self._stop_listening()
        await self.audio.open(mic, speaker)
        if self.audio.mic is not None:
            try:
                self._endpointers = await asyncio.to_thread(endpointer_factory, self.settings)
                self._start_listening()
            except ParleyError as err:
                self.audio.mic = None
                self.publish(ErrorOccurred(err.message, err.hint))
        if remember:
            self._choose({"audio": {"input_device": self.mic.name if self.mic else "",
                                    "output_device": self.speaker.name if self.speaker else ""}})
        if cloud:
            await self.set_cloud(True)

    def _start_listening(self) -> None:
        """The microphone feeds the active conversation. A fresh listener each time, so no
        stale audio or half-cut turn carries over from the other mode."""
        if self.audio.mic is None or self._endpointers is None or (
                self.cloud is None and not self._models.can_hear()):
            return
        self.listener = self._listener(self._endpointers)
        self.listener.feed.muted = self._muted
        self._voice_task = asyncio.create_task(self._listen(self.listener.run(self.audio.mic)))

    def _listener(self, endpointers: Endpointers) -> Listener:
        """Local mode endpoints the user's turns itself; the cloud service does it there."""
        if self.cloud is None:
            return VoiceLoop(self.agent, endpointers, self._listen_mode)
        aec = self.settings.duplex.mode == DuplexMode.AEC
        return CloudVoice(self.cloud, self.audio.output.far_end if aec else None)

    async def _stop_listening(self) -> None:
        if self._voice_task is not None:
            self._voice_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._voice_task
            self._voice_task = None
        self.listener = None

    async def _listen(self, run: Coroutine[Any, Any, Any]) -> None:
        try:
            await run
        except ParleyError as err:
            self.publish(ErrorOccurred(err.message, err.hint))

    def _new_endpointers(self) -> None:
        """The VAD or its settings changed: the next listening stretch uses the new ones."""
        if self._endpointers is None:
            return
        self._endpointers = endpointer_factory(self.settings)
        if isinstance(self.listener, VoiceLoop):
            self.listener.make_endpointer = self._endpointers

    # -- models ------------------------------------------------------------------------------
    def models(self, kind: Kind) -> list[ModelRow]:
        return self._models.rows(kind)

    async def switch_model(self, kind: Kind, spec: str) -> bool:
        """Load `spec` in place of the current `kind` model; on failure the old one stays."""
        switched = await self._models.switch(kind, spec)
        if switched and kind == "vad" and self.session is not None:
            self._new_endpointers()
        if switched and self.audio.mic is not None and self.listener is None:
            self._start_listening()  # a model that was missing: speech input may work now
        return switched

    def missing_models(self) -> list[Kind]:
        return self._models.missing()

    async def pull_model(self, name: str, progress: Progress,
                         cancel: threading.Event) -> bool:
        return await self._models.pull(name, progress, cancel)

    def models_to_offer(self) -> list[MissingModel]:
        return self._models.to_offer()

    async def import_models(self, archive: Path, progress: Progress,
                            cancel: threading.Event) -> list[str] | None:
        return await self._models.import_archive(archive, progress, cancel)

    # -- settings ----------------------------------------------------------------------------
    async def update_settings(self, changes: Changes) -> None:
        """Apply changed settings now (reloading what `app.settings.RELOADS` says) and
        remember them. Raises ParleyError, changing nothing, if a value is not valid."""
        self._choose(changes)
        self.agent.settings = agent_settings(self.settings)
        if "system_prompt" in changes.get("llm", {}):
            self.conversations.set_persona(self.agent.history, self.settings.llm.system_prompt)
        again = reloads(changes)
        for kind in _ENGINES:
            if kind in again and kind in self.active_models():
                await self.switch_model(kind, self.settings.model(kind))
        if "vad" in again:
            self._new_endpointers()
        if "cloud" in again:
            await self._restart_cloud()

    def _choose(self, changes: Changes) -> None:
        """Use `changes` from now on and remember them."""
        self.settings = self.settings.updated(changes)
        try:
            save_user_settings(changes)
        except OSError as err:
            self.publish(ErrorOccurred(f"Could not save your settings: {err}",
                                       "Check that your config folder is writable."))

    # -- conversations -----------------------------------------------------------------------
    def new_conversation(self) -> int:
        conversation_id = self.conversations.new(self.agent.history,
                                                 self.settings.llm.system_prompt)
        self._follow_conversation()
        return conversation_id

    def open_conversation(self, conversation_id: int) -> None:
        """Reopen a stored conversation: its turns become the Agent's history again."""
        self.conversations.open(conversation_id, self.agent.history)
        self._follow_conversation()

    def _follow_conversation(self) -> None:
        """In cloud mode the server holds the conversation too: a new session takes the
        one just opened."""
        if self.cloud is not None:
            self._tasks.append(asyncio.create_task(self._restart_cloud()))
