"""Everything the window can ask of Parley, in plain asyncio with no Qt.

The GUI renders the events this publishes (through the Agent's event bus) and calls these
methods; tests drive the same object. It owns the session (worker + Agent), the voice
loop on the chosen devices, the conversation store and the user's settings, and moves the
conversation between the local engines and the cloud (the OpenAI Realtime API).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import psutil
from openai import AsyncOpenAI

from app.conversation.agent import Agent
from app.cloud.apikey import load_key
from app.cloud.agent import CloudAgent
from app.cloud.settings import cloud_settings
from app.cloud.voice import CloudVoice
from app.settings import Config, save_user_settings
from app.conversation.events import (
    AgentEvent,
    ConversationOpened,
    ErrorOccurred,
    ModeChanged,
    ModelChanged,
    ModelFailed,
    ModelLoading,
    ProcessUsage,
    StateChanged,
    TurnMetrics,
    UserSaid,
)
from app.conversation.outputs import SpeakerOutput
from app.conversation.session import (
    Session,
    agent_settings,
    endpointer_factory,
    engine_options,
    make_vad,
    open_session,
)
from app.storage import Storage
from app.conversation.voice import ListenMode, VoiceLoop
from audio.devices import DeviceInfo, list_devices, pick_device, rescan
from audio.playback import Playback
from engines.catalog import load_catalog
from engines.errors import ParleyError
from engines.model_ref import KINDS, Kind
from engines.protocols import ChatMessage
from engines.resolver import DownloadCancelled, info, pull, resolve

Progress = Callable[[int, int | None], None]

_USAGE_EVERY_S = 1.0
_RELOADS: dict[str, Kind] = {"stt": "stt", "tts": "tts"}
"""Settings sections whose every key is an engine option: changing one reloads that engine."""
_LLM_ENGINE_KEYS = {"n_ctx", "n_threads", "n_threads_batch"}


@dataclass(frozen=True)
class ModelRow:
    """One line of the model switcher."""

    name: str
    kind: str
    format: str
    size: int | None
    installed: bool
    license: str
    description: str
    active: bool
    default: bool


class Controller:
    def __init__(self, config: Config, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.session: Session | None = None
        self.voice: VoiceLoop | None = None
        self.conversation_id = 0
        self._output = SpeakerOutput(None)
        self._playback: Playback | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._voice_task: asyncio.Task[Any] | None = None
        self._subscribers: list[Callable[[AgentEvent], None]] = []
        self.mic: DeviceInfo | None = None
        self.speaker: DeviceInfo | None = None
        self.cloud: CloudAgent | None = None
        """The cloud conversation while in cloud mode (it shares the local Agent's history)."""
        self.cloud_voice: CloudVoice | None = None
        self._cloud_task: asyncio.Task[None] | None = None
        self._muted = False

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def agent(self) -> Agent:
        assert self.session is not None, "start() first"
        return self.session.agent

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

    async def start(self) -> None:
        """Load the models and open the devices. A missing device is reported, not fatal:
        the conversation then works by typing."""
        self.session = await open_session(self.config, self._output)
        for callback in self._subscribers:
            self.agent.subscribe(callback)
        self.agent.subscribe(self._remember)
        conversations = self.storage.conversations()
        if conversations:
            self.open_conversation(conversations[0].id)
        else:
            self.new_conversation()
        for kind, ref in self.session.models.items():
            stats = self.session.engines.stats.get(kind)
            self.publish(ModelChanged(kind, ref.name, stats.load_seconds if stats else 0.0))
        await self.set_devices(self.config["audio"]["input_device"] or None,
                               self.config["audio"]["output_device"] or None, remember=False)
        self._tasks.append(asyncio.create_task(self._sample_usage()))

    async def close(self) -> None:
        await self._close_cloud()
        for task in [*self._tasks, self._voice_task]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._playback is not None:
            self._playback.close()
        if self.session is not None:
            await self.session.close()

    # -- talking (to whichever mode is active) ----------------------------------------------
    async def send_text(self, text: str) -> TurnMetrics | None:
        if not text.strip():
            return None
        return await (self.cloud or self.agent).say(text)

    def stop_speaking(self) -> None:
        (self.cloud or self.agent).interrupt()

    def set_muted(self, muted: bool) -> None:
        self._muted = muted
        for voice in (self.voice, self.cloud_voice):
            if voice is not None:
                voice.muted = muted

    def set_mode(self, mode: ListenMode) -> None:
        """Local mode's listening; the cloud's turn detection is a cloud setting."""
        if self.voice is not None:
            self.voice.mode = mode

    def press_to_talk(self) -> None:
        voice = self.cloud_voice if self.cloud is not None else self.voice
        if voice is not None:
            voice.press_to_talk()

    def release_to_talk(self) -> None:
        voice = self.cloud_voice if self.cloud is not None else self.voice
        if voice is not None:
            voice.release_to_talk()

    # -- cloud mode ------------------------------------------------------------------------
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
            settings = cloud_settings(self.config)
            client = AsyncOpenAI(api_key=load_key())  # OPENAI_BASE_URL as the SDK reads it
        except ParleyError as err:
            self.publish(ErrorOccurred(err.message, err.hint))
            return False
        if self._playback is None:
            self.publish(ErrorOccurred("Cloud mode needs a speaker, and none is open.",
                                       "Choose one in Tools → Audio devices…"))
            return False
        self.agent.interrupt()
        await self._stop_listening()
        self.cloud = CloudAgent(client, settings, self._playback, history=self.agent.history)
        self.cloud.subscribe(self.publish)  # the window, storage and metrics see it all
        self._cloud_task = asyncio.create_task(self._hold_cloud(self.cloud))
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
        """Back to local: the microphone goes to the local voice loop again."""
        if self.cloud is not None:
            await self._close_cloud()
            self._start_listening()
            self.publish(ModeChanged("local"))
            self.publish(StateChanged(self.agent.state))

    async def _close_cloud(self) -> None:
        """End the cloud session; a reply under way ends as far as it was heard, which is
        what the history keeps."""
        cloud, task = self.cloud, self._cloud_task
        if cloud is None:
            return
        cloud.interrupt()
        self.cloud, self._cloud_task = None, None
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

    # -- devices ---------------------------------------------------------------------------
    def devices(self) -> list[DeviceInfo]:
        try:
            return list_devices()
        except ParleyError:
            return []

    async def set_devices(self, mic: str | int | None, speaker: str | int | None,
                          remember: bool = True) -> None:
        """(Re)open the microphone and speaker; failures are reported and leave typing working.
        In cloud mode the cloud session restarts on the new devices."""
        cloud = self.cloud is not None
        await self._stop_cloud()
        await self._stop_listening()
        old, self._playback = self._playback, None
        self._output.playback = None

        def close_and_rescan() -> None:
            """Tens of milliseconds each: kept off the loop so the window stays smooth."""
            if old is not None:
                old.close()
            with contextlib.suppress(ParleyError):  # no PortAudio: pick_device says so below
                rescan()

        await asyncio.to_thread(close_and_rescan)
        try:
            self.speaker = pick_device(speaker, "output")
            self._playback = Playback(self.speaker)
            self._playback.start()
            self._output.playback = self._playback
        except ParleyError as err:
            self.speaker = None
            self.publish(ErrorOccurred(err.message, err.hint))
        try:
            self.mic = pick_device(mic, "input")
            make_endpointer = await asyncio.to_thread(endpointer_factory, self.config)
            self.voice = VoiceLoop(self.agent, make_endpointer)
            self.voice.muted = self._muted
            self._start_listening()
        except ParleyError as err:
            self.mic = None
            self.publish(ErrorOccurred(err.message, err.hint))
        if remember:
            self._save({"audio": {"input_device": self.mic.name if self.mic else "",
                                  "output_device": self.speaker.name if self.speaker else ""}})
        if cloud:
            await self.set_cloud(True)

    def _start_listening(self) -> None:
        """The microphone feeds the active mode: the local voice loop (VAD, endpointing)
        or the cloud feed (the server endpoints). A fresh VoiceLoop each time, so no stale
        audio or half-cut turn carries over from before the cloud."""
        if self.mic is None or self.voice is None:
            return
        if self.cloud is not None:
            far_end = self._output.far_end if self.config["duplex"]["mode"] == "aec" else None
            self.cloud_voice = CloudVoice(self.cloud, self.publish, far_end)
            self.cloud_voice.muted = self._muted
            self._voice_task = asyncio.create_task(self._listen(self.cloud_voice.run(self.mic)))
        else:
            mode = self.voice.mode
            self.voice = VoiceLoop(self.agent, self.voice.make_endpointer)
            self.voice.mode, self.voice.muted = mode, self._muted
            self._voice_task = asyncio.create_task(self._listen(self.voice.run(self.mic)))

    async def _stop_listening(self) -> None:
        if self._voice_task is not None:
            self._voice_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._voice_task
            self._voice_task = None
        self.cloud_voice = None

    async def _listen(self, run: Coroutine[Any, Any, Any]) -> None:
        try:
            await run
        except ParleyError as err:
            self.publish(ErrorOccurred(err.message, err.hint))

    # -- models ----------------------------------------------------------------------------
    def models(self, kind: Kind) -> list[ModelRow]:
        active = self.session.models[kind].name if self.session else str(
            self.config["models"][kind])
        rows = []
        for entry in load_catalog().entries(kind):
            details = info(entry.name)
            rows.append(ModelRow(entry.name, kind, entry.format,
                                 entry.size or entry.approx_size,
                                 bool(details.get("installed")), entry.license,
                                 entry.description, entry.name == active,
                                 bool(details.get("default"))))
        if self.session and active not in {r.name for r in rows}:
            ref = self.session.models[kind]
            size = ref.path.stat().st_size if ref.path.is_file() else None
            rows.append(ModelRow(ref.name, kind, ref.format, size, True, "", str(ref.path),
                                 True, False))
        return rows

    async def switch_model(self, kind: Kind, spec: str) -> bool:
        """Load `spec` in place of the current `kind` model; on failure the old one stays.

        Before a successful start (a model was missing) the choice is only checked and
        remembered: the next start loads it."""
        self.publish(ModelLoading(kind, spec))
        try:
            ref = resolve(spec, kind)
            if self.session is None:
                self.config["models"][kind] = spec
                self._save({"models": {kind: spec}})
                self.publish(ModelChanged(kind, ref.name, 0.0))
                return True
            if kind == "vad":
                make_vad(ref, self.config)  # fails here, not in the middle of listening
            else:
                await self.session.engines.load(ref, engine_options(kind, self.config))
        except ParleyError as err:
            self.publish(ModelFailed(kind, spec, err.message, err.hint))
            return False
        self.session.models[kind] = ref
        self.config["models"][kind] = spec
        if kind == "vad" and self.voice is not None:
            self.voice.make_endpointer = endpointer_factory(self.config)
        stats = self.session.engines.stats.get(kind) if kind != "vad" else None
        self.publish(ModelChanged(kind, ref.name, stats.load_seconds if stats else 0.0))
        self._save({"models": {kind: spec}})
        return True

    def missing_models(self) -> list[Kind]:
        """The kinds whose chosen model cannot be found: what a failed start needs fixed."""
        missing: list[Kind] = []
        for kind in KINDS:
            try:
                resolve(str(self.config["models"][kind]), kind)
            except ParleyError:
                missing.append(kind)
        return missing

    async def pull_model(self, name: str, progress: Progress,
                         cancel: threading.Event) -> bool:
        """Download in a thread; progress is delivered on the event loop."""
        loop = asyncio.get_running_loop()

        def report(done: int, total: int | None) -> None:
            loop.call_soon_threadsafe(progress, done, total)

        try:
            await asyncio.to_thread(pull, name, report, cancel)
        except DownloadCancelled:
            return False  # the user asked for it: not an error
        except ParleyError as err:
            self.publish(ErrorOccurred(err.message, err.hint))
            return False
        return True

    # -- settings --------------------------------------------------------------------------
    async def update_settings(self, changes: Config) -> None:
        """Apply changed settings now (reloading an engine when its options changed) and
        remember them."""
        for section, values in changes.items():
            self.config[section].update(values)
        self._save(changes)
        self.agent.settings = agent_settings(self.config)
        if "system_prompt" in changes.get("llm", {}):
            self._set_persona(self.config["llm"]["system_prompt"])
        reload: set[Kind] = {_RELOADS[s] for s in changes if s in _RELOADS}
        if _LLM_ENGINE_KEYS & set(changes.get("llm", {})):
            reload.add("llm")
        for kind in sorted(reload):
            await self.switch_model(kind, str(self.config["models"][kind]))
        if "vad" in changes and self.voice is not None:
            self.voice.make_endpointer = endpointer_factory(self.config)
        if ({"cloud", "duplex"} & set(changes) or "system_prompt" in changes.get("llm", {})
                or "language" in changes.get("stt", {})):
            await self._restart_cloud()  # a session's settings are fixed once it has begun

    def _set_persona(self, prompt: str) -> None:
        self.agent.history[0] = ChatMessage("system", prompt)
        self.storage.set_system_prompt(self.conversation_id, prompt)

    def _save(self, changes: Config) -> None:
        try:
            save_user_settings(changes)
        except OSError as err:
            self.publish(ErrorOccurred(f"Could not save your settings: {err}",
                                       "Check that your config folder is writable."))

    # -- conversations ---------------------------------------------------------------------
    def new_conversation(self) -> int:
        prompt = self.config["llm"]["system_prompt"]
        self.conversation_id = self.storage.new_conversation(prompt)
        self.agent.history[:] = [ChatMessage("system", prompt)]
        self.publish(ConversationOpened(self.conversation_id, ""))
        self._follow_conversation()
        return self.conversation_id

    def open_conversation(self, conversation_id: int) -> None:
        """Reopen a stored conversation: its turns become the Agent's history again."""
        turns = self.storage.turns(conversation_id)
        history = [ChatMessage("system", self.storage.system_prompt(conversation_id))]
        history += [ChatMessage("user" if t.role == "user" else "assistant", t.text)
                    for t in turns if t.role in ("user", "assistant")]
        self.conversation_id = conversation_id
        self.agent.history[:] = history
        title = next((c.title for c in self.storage.conversations()
                      if c.id == conversation_id), "")
        self.publish(ConversationOpened(conversation_id, title))
        self._follow_conversation()

    def _follow_conversation(self) -> None:
        """In cloud mode the server holds the conversation too: a new session takes the
        one just opened."""
        if self.cloud is not None:
            self._tasks.append(asyncio.create_task(self._restart_cloud()))

    def _remember(self, event: AgentEvent) -> None:
        """Every heard line and every finished reply is written at once."""
        try:
            if isinstance(event, UserSaid):
                self.storage.add_turn(self.conversation_id, "user", event.text)
            elif isinstance(event, TurnMetrics) and event.assistant_text:
                self.storage.add_turn(self.conversation_id, "assistant", event.assistant_text,
                                      metrics=event.metrics_ms, tokens=event.tokens)
        except ParleyError as err:
            self.publish(ErrorOccurred(err.message, err.hint))

    # -- metrics ---------------------------------------------------------------------------
    async def _sample_usage(self) -> None:
        me = psutil.Process(os.getpid())
        me.cpu_percent()
        worker: psutil.Process | None = None
        while True:
            await asyncio.sleep(_USAGE_EVERY_S)
            pid = self.session.engines.pid if self.session else None
            if pid is not None and (worker is None or worker.pid != pid):
                worker = psutil.Process(pid)
                worker.cpu_percent()
            try:
                w_cpu = worker.cpu_percent() if worker else 0.0
                w_mb = worker.memory_info().rss / 2**20 if worker else 0.0
            except psutil.Error:
                w_cpu, w_mb = 0.0, 0.0
            self.publish(ProcessUsage(me.cpu_percent(), me.memory_info().rss / 2**20,
                                      w_cpu, w_mb))
