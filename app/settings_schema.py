"""What each setting may be: its type and, where it matters, its range or its choices.

One table, section → key → `Rule`, names every key Parley reads, so a wrong value is refused
where it was written (the settings file, a command-line flag, the window) with the key, the
value and what is allowed, and never reaches an engine, where it would surface as a worker's
traceback, a silent reply or a model wrongly called corrupt. The dataclasses in
`app.settings` give the same keys their Python types; a unit test keeps the two in step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from app.cloud.settings import TURN_DETECTION
from audio.bargein import DuplexMode
from engines.errors import ParleyError
from engines.rkllm.chat import TEMPLATES

WHISPER_LANGUAGES = (
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy",
    "da", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw",
    "he", "hi", "hr", "ht", "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn",
    "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt",
    "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si",
    "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl",
    "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh", "yue",
)
"""faster_whisper.tokenizer's codes, copied: importing it loads CTranslate2 (a unit test
compares the two)."""
THEMES = ("system", "light", "dark")
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                 "int16", "float16", "bfloat16", "float32")
"""CTranslate2's compute types (faster-whisper hands the setting to it)."""
_SHOWN = 60
"""Characters of a value quoted in a message; the rest is cut."""
_PLAIN: dict[type[Any], tuple[type[Any], ...]] = {
    bool: (bool,), int: (int,), float: (int, float)}
"""The TOML types a bool, int or float setting takes (true is no number, 1.7 no whole one)."""


class SettingError(ParleyError):
    """A setting's value breaks its rule."""


@dataclass(frozen=True)
class Rule:
    """The value's type (bool, int, float, str or a string Enum) and its limits."""

    kind: type[Any]
    low: float = -math.inf
    high: float = math.inf
    choices: tuple[str, ...] = ()
    nonempty: bool = False
    index_ok: bool = False
    """A whole number 0 or more is taken as its text: a device or speaker index."""
    what: str = ""
    """Choices too many for a message, in words (the hint lists them all)."""

    def convert(self, value: Any) -> Any:
        """`value` as the setting holds it (TOML's 1 as 1.0 for a float), or ValueError."""
        if self.index_ok and type(value) is int and value >= 0:
            return str(value)
        if self.kind in _PLAIN:
            if type(value) not in _PLAIN[self.kind] or not self.low <= value <= self.high:
                raise ValueError  # NaN fails the range too
            return self.kind(value)
        if not isinstance(value, str) or (self.choices and value not in self.choices) \
                or (self.nonempty and not value):
            raise ValueError
        return self.kind(value)

    def allowed(self) -> str:
        """What the rule allows, in words, for the message."""
        if self.what:
            return self.what
        if self.choices:
            return f"one of {', '.join(map(json.dumps, self.choices))}"
        if self.kind is bool:
            return "true or false"
        if self.kind in (int, float):
            what = "a whole number" if self.kind is int else "a number"
            return f"{what} from {_number(self.low)} to {_number(self.high)}"
        if self.index_ok:
            return "a name in quotes, or an index (0 or more)"
        return "non-empty text in quotes" if self.nonempty else "text in quotes"


def whole(low: int, high: int) -> Rule:
    return Rule(int, low, high)


def number(low: float, high: float) -> Rule:
    return Rule(float, low, high)


def flag() -> Rule:
    return Rule(bool)


def text(*, nonempty: bool = False) -> Rule:
    return Rule(str, nonempty=nonempty)


def one_of(*choices: str) -> Rule:
    return Rule(str, choices=choices)


def mode(kind: type[Enum]) -> Rule:
    return Rule(kind, choices=tuple(str(m.value) for m in kind))


def name_or_index() -> Rule:
    return Rule(str, index_ok=True)


