"""`make bench`: voice-to-voice latency as a user hears it, through real audio devices.

Spoken prompts (several espeak-ng voices and speeds, the Piper voice at two speeds, some with
a 500 ms pause inside the sentence) are played into a PulseAudio "microphone" while
`parley run --headless` listens with the echo canceller on and the room loopback carries
its voice back to the microphone. Both sinks are recorded; from the recordings, per turn:
the user's last sample (the microphone's last sound before the reply) to Parley's first
sample on the speaker. The turn's own metrics split that time into stages; "sequential" is
what the stages add up to if none overlapped (end of turn, transcription, first token, first
phrase, first audio, output), the naive pipeline's figure.

Each configuration (`--config name[@tree]:section.key=value,...`, default: this tree as it
is) is a separate process holding one conversation; rounds alternate configurations so machine noise
hits each alike. JSON and a Markdown table go to `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import soundfile as sf
import tomli_w

from app.conversation.metrics import (
    END_OF_SPEECH_TO_FIRST_AUDIO,
    LLM_FIRST_TOKEN,
    OTHER,
    STAGES,
    stage_times,
)
from tests.bench.hearing import Voices
from tests.pulse import PulseAudio, Recording
from tests.speech import espeak

RATE = 16000
_HERE = Path(__file__).resolve().parents[2]
PAUSE = "|"
"""In a prompt's text, a 500 ms pause inside the sentence."""
OUTPUT = "Output"
"""The stage after the first audio is handed over until it sounds on the speaker."""
PIPER = "piper-en_US-joe-medium"
_FAINTEST = 32
"""Of 32768: -60 dBFS, as tests/pulse.py judges sound."""


@dataclasses.dataclass(frozen=True)
class Prompt:
    text: str
    voice: str
    """An espeak-ng voice, or "piper"."""
    speed: float
    """espeak-ng words per minute, or Piper's length scale (above 1 is slower)."""

    @property
    def words(self) -> str:
        return self.text.replace(PAUSE, " ").replace("  ", " ")


PROMPTS = [
    Prompt("What is the capital of France?", "en-us", 160),
    Prompt("How many legs does a spider have?", "piper", 1.0),
    Prompt("Tell me a short joke.", "en-gb", 170),
    Prompt("What is the capital of | Australia?", "en-us", 150),
    Prompt("Why is the sky blue?", "en-gb-scotland", 150),
    Prompt("Give me one tip for sleeping better.", "piper", 0.85),
    Prompt("What is twelve times eleven?", "en-029", 160),
    Prompt("Who wrote Pride and Prejudice?", "en-us+f3", 165),
    Prompt("What should I cook for dinner tonight, | something quick?", "piper", 1.0),
    Prompt("What do bees make?", "en-gb-x-rp", 175),
    Prompt("How far away is the moon from the earth?", "en-us+m3", 140),
    Prompt("Name a fruit that is yellow.", "piper", 0.9),
    Prompt("What's the largest ocean on Earth?", "en-gb", 150),
    Prompt("Can you tell me | how many days there are in a leap year?", "en-us", 155),
    Prompt("What is the boiling point of water in Celsius?", "piper", 1.1),
    Prompt("Which planet is called the red planet?", "en-us+f2", 160),
    Prompt("How do I say thank you in Spanish?", "en-gb-x-rp", 150),
    Prompt("What is half of ninety?", "piper", 0.95),
    Prompt("Tell me something interesting about | octopuses.", "en-us", 165),
    Prompt("What is the tallest animal in the world?", "en-gb-scotland", 160),
    Prompt("How many minutes are there in three hours?", "piper", 1.0),
    Prompt("Thanks, that is all for now.", "en-us+f3", 170),
]


