"""Builds a ready-to-talk Agent from settings: resolve models, start the worker, load engines.

Shared by every front end (talk, run, chat, selftest, and later the GUI) so they all load
models the same way and report them the same way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from app.conversation.agent import Agent, AgentSettings, AudioOutput
from app.settings import Config
from app.conversation.events import AgentEvent, ErrorOccurred
from audio.bargein import DuplexMode, DuplexSettings, Endpointers
from engines.builtin import default_registry
from engines.client import EngineClient
from engines.model_ref import KINDS, Kind, ModelRef
from engines.protocols import VADEngine
from engines.resolver import resolve


def engine_options(kind: Kind, config: Config) -> dict[str, Any]:
    """The settings section of one engine kind, minus what the Agent itself uses."""
    agent_keys = {"max_tokens", "temperature", "system_prompt"}
    return {k: v for k, v in config[kind].items() if k not in agent_keys}


def agent_settings(config: Config) -> AgentSettings:
    llm = config["llm"]
    return AgentSettings(system_prompt=llm["system_prompt"], max_tokens=int(llm["max_tokens"]),
                         temperature=float(llm["temperature"]),
                         duplex=duplex_settings(config))


def duplex_settings(config: Config) -> DuplexSettings:
    duplex = config["duplex"]
    return DuplexSettings(DuplexMode(duplex["mode"]), int(duplex["min_speech_ms"]),
                          float(duplex["gate_dbfs"]))


def resolve_model(config: Config, kind: Kind) -> ModelRef:
    return resolve(str(config["models"][kind]), kind)


def resolve_models(config: Config) -> dict[Kind, ModelRef]:
    """Fails fast, before any process starts, when a model is missing."""
    return {kind: resolve_model(config, kind) for kind in KINDS}


def make_vad(ref: ModelRef, config: Config) -> VADEngine:
    """VAD runs next to the microphone, in this process: it is cheap and latency-critical."""
    vad = default_registry().create(ref, engine_options("vad", config))
    assert isinstance(vad, VADEngine)
    vad.load()
    return vad


def print_errors(event: AgentEvent) -> None:
    """Terminal front ends show the Agent's errors on stderr and carry on."""
    if isinstance(event, ErrorOccurred):
        hint = f"\n  → {event.hint}" if event.hint else ""
        print(f"parley: {event.message}{hint}", file=sys.stderr, flush=True)


def endpointer_factory(config: Config) -> Endpointers:
    """Fresh endpointers (one per listening stretch or reply) sharing one loaded VAD."""
    vad_cfg = config["vad"]
    return Endpointers(make_vad(resolve_model(config, "vad"), config),
                       pre_roll_ms=int(vad_cfg["pre_roll_ms"]),
                       hangover_ms=int(vad_cfg["hangover_ms"]),
                       min_speech_ms=int(vad_cfg["min_speech_ms"]))


@dataclass
class Session:
    agent: Agent
    engines: EngineClient
    models: dict[Kind, ModelRef]

    def models_report(self) -> dict[str, dict[str, Any]]:
        report: dict[str, dict[str, Any]] = {}
        for kind, ref in self.models.items():
            stats = self.engines.stats.get(kind)
            report[kind] = {"name": ref.name, "format": ref.format, "path": str(ref.path),
                            "load_seconds": round(stats.load_seconds, 3) if stats else None}
        return report

    async def close(self) -> None:
        await self.engines.close()


async def open_session(config: Config, output: AudioOutput) -> Session:
    models = resolve_models(config)
    engines = EngineClient()
    await engines.start()
    try:
        for kind in ("stt", "llm", "tts"):
            await engines.load(models[kind], engine_options(kind, config))
    except BaseException:
        await engines.close()
        raise
    agent = Agent(engines, output, agent_settings(config))
    agent.subscribe(print_errors)
    return Session(agent, engines, models)
