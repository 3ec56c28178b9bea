"""`parley run --headless`: the agent on real audio devices, no window.

The same VoiceLoop as the window, printing each turn. Times are measured from the last
voiced sample, on the capture clock.
"""

from __future__ import annotations

from pathlib import Path

from app.commands.history import kept
from app.commands.report import local_metrics, print_turn, write_metrics
from app.conversation.events import AgentEvent, TurnMetrics
from app.conversation.outputs import SpeakerOutput
from app.conversation.session import endpointer_factory, open_session, resolve_models
from app.conversation.voice import VoiceLoop
from app.settings import Settings
from app.watchdog import Watchdog
from audio.devices import pick_device
from audio.playback import Playback


async def run_live(settings: Settings, input_device: str | None, output_device: str | None,
                   max_turns: int | None, metrics_path: Path | None,
                   keep_history: bool = True) -> list[TurnMetrics]:
    resolve_models(settings)  # every missing model named at once, before the devices
    audio = settings.audio
    mic = pick_device(input_device or audio.input_device or None, "input")
    speaker = pick_device(output_device or audio.output_device or None, "output")
    make_endpointer = endpointer_factory(settings)
    turns: list[TurnMetrics] = []
    watchdog = Watchdog()  # systemd's notify socket, when started by parley.service
    watchdog.start()  # while the models load, keeps systemd's start timeout open
    with Playback(speaker) as playback:
        session = await open_session(settings, SpeakerOutput(playback))
        watchdog.ready()

        def keep(event: AgentEvent) -> None:  # each turn: a run cut short loses none
            if isinstance(event, TurnMetrics):
                write_metrics(metrics_path, local_metrics(session))

        session.agent.subscribe(keep)  # before the turn is printed, for whoever reads both
        session.agent.subscribe(print_turn)
        try:
            with kept(session, settings.llm.system_prompt, keep_history):
                voice = VoiceLoop(session.agent, make_endpointer)
                print("Listening… speak now (Ctrl+C to stop).", flush=True)
                turns = await voice.run(mic, max_turns)
        finally:
            watchdog.stopping()
            write_metrics(metrics_path, local_metrics(session))
            await session.close()
    return turns
