"""The first run: models are not inside the bundle, so the window offers the missing ones.

The offer lists each chosen model that is not installed, with its size, and installs them
with the same Controller calls the model switcher uses (a download in a thread, or a models
archive); "Not now" goes on without them. After it the engines start with what is there,
and `MissingNotice` says above the conversation what does not work for want of a model.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.control.controller import Controller
from app.conversation.events import AgentEvent, ErrorOccurred, ModelsMissing
from app.conversation.missing import MissingModel, human_size
from engines.model_ref import Kind
from engines.models import models_dir

ARCHIVES = "Models archives (*.tar);;All files (*)"
"""What "Install from a file…" offers: `make models-archive` writes a plain tar."""


class FirstRunDialog(QDialog):
    """Download (Enter), Install from a file…, or Not now (Esc); Esc during an install
    cancels it. Accepted once every listed model is installed."""

    def __init__(self, controller: Controller, missing: list[MissingModel],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.missing = missing
        self.installed: set[str] = set()
        self.done_bytes: dict[str, int] = {}
        self.sizes = {m.name: m.size for m in missing}
        self.cancel: threading.Event | None = None
        """Set while an install runs; setting it stops the install."""
        self.task: asyncio.Future[None] | None = None
        self.error: ErrorOccurred | None = None
        self.setWindowTitle("Models for Parley")
        self.setModal(True)
        controller.subscribe(self.on_event)

        intro = QLabel(f"Parley runs its models on this computer. {_these(len(missing))} not "
                       f"installed yet; they go into {models_dir()}.")
        intro.setWordWrap(True)
        grid = QGridLayout()
        self.bars: dict[str, QProgressBar] = {}
        self.states: dict[str, QLabel] = {}
        for row, model in enumerate(missing):
            grid.addWidget(QLabel(model.line()), row, 0)
            bar = self.bars[model.name] = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(False)
            bar.setAccessibleName(f"Progress of {model.name}")
            grid.addWidget(bar, row, 1)
            state = self.states[model.name] = QLabel("Not installed")
            grid.addWidget(state, row, 2)
        grid.setColumnStretch(1, 1)
        self.overall = QProgressBar()
        self.overall.setRange(0, 1000)
        self.overall.setTextVisible(False)
        self.overall.setAccessibleName("Overall progress")
        total = self._total()
        self.overall_label = QLabel(f"{human_size(total)} in all" if total else "")
        self.status = QLabel("Download them now, install them from a models archive (made by "
                             "`make models-archive`), or go on without them: Parley then does "
                             "what it can with the models it has.")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Install status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.download_button = QPushButton("&Download")
        self.download_button.setDefault(True)
        self.download_button.setToolTip("Download every model listed (Enter)")
        self.download_button.clicked.connect(self.download)
        self.file_button = QPushButton("&Install from a file…")
        self.file_button.setAutoDefault(False)
        self.file_button.setToolTip("Install the models from a models archive")
        self.file_button.clicked.connect(self._ask_archive)
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.setAutoDefault(False)
        self.cancel_button.clicked.connect(self.stop)
        self.later_button = QPushButton("&Not now")
        self.later_button.setAutoDefault(False)
        self.later_button.setToolTip("Start with the models there are (Esc)")
        self.later_button.clicked.connect(self.reject)

        buttons = QHBoxLayout()
        for button in (self.download_button, self.file_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.later_button)
        overall = QHBoxLayout()
        overall.addWidget(QLabel("In all"))
        overall.addWidget(self.overall, 1)
        overall.addWidget(self.overall_label)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(grid)
        layout.addLayout(overall)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._busy(False)

    # -- commands --------------------------------------------------------------------------
    def download(self) -> asyncio.Future[None] | None:
        """Pull each model not installed yet, one after the other; None if busy."""
        if self.cancel is not None:
            return None
        return self._run(self._download(), "Downloading…")

    def install_from(self, archive: str | Path) -> asyncio.Future[None] | None:
        """Install the models of a models archive; None if busy."""
        if self.cancel is not None:
            return None
        path = Path(archive).expanduser()
        return self._run(self._import(path), f"Installing from {path.name}…")

    def stop(self) -> None:
        """Cancel the install under way; what is installed stays."""
        if self.cancel is not None:
            self.cancel.set()
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping…")

    def reject(self) -> None:
        """Esc: stops an install first; otherwise "Not now"."""
        if self.cancel is not None:
            self.stop()
        else:
            super().reject()

    def done(self, result: int) -> None:
        """Closing (or the window closing) stops an install: nothing runs unseen."""
        if self.cancel is not None:
            self.cancel.set()
        self.controller.unsubscribe(self.on_event)
        super().done(result)

    def on_event(self, event: AgentEvent) -> None:
        """A failed install is published by the Controller: say it here too."""
        if isinstance(event, ErrorOccurred) and self.cancel is not None:
            self.error = event

    def _ask_archive(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a models archive", "", ARCHIVES)
        if path:
            self.install_from(path)

    # -- the installs ----------------------------------------------------------------------
    def _run(self, work: Coroutine[Any, Any, None], doing: str) -> asyncio.Future[None]:
        self.cancel, self.error = threading.Event(), None
        self._busy(True)
        self.status.setText(doing)
        task = self.task = asyncio.ensure_future(work)

        def finished(t: asyncio.Future[None]) -> None:
            stopped = self.cancel is not None and self.cancel.is_set()
            self.cancel = None
            if not t.cancelled() and t.exception() is not None:
                self.error = ErrorOccurred(f"Unexpected error: {t.exception()}")
            self._busy(False)
            if len(self.installed) == len(self.missing):
                self.accept()  # every model is there: the engines start
            elif stopped:
                self.status.setText("Stopped. What was installed stays; Download goes on "
                                    "from there.")
            else:
                error = self.error or ErrorOccurred("Not every model was installed.", "")
                self.status.setText(f"⚠ {error.message}\n{error.hint}".strip())

        task.add_done_callback(finished)
        return task

    async def _download(self) -> None:
        for model in self.missing:
            if model.name in self.installed:
                continue
            assert self.cancel is not None
            self.states[model.name].setText("Downloading…")
            self.bars[model.name].setRange(0, 0)  # busy until the first bytes
            ok = await self.controller.pull_model(model.name, self._progress(model.name),
                                                  self.cancel)
            if not ok:
                self.states[model.name].setText("Not installed")
                self.bars[model.name].setRange(0, 1000)
                return
            self._installed(model.name)

    async def _import(self, archive: Path) -> None:
        assert self.cancel is not None
        for model in self.missing:
            if model.name not in self.installed:
                self.states[model.name].setText("Installing…")
        self.overall.setRange(0, 0)
        names = await self.controller.import_models(archive, self._overall, self.cancel)
        self.overall.setRange(0, 1000)
        still = {m.name for m in self.controller.models_to_offer()}
        for model in self.missing:
            if model.name not in still:
                self._installed(model.name)
            elif model.name not in self.installed:
                self.states[model.name].setText("Not installed")
        if names is not None and still and not self.error:
            left = ", ".join(m.name for m in self.missing if m.name in still)
            self.error = ErrorOccurred(
                f"{archive.name} does not hold {left}.",
                "Download it, or press Not now to start without it.")

    def _progress(self, name: str) -> Callable[[int, int | None], None]:
        def update(done: int, total: int | None) -> None:
            if total:
                self.sizes[name] = total
            self.done_bytes[name] = done
            bar = self.bars[name]
            size = self.sizes[name]
            if size:
                bar.setRange(0, 1000)
                bar.setValue(min(1000, done * 1000 // size))
                self.states[name].setText(f"{human_size(done)} of {human_size(size)}")
            else:
                self.states[name].setText(f"{human_size(done)} downloaded")
            self._overall(sum(self.done_bytes.values()), self._total())

        return update

    def _overall(self, done: int, total: int | None) -> None:
        """Permille: sizes over 2 GB stay inside QProgressBar's int range."""
        if total:
            self.overall.setRange(0, 1000)
            self.overall.setValue(min(1000, done * 1000 // total))
            self.overall_label.setText(f"{human_size(done)} of {human_size(total)}")
        else:
            self.overall_label.setText(f"{human_size(done)}")

    def _installed(self, name: str) -> None:
        self.installed.add(name)
        self.done_bytes[name] = self.sizes[name] or 0
        self.bars[name].setRange(0, 1000)
        self.bars[name].setValue(1000)
        self.states[name].setText("✔ Installed")
        self._overall(sum(self.done_bytes.values()), self._total())

    def _total(self) -> int | None:
        sizes = list(self.sizes.values())
        return None if None in sizes else sum(s or 0 for s in sizes)

    def _busy(self, busy: bool) -> None:
        self.download_button.setEnabled(not busy)
        self.file_button.setEnabled(not busy)
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.download_button.setText("&Download" if not self.error else "Try &again")


class MissingNotice(QLabel):
    """Above the conversation, what does not work for want of a model, with a link that
    opens the model switcher on the first missing kind; hidden when nothing is missing."""

    def __init__(self, open_models: Callable[[Kind], None]) -> None:
        super().__init__()
        self.setObjectName("missingNotice")
        self.setAccessibleName("Missing models")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.linkActivated.connect(lambda kind: open_models(cast(Kind, kind)))
        self.hide()

    def show_missing(self, event: ModelsMissing) -> None:
        them = "one" if len(event.kinds) == 1 else "them"
        first = event.kinds[0] if event.kinds else ""  # the switcher opens on its tab
        self.setText(f"⚠ {html.escape(event.text)} <a href='{first}'>Models…</a> to install "
                     f"{them} (Ctrl+Shift+M).")
        self.setVisible(bool(event.kinds))


def _these(count: int) -> str:
    return "This model is" if count == 1 else f"These {count} models are"
