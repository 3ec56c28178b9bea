"""`make bench`: how well Parley hears, as a word error rate over varied voices.

Forty-odd everyday requests of our own, rich in numbers and names (where Whisper went wrong
before: "three" → "free", names lost), spoken by several espeak-ng voices at several speeds
and by the Piper voices at several lengths, some with background noise or a room's echo.
Each configuration (`--config name:key=value,...`, the STT engine's options, e.g.
`chunk_length=8`) transcribes every utterance; rounds alternate configurations so machine
noise hits each alike. Reports WER, the utterances it got wrong and the median time per
utterance; JSON and a Markdown table go to `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import time
import tomllib
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import soxr

from engines.models import resolve
from engines.stt_whisper import WhisperSTT
from tests.speech import espeak

RATE = 16000


@dataclasses.dataclass(frozen=True)
class Utterance:
    text: str
    voice: str
    """An espeak-ng voice, or a Piper voice's catalog name."""
    speed: float
    """espeak-ng words per minute, or Piper's length scale (above 1 is slower)."""
    room: str = ""
    """"" (close microphone), "noise" (a fan at 15 dB below the voice) or "echo" (a room's
    reverberation, ~0.4 s)."""


_JOE = "piper-en_US-joe-medium"
"""The one Piper voice the package registry has; the others come from a model hub."""
UTTERANCES = [
    Utterance("Set a timer for three minutes.", "en-us", 160),
    Utterance("What is three plus four?", "en-gb", 170),
    Utterance("Remind me in fifteen minutes to call Sarah.", "en-us+f3", 150),
    Utterance("Wake me up at six thirty tomorrow morning.", _JOE, 1.0),
    Utterance("How far is it from Paris to Berlin?", "en-gb-scotland", 150),
    Utterance("Who painted the Mona Lisa?", "en-029", 160),
    Utterance("What is twenty two times eighteen?", _JOE, 0.85),
    Utterance("Remember that my locker number is four hundred and twelve.", "en-us", 175, "noise"),
    Utterance("Translate good morning into German.", "en-gb-x-rp", 160),
    Utterance("When was Abraham Lincoln born?", "en-us+m3", 140),
    Utterance("Cancel the pasta timer.", _JOE, 1.1, "echo"),
    Utterance("What's the weather usually like in Madrid in July?", "en-gb", 180),
    Utterance("How many ounces are in a pound?", "en-us+f2", 155),
    Utterance("Tell me a fun fact about Jupiter.", "en-gb-scotland", 170, "noise"),
    Utterance("What time is it in Tokyo?", _JOE, 0.95),
    Utterance("Set an alarm for seven forty five.", "en-029", 150),
    Utterance("Who is the author of Harry Potter?", "en-us", 190),
    Utterance("What is the square root of eighty one?", "en-gb-x-rp", 150, "echo"),
    Utterance("Add eggs and milk to my shopping notes.", "en-us+f3", 165),
    Utterance("How do you spell necessary?", _JOE, 1.2),
    Utterance("What is fifteen percent of sixty?", "en-gb", 150, "noise"),
    Utterance("Where is Mount Kilimanjaro?", "en-us+m3", 160),
    Utterance("How many days until Christmas?", "en-gb-scotland", 140),
    Utterance("Please set a timer for ninety seconds.", _JOE, 0.9, "noise"),
    Utterance("What did I ask you to remember?", "en-029", 175),
    Utterance("Which is bigger, a whale or an elephant?", "en-us+f2", 150, "echo"),
    Utterance("Convert thirty degrees Celsius to Fahrenheit.", "en-us", 155),
    Utterance("Who was the first person on the moon?", _JOE, 1.05),
    Utterance("My sister Anna is coming at four.", "en-gb-x-rp", 170),
    Utterance("What is the capital of New Zealand?", "en-gb", 160, "echo"),
    Utterance("How long should I boil an egg?", "en-us+f3", 140, "noise"),
    Utterance("Is thirteen a prime number?", _JOE, 1.0, "echo"),
    Utterance("Play something relaxing.", "en-us+m3", 175),
    Utterance("What is eight hundred divided by sixteen?", "en-029", 150, "noise"),
    Utterance("Tell me about the Eiffel Tower.", "en-gb-scotland", 165),
    Utterance("How much is two dollars and fifty cents times four?", "en-us", 165, "echo"),
    Utterance("What rhymes with orange?", _JOE, 0.8),
    Utterance("Forget the note about the locker.", "en-gb", 185),
    Utterance("What year did the Second World War end?", "en-us+f2", 165),
    Utterance("How many legs does a spider have?", "en-gb-x-rp", 145),
    Utterance("Set a timer for twenty minutes for the bread.", _JOE, 0.9, "noise"),
    Utterance("Who discovered penicillin?", "en-029", 165),
    Utterance("What is seventy minus twenty nine?", _JOE, 1.1, "echo"),
    Utterance("Good night, Parley.", "en-us", 150),
]


class Voices:
    """Piper voices by catalog name and length scale; one not installed is skipped."""

    def __init__(self) -> None:
        self._voices: dict[tuple[str, float], Any] = {}

    def speak(self, name: str, scale: float, text: str) -> np.ndarray | None:
        from engines.errors import ModelError
        from engines.tts_piper import PiperTTS

        if (name, scale) not in self._voices:
            try:
                voice = PiperTTS(resolve(name, "tts"), {"length_scale": scale})
                voice.load()
            except ModelError:
                voice = None
            self._voices[name, scale] = voice
        voice = self._voices[name, scale]
        if voice is None:
            return None
        audio = np.concatenate([c.samples for c in voice.synthesize(text)])
        return soxr.resample(audio, voice.sample_rate, RATE).astype(np.float32)


