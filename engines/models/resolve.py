"""Finds models on disk and says plainly where it looked.

`resolve` never touches the network, so starting Parley never waits on a download; it
tries, in order: an explicit path or file:// URI, a catalog name installed in the models
folder, a Python package holding the model, an https:// or hf:// spec already downloaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from engines.errors import ModelError
from engines.model_ref import Kind, ModelRef
from engines.models.catalog import (
    FORMAT_KINDS,
    Catalog,
    CatalogEntry,
    CatalogFile,
    PypiSource,
    load_catalog,
    parse_pypi,
    suggestion,
)
from engines.models.store import REMOTE, download_path, models_dir, read_marker, special_kind

_MODEL_SUFFIXES = (".gguf", ".rkllm", ".onnx")
_A = {"stt": "an STT", "llm": "an LLM", "tts": "a TTS", "vad": "a VAD"}
_log = logging.getLogger(__name__)


class CorruptModelError(ModelError):
    """A model is installed but its files are damaged or not the catalog's version."""


def resolve(spec: str, kind: Kind | None = None, catalog: Catalog | None = None) -> ModelRef:
    """Find the model `spec` names on this machine, and check it is a `kind` model."""
    catalog = catalog or load_catalog()
    if spec.startswith(REMOTE):
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


def for_this_machine(
    name: str, kind: Kind, catalog: Catalog | None = None, memory: int | None = None
) -> str:
    """The model a setting naming `name` gets here: on a machine with little memory the
    catalog's low-memory stand-in replaces the written default (said in a log line, so the
    user knows why); any other name was chosen on purpose and is kept."""
    catalog = catalog or load_catalog()
    if name != catalog.defaults[kind]:
        return name
    choice = catalog.choice(kind, memory)
    if choice.reason:
        _log.warning("Using the %s model %s: %s.", kind.upper(), choice.name, choice.reason)
    return choice.name


def detect_format(path: Path) -> str:
    """The engine format of a model file or folder, judged from its name and neighbours."""
    special = special_kind(path)
    if special is not None:  # checked first: opening a named pipe to read its magic hangs
        raise ModelError(
            f"{path} is {special}, not a model file.",
            "Give the path of a model file (e.g. a .gguf) or of a faster-whisper folder.",
        )
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
    if suffix == ".rkllm":
        return "rkllm"  # the RKLLM runtime checks the file itself when it loads it
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
        "Use a .gguf file (LLM), a .rkllm file (LLM on a Rockchip NPU), a faster-whisper "
        "folder (STT), a Piper .onnx with its .onnx.json (TTS), or a Silero .onnx (VAD).",
    )


def reinstall_hint(ref: ModelRef, catalog: Catalog | None = None) -> str:
    """What to do about a model that would not load. The catalog's own is downloaded again
    (removed first: its sizes still match, so a plain pull would keep it); a file of the
    user's is theirs to check, and the catalog's default of its kind is the way out."""
    catalog = catalog or load_catalog()
    if ref.name in catalog and not _looks_like_path(ref.name):
        entry = catalog.get(ref.name)
        if ref.path in (_engine_path(entry, models_dir() / entry.name),
                        _from_packages(entry, [])):
            return (f"Download it again: `parley models remove {entry.name}`, then "
                    f"`parley models pull {entry.name}`.")
    default = catalog.default(ref.kind).name
    return (
        f"Check that {ref.path} is a whole, working {ref.kind.upper()} model (copy, download "
        f"or convert it again), or use the catalog's {default}: `parley models pull "
        f"{default}`, then `--{ref.kind} {default}` (or choose it in Tools → Models…)."
    )


def _ref_from_path(path: Path) -> ModelRef:
    """A ModelRef for a file or folder, named after it, its kind from its format."""
    fmt = detect_format(path)
    return ModelRef(path.name if path.is_dir() else path.stem, FORMAT_KINDS[fmt], fmt, path)


def own_models(kind: Kind | None = None) -> list[ModelRef]:
    """Model files the user put in the models folder themselves (an .rkllm they converted,
    a GGUF they chose), named by their file's stem; files Parley cannot tell are left out."""
    folder = models_dir()
    refs = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.is_file() and path.suffix.lower() in _MODEL_SUFFIXES:
            try:
                ref = _ref_from_path(path)
            except ModelError:
                continue
            if kind is None or ref.kind == kind:
                refs.append(ref)
    return refs


def _looks_like_path(spec: str) -> bool:
    """True when `spec` is meant as a path, even if it matches a catalog name."""
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
        if not _looks_like_path(spec):  # a model file in the models folder, by its stem
            candidates += [models_dir() / f"{spec}{suffix}" for suffix in _MODEL_SUFFIXES]
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
    """The local path of a file:// URI; one naming another host is refused."""
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ModelError(
            f"'{uri}' points at another machine ({parts.netloc}).",
            "Use a file:// URI of a file on this computer, e.g. file:///home/me/model.gguf.",
        )
    return Path(urllib.request.url2pathname(parts.path))


def _resolve_entry(entry: CatalogEntry, catalog: Catalog) -> ModelRef:
    """A catalog entry: built in, in the models folder, else in installed packages."""
    if entry.builtin:
        return ModelRef(entry.name, entry.kind, entry.format, Path())
    folder = models_dir() / entry.name
    missing = [f.name for f in entry.files if not (folder / f.name).is_file()]
    if not missing:
        _check_installed(entry, folder)
        return ModelRef(entry.name, entry.kind, entry.format, _engine_path(entry, folder),
                        entry.tuning)
    state = "not there" if len(missing) == len(entry.files) else f"missing {', '.join(missing)}"
    searched = [f"the models folder, {folder}: {state}"]
    in_package = _from_packages(entry, searched)
    if in_package is not None:
        return ModelRef(entry.name, entry.kind, entry.format, in_package, entry.tuning)
    fix = f"Run `parley models pull {entry.name}`"
    if catalog.default(entry.kind).name == entry.name:
        fix += " (or `make setup`, which installs every default model)"
    raise ModelError(
        f"The {entry.kind.upper()} model '{entry.name}' is not installed. "
        f"Searched:\n{_lines(searched)}",
        fix + ".",
    )


def _engine_path(entry: CatalogEntry, folder: Path) -> Path:
    """What the engine opens: the folder itself, or one file in it."""
    return folder if entry.path == "." else folder / entry.path


def _check_installed(entry: CatalogEntry, folder: Path) -> None:
    """Cheap checks only (sizes, GGUF magic): hashing every start would take seconds."""
    marker = read_marker(folder)
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
    """Every GGUF file starts with these four bytes: a cheap check for damage."""
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
    """The file in the installed package, if that exact version is installed."""
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
    """A bare URL already pulled, checked against the size recorded at install."""
    path = download_path(url)
    if not path.is_file():
        raise ModelError(
            f"'{url}' has not been downloaded. Searched:\n{_lines([f'{path}: not there'])}",
            f"Run `parley models pull {url}`.",
        )
    recorded = read_marker(path.parent).get(path.name, {}).get("size")
    if recorded is not None and path.stat().st_size != recorded:
        raise CorruptModelError(
            f"{path} is corrupt: {path.stat().st_size:,} bytes instead of {recorded:,}.",
            f"Run `parley models remove {url}`, then `parley models pull {url}`.",
        )
    return _ref_from_path(path)


def _lines(items: Iterable[str]) -> str:
    """The 'Searched:' list of an error, one place a line."""
    return "\n".join(f"  - {item}" for item in items)
