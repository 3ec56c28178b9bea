"""Models archives: installed models carried in one file to a machine without a network.

An archive is a plain tar (the models are compressed already) of catalog models as
`<name>/<file>`, with a manifest of each file's size and sha256. Importing trusts the archive
for nothing the catalog says: every file must be one of a catalog entry's, of the catalog's
size and checksum (the manifest's only where the catalog publishes none), and it is
installed the way a pull installs, with the verified marker, all of it or none of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engines.errors import ModelError
from engines.models.catalog import Catalog, CatalogEntry, load_catalog
from engines.models.install import Progress, check_free_space
from engines.models.resolve import resolve
from engines.models.sources import DownloadCancelled
from engines.models.store import models_dir, read_marker, write_marker

MANIFEST = "parley-models.json"
"""The archive's first member: what it holds, for files whose checksum the catalog lacks."""

_FORMAT = 1
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REFUSED = "Import only archives that `parley models export` wrote, copied whole."


@dataclass(frozen=True)
class _Item:
    """One file of a model in an archive, and what it must be."""

    model: str
    name: str
    size: int
    sha256: str

    @property
    def member(self) -> str:
        return f"{self.model}/{self.name}"


def export_archive(
    names: list[str], dest: Path, update: Progress, catalog: Catalog | None = None
) -> Path:
    """Write the installed models `names` to the tar `dest`, each file checked as it is read.

    The archive appears under its name only once complete (tmp + rename).
    """
    catalog = catalog or load_catalog()
    items = [i for name in dict.fromkeys(names) for i in _installed(catalog.get(name), catalog)]
    if not items:
        raise ModelError("There is nothing to export.", "Name the models to put in the archive.")
    manifest = json.dumps({"format": _FORMAT, "models": _listing(items)}, indent=1).encode()
    total, done = sum(i.size for i in items), 0

    def counted(n: int) -> None:
        nonlocal done
        done += n
        update(done, total)

    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_header(MANIFEST, len(manifest)), io.BytesIO(manifest))
            for item in items:
                with (models_dir() / item.model / item.name).open("rb") as fh:
                    reader = _Reader(fh, counted, None, "")
                    tar.addfile(_header(item.member, item.size), reader)
                if reader.hexdigest() != item.sha256:
                    raise ModelError(
                        f"The installed model {item.model} is damaged: {item.name} is not the "
                        "file that was verified when it was installed. Nothing was exported.",
                        f"Run `parley models remove {item.model}`, then `parley models pull "
                        f"{item.model}`, and export again.",
                    )
        os.replace(tmp, dest)
    except OSError as err:
        raise ModelError(
            f"Could not write the archive {dest}: {err.strerror or err}.",
            "Check there is free disk space there and that the folder is writable.",
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def import_archive(
    path: Path,
    update: Progress,
    cancel: threading.Event | None = None,
    catalog: Catalog | None = None,
) -> list[str]:
    """Install the models of the archive `path` that are not installed and verified already;
    returns their names. Anything wrong in the archive, or a cancel, installs nothing."""
    catalog = catalog or load_catalog()
    if not path.is_file():
        raise ModelError(f"There is no archive at {path}.", "Check the path of the archive.")
    try:
        with tarfile.open(path, "r:") as tar:
            return _import(tar, path, catalog, update, cancel)
    except tarfile.TarError as err:
        raise _damaged(path, err) from err
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise ModelError(
            f"Could not import {path}: {err.strerror or err}{where}.",
            f"Check there is free disk space and that {models_dir()} is writable "
            "(or point PARLEY_MODELS_DIR at another folder).",
        ) from err


def _installed(entry: CatalogEntry, catalog: Catalog) -> list[_Item]:
    """The files of an installed model, with the size and sha256 they were verified at."""
    if entry.builtin:
        raise ModelError(
            f"{entry.name} is built into Parley: it has no files to export.",
            "Leave it out: every Parley has it.",
        )
    folder = models_dir() / entry.name
    missing = [f.name for f in entry.files if not (folder / f.name).is_file()]
    if missing:
        raise ModelError(
            f"The model {entry.name} is not installed in {folder} (missing {', '.join(missing)}).",
            f"Run `parley models pull {entry.name}` first.",
        )
    resolve(entry.name, catalog=catalog)  # the cheap checks: sizes, recorded checksums
    marker = read_marker(folder)
    items = []
    for f in entry.files:
        sha256 = f.sha256 or marker.get(f.name, {}).get("sha256")
        if sha256 is None:
            raise ModelError(
                f"{folder / f.name} was never verified: neither the catalog nor the models "
                "folder records its sha256.",
                f"Run `parley models pull {entry.name}`: it checks the installed files.",
            )
        items.append(_Item(entry.name, f.name, (folder / f.name).stat().st_size, str(sha256)))
    return items


def _listing(items: list[_Item]) -> list[dict[str, Any]]:
    """The manifest's models: each with its files' names, sizes and checksums."""
    models: dict[str, list[dict[str, Any]]] = {}
    for i in items:
        models.setdefault(i.model, []).append({"name": i.name, "size": i.size, "sha256": i.sha256})
    return [{"name": name, "files": files} for name, files in models.items()]


def _header(name: str, size: int) -> tarfile.TarInfo:
    """A plain file's header, owned by nobody: the archive says nothing of this machine."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info


class _Reader:
    """Hashes and counts what is read through it, so each file is read once either way;
    checks for cancel between reads."""

    def __init__(
        self,
        source: IO[bytes],
        counted: Callable[[int], None],
        cancel: threading.Event | None,
        archive: str,
    ) -> None:
        self.source, self.counted, self.cancel, self.archive = source, counted, cancel, archive
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(
                f"The import of {self.archive} was cancelled: nothing was installed.",
                "Run the import again to install its models.",
            )
        chunk = self.source.read(size)
        if chunk:
            self.hash.update(chunk)
            self.counted(len(chunk))
        return chunk

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def _import(
    tar: tarfile.TarFile,
    path: Path,
    catalog: Catalog,
    update: Progress,
    cancel: threading.Event | None,
) -> list[str]:
    """Check the whole archive, copy what is missing aside, then rename it all into place."""
    members = _members(tar, path)
    models = _expected(_manifest(tar, members, path), catalog, members, path)
    todo = {name: items for name, items in models.items() if not _verified(name, items)}
    total, done = sum(i.size for items in todo.values() for i in items), 0
    if not todo:
        return []

    def counted(n: int) -> None:
        nonlocal done
        done += n
        update(done, total)

    check_free_space(total)
    models_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".importing-", dir=models_dir()) as scratch:
        for items in todo.values():
            for item in items:
                staged = Path(scratch) / item.member
                staged.parent.mkdir(exist_ok=True)
                source = tar.extractfile(members[item.member])
                assert source is not None  # a regular file, checked by _members
                reader = _Reader(source, counted, cancel, path.name)
                with source, staged.open("wb") as out:
                    while chunk := reader.read(_CHUNK):
                        out.write(chunk)
                if reader.hexdigest() != item.sha256:
                    raise ModelError(
                        f"The archive {path} holds a damaged or altered {item.member}: its "
                        f"sha256 checksum is {reader.hexdigest()}, it should be {item.sha256}. "
                        "Nothing was installed.",
                        "Copy the archive again, or export it again on a machine where the "
                        "model is installed.",
                    )
        for name, items in todo.items():
            _place(Path(scratch) / name, models_dir() / name, items)
    return list(todo)


def _members(tar: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """The archive's members by name: plain files only, each once. (tarfile itself finds
    an archive cut short: it cannot step over a member's end.)"""
    members: dict[str, tarfile.TarInfo] = {}
    for m in tar.getmembers():
        if not m.isreg():
            what = "a link" if m.issym() or m.islnk() else "a folder" if m.isdir() else "special"
            raise _refuse(path, f"'{m.name}' is {what}, not a plain file")
        if m.name in members:
            raise _refuse(path, f"it holds '{m.name}' twice")
        members[m.name] = m
    return members


def _manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: Path) -> Any:
    """The archive's manifest, parsed (and checked by `_expected`)."""
    info = members.get(MANIFEST)
    if info is None:
        raise _refuse(path, f"it has no {MANIFEST}")
    if info.size > _CHUNK:
        raise _refuse(path, f"its {MANIFEST} is too big to be one Parley wrote")
    source = tar.extractfile(info)
    assert source is not None  # a regular file, checked by _members
    try:
        return json.loads(source.read())
    except ValueError as err:
        raise _refuse(path, f"its {MANIFEST} is not JSON") from err


