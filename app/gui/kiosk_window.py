"""Kiosk mode's window (`parley run --kiosk`): full screen and frameless, for a touch screen
in a public place, read and used at arm's length.

One big round talk button that is also the state animation, the conversation in big type,
a status line in plain words, and no menus: settings only behind a PIN. What it does
unattended (a fresh conversation after a silence, reopening devices, restarting a dead
engine worker) is `app.control.kiosk.Caretaker`'s; this renders events and sends commands.
Every size follows the screen's height, so 800x480, 1024x600 and 1280x720 look alike.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import subprocess
import time
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QColor, QFont, QPainter, QPaintEvent, QPen, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.control.controller import Controller
from app.control.kiosk import Caretaker
from app.conversation.events import (
    AgentEvent,
    Announcement,
    AssistantDelta,
    AssistantDone,
    ConversationOpened,
    ErrorOccurred,
    Interrupted,
    StateChanged,
    UserSaid,
)
from app.gui.conversation_view import ConversationView
from app.gui.kiosk_pin import PinPad
from app.gui.settings_dialog import SettingsDialog
from engines.errors import ParleyError

log = logging.getLogger(__name__)

_FRAME_MS = 40
"""25 frames a second: smooth enough for a pulse, and one small circle to paint."""
_HOLD_S = 0.6
"""A press longer than this is press-and-hold (talk while held); a shorter one is a tap
(talk until the next tap)."""
_TAP_LIMIT_MS = 15_000
"""A tap-to-talk nobody ends stops by itself."""
_ERROR_SHOWN_MS = 8000
_START_RETRY_S = 30.0
_LOOK = {  # state → (words on the button, colour, pulses per second, pulse depth)
    "listening": ("Tap to talk", "#2ea043", 0.25, 0.05),
    "hearing": ("Listening…", "#1f6feb", 1.2, 0.10),
    "recording": ("Listening…\ntap when done", "#1f6feb", 1.2, 0.10),
    "transcribing": ("Thinking…", "#8957e5", 0.8, 0.0),
    "thinking": ("Thinking…", "#d29922", 0.8, 0.0),
    "speaking": ("Speaking\ntap to stop", "#db6d28", 2.0, 0.08),
}
_STYLE = """
QWidget#kiosk {{ background: palette(window); }}
QLabel#welcome {{ font-size: {welcome}px; font-weight: 600; }}
#kioskConversation QLabel {{ font-size: {text}px; }}
QLabel#kioskStatus {{ font-size: {status}px; color: #d29922; }}
QPushButton#settingsButton {{ font-size: {gear}px; border: none; background: transparent; }}
QFrame#pinBackdrop {{ background: rgba(0, 0, 0, 150); }}
QFrame#pinPanel {{ background: palette(window); border-radius: 16px; }}
QLabel#pinDots {{ font-size: {dots}px; letter-spacing: 8px; }}
QLabel#pinMessage {{ color: #cf222e; }}
"""


class TalkButton(QAbstractButton):
    """The one control: a round button whose ring breathes while Parley listens, pulses
    while it hears or speaks, and spins while it thinks. Only its own square is repainted."""

    def __init__(self) -> None:
        super().__init__()
        self.setAccessibleName("Talk")
        self.look = "listening"
        self._phase = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(_FRAME_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self.set_look("listening")

    def set_look(self, look: str) -> None:
        self.look = look if look in _LOOK else "listening"
        self.setText(_LOOK[self.look][0])
        self.update()

    def _tick(self) -> None:
        self._phase = (self._phase + _FRAME_MS / 1000 * _LOOK[self.look][2]) % 1.0
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        words, colour, _, depth = _LOOK[self.look]
        side = min(self.width(), self.height())
        centre = QRectF(self.rect()).center()
        radius = side * 0.40 * (0.96 if self.isDown() else 1.0)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        ring = QColor(colour)
        pulse = 0.5 + 0.5 * math.sin(2 * math.pi * self._phase)
        ring.setAlphaF(0.25 + 0.35 * pulse)
        pen = QPen(ring, side * 0.035)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if depth:  # a ring that swells and fades
            painter.setPen(pen)
            outer = radius * (1.04 + depth * pulse)
            painter.drawEllipse(centre, outer, outer)
        else:  # thinking: an arc going round
            ring.setAlphaF(0.8)
            pen.setColor(ring)
            painter.setPen(pen)
            box = QRectF(centre.x() - radius * 1.1, centre.y() - radius * 1.1,
                         radius * 2.2, radius * 2.2)
            painter.drawArc(box, int(-self._phase * 360 * 16), 100 * 16)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawEllipse(centre, radius, radius)
        font = QFont(self.font())
        font.setPixelSize(max(12, round(side * 0.075)))
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QColor("#ffffff"))
        painter.drawText(QRectF(centre.x() - radius, centre.y() - radius, 2 * radius,
                                2 * radius), Qt.AlignmentFlag.AlignCenter, words)


class KioskWindow(QWidget):
    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self.setObjectName("kiosk")
        self.setWindowTitle("Parley")
        self.setWindowFlag(Qt.WindowType.FramelessWindowHint)
        self.unit = 1.0
        """Sizes are given for a 600 px high screen and scaled by this."""
        self._tasks: set[asyncio.Future[Any]] = set()
        self._recording = False
        self._pressed_at = 0.0
        self._status = ""
        self.settings_dialog: SettingsDialog | None = None
        self.caretaker = Caretaker(controller, controller.settings.ui.kiosk_idle_s,
                                   self._show_status)

        self.talk = TalkButton()
        self.talk.pressed.connect(self._pressed)
        self.talk.released.connect(self._released)
        self._tap_limit = QTimer(self)
        self._tap_limit.setSingleShot(True)
        self._tap_limit.setInterval(_TAP_LIMIT_MS)
        self._tap_limit.timeout.connect(self._stop_recording)
        self.welcome = QLabel(controller.settings.ui.kiosk_welcome)
        self.welcome.setObjectName("welcome")
        self.welcome.setWordWrap(True)
        self.welcome.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.conversation = ConversationView()
        self.conversation.setObjectName("kioskConversation")  # big type: _STYLE
        self.conversation.setFrameShape(ConversationView.Shape.NoFrame)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.welcome)
        self.pages.addWidget(self.conversation)
        self.status = QLabel("Getting ready…")
        self.status.setObjectName("kioskStatus")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        self.gear = QPushButton("⚙")
        self.gear.setObjectName("settingsButton")
        self.gear.setAccessibleName("Settings")
        self.gear.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.gear.clicked.connect(self.ask_pin)
        self._clear_error = QTimer(self)
        self._clear_error.setSingleShot(True)
        self._clear_error.setInterval(_ERROR_SHOWN_MS)
        self._clear_error.timeout.connect(lambda: self.status.setText(self._status))

        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(self.gear, 0, Qt.AlignmentFlag.AlignTop)
        middle = QHBoxLayout()
        middle.addWidget(self.talk, 0, Qt.AlignmentFlag.AlignCenter)
        middle.addWidget(self.pages, 1)
        self._layout = QVBoxLayout(self)
        self._layout.addLayout(top)
        self._layout.addLayout(middle, 1)
        self.pin = PinPad(controller.settings.ui.kiosk_pin, self)
        self.pin.unlocked.connect(self.show_settings)
        self._scale(600)
        controller.subscribe(self.on_event)

    def show_kiosk(self) -> None:
        """Take the whole screen, hide the pointer and keep the screen from sleeping. With
        no window manager (a board that starts straight into Parley) nobody acts on the
        full-screen request, so the window also takes the screen's geometry itself, and
        follows it (a rotated or replaced display)."""
        screen = self.screen()
        self.setGeometry(screen.geometry())
        screen.geometryChanged.connect(self.setGeometry)
        self.showFullScreen()
        self.activateWindow()  # with no window manager to give it, the keyboard focus
        QApplication.setOverrideCursor(Qt.CursorShape.BlankCursor)
        keep_screen_awake()

    async def start(self) -> bool:
        """Start the conversation, retrying while it cannot (a missing model someone may
        yet copy in): the screen says so, and never shows a dialog. Then the caretaker."""
        while True:
            try:
                await self.controller.start()
                break
            except ParleyError as err:
                log.warning("kiosk: Parley could not start: %s", err)
                self._show_status(f"Parley cannot start: {err.message}")
                await asyncio.sleep(_START_RETRY_S)
        self.caretaker.fresh_start()
        self._show_status("")
        self._show_welcome()
        self.run_async(self.caretaker.run())
        return True

    def run_async(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sizes -----------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        self._scale(event.size().height())
        super().resizeEvent(event)

    def _scale(self, height: int) -> None:
        self.unit = unit = max(0.5, height / 600)
        self.setStyleSheet(_STYLE.format(welcome=round(44 * unit), text=round(24 * unit),
                                         status=round(20 * unit), gear=round(34 * unit),
                                         dots=round(36 * unit)))
        self.talk.setFixedSize(round(300 * unit), round(300 * unit))
        self.gear.setFixedSize(round(64 * unit), round(56 * unit))
        margin = round(16 * unit)
        self._layout.setContentsMargins(margin, margin // 2, margin, margin)
        if self.pin.isVisible():
            self.pin.open_pad(unit)

    # -- talking ---------------------------------------------------------------------------
    def _pressed(self) -> None:
        """Talking over Parley stops it (the Controller's push-to-talk does that); a tap
        during a tap-to-talk ends it."""
        if self._recording:
            self._stop_recording()
            return
        self._recording, self._pressed_at = True, time.monotonic()
        self.controller.press_to_talk()
        self.talk.set_look("recording")
        self._tap_limit.start()

    def _released(self) -> None:
        if self._recording and time.monotonic() - self._pressed_at >= _HOLD_S:
            self._stop_recording()

    def _stop_recording(self) -> None:
        if self._recording:
            self._recording = False
            self._tap_limit.stop()
            self.controller.release_to_talk()
            self.talk.set_look(str(self.controller.state))

    # -- settings behind the PIN -----------------------------------------------------------
    def ask_pin(self) -> None:
        self.pin.open_pad(self.unit)

    def show_settings(self) -> None:
        """Never modal to the loop: the conversation and the caretaker go on behind it."""
        if self.settings_dialog is not None:
            self.settings_dialog.close()
        dialog = self.settings_dialog = SettingsDialog(self.controller, self)
        dialog.open()
        dialog.move(self.geometry().center() - dialog.rect().center())

    # -- rendering -------------------------------------------------------------------------
    def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, StateChanged):
            if not self._recording:
                self.talk.set_look(str(event.state))
        elif isinstance(event, UserSaid):
            self.pages.setCurrentWidget(self.conversation)
            self.conversation.add("user", event.text)
        elif isinstance(event, AssistantDelta):
            self.conversation.assistant_delta(event.delta)
        elif isinstance(event, AssistantDone):
            self.conversation.assistant_done(event.text)
        elif isinstance(event, Announcement):
            self.pages.setCurrentWidget(self.conversation)
            self.conversation.announcement(event.text)
        elif isinstance(event, Interrupted):
            self.conversation.assistant_interrupted(event.heard_text)
        elif isinstance(event, ConversationOpened):
            self._show_welcome()
        elif isinstance(event, ErrorOccurred):
            # the details go to the log (the journal, under systemd), not to a visitor
            log.warning("kiosk: %s %s", event.message, event.hint)
            if not self._status:
                self.status.setText("Sorry, something went wrong. Please try again.")
                self._clear_error.start()

    def _show_welcome(self) -> None:
        self.conversation.clear()
        self.pages.setCurrentWidget(self.welcome)

    def _show_status(self, text: str) -> None:
        """The caretaker's word on what is broken ("" once it is fixed)."""
        self._status = text
        self._clear_error.stop()
        self.status.setText(text)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.controller.unsubscribe(self.on_event)
        self.controller.unsubscribe(self.caretaker.on_event)
        for task in self._tasks:
            task.cancel()
        QApplication.restoreOverrideCursor()
        super().closeEvent(event)


def keep_screen_awake() -> None:
    """Best effort, never fatal: ask the desktop's screen saver (D-Bus) not to start, and
    switch off the X server's own blanking and power saving (`xset`). The inhibit lasts as
    long as this process's D-Bus connection."""
    from PySide6.QtDBus import QDBusConnection, QDBusInterface, QDBusMessage

    bus = QDBusConnection.sessionBus()
    if bus.isConnected():
        saver = QDBusInterface("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver",
                               "org.freedesktop.ScreenSaver", bus)
        reply = saver.call("Inhibit", "Parley", "Kiosk mode") if saver.isValid() else None
        if reply is not None and reply.type() == QDBusMessage.MessageType.ReplyMessage:
            log.info("kiosk: the screen saver is inhibited (D-Bus)")
        else:
            log.info("kiosk: no D-Bus screen saver to inhibit")
    if QApplication.platformName() != "xcb":
        return
    xset = shutil.which("xset")
    if xset is None:
        log.warning("kiosk: xset is missing (x11-xserver-utils), so the X server may "
                    "blank the screen")
        return
    try:
        subprocess.run([xset, "s", "off", "s", "noblank", "-dpms"], check=True, timeout=10,
                       capture_output=True)
        log.info("kiosk: X screen blanking and power saving are off")
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("kiosk: could not keep the screen awake with xset: %s", err)
