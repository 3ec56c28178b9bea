"""The list of saved conversations, with new / rename / delete / export.

The panel only shows what Storage holds and says what the user asked for; the window decides
what opening or starting a conversation means for the Agent. Each dialog is its own method
(`ask_title`, `confirm_delete`, `ask_export_path`) and each action its own method taking the
dialog's answer, so tests replace the dialogs and never block on a modal window.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QDateTime, QLocale, QStandardPaths, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.storage import UNTITLED, ConversationSummary, Storage
from engines.errors import ParleyError

_SUMMARY_ROLE = Qt.ItemDataRole.UserRole
_MARKDOWN_FILTER = "Markdown (*.md)"
_JSON_FILTER = "JSON (*.json)"


class ConversationsPanel(QWidget):
    open_requested = Signal(int)
    new_requested = Signal()
    deleted = Signal(int)
    """A conversation is gone; if the window had it open, it must start or open another."""
    error_occurred = Signal(str, str)
    """(message, hint) when storage or the file system refuses, like `ErrorOccurred`."""

    def __init__(self, storage: Storage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.storage = storage
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setAccessibleDescription(
            "Saved conversations, most recent first. Enter opens the selected one.")
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.list.setWordWrap(True)
        self.list.itemActivated.connect(self._on_activated)
        self.list.currentItemChanged.connect(self._update_actions)
        self.setFocusProxy(self.list)

        # New works anywhere in the window; the others only with focus in the panel, so Del
        # in the chat's text box never deletes a conversation.
        self.new_action = self._action("New conversation", QKeySequence.StandardKey.New,
                                       self._on_new, Qt.ShortcutContext.WindowShortcut)
        self.rename_action = self._action("Rename…", QKeySequence(Qt.Key.Key_F2), self._on_rename)
        self.delete_action = self._action("Delete…", QKeySequence.StandardKey.Delete,
                                          self._on_delete)
        self.export_action = self._action("Export…", QKeySequence(), self._on_export)

        buttons = QHBoxLayout()
        for action, name in ((self.new_action, "New conversation"),
                             (self.rename_action, "Rename conversation"),
                             (self.delete_action, "Delete conversation"),
                             (self.export_action, "Export conversation")):
            button = QToolButton()
            button.setDefaultAction(action)
            button.setAccessibleName(name)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.list)
        self.refresh()

    def _action(self, text: str, keys: QKeySequence | QKeySequence.StandardKey,
                slot: Callable[[], None], context: Qt.ShortcutContext
                = Qt.ShortcutContext.WidgetWithChildrenShortcut) -> QAction:
        action = QAction(text, self)
        action.setShortcut(keys)
        action.setShortcutContext(context)
        shortcut = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{text.rstrip('…')} ({shortcut})" if shortcut else text.rstrip("…"))
        action.triggered.connect(slot)
        self.addAction(action)
        self.list.addAction(action)
        return action

    def refresh(self, select_id: int | None = None) -> None:
        """Reload from storage, keeping (or moving to) the selected conversation."""
        keep = select_id if select_id is not None else self.current_id()
        try:
            summaries = self.storage.conversations()
        except ParleyError as err:
            self.error_occurred.emit(err.message, err.hint)
            return
        self.list.clear()
        for summary in summaries:
            self.list.addItem(_item(summary))
        ids = [summary.id for summary in summaries]
        if ids:
            self.list.setCurrentRow(ids.index(keep) if keep in ids else 0)
        self._update_actions()

    def current_id(self) -> int | None:
        selected = self._selected()
        return None if selected is None else selected.id

    def ask_title(self, current: str) -> str | None:
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:",
                                         QLineEdit.EchoMode.Normal, current)
        return title if ok else None

    def confirm_delete(self, title: str) -> bool:
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete conversation",
                          f"Delete “{title}” and all its turns? This cannot be undone.",
                          parent=self)
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
        box.exec()
        return box.clickedButton() is delete

    def ask_export_path(self, title: str) -> Path | None:
        """A .md or .json path; the suffix follows the chosen filter if the user typed none."""
        folder = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.DocumentsLocation)
        name, chosen = QFileDialog.getSaveFileName(
            self, "Export conversation", str(Path(folder) / f"{_file_stem(title)}.md"),
            f"{_MARKDOWN_FILTER};;{_JSON_FILTER}")
        if not name:
            return None
        path = Path(name)
        if path.suffix.lower() not in (".md", ".json"):
            path = path.with_name(path.name + (".json" if chosen == _JSON_FILTER else ".md"))
        return path

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        try:
            self.storage.rename(conversation_id, title)
        except ParleyError as err:
            self.error_occurred.emit(err.message, err.hint)
        self.refresh(conversation_id)

    def delete_conversation(self, conversation_id: int) -> None:
        """Deletes without asking; the asking is `confirm_delete`'s job."""
        row = self.list.currentRow()
        try:
            self.storage.delete(conversation_id)
        except ParleyError as err:
            self.error_occurred.emit(err.message, err.hint)
            return
        self.refresh()
        self.list.setCurrentRow(min(row, self.list.count() - 1))
        self.deleted.emit(conversation_id)

    def export_conversation(self, conversation_id: int, path: Path) -> None:
        """JSON for a .json path, Markdown otherwise."""
        try:
            if path.suffix.lower() == ".json":
                text = self.storage.export_json(conversation_id)
            else:
                text = self.storage.export_markdown(conversation_id)
            path.write_text(text, encoding="utf-8")
        except ParleyError as err:
            self.error_occurred.emit(err.message, err.hint)
        except OSError as err:
            self.error_occurred.emit(f"Could not write {path}: {err.strerror or err}.",
                                     "Choose another folder or file name.")

    def _on_activated(self, item: QListWidgetItem) -> None:
        self.open_requested.emit(item.data(_SUMMARY_ROLE).id)

    def _on_new(self) -> None:
        self.new_requested.emit()

    def _on_rename(self) -> None:
        selected = self._selected()
        if selected is not None:
            title = self.ask_title(selected.title)
            if title is not None:
                self.rename_conversation(selected.id, title)

    def _on_delete(self) -> None:
        selected = self._selected()
        if selected is not None and self.confirm_delete(selected.title or UNTITLED):
            self.delete_conversation(selected.id)

    def _on_export(self) -> None:
        selected = self._selected()
        if selected is not None:
            path = self.ask_export_path(selected.title or UNTITLED)
            if path is not None:
                self.export_conversation(selected.id, path)

    def _selected(self) -> ConversationSummary | None:
        item = self.list.currentItem()
        if item is None:
            return None
        summary: ConversationSummary = item.data(_SUMMARY_ROLE)
        return summary

    def _update_actions(self) -> None:
        has_one = self.list.currentItem() is not None
        for action in (self.rename_action, self.delete_action, self.export_action):
            action.setEnabled(has_one)


def _item(summary: ConversationSummary) -> QListWidgetItem:
    title = summary.title or UNTITLED
    when = QLocale().toString(
        QDateTime.fromMSecsSinceEpoch(int(summary.updated_at * 1000)),
        QLocale.FormatType.ShortFormat)
    turns = f"{summary.turns} turn" + ("" if summary.turns == 1 else "s")
    item = QListWidgetItem(f"{title}\n{when} · {turns}")
    item.setData(_SUMMARY_ROLE, summary)
    item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{title}, {when}, {turns}")
    item.setToolTip(title)
    return item


def _file_stem(title: str) -> str:
    """A file name any OS accepts, recognisably the conversation's title."""
    return re.sub(r"[^\w\- ]+", "", title).strip()[:60] or "conversation"