def _expected(
    manifest: Any, catalog: Catalog, members: dict[str, tarfile.TarInfo], path: Path
) -> dict[str, list[_Item]]:
    """Each model the manifest lists, with what its files must be; the catalog has the last
    word, and every member must be a file of one of them."""
    try:
        if manifest["format"] != _FORMAT:
            raise ValueError(f"format {manifest['format']!r}")
        listed = {str(m["name"]): {str(f["name"]): dict(f) for f in m["files"]}
                  for m in manifest["models"]}  # fmt: skip
    except (ValueError, KeyError, TypeError) as err:
        raise _refuse(path, f"its {MANIFEST} is not one Parley wrote") from err
    models: dict[str, list[_Item]] = {}
    for name, files in listed.items():
        if name not in catalog or catalog.get(name).builtin:
            raise _refuse(path, f"it holds '{name}', which is not a model of Parley's catalog")
        entry = catalog.get(name)
        if set(files) != {f.name for f in entry.files}:
            raise _refuse(path, f"its files of {name} are not the ones the catalog names")
        models[name] = []
        for f in entry.files:
            size, sha256 = files[f.name].get("size"), files[f.name].get("sha256")
            agrees = f.size in (None, size) and f.sha256 in (None, sha256)
            if not agrees or not isinstance(size, int) or not _SHA256.fullmatch(str(sha256)):
                raise _refuse(path, f"its {name}/{f.name} is not the one the catalog names")
            item = _Item(name, f.name, size, str(sha256))
            if item.member not in members or members[item.member].size != item.size:
                raise _refuse(path, f"{item.member} is missing or not {item.size:,} bytes")
            models[name].append(item)
    wanted = {i.member for items in models.values() for i in items} | {MANIFEST}
    for member in members:
        if member not in wanted:
            raise _refuse(path, f"it holds '{member}', which is not a file of a model it lists")
    return models


def _verified(name: str, items: list[_Item]) -> bool:
    """True when the model is installed with these very files, as its marker vouches."""
    folder = models_dir() / name
    marker = read_marker(folder)
    return all(
        (folder / i.name).is_file()
        and (folder / i.name).stat().st_size == i.size
        and marker.get(i.name, {}).get("sha256") == i.sha256
        for i in items
    )


def _place(staged: Path, folder: Path, items: list[_Item]) -> None:
    """Rename checked files into the model's folder and record them, as a pull does."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = read_marker(folder)
    for i in items:
        os.replace(staged / i.name, folder / i.name)
        marker[i.name] = {"size": i.size, "sha256": i.sha256}
        write_marker(folder, marker)


def _refuse(path: Path, why: str) -> ModelError:
    """The archive is not one Parley wrote, or was tampered with: nothing is installed."""
    return ModelError(f"Parley cannot import {path}: {why}. Nothing was installed.", _REFUSED)


def _damaged(path: Path, err: tarfile.TarError) -> ModelError:
    """Not a tar file, or one damaged past reading."""
    return ModelError(
        f"{path} is damaged, cut short or not a models archive ({err}). Nothing was "
        "installed.",
        "Copy the archive again whole, or write it anew with `parley models export`.",
    )
