"""`parley chat`: type to the same Agent; replies stream to the terminal (and optionally aloud)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from contextlib import ExitStack

from app.commands.history import kept
from app.conversation.events import AgentEvent, Announcement, AssistantDelta, AssistantDone
from app.conversation.outputs import SilentOutput, SpeakerOutput
from app.conversation.session import open_session
from app.settings import Settings
from audio.devices import pick_device
from audio.playback import Playback


def _print_event(event: AgentEvent) -> None:
    if isinstance(event, AssistantDelta):
        print(event.delta, end="", flush=True)
    elif isinstance(event, AssistantDone):
        print(flush=True)
    elif isinstance(event, Announcement):  # between turns, so on a line of its own
        print(f"parley: {event.text}", flush=True)


def _typed_lines() -> asyncio.Queue[str]:
    """Lines typed at the terminal ("" at the end), read on a daemon thread: a thread of
    asyncio's pool would be joined on the way out, so Ctrl+C would wait for Enter."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: Parley is exiting
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read, name="parley-typed-lines", daemon=True).start()
    return lines


async def chat(settings: Settings, speak: bool, keep_history: bool = True) -> None:
    with ExitStack() as stack:
        if speak:
            device = pick_device(settings.audio.output_device or None, "output")
            playback = stack.enter_context(Playback(device))
            session = await open_session(settings, SpeakerOutput(playback))
        else:
            session = await open_session(settings, SilentOutput())
        session.agent.subscribe(_print_event)
        try:
            stack.enter_context(kept(session, settings.llm.system_prompt, keep_history))
            print("Type a message (empty line or Ctrl+D to quit).", flush=True)
            typed = _typed_lines()
            while line := (await typed.get()).strip():
                print("parley: ", end="", flush=True)
                await session.agent.say(line)
        finally:
            await session.close()