def speak(prompt: Prompt, voices: Voices) -> np.ndarray:
    """The prompt as 16 kHz float32 speech, its pauses as 500 ms of silence."""
    parts: list[np.ndarray] = []
    for i, piece in enumerate(p.strip() for p in prompt.text.split(PAUSE)):
        if i:
            parts.append(np.zeros(RATE // 2, np.float32))
        piper = voices.speak(PIPER, prompt.speed, piece) if prompt.voice == "piper" else None
        said = piper if piper is not None else espeak(piece, RATE, prompt.voice,
                                                      int(prompt.speed))
        # each voice pads its speech with silence of its own: a pause is 500 ms, no more
        loud = np.flatnonzero(np.abs(said) > 0.02 * np.abs(said).max())
        parts.append(said[loud[0]:loud[-1] + 1])
    speech = np.concatenate(parts)
    return (0.5 * speech / max(1e-6, float(np.abs(speech).max()))).astype(np.float32)


def prompt_wavs(folder: Path) -> list[tuple[Prompt, Path, float]]:
    folder.mkdir(parents=True, exist_ok=True)
    voices = Voices()
    made = []
    for i, prompt in enumerate(PROMPTS):
        speech = speak(prompt, voices)
        path = folder / f"prompt{i:02d}.wav"
        sf.write(path, np.concatenate([np.zeros(RATE // 5, np.float32), speech]), RATE)
        made.append((prompt, path, speech.size / RATE))
    return made


class App:
    """`parley run --headless` under the bench's PulseAudio, its stdout read line by line."""

    def __init__(self, pulse: PulseAudio, config: Path, data: Path, metrics: Path,
                 code: Path) -> None:
        env = {**pulse.env, "PARLEY_CONFIG": str(config), "PARLEY_DATA_DIR": str(data)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--headless", "--metrics-json",
             str(metrics)], cwd=code,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")  # the end

    def wait_for(self, start: str, timeout: float) -> list[str]:
        """The lines up to and including the first that begins with `start`."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no '{start}' line within {timeout} s; got {seen}") from None
            if line == "" and self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"parley exited ({self.proc.returncode}): {err[-2000:]}")
            seen.append(line)
            if line.startswith(start):
                return seen

    def settle(self, speaker: Recording, timeout: float = 300) -> list[str]:
        """The lines of the turns a prompt made, once a reply has been printed, no line has
        come for 1.5 s and the speaker has been quiet for 1 s (a prompt cut in two makes
        two turns, or its second half interrupts the first's reply)."""
        lines: list[str] = []
        start = last_line = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                lines.append(self.lines.get(timeout=0.1))
                last_line = time.monotonic()
                continue
            except queue.Empty:
                pass
            sound = speaker.last_sound
            quiet = sound is None or (speaker.frames - sound) / speaker.rate >= 1.0
            if (quiet and time.monotonic() - last_line >= 1.5
                    and any(line.startswith("parley:") for line in lines)):
                return lines
            if self.proc.poll() is not None:
                break
        err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() else ""
        raise RuntimeError(f"no settled reply within {timeout} s: {lines} {err[-2000:]}")

    def close(self, metrics: Path) -> str:
        """Ctrl+C: the metrics are written on the way out. An older Parley may write none
        and hang while closing: it is killed (its latencies come from the recordings)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def first_sound(audio: np.ndarray, start: int, end: int | None = None) -> int | None:
    loud = np.flatnonzero(np.abs(audio[start:end]) > _FAINTEST)
    return start + int(loud[0]) if loud.size else None


def last_sound(audio: np.ndarray, start: int, end: int) -> int | None:
    loud = np.flatnonzero(np.abs(audio[start:end]) > _FAINTEST)
    return start + int(loud[-1]) if loud.size else None


def one_pass(pulse: PulseAudio, name: str, config: Config,
             prompts: list[tuple[Prompt, Path, float]], folder: Path) -> list[dict[str, Any]]:
    """All prompts, one conversation, one process: each turn's latency and stages."""
    code, settings = config
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.toml"
    config_path.write_bytes(tomli_w.dumps(settings).encode())
    metrics_path = folder / "metrics.json"
    mic = pulse.record_mic(folder / "mic.wav")
    speaker = pulse.record_speaker(folder / "speaker.wav")
    app = App(pulse, config_path, folder / "data", metrics_path, code)
    played: list[tuple[float, list[str]]] = []
    try:
        app.wait_for("Listening", 300)
        mic.wait_flowing()
        speaker.wait_flowing()
        pulse.wait_for_mic_listener()
        for prompt, wav, _ in prompts:
            began = time.monotonic()
            pulse.play_into_mic(wav)
            said = app.settle(speaker)
            played.append((began, [line[5:] for line in said if line.startswith("you: ")]))
            replies = [line[8:60] for line in said if line.startswith("parley: ")]
            print(f"[{name}] {prompt.words!r} → {replies}", flush=True)
        err = app.close(metrics_path)
    finally:
        if app.proc.poll() is None:
            app.proc.kill()
        mic.stop()
        speaker.stop()
    if not metrics_path.exists():
        print(f"[{name}] wrote no metrics (exit {app.proc.returncode}): {err[-500:]}")
    rows = json.loads(metrics_path.read_text())["turns"] if metrics_path.exists() else []
    return _turns(rows, prompts, played, mic, speaker)


def _turns(rows: list[dict[str, Any]], prompts: list[tuple[Prompt, Path, float]],
           played: list[tuple[float, list[str]]], mic: Recording,
           speaker: Recording) -> list[dict[str, Any]]:
    heard, _ = sf.read(mic.path, dtype="int16")
    spoke, _ = sf.read(speaker.path, dtype="int16")
    out = []
    rows_left = list(rows)
    for (prompt, _, seconds), (began, user_texts) in zip(prompts, played, strict=True):
        mine = [rows_left.pop(0) for _ in user_texts if rows_left]
        start = speaker.frame_at(began)
        reply = first_sound(spoke, start)
        entry: dict[str, Any] = {"prompt": prompt.words, "voice": prompt.voice,
                                 "speed": prompt.speed, "speech_seconds": round(seconds, 2),
                                 "heard": " / ".join(user_texts), "turns": len(user_texts),
                                 "wer": round(jiwer.wer(_norm(prompt.words),
                                                        _norm(" ".join(user_texts))), 3)}
        if reply is not None and len(user_texts) == 1:  # a split prompt's reply came early
            replied_at = speaker.time_of(reply)
            # the room carries the reply back to the mic 30 ms later: what came before is
            # the user's
            until = mic.frame_at(replied_at + 0.02)
            user_end = last_sound(heard, mic.frame_at(began), until)
            metrics = mine[-1]["metrics_ms"] if mine else {}
            stages = stage_times(metrics)
            if user_end is not None:
                felt = (replied_at - mic.time_of(user_end)) * 1000
                entry["voice_to_voice_ms"] = round(felt, 1)
                if END_OF_SPEECH_TO_FIRST_AUDIO in metrics:
                    stages[OUTPUT] = felt - metrics[END_OF_SPEECH_TO_FIRST_AUDIO]
            if metrics:
                entry["stages_ms"] = {k: round(v, 1) for k, v in stages.items()}
                entry["sequential_ms"] = round(sum(v for k, v in stages.items() if k != OTHER),
                                               1)
                entry[LLM_FIRST_TOKEN] = metrics.get(LLM_FIRST_TOKEN)
        out.append(entry)
    return out


def _norm(text: str) -> str:
    import re

    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(words) or "-"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    felt = [t["voice_to_voice_ms"] for t in turns if "voice_to_voice_ms" in t]
    stages = {s: [t["stages_ms"][s] for t in turns if s in t.get("stages_ms", {})]
              for s in (*STAGES, OUTPUT)}
    first_tokens = [t[LLM_FIRST_TOKEN] for t in turns if t.get(LLM_FIRST_TOKEN) is not None]
    words = sum(len(_norm(t["prompt"]).split()) for t in turns)
    errors = sum(t["wer"] * len(_norm(t["prompt"]).split()) for t in turns)
    return {
        "turns": len(turns), "timed": len(felt),
        "voice_to_voice_p50_ms": pct(felt, 0.5), "voice_to_voice_p90_ms": pct(felt, 0.9),
        "sequential_p50_ms": pct([t["sequential_ms"] for t in turns if "sequential_ms" in t],
                                 0.5),
        "stage_p50_ms": {s: pct(v, 0.5) for s, v in stages.items() if v},
        "first_token_turn1_ms": first_tokens[0] if first_tokens else None,
        "first_token_last_ms": first_tokens[-1] if first_tokens else None,
        "split_prompts": [t["prompt"] for t in turns if t["turns"] != 1],
        "wer": round(errors / max(words, 1), 3),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ["config", "p50", "p90", "sequential p50", *(s.lower() for s in (*STAGES, OUTPUT)),
            "first token t1 → last", "split", "WER"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    for name, r in results.items():
        s = r["summary"]
        lines.append("| " + " | ".join([
            name, ms(s["voice_to_voice_p50_ms"]), ms(s["voice_to_voice_p90_ms"]),
            ms(s["sequential_p50_ms"]),
            *(ms(s["stage_p50_ms"].get(st)) for st in (*STAGES, OUTPUT)),
            f"{ms(s['first_token_turn1_ms'])} → {ms(s['first_token_last_ms'])}",
            str(len(s["split_prompts"])), f"{s['wer']:.1%}"]) + " |")
    return "\n".join(lines)


Config = tuple[Path, dict[str, dict[str, Any]]]
"""The source tree Parley runs from, and the settings it runs with."""


def parse_config(text: str) -> tuple[str, Config]:
    """`name[@source tree]:section.key=value,...`, each value read as TOML (a bare word as
    a string); the tree (e.g. a `git worktree` of an older commit) defaults to this one."""
    label, _, assignments = text.partition(":")
    name, _, tree = label.partition("@")
    settings: dict[str, dict[str, Any]] = {}
    for item in filter(None, assignments.split(",")):
        dotted, _, raw = item.partition("=")
        section, _, key = dotted.partition(".")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        settings.setdefault(section, {})[key] = value
    return name, (Path(tree) if tree else _HERE, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[],
                        help="name[@source tree]:section.key=value,... (repeatable; "
                             "without any, this tree's defaults)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS),
                        help="use only the first N prompts (a quick look)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/live"))
    args = parser.parse_args()
    configs = dict([parse_config(c) for c in args.config] or [("defaults", (_HERE, {}))])
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = prompt_wavs(args.out / "prompts")[:args.prompts]
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in configs}
    with PulseAudio() as pulse, pulse.speaker_heard_by_mic():
        for round_ in range(args.rounds):
            for name, settings in configs.items():
                runs[name].append(one_pass(pulse, name, settings, prompts,
                                           args.out / f"{name}-{round_ + 1}"))
    results = {name: {"code": str(configs[name][0]), "settings": configs[name][1],
                      "passes": passes,
                      "summary": summarise([t for p in passes for t in p])}
               for name, passes in runs.items()}
    (args.out / "live.json").write_text(json.dumps(results, indent=1))
    markdown = table(results)
    (args.out / "live.md").write_text(markdown + "\n")
    print(f"{markdown}\nresults in {args.out}")


if __name__ == "__main__":
    main()