def in_the_room(speech: np.ndarray, room: str, seed: int) -> np.ndarray:
    """The utterance as the microphone gets it: with a fan's noise or a room's echo."""
    rng = np.random.default_rng(seed)
    if room == "noise":
        noise = np.cumsum(rng.standard_normal(speech.size)).astype(np.float32)
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # brown, minus hum
        level = np.sqrt(np.mean(speech**2)) / np.sqrt(np.mean(noise**2)) / 10 ** (15 / 20)
        speech = speech + level * noise
    elif room == "echo":
        tail = np.arange(int(0.4 * RATE)) / RATE
        response = rng.standard_normal(tail.size) * np.exp(-tail * 6.9 / 0.4) * 0.3
        response[0] = 1.0
        speech = np.convolve(speech, response)[: speech.size + tail.size]
    return (0.5 * speech / max(1e-6, float(np.abs(speech).max()))).astype(np.float32)


def utterance_audio(voices: Voices) -> list[tuple[Utterance, np.ndarray]]:
    """Each utterance as an endpointer would hand it over: 0.3 s before, 0.6 s after."""
    made = []
    for i, u in enumerate(UTTERANCES):
        speech = (espeak(u.text, RATE, u.voice, int(u.speed)) if not u.voice.startswith("piper")
                  else voices.speak(u.voice, u.speed, u.text))
        if speech is None:
            continue
        speech = in_the_room(speech, u.room, i)
        pad = np.zeros(int(0.3 * RATE), np.float32), np.zeros(int(0.6 * RATE), np.float32)
        made.append((u, np.concatenate([pad[0], speech, pad[1]])))
    return made


def normalise(text: str) -> str:
    """Lower case, no punctuation, numbers as words the way the prompts spell them ("6:30" →
    "six thirty"; the quality bench goes the other way, which joins "six thirty" into 36)."""
    text = text.lower().replace("-", " ").replace("%", " percent")
    text = re.sub(r"\$(\d+)\.(\d\d)", r"\1 dollars and \2 cents", text)
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    words = []
    for word in re.sub(r"[^a-z0-9' ]+", " ", text).split():
        words.append(_spelled(int(word)) if word.isdigit() else word)
    return " ".join(" ".join(words).replace("'s", " is").split()) or "-"


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spelled(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else f" {_ONES[n % 10]}")
    if n < 1000:
        rest = n % 100
        return f"{_ONES[n // 100]} hundred" + ("" if rest == 0 else f" and {_spelled(rest)}")
    if 1900 <= n < 2100:  # a year
        return f"{_spelled(n // 100)} {_spelled(n % 100) if n % 100 else 'hundred'}"
    return " ".join(_ONES[int(d)] for d in str(n))


def run_config(options: dict[str, Any], audio: list[tuple[Utterance, np.ndarray]]
               ) -> list[dict[str, Any]]:
    stt = WhisperSTT(resolve(str(options.get("model", "whisper-base")), "stt"),
                     {"language": "en", **{k: v for k, v in options.items() if k != "model"}})
    stt.load()
    stt.transcribe(audio[0][1])  # warm
    out = []
    for u, samples in audio:
        started = time.perf_counter()
        transcript = stt.transcribe(samples)
        heard = transcript.text
        seconds = time.perf_counter() - started
        said, got = normalise(u.text), normalise(heard)
        out.append({"text": u.text, "voice": u.voice, "speed": u.speed, "room": u.room,
                    "heard": heard, "errors": round(jiwer.wer(said, got) * len(said.split())),
                    "words": len(said.split()), "seconds": round(seconds, 3),
                    "logprob": transcript.logprob})
    stt.close()
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    words = sum(r["words"] for r in rows)
    return {"utterances": len(rows), "words": words,
            "wer": round(sum(r["errors"] for r in rows) / max(words, 1), 4),
            "seconds_p50": round(statistics.median(r["seconds"] for r in rows), 3),
            "wrong": sorted({f"{r['text']} → {r['heard']} ({_sure(r['logprob'])})"
                             for r in rows if r["errors"]})}


def _sure(logprob: float | None) -> str:
    return "?" if logprob is None else f"{logprob:.2f}"


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """`name:key=value,...`, each value read as TOML (a bare word as a string)."""
    name, _, assignments = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, assignments.split(",")):
        key, _, raw = item.partition("=")
        try:
            options[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            options[key] = raw
    return name, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[],
                        help="name:key=value,... STT options (repeatable); 'defaults' always runs")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    configs = dict([("defaults", {}), *(parse_config(c) for c in args.config)])
    audio = utterance_audio(Voices())
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, options in configs.items():
            rows[name] += run_config(options, audio)
    results = {name: {"options": configs[name], "summary": summarise(r), "utterances": r}
               for name, r in rows.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hearing.json").write_text(json.dumps(results, indent=1))
    lines = ["| config | WER | utterances wrong | time per utterance p50 |", "|---|---|---|---|"]
    for name, r in results.items():
        s = r["summary"]
        lines.append(f"| {name} | {s['wer']:.1%} | {len(s['wrong'])} of {s['utterances']} | "
                     f"{s['seconds_p50'] * 1000:,.0f} ms |")
    (args.out / "hearing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for name, r in results.items():
        print(f"\n{name}:", *r["summary"]["wrong"], sep="\n  ")


if __name__ == "__main__":
    main()
