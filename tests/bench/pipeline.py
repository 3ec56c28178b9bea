"""`make bench`: voice-to-voice latency of the whole pipeline against each engine's floor.

Runs spoken prompts through `talk` (the real worker, queues and Agent), then, in the same
run, each engine alone on the same inputs: STT on the same utterance audio, LLM first token
on the same messages, TTS first audio on the same first piece. Rounds alternate pipeline
and floors so machine noise hits both alike. ratio = pipeline p50 / sum of floor p50s.
`--llm a,b` compares LLMs in one run (rounds alternate between them), each with the peak
memory of the app and its engine worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import psutil

from app.commands.talk import talk
from app.conversation.metrics import (
    END_OF_SPEECH_TO_FIRST_AUDIO,
    LLM_FIRST_TOKEN,
    STT,
    TTS_FIRST_AUDIO,
)
from app.conversation.sentences import SentenceSplitter
from app.conversation.session import agent_settings, endpointer_factory, resolve_models
from app.settings import Settings, load_settings
from audio.endpointing import Utterance
from audio.wav import read_wav
from engines.builtin import default_registry
from engines.protocols import ChatMessage, LLMEngine, STTEngine, TTSEngine
from tests.speech import conversation_wav

PROMPTS = [
    "What is the capital of France?",
    "Tell me a short joke.",
    "How many legs does a spider have?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
    "Give me one tip for sleeping better.",
]
FLOORED = (STT, LLM_FIRST_TOKEN, TTS_FIRST_AUDIO)
"""The metrics each engine alone is timed on too: its floor."""
STAGES = (*FLOORED, END_OF_SPEECH_TO_FIRST_AUDIO)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def floors(config: Settings, wav: Path, turns: list[dict[str, Any]]
           ) -> dict[str, list[float]]:
    """Each engine alone, in this process, on exactly what the pipeline was given."""
    models = resolve_models(config)
    registry = default_registry()
    engines = {k: registry.create(models[k], config.engine_options(k))
               for k in ("stt", "llm", "tts")}
    for engine in engines.values():
        engine.load()
    stt, llm, tts = engines["stt"], engines["llm"], engines["tts"]
    assert isinstance(stt, STTEngine) and isinstance(llm, LLMEngine)
    assert isinstance(tts, TTSEngine)
    endpointer = endpointer_factory(config)()
    utterances = [e for e in endpointer.push(read_wav(wav)) + endpointer.flush()
                  if isinstance(e, Utterance)]
    llm_cfg = config.llm
    agent = agent_settings(config)
    history = [ChatMessage("system", llm_cfg.system_prompt)]
    out: dict[str, list[float]] = {key: [] for key in FLOORED}
    for utterance, turn in zip(utterances, turns, strict=True):
        started = time.perf_counter()
        stt.transcribe(utterance.audio)
        out[STT].append((time.perf_counter() - started) * 1000)
        history.append(ChatMessage("user", turn["user_text"]))
        started = time.perf_counter()
        stream = llm.stream(history, max_tokens=llm_cfg.max_tokens,
                            temperature=llm_cfg.temperature)
        next(stream)
        out[LLM_FIRST_TOKEN].append((time.perf_counter() - started) * 1000)
        for _ in stream:  # finish, so the KV cache matches what the pipeline left behind
            pass
        history.append(ChatMessage("assistant", turn["assistant_text"]))
        splitter = SentenceSplitter(agent.first_piece_min_chars, agent.first_piece_max_words)
        first = (splitter.push(turn["assistant_text"] + " ") + splitter.flush())[0]
        started = time.perf_counter()
        next(iter(tts.synthesize(first)))
        out[TTS_FIRST_AUDIO].append((time.perf_counter() - started) * 1000)
    for engine in engines.values():
        engine.close()
    return out


class PeakMemory:
    """The largest resident set of this process and its children (the engine worker),
    sampled every 0.2 s in a thread while the pipeline runs."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            for process in (me, *me.children(recursive=True)):
                with contextlib.suppress(psutil.Error):  # a child that just ended
                    total += process.memory_info().rss
            self.peak_mb = max(self.peak_mb, total / 2**20)


