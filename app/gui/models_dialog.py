"""Choose, download and add models while the conversation goes on.

The dialog only starts Controller coroutines and renders what comes back: switching loads
the new model in the worker while the old one keeps answering, and a failure leaves the old
one in use, which the dialog says in words.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.control.controller import Controller
from app.control.models import ModelRow
from app.conversation.events import (
    AgentEvent,
    ErrorOccurred,
    ModelChanged,
    ModelFailed,
    ModelLoading,
)
from app.conversation.missing import human_size
from engines.model_ref import KINDS, Kind

TITLES: dict[Kind, str] = {"stt": "Speech to text", "llm": "Language model", "tts": "Voice",
                           "vad": "Voice detection"}
_COLUMNS = ("Model", "Size", "Status", "Licence")
_LOCAL_FILTERS: dict[Kind, str] = {
    "llm": "GGUF models (*.gguf)",
    "tts": "Piper voices (*.onnx)",
    "vad": "Silero VAD models (*.onnx)",
}
"""What "Add local file…" offers per kind; STT models are folders (faster-whisper)."""


@dataclass
class _Download:
    name: str
    kind: Kind
    cancel: threading.Event
    error: ErrorOccurred | None = None


class ModelsDialog(QDialog):
    """One tab per kind; Use switches, Download pulls, Add local file loads any file."""

    models_changed = Signal()
    """A model was downloaded or switched to: a start that failed can be tried again."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Models")
        self.setModal(False)
        self.resize(720, 400)
        self.rows: dict[Kind, list[ModelRow]] = {}
        self.pending: dict[Kind, str] = {}
        """Switches under way, per kind: that kind's buttons wait for them."""
        self.download: _Download | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Model kinds")
        self.trees: dict[Kind, QTreeWidget] = {}
        for kind in KINDS:
            tree = QTreeWidget()
            tree.setHeaderLabels(list(_COLUMNS))
            tree.setRootIsDecorated(False)
            tree.setAllColumnsShowFocus(True)
            tree.setAlternatingRowColors(True)
            tree.setUniformRowHeights(True)
            tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
            tree.setAccessibleName(f"{TITLES[kind]} models")
            tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
            for column in range(1, len(_COLUMNS)):
                tree.header().setSectionResizeMode(column,
                                                   QHeaderView.ResizeMode.ResizeToContents)
            tree.header().setStretchLastSection(False)
            tree.currentItemChanged.connect(lambda *_: self._update_buttons())
            tree.itemDoubleClicked.connect(lambda *_: self.use_selected())
            self.trees[kind] = tree
            self.tabs.addTab(tree, f"{TITLES[kind]} ({kind.upper()})")
        self.tabs.currentChanged.connect(lambda _: self._update_buttons())

        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setAccessibleName("Model description")
        self.description.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.use_button = QPushButton("&Use")
        self.use_button.setDefault(True)
        self.use_button.setToolTip("Load the selected model in place of the current one (Enter)")
        self.use_button.clicked.connect(self.use_selected)
        self.download_button = QPushButton("&Download")
        self.download_button.setToolTip("Download the selected model into the models folder")
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button = QPushButton("&Cancel download")
        self.cancel_button.clicked.connect(self.cancel_download)
        self.add_button = QPushButton("&Add local file…")
        self.add_button.setToolTip("Use a model file (or faster-whisper folder) from this "
                                   "computer")
        self.add_button.clicked.connect(self._ask_local_file)
        self.close_button = QPushButton("Close")
        self.close_button.setAutoDefault(False)
        self.close_button.clicked.connect(self.close)

        self.progress = QProgressBar()
        self.progress.setAccessibleName("Download progress")
        self.progress.setTextVisible(False)
        self.progress_label = QLabel()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Model status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                            | Qt.TextInteractionFlag.TextSelectableByKeyboard)

        buttons = QHBoxLayout()
        for button in (self.use_button, self.download_button, self.cancel_button,
                       self.add_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        download_line = QHBoxLayout()
        download_line.addWidget(self.progress, 1)
        download_line.addWidget(self.progress_label)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.description)
        layout.addLayout(download_line)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._show_download(False)
        self.refresh()
        self.tabs.setCurrentIndex(KINDS.index("llm"))

    # -- what is shown ---------------------------------------------------------------------
    def current_kind(self) -> Kind:
        return KINDS[self.tabs.currentIndex()]

    def selected_row(self) -> ModelRow | None:
        kind = self.current_kind()
        tree = self.trees[kind]
        item = tree.currentItem()
        return self.rows[kind][tree.indexOfTopLevelItem(item)] if item is not None else None

    def select(self, kind: Kind, name: str) -> bool:
        """Show `kind`'s tab with `name` selected, as a user's click would."""
        self.tabs.setCurrentIndex(KINDS.index(kind))
        return self._select_row(kind, name)

    def _select_row(self, kind: Kind, name: str) -> bool:
        tree = self.trees[kind]
        for index, row in enumerate(self.rows[kind]):
            item = tree.topLevelItem(index)
            if row.name == name and item is not None:
                tree.setCurrentItem(item)
                return True
        return False

    def refresh(self) -> None:
        """Re-read every kind's rows, keeping each tab's selection."""
        for kind in KINDS:
            tree = self.trees[kind]
            current = tree.currentItem()
            keep = self.rows[kind][tree.indexOfTopLevelItem(current)].name \
                if current is not None else None
            self.rows[kind] = self.controller.models(kind)
            tree.clear()
            items = []
            for row in self.rows[kind]:
                item = QTreeWidgetItem([row.name + ("  (default)" if row.default else ""),
                                        human_size(row.size) if row.size is not None else "—",
                                        _status(row), row.license])
                item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight
                                      | Qt.AlignmentFlag.AlignVCenter)
                for column in range(len(_COLUMNS)):
                    item.setToolTip(column, row.description)
                    if row.active:
                        font = QFont(item.font(column))
                        font.setBold(True)
                        item.setFont(column, font)
                tree.addTopLevelItem(item)
                items.append(item)
            names = [r.name for r in self.rows[kind]]
            wanted = keep if keep in names else next(
                (r.name for r in self.rows[kind] if r.active), None)
            if wanted is not None:
                tree.setCurrentItem(items[names.index(wanted)])
        self._update_buttons()

    def _update_buttons(self) -> None:
        kind, row = self.current_kind(), self.selected_row()
        self.use_button.setEnabled(row is not None and row.installed and not row.active
                                   and kind not in self.pending)
        self.download_button.setEnabled(row is not None and not row.installed
                                        and self.download is None)
        self.add_button.setEnabled(kind not in self.pending)
        self.description.setText(row.description if row is not None else "")

    def _show_download(self, visible: bool) -> None:
        for widget in (self.progress, self.progress_label, self.cancel_button):
            widget.setVisible(visible)

    def _say(self, text: str) -> None:
        self.status.setText(text)

    # -- commands --------------------------------------------------------------------------
    def use_selected(self) -> asyncio.Future[bool] | None:
        """Switch to the selected installed model; None when there is nothing to switch."""
        row = self.selected_row()
        if row is None or not row.installed or row.active or row.kind in self.pending:
            return None
        return self._switch(self.current_kind(), row.name)

    def add_local_file(self, path: str | Path) -> asyncio.Future[bool]:
        """Load a model file or folder from disk as the current tab's kind."""
        return self._switch(self.current_kind(), str(Path(path).expanduser()))

    def _ask_local_file(self) -> None:
        kind = self.current_kind()
        if kind == "stt":
            path = QFileDialog.getExistingDirectory(self, "Choose a faster-whisper model folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, f"Choose a {TITLES[kind].lower()} file",
                                                  "", _LOCAL_FILTERS[kind])
        if path:
            self.add_local_file(path)

    def _switch(self, kind: Kind, spec: str) -> asyncio.Future[bool]:
        self.pending[kind] = spec
        self._update_buttons()
        self._say(_loading(kind, spec))  # at once: the loop may take a moment to start it

        def done(future: asyncio.Future[bool]) -> None:
            """The selection follows the model in use, so the user sees which it is."""
            self.pending.pop(kind, None)
            self.refresh()
            if not future.cancelled() and future.exception() is None and future.result():
                self.models_changed.emit()
            active = next((r.name for r in self.rows[kind] if r.active), None)
            if active is not None:  # none when the engines run without a `kind` model
                self._select_row(kind, active)

        return self._start(self.controller.switch_model(kind, spec), done)

    def download_selected(self) -> asyncio.Future[bool] | None:
        """Pull the selected catalog model in the background; None if it cannot be pulled."""
        row = self.selected_row()
        if row is None or row.installed or self.download is not None:
            return None
        self.download = _Download(row.name, self.current_kind(), threading.Event())
        self.progress.setRange(0, 0)
        self.progress_label.setText("Starting…")
        self.cancel_button.setEnabled(True)
        self._show_download(True)
        self._say(f"Downloading {row.name}…")
        self._update_buttons()
        return self._start(
            self.controller.pull_model(row.name, self._on_progress, self.download.cancel),
            self._download_done)

    def cancel_download(self) -> None:
        if self.download is not None:
            self.download.cancel.set()
            self.cancel_button.setEnabled(False)
            self._say(f"Stopping the download of {self.download.name}…")

    def _on_progress(self, done: int, total: int | None) -> None:
        """Bytes so far; permille keeps models over 2 GB inside QProgressBar's int range."""
        if self.download is None:
            return
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(min(1000, done * 1000 // total))
            self.progress_label.setText(f"{human_size(done)} of {human_size(total)}")
        else:
            self.progress.setRange(0, 0)
            self.progress_label.setText(f"{human_size(done)} downloaded")

    def _download_done(self, future: asyncio.Future[bool]) -> None:
        download, self.download = self.download, None
        self._show_download(False)
        assert download is not None
        if not future.cancelled() and future.exception() is None and future.result():
            self._say(f"{download.name} is downloaded. Select it and press Use to switch.")
            self.models_changed.emit()
            if self.controller.started and download.kind not in self.controller.active_models():
                self._switch(download.kind, download.name)  # the engines had none: use it
        elif download.cancel.is_set():
            self._say(f"The download of {download.name} was cancelled. Download it again "
                      "whenever you like.")
        elif download.error is not None:
            self._say(_failure(download.error.message, download.error.hint))
        else:
            self._say(_failure(f"The download of {download.name} did not finish.", ""))
        self.refresh()

    def _start(self, coro: Coroutine[Any, Any, bool],
               done: Callable[[asyncio.Future[bool]], None]) -> asyncio.Future[bool]:
        """Run a Controller coroutine beside the Qt loop, keeping a reference until it ends;
        an unexpected exception is shown rather than lost."""
        task: asyncio.Future[bool] = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Future[bool]) -> None:
            self._tasks.discard(t)
            done(t)
            if not t.cancelled() and t.exception() is not None:
                self._say(_failure(f"Unexpected error: {t.exception()}", ""))

        task.add_done_callback(finished)
        return task

    # -- events ----------------------------------------------------------------------------
    def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, ModelLoading):
            self._say(_loading(event.kind, event.name))
        elif isinstance(event, ModelChanged):
            self._say(f"{event.kind.upper()} model ready: {event.name} "
                      f"(loaded in {event.load_seconds:.1f} s).")
            self.refresh()
        elif isinstance(event, ModelFailed):
            self.refresh()
            rows = next((self.rows[k] for k in KINDS if k == event.kind), [])
            still = next((r.name for r in rows if r.active), "the previous one")
            self._say(_failure(f"Could not load {event.name}. {event.message}", event.hint)
                      + f"\nThe previous {event.kind.upper()} model, {still}, is still in use.")
        elif isinstance(event, ErrorOccurred) and self.download is not None:
            self.download.error = event
            self._say(_failure(event.message, event.hint))


def _status(row: ModelRow) -> str:
    if row.active:
        return "● In use"
    return "Installed" if row.installed else "Not downloaded"


def _loading(kind: str, name: str) -> str:
    return (f"Loading the {kind.upper()} model {name}… The current one keeps working until "
            "it is ready.")


def _failure(message: str, hint: str) -> str:
    return f"⚠ {message}" + (f"\n{hint}" if hint else "")
