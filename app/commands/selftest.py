"""`parley selftest`: load every default engine, run one tiny inference each, print a table.

Speech made by the TTS is fed to the STT, so one run proves the whole chain end to end.
"""

from __future__ import annotations

import time

import numpy as np

from app.conversation.session import make_vad, resolve_models
from app.settings import Settings
from audio.resample import resample
from engines.client import EngineClient
from engines.errors import ParleyError
from engines.protocols import AudioChunk, ChatMessage


async def selftest(settings: Settings) -> int:
    rows: list[tuple[str, str, str, str]] = []
    failed = False

    def row(kind: str, name: str, ok: bool, detail: str) -> None:
        nonlocal failed
        failed |= not ok
        rows.append((kind, name, "ok" if ok else "FAILED", detail))

    models = resolve_models(settings)
    engines = EngineClient()
    await engines.start()
    speech: list[AudioChunk] = []
    try:
        for kind in ("stt", "llm", "tts"):
            try:
                stats = await engines.load(models[kind], settings.engine_options(kind))
                row(kind, models[kind].name, True, f"loaded in {stats.load_seconds:.2f} s")
            except ParleyError as err:
                row(kind, models[kind].name, False, str(err))
        started = time.perf_counter()
        try:
            speech = [c async for c in engines.synthesize("Hello, this is a test.", 0, 0)]
            row("tts", "synthesize", bool(speech), f"{_ms(started)} ms for one sentence")
        except ParleyError as err:
            row("tts", "synthesize", False, str(err))
        started = time.perf_counter()
        try:
            tokens = [t async for t in engines.generate(
                [ChatMessage("user", "Say hello.")], 0, 0, max_tokens=8, temperature=0.0)]
            text = "".join(t.text for t in tokens).strip()
            row("llm", "generate", bool(text), f"{_ms(started)} ms: {text!r}")
        except ParleyError as err:
            row("llm", "generate", False, str(err))
        if speech:
            audio = resample(np.concatenate([c.samples for c in speech]),
                             speech[0].sample_rate, 16000)
            started = time.perf_counter()
            try:
                heard = await engines.transcribe(audio, 0, 0)
                text = heard.text if heard else ""
                row("stt", "transcribe", "test" in text.lower(), f"{_ms(started)} ms: {text!r}")
            except ParleyError as err:
                row("stt", "transcribe", False, str(err))
            try:
                vad = make_vad(models["vad"], settings)
                frames = len(audio) // vad.frame_samples
                voiced = sum(vad.is_speech(audio[i * vad.frame_samples:(i + 1)
                                                 * vad.frame_samples]) for i in range(frames))
                row("vad", models["vad"].name, voiced > 0, f"{voiced}/{frames} frames voiced")
            except ParleyError as err:
                row("vad", models["vad"].name, False, str(err))
    finally:
        await engines.close()
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3])
    return 1 if failed else 0


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