_THREADS = whole(1, 256)
SCHEMA: dict[str, dict[str, Rule]] = {
    "models": {kind: text(nonempty=True) for kind in ("stt", "llm", "tts", "vad")},
    "stt": {
        "language": Rule(str, choices=("auto", *WHISPER_LANGUAGES),
                         what='"auto" or a language code Whisper knows, such as "en" or "de"'),
        "cpu_threads": _THREADS,
        "compute_type": one_of(*COMPUTE_TYPES),
        "beam_size": whole(1, 16),
        "window_s": number(1, 30),  # Whisper's encoder reads at most 30 s
        "ask_again_below": number(-10, 0),  # a mean log-probability: 0 is certain
    },
    "llm": {
        "n_ctx": whole(256, 131072),  # a model's own, smaller limit is the engine's to tell
        "n_threads": _THREADS,
        "max_tokens": whole(1, 131072),
        "temperature": number(0, 2),
        "system_prompt": text(),
        "n_threads_batch": _THREADS,
        "seed": whole(0, 2**32 - 1),  # llama.cpp's seed is 32 bits
        "prompt_cache": flag(),
        "cpu_mask": whole(1, 0xFF),  # RKLLM boards have at most 8 cores
        "n_batch": whole(1, 16),
        "embed_flash": flag(),
        "chat_template": one_of("auto", "none", *TEMPLATES),
        "lora": text(),
        "lora_scale": number(0, 4),
    },
    "tts": {
        "length_scale": number(0.1, 5),  # 0 would make every reply silent
        "noise_scale": number(0, 2),
        "noise_w_scale": number(0, 2),
        "speaker": name_or_index(),
        "threads": _THREADS,
    },
    "vad": {
        "aggressiveness": whole(0, 3),
        "threshold": number(0.01, 0.99),  # 0 hears everything, 1 nothing
        "pre_roll_ms": whole(0, 2000),
        "hangover_ms": whole(0, 10000),
        "min_speech_ms": whole(0, 5000),
        "early_stt_ms": whole(0, 10000),
        "read_ahead_ms": whole(0, 60000),
    },
    "duplex": {
        "mode": mode(DuplexMode),
        "min_speech_ms": whole(0, 5000),
        "gate_dbfs": number(-90, 0),
    },
    "audio": {"input_device": name_or_index(), "output_device": name_or_index()},
    "ui": {
        "theme": one_of(*THEMES),
        "kiosk_idle_s": number(5, 86400),
        "kiosk_welcome": text(),
        "kiosk_pin": text(),
    },
    "cloud": {
        "model": text(nonempty=True),
        "voice": text(nonempty=True),
        "speed": number(0.25, 1.5),  # the Realtime API's range
        "turn_detection": one_of(*TURN_DETECTION),
        "vad_threshold": number(0, 1),
        "prefix_padding_ms": whole(0, 5000),
        "silence_duration_ms": whole(0, 10000),
        "eagerness": one_of("low", "medium", "high", "auto"),
        "transcription_model": text(nonempty=True),
        "noise_reduction": one_of("near_field", "far_field", ""),
        "reconnect_attempts": whole(0, 100),
        "history_items": whole(0, 1000),
    },
}
"""Every key of every section; bounds keep a value where its consumer works, not just where
it does not crash."""


def checked(section: str, key: str, value: Any, fix: str) -> Any:
    """`value` as the setting holds it, or a SettingError naming the key, the value and what
    is allowed, with `fix` (where to change it) as the hint."""
    rule = SCHEMA[section][key]
    try:
        return rule.convert(value)
    except ValueError:
        if rule.what:
            fix = f"{fix} Allowed: {', '.join(rule.choices)}."
        raise SettingError(f"The setting [{section}] {key} = {shown(value)} is not allowed: "
                           f"it must be {rule.allowed()}.", fix) from None


def shown(value: Any) -> str:
    """`value` as TOML spells it, cut short: a message quotes what the user wrote."""
    if isinstance(value, bool):
        spelt = str(value).lower()
    elif isinstance(value, str):
        spelt = json.dumps(str(value), ensure_ascii=False)
    else:
        spelt = repr(value)
    return spelt if len(spelt) <= _SHOWN else f"{spelt[:_SHOWN - 1]}…"


def _number(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
