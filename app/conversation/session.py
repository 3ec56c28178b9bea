"""Builds a ready-to-talk Agent from settings: resolve models, start the worker, load engines.

Shared by every front end (talk, run, chat, selftest, and later the GUI) so they all load
models the same way and report them the same way.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from app.conversation.agent import Agent, AgentSettings
from app.conversation.context import Here
from app.conversation.events import AgentEvent, ErrorOccurred
from app.conversation.missing import missing_error
from app.conversation.outputs import AudioOutput
from app.settings import Settings
from app.tools import Toolbox, default_tools
from audio.bargein import Endpointers
from engines.builtin import default_registry
from engines.client import EngineClient
from engines.errors import ModelError, ParleyError
from engines.model_ref import KINDS, Kind, ModelRef
from engines.models import for_this_machine, load_catalog, resolve
from engines.protocols import VADEngine


def agent_settings(settings: Settings) -> AgentSettings:
    llm = settings.llm
    return AgentSettings(system_prompt=llm.system_prompt, max_tokens=llm.max_tokens,
                         temperature=llm.temperature, duplex=settings.duplex,
                         ask_again_below=settings.stt.ask_again_below)


def resolve_model(settings: Settings, kind: Kind) -> ModelRef:
    return resolve(settings.model(kind), kind)


def resolve_models(settings: Settings, without: Collection[Kind] = ()) -> dict[Kind, ModelRef]:
    """Fails fast, before any process starts, naming every model that is missing; the
    kinds in `without` may be missing (they are left out)."""
    models: dict[Kind, ModelRef] = {}
    errors: dict[Kind, ModelError] = {}
    for kind in KINDS:
        try:
            models[kind] = resolve_model(settings, kind)
        except ModelError as err:
            if kind not in without:
                errors[kind] = err
    if errors:
        raise missing_error(settings, errors)
    return models


def make_vad(ref: ModelRef, settings: Settings) -> VADEngine:
    """VAD runs next to the microphone, in this process: it is cheap and latency-critical."""
    vad = default_registry().create(ref, settings.engine_options("vad"))
    assert isinstance(vad, VADEngine)
    vad.load()
    return vad


def print_errors(event: AgentEvent) -> None:
    """Terminal front ends show the Agent's errors on stderr and carry on."""
    if isinstance(event, ErrorOccurred):
        hint = f"\n  → {event.hint}" if event.hint else ""
        print(f"parley: {event.message}{hint}", file=sys.stderr, flush=True)


def endpointer_factory(settings: Settings) -> Endpointers:
    """Fresh endpointers (one per listening stretch or reply) sharing one loaded VAD."""
    vad = settings.vad
    return Endpointers(make_vad(resolve_model(settings, "vad"), settings),
                       pre_roll_ms=vad.pre_roll_ms, hangover_ms=vad.hangover_ms,
                       min_speech_ms=vad.min_speech_ms, pause_ms=vad.early_stt_ms,
                       speaking_ms=vad.read_ahead_ms)


_LAST_WORDS_S = 30.0


@dataclass
class Session:
    agent: Agent
    engines: EngineClient
    models: dict[Kind, ModelRef]
    """The loaded models: a kind the session started without has none."""
    toolbox: Toolbox
    """The tools the agent offers the model; owns the reminders that announce themselves."""
    announcing: set[asyncio.Task[None]]
    """Reminders being said (each waits for the turn under way to end)."""
    notice: ParleyError | None = None
    """Why a model other than the one asked for runs (an NPU model that cannot run here)."""

    def models_report(self) -> dict[str, dict[str, Any]]:
        report: dict[str, dict[str, Any]] = {}
        for kind, ref in self.models.items():
            stats = self.engines.stats.get(kind)
            report[kind] = {"name": ref.name, "format": ref.format, "path": str(ref.path),
                            "load_seconds": round(stats.load_seconds, 3) if stats else None}
        return report

    async def close(self) -> None:
        """A reminder that rang is already marked done, so it is said before closing,
        never dropped (bounded, in case the engines are gone)."""
        self.toolbox.close()
        if self.announcing:
            await asyncio.wait(self.announcing, timeout=_LAST_WORDS_S)
        await self.engines.close()


async def load_llm(engines: EngineClient, ref: ModelRef, settings: Settings
                   ) -> tuple[ModelRef, ParleyError | None]:
    """The LLM loaded; an NPU model that cannot run here (no runtime, another version, no
    NPU, the runtime refusing it) gives way to the default llama.cpp model, and the reason
    comes back to be told, so the assistant answers anyway."""
    try:
        await engines.load(ref, settings.engine_options("llm"))
        return ref, None
    except ParleyError as err:
        if ref.format != "rkllm":
            raise
        fallback = resolve(for_this_machine(load_catalog().defaults["llm"], "llm"), "llm")
        await engines.load(fallback, settings.engine_options("llm"))
        return fallback, ParleyError(
            f"The NPU model {ref.name} cannot run here, so {fallback.name} answers on the "
            f"CPU (llama.cpp), more slowly. Why: {err.message}", err.hint)


async def open_session(settings: Settings, output: AudioOutput,
                       without: Collection[Kind] = ()) -> Session:
    """`without`: kinds whose model may be missing (the window's first run, where the user
    chose to go on without them); the session then runs with the others."""
    models = resolve_models(settings, without)
    engines = EngineClient()
    await engines.start()
    notice = None
    try:
        if "stt" in models:
            await engines.load(models["stt"], settings.engine_options("stt"))
        if "llm" in models:
            models["llm"], notice = await load_llm(engines, models["llm"], settings)
        if "tts" in models:
            await engines.load(models["tts"], settings.engine_options("tts"))
    except BaseException:
        await engines.close()
        raise
    tasks: set[asyncio.Task[None]] = set()

    def announce(text: str) -> None:
        """A reminder went off: the agent says it between turns."""
        task = asyncio.get_running_loop().create_task(agent.announce(text))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    toolbox = default_tools(announce)
    agent = Agent(engines, output, agent_settings(settings), tools=toolbox,
                  here=Here(known=toolbox.known))
    agent.subscribe(print_errors)
    if notice is not None:
        print_errors(ErrorOccurred(notice.message, notice.hint))
    toolbox.start()
    return Session(agent, engines, models, toolbox, tasks, notice)