def measure(config: Settings, wav: Path, tmp: Path, results: dict[str, Any]) -> None:
    """One round for one LLM: the pipeline through `talk`, then each engine alone."""
    with PeakMemory() as memory:
        turns = asyncio.run(talk(config, wav, tmp / "out.wav", tmp / "m.json"))
    doc = json.loads((tmp / "m.json").read_text())["turns"]
    if len(doc) != len(PROMPTS):
        raise SystemExit(f"expected {len(PROMPTS)} turns, got {len(turns)}")
    results["peak_rss_mb"] = max(results.get("peak_rss_mb", 0.0), memory.peak_mb)
    for turn in doc:
        for stage in STAGES:
            results["pipeline"][stage].append(turn["metrics_ms"][stage])
    alone = floors(config, wav, doc)
    for stage, values in alone.items():
        results["floor"][stage].extend(values)
    for i, turn in enumerate(doc):
        results["ratios"].append(turn["metrics_ms"][END_OF_SPEECH_TO_FIRST_AUDIO]
                                 / sum(alone[s][i] for s in alone))


def summary(llm: str, results: dict[str, Any]) -> dict[str, Any]:
    pipeline, floor, ratios = results["pipeline"], results["floor"], results["ratios"]
    floor_sum = sum(statistics.median(v) for v in floor.values())
    e2e = statistics.median(pipeline[END_OF_SPEECH_TO_FIRST_AUDIO])
    return {
        "llm": llm, "peak_rss_mb": round(results["peak_rss_mb"]),
        "pipeline_ms": {s: {"p50": pct(v, 0.5), "p90": pct(v, 0.9)} for s, v in pipeline.items()},
        "floor_ms": {s: {"p50": pct(v, 0.5), "p90": pct(v, 0.9)} for s, v in floor.items()},
        "floor_sum_p50_ms": floor_sum,
        "ratio_of_p50s": e2e / floor_sum,
        "ratio_per_turn": {"p50": pct(ratios, 0.5), "p90": pct(ratios, 0.9)},
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"**{report['llm']}** (peak memory, app and worker: {report['peak_rss_mb']} MB)",
             "", "| stage | pipeline p50 ms | pipeline p90 ms | floor p50 ms | floor p90 ms |",
             "|---|---|---|---|---|"]
    floor_sum = report["floor_sum_p50_ms"]
    for stage in STAGES:
        p, f = report["pipeline_ms"][stage], report["floor_ms"].get(stage)
        fs = f"{f['p50']:.0f} | {f['p90']:.0f}" if f else f"{floor_sum:.0f} (sum) | —"
        lines.append(f"| {stage} | {p['p50']:.0f} | {p['p90']:.0f} | {fs} |")
    lines.append(f"\nratio pipeline / sum of floors (p50s): **{report['ratio_of_p50s']:.3f}**; "
                 f"per turn p50 {report['ratio_per_turn']['p50']:.3f}, "
                 f"p90 {report['ratio_per_turn']['p90']:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--llm", default="",
                        help="comma-separated LLMs to compare in the same run, rounds "
                             "alternating between them (default: the configured one)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting, e.g. --set llm.n_threads=1")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, dict[str, Any]] = {"llm": {"temperature": 0.0}}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        overrides.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    llms = args.llm.split(",") if args.llm else [load_settings(overrides).models.llm]
    configs = {llm: load_settings(overrides | {"models": {**overrides.get("models", {}),
                                                          "llm": llm}}) for llm in llms}
    results: dict[str, dict[str, Any]] = {
        llm: {"pipeline": {s: [] for s in STAGES}, "floor": {k: [] for k in FLOORED},
              "ratios": []} for llm in llms}
    with tempfile.TemporaryDirectory() as tmp:
        wav = conversation_wav(Path(tmp) / "prompts.wav", PROMPTS)
        for round_no in range(args.rounds):
            for llm in llms:
                measure(configs[llm], wav, Path(tmp), results[llm])
                print(f"round {round_no + 1}/{args.rounds} done for {llm}", flush=True)
    reports = [summary(llm, results[llm]) for llm in llms]
    report = {"prompts": len(PROMPTS), "rounds": args.rounds, "overrides": overrides,
              "llms": reports}
    (args.out / "pipeline.json").write_text(json.dumps(report, indent=2) + "\n")
    text = "\n\n".join(table(r) for r in reports)
    (args.out / "pipeline.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
