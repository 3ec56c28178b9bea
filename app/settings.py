"""Settings: defaults from resources/, the user's TOML on top, command-line flags on top of that.

Read once into frozen dataclasses, one per TOML section. Each layer is checked against
`app.settings_schema` as it is laid on, so a misspelt key or a wrong value is refused with
the key, the value, what is allowed and where to fix it (this file, that flag), not deep in
an engine. A change (from the window) is a `Changes` mapping, section → key → value:
`Settings.updated` checks it the same way and `reloads` says what has to start again for it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_config_dir

from app.cloud.settings import CloudSettings
from app.settings_schema import SCHEMA, checked, shown
from audio.bargein import DuplexSettings
from engines.errors import ParleyError
from engines.model_ref import KINDS, Kind
from engines.models import for_this_machine
from engines.rkllm import boards

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
_log = logging.getLogger(__name__)
Changes = dict[str, dict[str, Any]]
"""Section → key → new value, as the settings file and the window's dialogs spell them."""


@dataclasses.dataclass(frozen=True)
class ModelChoices:
    """A catalog name, a path or a URL per kind (`parley models list`)."""

    stt: str
    llm: str
    tts: str
    vad: str


@dataclasses.dataclass(frozen=True)
class SttSettings:
    language: str
    cpu_threads: int
    compute_type: str | None = None
    beam_size: int | None = None
    window_s: float | None = None
    ask_again_below: float | None = None
    """Words heard less surely than this (mean log-probability) are asked for again."""


@dataclasses.dataclass(frozen=True)
class LlmSettings:
    n_ctx: int
    n_threads: int
    max_tokens: int
    temperature: float
    system_prompt: str
    n_threads_batch: int | None = None
    seed: int | None = None
    prompt_cache: bool = True
    cpu_mask: int | None = None
    """RKLLM: which CPU cores the runtime may use (a board profile sets it)."""
    n_batch: int | None = None
    """RKLLM: sequences the runtime runs at once."""
    embed_flash: bool | None = None
    """RKLLM: read word embeddings from storage, not RAM."""
    chat_template: str | None = None
    """RKLLM: "auto" (unset: from the file name), "none", or a family (engines.rkllm.chat)."""
    lora: str | None = None
    """RKLLM: a LoRA adapter converted for the model."""
    lora_scale: float | None = None


@dataclasses.dataclass(frozen=True)
class TtsSettings:
    length_scale: float
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    speaker: str | None = None
    threads: int | None = None


@dataclasses.dataclass(frozen=True)
class VadSettings:
    aggressiveness: int
    threshold: float
    pre_roll_ms: int
    hangover_ms: int
    min_speech_ms: int
    early_stt_ms: int
    """Silence after which what was said so far is transcribed, before the turn is over."""
    read_ahead_ms: int
    """How often, while the user speaks, their words so far are transcribed for the LLM."""


@dataclasses.dataclass(frozen=True)
class AudioSettings:
    input_device: str
    """"" = the system default; a name fragment or an index."""
    output_device: str


@dataclasses.dataclass(frozen=True)
class UiSettings:
    theme: str
    kiosk_idle_s: float = 120.0
    """Kiosk mode: after this long with no turn, a fresh conversation and the welcome."""
    kiosk_welcome: str = "Hello! Tap and talk to me."
    kiosk_pin: str = ""
    """Kiosk mode: the settings PIN as a salted scrypt hash (`parley kiosk set-pin`);
    "" locks the settings entirely."""


_AGENT_KEYS = {"max_tokens", "temperature", "system_prompt", "ask_again_below"}
"""Keys the Agent uses itself; the rest of an engine's section goes to the engine."""

Reload = Literal["stt", "llm", "tts", "vad", "cloud"]
RELOADS: dict[str, set[Reload]] = {
    "stt": {"stt"},
    "stt.language": {"stt", "cloud"},
    "tts": {"tts"},
    "llm.n_ctx": {"llm"},
    "llm.n_threads": {"llm"},
    "llm.n_threads_batch": {"llm"},
    "llm.seed": {"llm"},
    "llm.prompt_cache": {"llm"},
    "llm.cpu_mask": {"llm"},
    "llm.n_batch": {"llm"},
    "llm.embed_flash": {"llm"},
    "llm.chat_template": {"llm"},
    "llm.lora": {"llm"},
    "llm.lora_scale": {"llm"},
    "llm.system_prompt": {"cloud"},
    "vad": {"vad"},
    "duplex": {"cloud"},
    "cloud": {"cloud"},
}
"""What starts again when a setting changes ("section" for all its keys, "section.key" for
one): an engine reloads, the endpointers get the new VAD, a cloud session starts afresh
(a session's settings are fixed once it has begun). The rest apply at the next turn."""


@dataclasses.dataclass(frozen=True)
class Settings:
    models: ModelChoices
    stt: SttSettings
    llm: LlmSettings
    tts: TtsSettings
    vad: VadSettings
    duplex: DuplexSettings
    audio: AudioSettings
    ui: UiSettings
    cloud: CloudSettings
    """With the persona and spoken language of [llm] and [stt], which the session uses too."""

    def model(self, kind: Kind) -> str:
        return str(getattr(self.models, kind))

    def value(self, section: str, key: str) -> Any:
        return getattr(getattr(self, section), key)

    def engine_options(self, kind: Kind) -> dict[str, Any]:
        """The engine's section, minus what the Agent uses and what is left unset."""
        section = dataclasses.asdict(getattr(self, kind))
        return {k: v for k, v in section.items() if k not in _AGENT_KEYS and v is not None}

    def updated(self, changes: Changes) -> Settings:
        """These settings with `changes` applied, checked as the settings file is."""
        return _build(_merge(_as_tables(self), changes, _FROM_WINDOW))


