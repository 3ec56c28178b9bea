"""`parley run --headless --cloud`: a Realtime conversation on the audio devices, no window.

Same contract as local `run --headless`: it prints each turn, stops after `--max-turns`
answered turns, and writes the same metrics JSON (the `usage` of each turn is the
Realtime usage of its responses). The microphone reaches the service through the window's
`CloudVoice`, so Parley's own voice is cancelled from it when `[duplex] mode = "aec"`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from app.cloud.agent import CloudAgent
from app.cloud.apikey import load_key
from app.cloud.voice import CloudVoice
from app.commands.report import peak_rss_mb, print_turn, turn_rows, write_metrics
from app.conversation.events import AgentEvent, TurnMetrics
from app.conversation.session import print_errors
from app.settings import Settings
from audio.bargein import DuplexMode
from audio.devices import pick_device
from audio.playback import Playback


async def run_cloud(settings: Settings, input_device: str | None, output_device: str | None,
                    max_turns: int | None, metrics_path: Path | None) -> list[TurnMetrics]:
    cloud = settings.cloud
    client = AsyncOpenAI(api_key=load_key())  # OPENAI_BASE_URL etc. as the SDK reads them
    audio = settings.audio
    mic = pick_device(input_device or audio.input_device or None, "input")
    speaker = pick_device(output_device or audio.output_device or None, "output")
    with Playback(speaker) as playback:
        agent = CloudAgent(client, cloud, playback)
        agent.subscribe(print_errors)
        agent.subscribe(print_turn)
        enough = asyncio.Event()

        def count(event: AgentEvent) -> None:
            if isinstance(event, TurnMetrics) and len(agent.turns) == max_turns:
                enough.set()

        agent.subscribe(count)
        session = asyncio.create_task(agent.run())
        try:
            await _first(agent.link.connected.wait(), session)
            print(f"Listening… speak now (cloud: {cloud.model}; Ctrl+C to stop).",
                  flush=True)
            aec = settings.duplex.mode == DuplexMode.AEC
            listening = asyncio.create_task(
                CloudVoice(agent, playback.far_end if aec else None).run(mic))
            try:
                await _first(enough.wait(), session, listening)
            finally:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening
        finally:
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
            await agent.close()
            write_metrics(metrics_path, {
                "turns": turn_rows(agent.turns), "mode": "cloud",
                "models": {"realtime": cloud.model, "voice": cloud.voice},
                "rate_limits": [vars(r) for r in agent.rate_limits],
                "peak_rss_mb": peak_rss_mb()})
    return agent.turns


async def _first(waiting: Coroutine[Any, Any, Any], *running: asyncio.Task[Any]) -> None:
    """Wait for `waiting`, unless one of the `running` tasks (the session, the microphone)
    ends first: then raise why."""
    task = asyncio.ensure_future(waiting)
    await asyncio.wait({task, *running}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        for ended in running:
            if ended.done():
                ended.result()
