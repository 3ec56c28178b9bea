"""`parley talk`: the live pipeline, fed from a WAV file and speaking into a WAV file.

The file is read block by block (bounded memory for long recordings) through the same VAD
endpointing as the microphone. Times are the pipeline's own: the clock starts when the
endpointer hands over an utterance (reading a file costs no hangover wait).
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from app.commands.report import local_metrics, write_metrics
from app.conversation.events import TurnMetrics
from app.conversation.outputs import WavOutput
from app.conversation.session import (
    Session,
    endpointer_factory,
    open_session,
    resolve_models,
)
from app.settings import Settings
from audio.endpointing import Utterance
from audio.wav import WavWriter, iter_wav
from engines.errors import AudioError


async def talk(settings: Settings, input_path: Path, output_path: Path,
               metrics_path: Path | None) -> list[TurnMetrics]:
    blocks = iter_wav(input_path)
    first = next(blocks)  # surfaces a bad input file before any model loads
    _refuse_overwriting(input_path, output_path)
    resolve_models(settings)  # every missing model named at once, not the VAD's alone
    endpointer = endpointer_factory(settings)()
    with WavWriter(output_path, 22050) as writer:
        session = await open_session(settings, WavOutput(writer))
        try:
            for block in itertools.chain([first], blocks):
                for event in endpointer.push(block):
                    await _turn(session, event)
            for event in endpointer.flush():
                await _turn(session, event)
        finally:
            write_metrics(metrics_path, local_metrics(session))
            await session.close()
    return session.agent.turns


def _refuse_overwriting(input_path: Path, output_path: Path) -> None:
    """Writing the replies opens the output for writing, which would wipe the recording
    if it is the same file, under this name or another (a symlink, a hard link)."""
    if output_path.exists() and os.path.samefile(input_path, output_path):
        raise AudioError(
            f"The output file {output_path} is the input recording {input_path}: writing the "
            "replies would overwrite it.",
            "Give --output another file, e.g. replies.wav.",
        )


async def _turn(session: Session, event: object) -> None:
    if isinstance(event, Utterance):
        await session.agent.hear(event.audio, ended_at=time.perf_counter())
