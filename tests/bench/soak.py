"""Issue 18's soak: many turns through `talk` and through the live path, watching for leaks.

A leak that costs a megabyte a turn is invisible in a ten-turn test and ends a kiosk's day.
So the real `parley talk` answers one WAV of N spoken questions, and the real `parley run
--headless` hears N more, one at a time, on PulseAudio null sinks (the room loopback on, as
in tests/bench/live.py). About once a second the app and its engine worker (with
multiprocessing's resource tracker) are sampled: resident memory, open fds, threads. Each
sample belongs to the turn under way: in `talk` the one whose utterance the app has read up
to (its position in the input file: talk writes its metrics only at the end), live the
prompt being played or answered.

The warm-up ends at turn 20 (fewer in a short run). It passes when memory grows less than
50 MB from the warm-up to the end (medians over three turns each), fds and threads do not
grow, the engine worker was never restarted and every turn was answered; live, also when
the history holds one user and one assistant row per prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import soundfile as sf

from tests.bench.hearing import Voices
from tests.bench.live import RATE, App, Prompt, speak
from tests.pulse import PulseAudio

_HERE = Path(__file__).resolve().parents[2]
GROWTH_LIMIT_MB = 50.0
WINDOW = 3
"""Turns pooled at the warm-up and at the end, so one long reply does not decide."""
GAP_S = 1.5
"""Silence after each question in the talk WAV: more than the VAD's hangover."""
CATEGORIES = ("facts", "arithmetic", "time")
"""questions.toml's single questions that leave nothing behind: no timer goes off later."""
VOICES = [("en-us", 160.0), ("en-gb", 170.0), ("piper", 1.0), ("en-gb-scotland", 150.0),
          ("en-029", 160.0), ("en-us+f3", 165.0), ("piper", 0.9), ("en-gb-x-rp", 175.0),
          ("en-us+m3", 140.0)]
KEYS = ("rss_mb", "fds", "threads")


def questions() -> list[str]:
    doc = tomllib.loads((Path(__file__).with_name("questions.toml")).read_text())
    return [turn["say"] for script in doc["script"] if script["category"] in CATEGORIES
            for turn in script["turns"]]