def reloads(changes: Changes) -> set[Reload]:
    found: set[Reload] = set()
    for section, values in changes.items():
        found |= RELOADS.get(section, set())
        for key in values:
            found |= RELOADS.get(f"{section}.{key}", set())
    return found


def user_config_path() -> Path:
    """PARLEY_CONFIG wins, so tests and kiosks can point at their own file."""
    env = os.environ.get("PARLEY_CONFIG")
    return Path(env) if env else Path(user_config_dir("parley")) / "config.toml"


def defaults() -> dict[str, dict[str, Any]]:
    """resources/parley.toml: every section and key Parley knows, its default models as
    this machine uses them (the low-memory choice on a small one), so a model a user
    names in their settings or on the command line is always the one they get; on a
    Rockchip board, its profile's [llm] values (the user's file still wins)."""
    tables = _read(RESOURCES / "parley.toml")
    tables["models"] = {kind: for_this_machine(name, kind)
                        for kind, name in tables["models"].items() if kind in KINDS}
    board = boards.detect()
    if board is not None:
        tables["llm"].update(board.llm_defaults())
        _log.info("%s board: the LLM settings start from its profile %s", board.soc,
                  board.llm_defaults())
    return tables


def load_settings(overrides: Changes | None = None) -> Settings:
    tables = _merge({}, defaults(), _FROM_DEFAULTS)
    path = user_config_path()
    if path.is_file():
        tables = _merge(tables, _read(path),
                        f"Fix it in {path}, or delete the line to use the default.")
    flags = {s: {k: v for k, v in values.items() if v is not None}
             for s, values in (overrides or {}).items()}
    return _build(_merge(tables, flags, _FROM_FLAGS))


def save_user_settings(changes: Changes) -> None:
    """Merge `changes` into the user's settings file, so choices made in the window stick."""
    import tomli_w

    path = user_config_path()
    current = _read(path) if path.is_file() else {}
    for section, values in changes.items():
        current.setdefault(section, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(tomli_w.dumps(current).encode())
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any]:
    """The file's tables, or why it cannot be read, with the line where TOML says."""
    fix = "Fix or delete that file; Parley then uses its defaults."
    try:
        data = path.read_bytes()
        return tomllib.loads(data.decode("utf-8"))
    except OSError as err:
        raise ParleyError(f"The settings file {path} cannot be read: {err.strerror}.",
                          "Check that it is a file you may read.") from None
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ParleyError(f"The settings file {path} is not UTF-8 text (byte "
                          f"0x{data[err.start]:02x} on line {line}).",
                          f"Save it as UTF-8, or fix that line. {fix}") from None
    except tomllib.TOMLDecodeError as err:
        raise ParleyError(f"The settings file {path} is not valid TOML: {err}.", fix) from None
    except RecursionError:
        raise ParleyError(f"The settings file {path} is not valid TOML: its arrays or tables "
                          "are nested too deeply.", fix) from None


_SECTIONS = tuple(f.name for f in dataclasses.fields(Settings))
_DERIVED = {"cloud": {"instructions", "language"}}
"""Fields filled from other sections, not settable in their own."""
_FROM_DEFAULTS = (f"Parley's defaults ({RESOURCES / 'parley.toml'}, or this board's profile) "
                  "should never do this: please report it.")
_FROM_FLAGS = "Fix the command-line flag that sets it (`parley --help`)."
_FROM_WINDOW = "Choose an allowed value and apply it again."


def _merge(tables: dict[str, dict[str, Any]], layer: dict[str, Any], fix: str
           ) -> dict[str, dict[str, Any]]:
    """`layer` on top of `tables`, each of its keys and values checked; `fix` says where to
    change a wrong one."""
    merged = {section: dict(values) for section, values in tables.items()}
    for section, values in layer.items():
        if section not in SCHEMA:
            raise ParleyError(f"Unknown settings section [{section}].",
                              f"Known sections: {', '.join(sorted(SCHEMA))}. {fix}")
        if not isinstance(values, dict):
            raise ParleyError(f"The settings section {section} = {shown(values)} is not allowed: "
                              f"it must be a table, a [{section}] line with keys under it.", fix)
        unknown = sorted(set(values) - set(SCHEMA[section]))
        if unknown:
            raise ParleyError(f"Unknown setting {unknown[0]!r} in [{section}].",
                              f"Known settings of [{section}]: "
                              f"{', '.join(sorted(SCHEMA[section]))}. {fix}")
        merged.setdefault(section, {}).update(
            {key: checked(section, key, value, fix) for key, value in values.items()})
    return merged


def _as_tables(settings: Settings) -> dict[str, dict[str, Any]]:
    tables = {}
    for name in _SECTIONS:
        values = dataclasses.asdict(getattr(settings, name))
        tables[name] = {k: v for k, v in values.items() if k not in _DERIVED.get(name, ())}
    return tables


def _build(tables: dict[str, dict[str, Any]]) -> Settings:
    """The checked tables as dataclasses, one per section."""
    derived = {"cloud": {"instructions": tables["llm"]["system_prompt"],
                         "language": tables["stt"]["language"]}}
    hints = typing.get_type_hints(Settings)
    return Settings(**{name: hints[name](**tables.get(name, {}), **derived.get(name, {}))
                       for name in _SECTIONS})
