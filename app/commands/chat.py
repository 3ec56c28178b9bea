"""`parley chat`: type to the same Agent; replies stream to the terminal (and optionally aloud)."""

from __future__ import annotations

import asyncio
import sys
from contextlib import ExitStack

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


async def chat(settings: Settings, speak: bool) -> None:
    with ExitStack() as stack:
        if speak:
            device = pick_device(settings.audio.output_device or None, "output")
            playback = stack.enter_context(Playback(device))
            session = await open_session(settings, SpeakerOutput(playback))
        else:
            session = await open_session(settings, SilentOutput())
        session.agent.subscribe(_print_event)
        try:
            print("Type a message (empty line or Ctrl+D to quit).", flush=True)
            while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
                print("parley: ", end="", flush=True)
                await session.agent.say(line)
        finally:
            await session.close()