def prompts(n: int, offset: int = 0) -> list[Prompt]:
    """N questions, each voice meeting every question in turn (no fixed pairs)."""
    said = questions()
    out = []
    for i in range(offset, offset + n):
        voice, speed = VOICES[(i + i // len(said)) % len(VOICES)]
        out.append(Prompt(said[i % len(said)], voice, speed))
    return out


class Sampler:
    """The process tree of `pid`, once a second in a thread: the app's own figures and its
    descendants' (the engine worker, the resource tracker) summed, with the turn."""

    def __init__(self, pid: int, turn: Callable[[], int]) -> None:
        self.samples: list[dict[str, Any]] = []
        self._root = psutil.Process(pid)
        self._turn = turn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(psutil.Error):  # the app ending, or a child just gone
                turn = self._turn()
                children = self._root.children(recursive=True)
                main = _figures([self._root])
                worker = _figures(children)
                self.samples.append({"t": round(time.monotonic() - self._started, 1),
                                     "turn": turn, "app": main, "worker": worker})


def _figures(processes: list[psutil.Process]) -> dict[str, float]:
    rss = fds = threads = 0
    for process in processes:
        with process.oneshot():
            rss += process.memory_info().rss
            fds += process.num_fds()
            threads += process.num_threads()
    return {"rss_mb": round(rss / 2**20, 1), "fds": fds, "threads": threads}


def read_position(pid: int, wav: Path) -> Callable[[], int]:
    """How many frames of `wav` the process has read, from its fd's file position."""
    root, path = psutil.Process(pid), str(wav.resolve())
    frames = sf.info(str(wav)).frames
    data_starts = wav.stat().st_size - 2 * frames  # 16-bit mono: the header is the rest

    def position() -> int:
        at = [f.position for f in root.open_files() if f.path == path]
        return max(0, (at[0] - data_starts) // 2) if at else 0
    return position


def talk_wav(path: Path, said: list[Prompt], voices: Voices) -> list[int]:
    """One recording of every question, each followed by silence; returns each one's end
    (its last frame)."""
    parts, ends, frames = [np.zeros(RATE // 3, np.float32)], [], RATE // 3
    for prompt in said:
        speech = speak(prompt, voices)
        frames += speech.size
        ends.append(frames)
        gap = np.zeros(int(GAP_S * RATE), np.float32)
        parts += [speech, gap]
        frames += gap.size
    sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return ends


def run_talk(n: int, folder: Path, voices: Voices) -> dict[str, Any]:
    """`parley talk` on N questions in one file, sampled throughout."""
    wav = folder / "questions.wav"
    ends = talk_wav(wav, prompts(n), voices)
    metrics = folder / "talk-metrics.json"
    config = folder / "config.toml"
    config.write_text("")
    env = {**os.environ, "PARLEY_CONFIG": str(config), "PARLEY_DATA_DIR": str(folder / "data")}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "talk", "--input", str(wav), "--output",
         str(folder / "replies.wav"), "--metrics-json", str(metrics)],
        cwd=_HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    position = read_position(proc.pid, wav)
    last = [0]

    def turn() -> int:
        with contextlib.suppress(psutil.Error):  # the app ending: the last turn it was on
            if read := position():  # 0 also once the file is closed at the end
                last[0] = sum(1 for end in ends if end < read)
        return last[0]

    with Sampler(proc.pid, turn) as sampler:
        out, err = proc.communicate()
    print(out.strip().splitlines()[-1] if out.strip() else err[-2000:], flush=True)
    doc = json.loads(metrics.read_text()) if metrics.exists() else {"turns": []}
    answered = [t for t in doc["turns"] if t["user_text"].strip()
                and t["assistant_text"].strip()]
    return {"turns": n, "exit_code": proc.returncode, "minutes": _minutes(started),
            "metrics_turns": len(doc["turns"]), "answered": len(answered),
            "stderr_tail": err[-1500:], "worker_restarts": doc.get("worker_restarts"),
            **judge(sampler.samples, n, len(answered) == n == len(doc["turns"]),
                    doc.get("worker_restarts"))}


def run_live(n: int, folder: Path, voices: Voices) -> dict[str, Any]:
    """`parley run --headless` hearing N questions one at a time, each answer awaited."""
    said = prompts(n, offset=7)  # not the talk run's first questions in the same voices
    wavs = []
    for i, prompt in enumerate(said):
        wavs.append(folder / f"live{i:03d}.wav")
        sf.write(wavs[-1], np.concatenate([np.zeros(RATE // 5, np.float32),
                                           speak(prompt, voices)]), RATE)
    config, data, metrics = folder / "config.toml", folder / "live-data", folder / "live.json"
    config.write_text("")
    playing = [0]
    unanswered: list[str] = []
    started = time.monotonic()
    with PulseAudio() as pulse, pulse.speaker_heard_by_mic():
        speaker = pulse.record_speaker(folder / "speaker.wav")
        app = App(pulse, config, data, metrics, _HERE)
        try:
            with Sampler(app.proc.pid, lambda: playing[0]) as sampler:
                app.wait_for("Listening", 600)
                speaker.wait_flowing()
                pulse.wait_for_mic_listener()
                for i, (prompt, wav) in enumerate(zip(said, wavs, strict=True)):
                    playing[0] = i + 1
                    pulse.play_into_mic(wav)
                    try:
                        lines = app.settle(speaker, timeout=180)
                    except RuntimeError as missed:  # no answer: counted, and on to the next
                        unanswered.append(f"{prompt.text} ({str(missed)[:200]})")
                        if app.proc.poll() is not None:
                            break
                        continue
                    heard = [line[5:] for line in lines if line.startswith("you: ")]
                    replies = [line[8:70] for line in lines if line.startswith("parley: ")]
                    print(f"[live {i + 1}/{n}] {heard} → {replies}", flush=True)
            err = app.close(metrics)
        finally:
            if app.proc.poll() is None:
                app.proc.kill()
            speaker.stop()
    doc = json.loads(metrics.read_text()) if metrics.exists() else {"turns": []}
    rows = stored(data / "parley.db")
    answered = n - len(unanswered)
    every = (answered == n == len(doc["turns"]) and rows["user"] == rows["assistant"] == n)
    return {"turns": n, "exit_code": app.proc.returncode, "minutes": _minutes(started),
            "metrics_turns": len(doc["turns"]), "answered": answered,
            "unanswered": unanswered, "stored": rows, "stderr_tail": err[-1500:],
            "worker_restarts": doc.get("worker_restarts"),
            **judge(sampler.samples, n, every, doc.get("worker_restarts"))}


def stored(db: Path) -> dict[str, int]:
    """The history's rows by role, and how many conversations hold them."""
    if not db.exists():
        return {"conversations": 0, "user": 0, "assistant": 0}
    with contextlib.closing(sqlite3.connect(db)) as con:
        roles = dict(con.execute("SELECT role, COUNT(*) FROM turns GROUP BY role").fetchall())
        count = con.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]
    return {"conversations": count, "user": roles.get("user", 0),
            "assistant": roles.get("assistant", 0)}


def warm_up_turn(n: int) -> int:
    return min(20, max(1, n // 2))


def judge(samples: list[dict[str, Any]], n: int, every_turn: bool,
          restarts: int | None) -> dict[str, Any]:
    """Figures at the warm-up and at the end, and the verdict on each criterion (a
    restarted worker would start its memory afresh and hide a leak)."""
    warm = warm_up_turn(n)
    at_warm = pooled(samples, range(warm, min(n, warm + WINDOW - 1) + 1))
    at_end = pooled(samples, range(max(1, n - WINDOW + 1), n + 1))
    checks = {"every_turn": every_turn, "no_worker_restart": restarts == 0}
    if at_warm and at_end:
        growth = round(at_end["total_rss_mb"] - at_warm["total_rss_mb"], 1)
        checks |= {"rss_growth": growth < GROWTH_LIMIT_MB,
                   "fds": at_end["total_fds"] <= at_warm["total_fds"],
                   "threads": at_end["total_threads"] <= at_warm["total_threads"]}
    else:
        growth, checks["sampled"] = None, False
    return {"warm_up_turn": warm, "at_warm_up": at_warm, "at_end": at_end,
            "rss_growth_mb": growth, "checks": checks, "passed": all(checks.values()),
            "peak_rss_mb": max((s["app"]["rss_mb"] + s["worker"]["rss_mb"] for s in samples),
                               default=0.0),
            "per_turn": per_turn(samples)}


def pooled(samples: list[dict[str, Any]], turns: range) -> dict[str, Any]:
    """Medians over the samples taken during `turns`, app, worker and both."""
    mine = [s for s in samples if s["turn"] in turns]
    if not mine:
        return {}
    out: dict[str, Any] = {"turns": f"{turns.start}-{turns.stop - 1}", "samples": len(mine)}
    for key in KEYS:
        for side in ("app", "worker"):
            out[f"{side}_{key}"] = statistics.median(s[side][key] for s in mine)
        out[f"total_{key}"] = statistics.median(s["app"][key] + s["worker"][key] for s in mine)
    return out


def per_turn(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each turn's medians (turn 0: loading the models), for a look at the trend."""
    turns = sorted({s["turn"] for s in samples})
    return [{"turn": t, **{k: v for k, v in pooled(samples, range(t, t + 1)).items()
                           if k.startswith("total_") or k == "samples"}} for t in turns]


def _minutes(started: float) -> float:
    return round((time.monotonic() - started) / 60, 1)


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ["path", "answered", "RSS app + worker at warm-up", "at end", "growth",
            "fds", "threads", "stored (user/assistant)", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path, r in results.items():
        w, e = r["at_warm_up"], r["at_end"]
        if not (w and e):
            lines.append(f"| {path} | {r['answered']}/{r['turns']} | no samples |"
                         + " |" * (len(head) - 3) + " FAIL |")
            continue
        rows = r.get("stored")
        failed = [k for k, ok in r["checks"].items() if not ok]
        lines.append("| " + " | ".join([
            path, f"{r['answered']}/{r['turns']}",
            f"{w['total_rss_mb']:.0f} MB ({w['app_rss_mb']:.0f} + {w['worker_rss_mb']:.0f}),"
            f" turns {w['turns']}",
            f"{e['total_rss_mb']:.0f} MB ({e['app_rss_mb']:.0f} + {e['worker_rss_mb']:.0f}),"
            f" turns {e['turns']}",
            f"{r['rss_growth_mb']:+.1f} MB",
            f"{w['total_fds']:g} → {e['total_fds']:g}",
            f"{w['total_threads']:g} → {e['total_threads']:g}",
            f"{rows['user']}/{rows['assistant']}" if rows else "-",
            "PASS" if r["passed"] else "FAIL: " + ", ".join(failed)]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--talk-turns", type=int, default=200, help="0 to skip")
    parser.add_argument("--live-turns", type=int, default=50, help="0 to skip")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    voices = Voices()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="parley-soak-") as tmp:
        if args.talk_turns:
            results["talk"] = run_talk(args.talk_turns, Path(tmp), voices)
        if args.live_turns:
            results["live"] = run_live(args.live_turns, Path(tmp), voices)
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    out = args.out / f"soak-{day}.json"
    out.write_text(json.dumps({"growth_limit_mb": GROWTH_LIMIT_MB, **results}, indent=1) + "\n")
    print(f"{table(results)}\nresults in {out}")
    sys.exit(0 if all(r["passed"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
