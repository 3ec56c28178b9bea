"""The model switcher's side of the controller: the catalog as rows, switching a loaded
engine while the conversation goes on, and downloads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.conversation.events import (
    AgentEvent,
    ErrorOccurred,
    ModelChanged,
    ModelFailed,
    ModelLoading,
)
from app.conversation.session import Session, make_vad
from app.settings import Changes, Settings
from engines.errors import ParleyError
from engines.model_ref import KINDS, Kind, ModelRef
from engines.models import DownloadCancelled, info, load_catalog, own_models, pull, resolve

Progress = Callable[[int, int | None], None]


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
        active = (self.session.models[kind].name if self.session
                  else self._settings().model(kind))
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
        if self.session and active not in {r.name for r in rows}:
            ref = self.session.models[kind]
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
        self.session.models[kind] = ref
        self._choose({"models": {kind: spec}})
        stats = self.session.engines.stats.get(kind) if kind != "vad" else None
        self._publish(ModelChanged(kind, ref.name, stats.load_seconds if stats else 0.0))
        return True

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
        loop = asyncio.get_running_loop()

        def report(done: int, total: int | None) -> None:
            loop.call_soon_threadsafe(progress, done, total)

        try:
            await asyncio.to_thread(pull, name, report, cancel)
        except DownloadCancelled:
            return False  # the user asked for it: not an error
        except ParleyError as err:
            self._publish(ErrorOccurred(err.message, err.hint))
            return False
        return True
