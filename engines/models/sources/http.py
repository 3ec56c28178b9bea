"""https:// downloads, resumed with a Range request after a break (plain http:// only from
this computer: `catalog.check_source` refuses any other)."""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from pathlib import Path

from engines.errors import ModelError
from engines.models.sources import RETRY, Update, stop_if_cancelled

_CHUNK = 1 << 16


def fetch(
    url: str,
    part: Path,
    update: Update,
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
            return fetch(url, part, update, cancel, expected)
        raise ModelError(
            f"Downloading {url} failed: the server answered {err.code} {err.reason}.", RETRY
        ) from err
    except OSError as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise ModelError(f"Cannot download {url}: {reason}.", RETRY) from err
    with response, part.open("ab" if have else "wb") as out:
        if have and response.status != 206:  # the server ignored Range: start over
            out.truncate(0)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else expected
        while True:
            stop_if_cancelled(cancel, url)
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as err:
                raise ModelError(f"The download of {url} broke off ({err!r}).", RETRY) from err
            if not chunk:
                break
            out.write(chunk)
            have += len(chunk)
            update(have, total)
    if total is not None and have < total:
        raise ModelError(
            f"The download of {url} stopped early ({have:,} of {total:,} bytes).", RETRY
        )
