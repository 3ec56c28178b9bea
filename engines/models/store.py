"""The models folder: where it is, where a bare URL is kept, and what was verified there.

Resolving and installing both read it, so it sits below both.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

from engines.errors import ModelError
from engines.models.catalog import parse_hf

MARKER = ".parley-verified.json"
"""Per folder: size and sha256 of each file verified at install, so starting up can skip hashing."""

REMOTE = ("https://", "http://", "hf://")
"""How a spec that names a download, rather than a path or a catalog entry, begins."""


def special_kind(path: Path) -> str | None:
    """"a device", "a named pipe" or "a socket" when `path` is one, else None: reading one
    blocks or never ends, so a reader names it and refuses it instead of opening it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    return "a socket" if stat.S_ISSOCK(mode) else None


def models_dir() -> Path:
    """Where models live: $PARLEY_MODELS_DIR, else the platform's data folder."""
    env = os.environ.get("PARLEY_MODELS_DIR")
    return Path(env).expanduser() if env else Path(user_data_dir("parley")) / "models"


def download_path(url: str) -> Path:
    """Where a bare URL is stored: the folder mirrors the URL, so two URLs never collide."""
    if url.startswith("hf://"):
        src = parse_hf(url)
        org, repo = src.repo_id.split("/")
        revision = f"@{src.revision}" if src.revision else ""
        parts = ["hf", org, repo + revision, *src.path.split("/")]
    else:
        split = urllib.parse.urlsplit(url)
        host = (split.hostname or "") + (f"_{split.port}" if split.port else "")
        parts = ["url", host, *urllib.parse.unquote(split.path).split("/")]
    parts = [p for p in parts if p]
    if len(parts) < 3 or any(p in (".", "..") or "\\" in p for p in parts):
        raise ModelError(
            f"'{url}' does not name a file Parley can store.",
            "Give the URL of a model file, e.g. https://host/path/model.gguf.",
        )
    return models_dir().joinpath(*parts)


def read_marker(folder: Path) -> dict[str, dict[str, Any]]:
    """The folder's record of verified files; empty when missing or unreadable (hash again)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(folder: Path, marker: dict[str, dict[str, Any]]) -> None:
    """Replace the record in one rename, so a crash never leaves half a marker."""
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / MARKER)
