"""The model switcher's side of the controller: the catalog as rows, switching a loaded
engine while the conversation goes on, downloads and models archives, and what the engines
run without."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from app.conversation.events import (
    AgentEvent,
    ErrorOccurred,
    ModelChanged,
    ModelFailed,
    ModelLoading,
    ModelsMissing,
)
from app.conversation.missing import WITHOUT, MissingModel, not_installed, without
from app.conversation.session import Session, make_vad
from app.settings import Changes, Settings
from engines.errors import ParleyError
from engines.model_ref import KINDS, Kind, ModelRef
from engines.models import DownloadCancelled, info, load_catalog, own_models, pull, resolve

Progress = Callable[[int, int | None], None]
T = TypeVar("T")


def _on_loop(progress: Progress) -> Progress:
    """Progress reported on a worker thread, delivered on the running event loop."""
    loop = asyncio.get_running_loop()

    def report(done: int, total: int | None) -> None:
        loop.call_soon_threadsafe(progress, done, total)

    return report


@dataclass(frozen=True)
class ModelRow:
    """One line of the model switcher."""

    name: str
    kind: str
    format: str
    size: int | None
    installed: bool
    license: str
    description: str
    active: bool
    default: bool


class Models:
    def __init__(self, settings: Callable[[], Settings],
                 publish: Callable[[AgentEvent], None],
                 choose: Callable[[Changes], None]) -> None:
        self._settings = settings
        self.session: Session | None = None
        """Set once the engines run; before that a choice is only checked and remembered."""
        self._publish = publish
        self._choose = choose

    def active(self) -> dict[Kind, ModelRef]:
        return dict(self.session.models) if self.session else {}

    def publish_loaded(self) -> None:
        """Tell the window which models the engines loaded, and how fast."""
        assert self.session is not None
        for kind, ref in self.session.models.items():
            stats = self.session.engines.stats.get(kind)
            self._publish(ModelChanged(kind, ref.name, stats.load_seconds if stats else 0.0))

    def rows(self, kind: Kind) -> list[ModelRow]:
        loaded = self.session.models.get(kind) if self.session else None
        active: str | None = self._settings().model(kind)  # before a start: the one chosen
        if self.session is not None:  # with no `kind` model loaded none is in use: any can be
            active = loaded.name if loaded else None
        rows = []
        for entry in load_catalog().entries(kind):
            details = info(entry.name)
            rows.append(ModelRow(entry.name, kind, entry.format,
                                 entry.size or entry.approx_size,
                                 bool(details.get("installed")), entry.license,
                                 entry.description, entry.name == active,
                                 bool(details.get("default"))))
        for ref in own_models(kind):
            rows.append(ModelRow(ref.name, kind, ref.format, ref.path.stat().st_size, True, "",
                                 f"Your own model: {ref.path}", ref.name == active, False))
        if loaded is not None and active not in {r.name for r in rows}:
            ref = loaded
            size = ref.path.stat().st_size if ref.path.is_file() else None
            rows.append(ModelRow(ref.name, kind, ref.format, size, True, "", str(ref.path),
                                 True, False))
        return rows

    async def switch(self, kind: Kind, spec: str) -> bool:
        """Load `spec` in place of the current `kind` model; on failure the old one stays.

        Before a successful start (a model was missing) the choice is only checked and
        remembered: the next start loads it."""
        self._publish(ModelLoading(kind, spec))
        try:
            ref = resolve(spec, kind)
            if self.session is None:
                self._choose({"models": {kind: spec}})
                self._publish(ModelChanged(kind, ref.name, 0.0))
                return True
            if kind == "vad":
                make_vad(ref, self._settings())  # fails here, not in the middle of listening
            else:
                await self.session.engines.load(ref, self._settings().engine_options(kind))
        except ParleyError as err:
            self._publish(ModelFailed(kind, spec, err.message, err.hint))
            return False
        was_missing = kind not in self.session.models
        self.session.models[kind] = ref
        self._choose({"models": {kind: spec}})
        stats = self.session.engines.stats.get(kind) if kind != "vad" else None
        self._publish(ModelChanged(kind, ref.name, stats.load_seconds if stats else 0.0))
        if was_missing:
            self.publish_missing()
        return True

    def not_loaded(self) -> list[Kind]:
        """The kinds the running engines have no model for (a first run's "Not now")."""
        return [k for k in KINDS if self.session is not None and k not in self.session.models]

    def publish_missing(self) -> None:
        """Tell the window what runs without a model, and so what does not work."""
        kinds = self.not_loaded()
        self._publish(ModelsMissing(tuple(kinds), without(kinds)))

    def can_hear(self) -> bool:
        """Speech input needs a voice detector, speech recognition and a model to answer."""
        return not {"vad", "stt", "llm"} & set(self.not_loaded())

    def unanswered(self) -> ErrorOccurred | None:
        """Why a typed message cannot be answered locally, if it cannot."""
        if "llm" not in self.not_loaded():
            return None
        return ErrorOccurred(WITHOUT["llm"], "Install one in Tools → Models… (Download), then "
                                             "type your message again.")

    def to_offer(self) -> list[MissingModel]:
        """The chosen catalog models not on this machine: what the first-run offer lists."""
        return not_installed(self._settings())

    def missing(self) -> list[Kind]:
        """The kinds whose chosen model cannot be found: what a failed start needs fixed."""
        missing: list[Kind] = []
        for kind in KINDS:
            try:
                resolve(self._settings().model(kind), kind)
            except ParleyError:
                missing.append(kind)
        return missing

    async def pull(self, name: str, progress: Progress, cancel: threading.Event) -> bool:
        """Download in a thread; progress is delivered on the event loop."""
        report = _on_loop(progress)
        return await self._in_thread(lambda: pull(name, report, cancel)) is not None

    async def import_archive(self, path: Path, progress: Progress, cancel: threading.Event
                             ) -> list[str] | None:
        """Install the models in a models archive (`make models-archive`), in a thread;
        the names it installed, or None when it failed (said) or was cancelled."""
        from engines.models.archive import import_archive  # tarfile only when asked

        report = _on_loop(progress)
        return await self._in_thread(lambda: import_archive(path, report, cancel))

    async def _in_thread(self, work: Callable[[], T]) -> T | None:
        """A long install off the event loop; a failure is published, a cancel is not."""
        try:
            return await asyncio.to_thread(work)
        except DownloadCancelled:
            return None  # the user asked for it: not an error
        except ParleyError as err:
            self._publish(ErrorOccurred(err.message, err.hint))
            return None
