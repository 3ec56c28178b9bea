"""`parley run --headless --cloud`: a Realtime conversation on the audio devices, no window.

Same contract as local `run --headless`: it prints each turn, stops after `--max-turns`
answered turns, and writes the same metrics JSON (the `usage` of each turn is the
Realtime usage of its responses).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from app.cloud.apikey import load_key
from app.cloud.agent import CloudAgent
from app.cloud.settings import cloud_settings
from app.settings import Config
from app.conversation.events import AgentEvent, TurnMetrics
from app.conversation.session import print_errors
from app.commands.talk import peak_rss_mb, turn_rows
from audio.capture import Capture
from audio.devices import pick_device
from audio.playback import Playback
from engines.protocols import Audio


async def run_cloud(config: Config, input_device: str | None, output_device: str | None,
                    max_turns: int | None, metrics_path: Path | None) -> list[TurnMetrics]:
    settings = cloud_settings(config)
    client = AsyncOpenAI(api_key=load_key())  # OPENAI_BASE_URL etc. as the SDK reads them
    audio_cfg = config["audio"]
    mic = pick_device(input_device or audio_cfg["input_device"] or None, "input")
    speaker = pick_device(output_device or audio_cfg["output_device"] or None, "output")
    loop = asyncio.get_running_loop()
    with Playback(speaker) as playback:
        agent = CloudAgent(client, settings, playback)
        agent.subscribe(print_errors)
        agent.subscribe(_print_turn)
        enough = asyncio.Event()

        def count(event: AgentEvent) -> None:
            if isinstance(event, TurnMetrics) and len(agent.turns) == max_turns:
                enough.set()

        agent.subscribe(count)
        session = asyncio.create_task(agent.run())
        try:
            await _first(agent.link.connected.wait(), session)
            print(f"Listening… speak now (cloud: {settings.model}; Ctrl+C to stop).",
                  flush=True)

            def on_audio(block: Audio) -> None:  # PortAudio thread
                loop.call_soon_threadsafe(agent.hear, block, time.perf_counter())

            with Capture(mic, on_audio):
                await _first(enough.wait(), session)
        finally:
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
            await agent.close()
            if metrics_path is not None:
                doc = {"turns": turn_rows(agent.turns), "mode": "cloud",
                       "models": {"realtime": settings.model, "voice": settings.voice},
                       "rate_limits": [vars(r) for r in agent.rate_limits],
                       "peak_rss_mb": peak_rss_mb()}
                metrics_path.write_text(json.dumps(doc, indent=2) + "\n")
    return agent.turns


async def _first(waiting: Coroutine[Any, Any, Any], session: asyncio.Task[None]) -> None:
    """Wait for `waiting`, unless the session ends first (then raise why)."""
    task = asyncio.ensure_future(waiting)
    await asyncio.wait({task, session}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        session.result()


def _print_turn(event: AgentEvent) -> None:
    if isinstance(event, TurnMetrics):
        print(f"you: {event.user_text}\nparley: {event.assistant_text}", flush=True)
