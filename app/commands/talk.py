"""`parley talk`: the live pipeline, fed from a WAV file and speaking into a WAV file.

The file is read block by block (bounded memory for long recordings) through the same VAD
endpointing as the microphone. Times are the pipeline's own: the clock starts when the
endpointer hands over an utterance (reading a file costs no hangover wait).
"""

from __future__ import annotations

import itertools
import json
import resource
import time
from pathlib import Path
from typing import Any

from app.settings import Config
from app.conversation.events import TurnMetrics
from app.conversation.outputs import WavOutput
from app.conversation.session import Session, endpointer_factory, open_session
from audio.endpointing import Utterance
from audio.wav import WavWriter, iter_wav


def peak_rss_mb() -> float:
    """This process's own peak memory. Linux's VmHWM, unlike ru_maxrss, does not inherit
    the peak of the parent that forked us."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def turn_rows(turns: list[TurnMetrics]) -> list[dict[str, Any]]:
    """Each turn as the metrics JSON shows it, local or cloud. `usage` is the contract's
    name for the token counts; `tokens` (the same dict) stays for older readers."""
    return [{"turn": t.turn, "user_text": t.user_text, "assistant_text": t.assistant_text,
             "metrics_ms": {k: round(v, 1) for k, v in t.metrics_ms.items()},
             "usage": t.tokens, "tokens": t.tokens} for t in turns]


def metrics_document(turns: list[TurnMetrics], session: Session) -> dict[str, Any]:
    return {
        "turns": turn_rows(turns),
        "models": session.models_report(),
        "worker_restarts": session.engines.restarts,
        "peak_rss_mb": peak_rss_mb(),
    }


def write_metrics(path: Path | None, turns: list[TurnMetrics], session: Session) -> None:
    if path is not None:
        path.write_text(json.dumps(metrics_document(turns, session), indent=2) + "\n")


async def talk(config: Config, input_path: Path, output_path: Path,
               metrics_path: Path | None) -> list[TurnMetrics]:
    blocks = iter_wav(input_path)
    first = next(blocks)  # surfaces a bad input file before any model loads
    endpointer = endpointer_factory(config)()
    with WavWriter(output_path, 22050) as writer:
        session = await open_session(config, WavOutput(writer))
        try:
            for block in itertools.chain([first], blocks):
                for event in endpointer.push(block):
                    await _turn(session, event)
            for event in endpointer.flush():
                await _turn(session, event)
        finally:
            write_metrics(metrics_path, session.agent.turns, session)
            await session.close()
    return session.agent.turns


async def _turn(session: Session, event: object) -> None:
    if isinstance(event, Utterance):
        await session.agent.hear(event.audio, ended_at=time.perf_counter())
