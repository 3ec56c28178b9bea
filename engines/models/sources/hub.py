"""hf:// sources: a file in a Hugging Face model repository, through huggingface_hub."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from engines.errors import ModelError
from engines.models.catalog import HubSource
from engines.models.sources import DownloadCancelled, Update


class _Stop(Exception):
    """Raised from huggingface_hub's progress hook: the one place a hub download can stop."""


def _hub_bar(update: Update, cancel: threading.Event | None) -> type:
    """A tqdm stand-in class, so hub progress reaches `update` and cancel can stop it."""
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


def fetch(
    src: HubSource,
    staging: Path,
    part: Path,
    update: Update,
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
