"""The conversation as chat bubbles: what was heard, the reply as it is generated with the
tools it called, and what Parley announced unprompted (a timer that went off)."""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

_COALESCE_MS = 60
_MAX_SHOWN = 40
"""Bubbles kept on screen. Each new one re-lays out all of them (word wrapping), so an
unbounded view would make the window slower with every turn; older turns stay stored."""
_MAX_TOOL_CHARS = 160
"""A tool line stays one or two lines; its tooltip has all of it."""
_ROLES = {"user": ("userBubble", "You", "", "You said"),
          "assistant": ("assistantBubble", "Parley", "", "Parley said"),
          "announcement": ("announcementBubble", "Parley", " · <b>announcement</b>",
                           "Parley announced")}
"""role → (style, who, header mark, accessible name). An announcement is marked in words,
not only by its colour."""


def _plain(label: QLabel) -> QLabel:
    """Wrapped, selectable text, never read as markup (it comes from the model or a tool)."""
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _readable(value: Any) -> str:
    """JSON as a line of words: {"set": "5 second timer", "rings": "at 18:42"} →
    "set 5 second timer, rings at 18:42"."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {_readable(item)}".strip() for key, item in value.items())
    if isinstance(value, list):
        return "; ".join(_readable(item) for item in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "none" if value is None else str(value)


def _short(text: str) -> str:
    return textwrap.shorten(text, _MAX_TOOL_CHARS, placeholder=" …")


class ToolLine(QLabel):
    """A tool the model called, in the reply's bubble: its arguments, then its result, an
    error, or that it waits for the user's yes. The words say which; the theme's colour
    (the `outcome` property) only repeats it."""

    def __init__(self, name: str, arguments: str) -> None:
        super().__init__()
        _plain(self).setObjectName("toolLine")
        self.name, self.arguments = name, arguments
        try:
            shown = _readable(json.loads(arguments or "{}"))
        except json.JSONDecodeError:
            shown = arguments
        self._call = f"⚙ {name}" + (f" · {_short(shown)}" if shown else "")
        self._show("running", "— running…")

    def wait(self) -> None:
        self._show("waiting", "— waiting for your yes")

    def answered(self) -> None:
        """The user answered (in the next turn, whose bubble shows the result)."""
        self._show("asked", "— asked for your yes")

    def finish(self, result: str) -> None:
        try:
            value = json.loads(result)
        except json.JSONDecodeError:
            value = result
        if isinstance(value, dict) and set(value) == {"error"}:
            self._show("error", f"→ error: {_short(_readable(value['error']))}")
        else:
            self._show("done", f"→ {_short(_readable(value)) or 'done'}")
        self.setToolTip(result)

    def _show(self, outcome: str, words: str) -> None:
        self.outcome = outcome
        self.setText(f"{self._call} {words}")
        self.setAccessibleName(f"Tool call {self.name}, {outcome}")
        self.setProperty("outcome", outcome)
        self.style().unpolish(self)
        self.style().polish(self)


class Bubble(QFrame):
    """One turn: a timestamp line, the tools called, and the text, styled by object name
    in the theme."""

    def __init__(self, role: str, text: str, when: float) -> None:
        super().__init__()
        self.role = role
        style, who, mark, accessible = _ROLES[role]
        self.setObjectName(style)
        self.header = QLabel(f"<b>{who}</b> · {time.strftime('%H:%M', time.localtime(when))}"
                             f"{mark}")
        self.body = _plain(QLabel(text))
        self.tools: list[ToolLine] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(10, 6, 10, 8)
        self._layout.addWidget(self.header)
        self._layout.addWidget(self.body)
        self.setAccessibleName(accessible)

    @property
    def text(self) -> str:
        return self.body.text()

    def add_tool(self, name: str, arguments: str) -> ToolLine:
        """Under the header and the earlier calls, above the words (said after it ran)."""
        line = ToolLine(name, arguments)
        self._layout.insertWidget(1 + len(self.tools), line)
        self.tools.append(line)
        return line

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
        self._asked: dict[str, ToolLine] = {}
        """Calls waiting for the user's yes, by tool name: the next turn finishes them."""
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
        self._asked.clear()
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
        self._reply()
        self._pending += delta
        if not self._repaint.isActive():
            self._repaint.start()

    def assistant_done(self, text: str) -> None:
        self._repaint.stop()
        self._pending = ""
        self._reply().set_text(text)
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

    def tool_called(self, name: str, arguments: str, waiting: bool) -> None:
        line = self._reply().add_tool(name, arguments)
        if waiting:
            line.wait()
            self._asked[name] = line
        QTimer.singleShot(0, self._scroll_to_end)

    def tool_finished(self, name: str, result: str) -> None:
        """The result goes on the call's line; a call that waited for the user's yes was
        asked in the reply before, so this reply shows it again with its result."""
        bubble = self._reply()
        line = next((t for t in reversed(bubble.tools)
                     if t.name == name and t.outcome == "running"), None)
        if line is None:
            asked = self._asked.pop(name, None)
            if asked is not None:
                asked.answered()
            line = bubble.add_tool(name, asked.arguments if asked is not None else "")
        line.finish(result)
        QTimer.singleShot(0, self._scroll_to_end)

    def announcement(self, text: str) -> None:
        """Said unprompted, between turns: a bubble of its own, marked as such."""
        self.add("announcement", text)

    def _reply(self) -> Bubble:
        """The bubble of the reply under way, begun if need be."""
        if self._streaming is None:
            self._streaming = self.add("assistant", "")
        return self._streaming

    def _flush(self) -> None:
        if self._streaming is not None and self._pending:
            self._streaming.append(self._pending)
            QTimer.singleShot(0, self._scroll_to_end)
        self._pending = ""

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
