"""`parley run --headless`: the agent on real audio devices, no window.

The same VoiceLoop as the window, printing each turn. Times are measured from the last
voiced sample, on the capture clock.
"""

from __future__ import annotations

from pathlib import Path

from app.settings import Config
from app.conversation.events import AgentEvent, TurnMetrics
from app.conversation.outputs import SpeakerOutput
from app.conversation.session import endpointer_factory, open_session
from app.commands.talk import write_metrics
from app.conversation.voice import VoiceLoop
from audio.devices import pick_device
from audio.playback import Playback


async def run_live(config: Config, input_device: str | None, output_device: str | None,
                   max_turns: int | None, metrics_path: Path | None) -> list[TurnMetrics]:
    audio_cfg = config["audio"]
    mic = pick_device(input_device or audio_cfg["input_device"] or None, "input")
    speaker = pick_device(output_device or audio_cfg["output_device"] or None, "output")
    make_endpointer = endpointer_factory(config)
    turns: list[TurnMetrics] = []
    with Playback(speaker) as playback:
        session = await open_session(config, SpeakerOutput(playback))
        session.agent.subscribe(_print_turn)
        try:
            voice = VoiceLoop(session.agent, make_endpointer)
            print("Listening… speak now (Ctrl+C to stop).", flush=True)
            turns = await voice.run(mic, max_turns)
        finally:
            write_metrics(metrics_path, session.agent.turns, session)
            await session.close()
    return turns


def _print_turn(event: AgentEvent) -> None:
    if isinstance(event, TurnMetrics):
        print(f"you: {event.user_text}\nparley: {event.assistant_text}", flush=True)
