"""Settings: defaults from resources/, the user's TOML on top, command-line flags on top of that."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from platformdirs import user_config_dir

from engines.errors import ParleyError

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
Config = dict[str, dict[str, Any]]


def user_config_path() -> Path:
    """PARLEY_CONFIG wins, so tests and kiosks can point at their own file."""
    env = os.environ.get("PARLEY_CONFIG")
    return Path(env) if env else Path(user_config_dir("parley")) / "config.toml"


def _read(path: Path) -> Config:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ParleyError(f"The settings file {path} is not valid TOML: {err}",
                          "Fix or delete that file; Parley then uses its defaults.") from err


def load_config(overrides: Config | None = None) -> Config:
    config = _read(RESOURCES / "parley.toml")
    layers = [_read(p) for p in [user_config_path()] if p.is_file()] + [overrides or {}]
    for layer in layers:
        for section, values in layer.items():
            if section not in config or not isinstance(values, dict):
                raise ParleyError(f"Unknown settings section [{section}].",
                                  f"Known sections: {', '.join(sorted(config))}.")
            config[section].update({k: v for k, v in values.items() if v is not None})
    return config


def save_user_settings(changes: Config) -> None:
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
