"""The kiosk's number pad: the settings open only with the right PIN.

An overlay inside the full-screen window rather than a dialog of its own, so it can never
end up behind the kiosk on a screen with no window manager, and with keys big enough for a
finger. A keyboard works too (digits, Backspace, Enter, Esc), for whoever looks after the
kiosk.
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.control.pin import MAX_DIGITS, PinGuard, check_pin

_IDLE_CLOSE_MS = 30_000
"""An abandoned pad closes itself: the next visitor sees the kiosk, not a PIN prompt."""
NO_PIN = ("The settings are locked.\nWhoever looks after this kiosk can set a PIN on it "
          "with:\n\nparley kiosk set-pin")


class PinPad(QFrame):
    """Covers the window; `unlocked` once the right PIN was entered."""

    unlocked = Signal()

    def __init__(self, stored: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.over = parent
        """The window it covers."""
        self.setObjectName("pinBackdrop")
        self.stored = stored
        self.guard = PinGuard()
        self.entry = ""
        self._checking: asyncio.Future[bool] | None = None
        self.panel = QFrame(self)
        self.panel.setObjectName("pinPanel")
        self.title = QLabel("Enter the PIN" if stored else NO_PIN)
        self.title.setWordWrap(True)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.dots = QLabel()
        self.dots.setObjectName("pinDots")
        self.dots.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.dots.setAccessibleName("PIN entered")
        self.message = QLabel()
        self.message.setObjectName("pinMessage")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.keys: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for i, key in enumerate(["1", "2", "3", "4", "5", "6", "7", "8", "9", "⌫", "0", "OK"]):
            button = QPushButton(key)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setAccessibleName({"⌫": "Delete", "OK": "OK"}.get(key, f"Digit {key}"))
            button.clicked.connect(lambda _=False, k=key: self.press(k))
            button.setEnabled(bool(stored))
            grid.addWidget(button, i // 3, i % 3)
            self.keys[key] = button
        self.cancel = QPushButton("Cancel" if stored else "Close")
        self.cancel.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel.clicked.connect(self.close_pad)
        layout = QVBoxLayout(self.panel)
        layout.addWidget(self.title)
        if stored:
            layout.addWidget(self.dots)
            layout.addWidget(self.message)
            layout.addLayout(grid)
        layout.addWidget(self.cancel)
        backdrop = QGridLayout(self)
        backdrop.addWidget(self.panel, 0, 0, Qt.AlignmentFlag.AlignCenter)
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.setInterval(_IDLE_CLOSE_MS)
        self._idle.timeout.connect(self.close_pad)
        self.hide()

    def open_pad(self, unit: float) -> None:
        """Show over the whole window, sized for its screen (`unit`: 1 at 600 px high)."""
        self.entry = ""
        self._show_entry("")
        self._size(unit)
        self.setGeometry(self.over.rect())
        self.show()
        self.raise_()
        self.setFocus()
        self._idle.start()

    def close_pad(self) -> None:
        self._idle.stop()
        self.entry = ""
        self.hide()

    def _size(self, unit: float) -> None:
        key = round(64 * unit)
        for button in [*self.keys.values(), self.cancel]:
            button.setMinimumSize(round(key * 1.4), key)
        self.panel.setStyleSheet(f"font-size: {round(24 * unit)}px;")
        self.panel.setMaximumWidth(round(520 * unit))

    def press(self, key: str) -> None:
        """A key of the pad (or the keyboard's)."""
        self._idle.start()
        if key == "OK":
            self.submit()
        elif key == "⌫":
            self.entry = self.entry[:-1]
            self._show_entry()
        elif len(self.entry) < MAX_DIGITS:
            self.entry += key
            self._show_entry()

    def submit(self) -> asyncio.Future[bool] | None:
        """Check the entry off the GUI thread (scrypt takes tens of milliseconds); the
        future says whether it opened."""
        if not self.entry or (self._checking is not None and not self._checking.done()):
            return None
        wait = self.guard.wait_s()
        if wait > 0:
            self.entry = ""
            self._show_entry(f"Too many tries. Wait {wait:.0f} s.")
            return None
        entry, self.entry = self.entry, ""
        self._checking = asyncio.ensure_future(self._check(entry))
        return self._checking

    async def _check(self, entry: str) -> bool:
        right = await asyncio.to_thread(check_pin, entry, self.stored)
        self.guard.record(right)
        if right:
            self.close_pad()
            self.unlocked.emit()
            return True
        wait = self.guard.wait_s()
        self._show_entry("Wrong PIN." + (f" Wait {wait:.0f} s." if wait else ""))
        return False

    def _show_entry(self, message: str | None = None) -> None:
        """The dots, and `message` (None: the last one stays while the next PIN is typed)."""
        self.dots.setText("●" * len(self.entry) or " ")
        if message is not None:
            self.message.setText(message or " ")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, text = event.key(), event.text()
        if text.isascii() and text.isdigit() and len(text) == 1 and self.stored:
            self.press(text)
        elif key == Qt.Key.Key_Backspace:
            self.press("⌫")
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.press("OK")
        elif key == Qt.Key.Key_Escape:
            self.close_pad()
        else:
            super().keyPressEvent(event)
