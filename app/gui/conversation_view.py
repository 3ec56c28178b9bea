"""The conversation as chat bubbles: what was heard, and the reply as it is generated."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

_COALESCE_MS = 60
_MAX_SHOWN = 40
"""Bubbles kept on screen. Each new one re-lays out all of them (word wrapping), so an
unbounded view would make the window slower with every turn; older turns stay stored."""


class Bubble(QFrame):
    """One turn: a timestamp line and the text, styled by object name in the theme."""

    def __init__(self, role: str, text: str, when: float) -> None:
        super().__init__()
        self.role = role
        self.setObjectName("userBubble" if role == "user" else "assistantBubble")
        who = "You" if role == "user" else "Parley"
        self.header = QLabel(f"<b>{who}</b> · {time.strftime('%H:%M', time.localtime(when))}")
        self.body = QLabel(text)
        self.body.setWordWrap(True)
        self.body.setTextFormat(Qt.TextFormat.PlainText)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        layout.addWidget(self.header)
        layout.addWidget(self.body)
        self.setAccessibleName(f"{who} said")

    @property
    def text(self) -> str:
        return self.body.text()

    def append(self, delta: str) -> None:
        self.body.setText(self.body.text() + delta)

    def set_text(self, text: str) -> None:
        self.body.setText(text)

    def interrupted(self, heard_text: str) -> None:
        self.body.setText(f"{heard_text.rstrip()} —" if heard_text.strip() else "—")
        self.header.setText(self.header.text() + " · <i>interrupted</i>")
        self.setAccessibleName("Parley said, interrupted")


class ConversationView(QScrollArea):
    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setAccessibleName("Conversation")
        self._inner = QWidget()
        self._layout = QVBoxLayout(self._inner)
        self._layout.addStretch(1)
        self.earlier = QLabel()
        self.earlier.setObjectName("earlierNote")
        self.earlier.setWordWrap(True)
        self.earlier.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.earlier.setVisible(False)
        self._layout.addWidget(self.earlier)
        self._hidden = 0
        self.setWidget(self._inner)
        self.bubbles: list[Bubble] = []
        self._rows: list[QWidget] = []
        self._streaming: Bubble | None = None
        self._pending = ""
        self._repaint = QTimer(self)
        self._repaint.setSingleShot(True)
        self._repaint.setInterval(_COALESCE_MS)
        self._repaint.timeout.connect(self._flush)

    def clear(self) -> None:
        self._repaint.stop()
        self._pending = ""
        for row in self._rows:
            row.deleteLater()
        self._rows.clear()
        self.bubbles.clear()
        self._streaming = None
        self._hidden = 0
        self.earlier.setVisible(False)

    def add(self, role: str, text: str, when: float | None = None) -> Bubble:
        bubble = Bubble(role, text, when if when is not None else time.time())
        row = QWidget()
        line = QVBoxLayout(row)
        line.setContentsMargins(60 if role == "user" else 0, 2, 0 if role == "user" else 60, 2)
        line.addWidget(bubble)
        self._layout.addWidget(row)
        self._rows.append(row)
        self.bubbles.append(bubble)
        if len(self._rows) > _MAX_SHOWN:
            self._rows.pop(0).deleteLater()
            self.bubbles.pop(0)
            self._hidden += 1
            self.earlier.setText(f"{self._hidden} earlier messages are kept in this "
                                 "conversation: export it from the Conversations panel to "
                                 "read them all.")
            self.earlier.setVisible(True)
        QTimer.singleShot(0, self._scroll_to_end)
        return bubble

    def assistant_delta(self, delta: str) -> None:
        """Words of the reply as the LLM writes them, in one bubble per turn. Tokens come
        faster than the eye reads; re-wrapping the bubble for each would cost the window
        its smoothness, so they are shown in batches."""
        if self._streaming is None:
            self._streaming = self.add("assistant", "")
        self._pending += delta
        if not self._repaint.isActive():
            self._repaint.start()

    def assistant_done(self, text: str) -> None:
        self._repaint.stop()
        self._pending = ""
        if self._streaming is None:
            self._streaming = self.add("assistant", "")
        self._streaming.set_text(text)
        self._streaming = None
        QTimer.singleShot(0, self._scroll_to_end)

    def assistant_interrupted(self, heard_text: str) -> None:
        """The reply was cut short: keep only the words the user heard, marked as cut."""
        self._repaint.stop()
        self._pending = ""
        bubble = self._streaming or next(
            (b for b in reversed(self.bubbles) if b.role == "assistant"), None)
        self._streaming = None
        if bubble is not None:
            bubble.interrupted(heard_text)

    def _flush(self) -> None:
        if self._streaming is not None and self._pending:
            self._streaming.append(self._pending)
            QTimer.singleShot(0, self._scroll_to_end)
        self._pending = ""

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
