"""The main window: the conversation, what the agent is doing, and the controls.

It renders events and sends commands; every decision lives in the Controller and Agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QCloseEvent, QFont, QFontMetrics, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.control.controller import Controller
from app.conversation.events import (
    AgentEvent,
    Announcement,
    AssistantDelta,
    AssistantDone,
    ConversationOpened,
    ErrorOccurred,
    Interrupted,
    InterruptionIgnored,
    MicLevel,
    ModeChanged,
    ModelChanged,
    ModelFailed,
    ModelLoading,
    ModelsMissing,
    StateChanged,
    ToolCalled,
    ToolFinished,
    TurnMetrics,
    UserSaid,
)
from app.conversation.voice import ListenMode
from app.gui.cloud_dialog import CloudDialog, has_key
from app.gui.conversation_view import ConversationView
from app.gui.conversations_panel import ConversationsPanel
from app.gui.devices_dialog import DevicesDialog
from app.gui.first_run import FirstRunDialog, MissingNotice
from app.gui.fit import fit_to_screen, scrolling
from app.gui.metrics_panel import MetricsPanel
from app.gui.models_dialog import ModelsDialog
from app.gui.settings_dialog import SettingsDialog
from app.gui.theme import apply_theme
from engines.errors import ParleyError
from engines.model_ref import Kind

_STATE_WORDS = {
    "listening": "Listening", "hearing": "Hearing you…", "transcribing": "Understanding…",
    "thinking": "Thinking…", "speaking": "Speaking",
}
SHORTCUTS = [
    ("Space (hold)", "push to talk"), ("Esc", "stop speaking"), ("Ctrl+M", "mute microphone"),
    ("Ctrl+L", "type a message"), ("Ctrl+N", "new conversation"),
    ("Ctrl+K", "local / cloud mode"),
    ("Ctrl+Shift+M", "models"), ("Ctrl+Shift+D", "audio devices"), ("Ctrl+,", "settings"),
    ("Ctrl+Q", "quit"),
]


class MainWindow(QMainWindow):
    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self.setWindowTitle("Parley")
        self.resize(1180, 760)
        self._tasks: set[asyncio.Future[Any]] = set()
        self.models_dialog: ModelsDialog | None = None
        self.devices_dialog: DevicesDialog | None = None
        self.cloud_dialog: CloudDialog | None = None
        self.first_run: FirstRunDialog | None = None
        self._retry: asyncio.Future[bool] | None = None
        """While a failed start waits for the user to fix the models: True = try again."""

        self.conversation = ConversationView()
        self.missing = MissingNotice(self.show_models)
        self.state_badge = QLabel("Starting…")
        self.state_badge.setObjectName("stateBadge")
        self.state_badge.setAccessibleName("Agent state")
        self.level = QProgressBar()
        self.level.setRange(-60, 0)
        self.level.setTextVisible(False)
        self.level.setMaximumWidth(160)
        self.level.setAccessibleName("Microphone level")
        self.where = QComboBox()
        self.where.addItem("Local", False)
        self.where.addItem("Cloud", True)
        self.where.setAccessibleName("Local or cloud mode")
        self.where.setToolTip("Local: everything on this computer. Cloud: the OpenAI Realtime "
                              "API (needs an API key). The conversation carries on (Ctrl+K).")
        self.where.currentIndexChanged.connect(
            lambda _: self.run_async(self.switch_mode(bool(self.where.currentData()))))
        self.mode = QComboBox()
        self.mode.addItem("Hands-free", ListenMode.HANDS_FREE)
        self.mode.addItem("Push-to-talk", ListenMode.PUSH_TO_TALK)
        self.mode.setAccessibleName("Listening mode")
        self.mode.currentIndexChanged.connect(
            lambda _: controller.set_mode(self.mode.currentData()))
        self.mute = QPushButton("&Mute")
        self.mute.setCheckable(True)
        self.mute.setShortcut(QKeySequence("Ctrl+M"))
        self.mute.toggled.connect(self._on_mute)
        self.talk = QPushButton("Talk (Space)")  # short labels: the bar fits a 1024-px screen
        self.talk.setToolTip("Hold to talk: Parley hears what you say while it is held.")
        self.talk.pressed.connect(controller.press_to_talk)
        self.talk.released.connect(controller.release_to_talk)
        self.stop = QPushButton("Stop (Esc)")
        self.stop.setToolTip("Stop speaking: the answer stops at once.")
        self.stop.clicked.connect(controller.stop_speaking)
        self.input = QLineEdit()
        self.input.setPlaceholderText("Type a message and press Enter…")
        self.input.setAccessibleName("Message")
        self.input.returnPressed.connect(self._send)
        self.send = QPushButton("Send")
        self.send.clicked.connect(self._send)

        self._fix_badge_size()
        top = QHBoxLayout()
        for widget in (self.state_badge, self.where, QLabel("Mic"), self.level, self.mode,
                       self.mute, self.talk, self.stop):
            top.addWidget(widget)
        top.insertStretch(1, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addWidget(self.send)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top)
        layout.addWidget(self.missing)
        layout.addWidget(self.conversation, 1)
        layout.addLayout(bottom)
        self.setCentralWidget(central)

        self.conversations = ConversationsPanel(controller.storage)
        self.conversations.open_requested.connect(controller.open_conversation)
        self.conversations.new_requested.connect(controller.new_conversation)
        self.conversations.deleted.connect(self._on_deleted)
        self.conversations.error_occurred.connect(self._show_error)
        self.metrics = MetricsPanel()
        self._dock("Conversations", self.conversations, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Performance", self.metrics, Qt.DockWidgetArea.RightDockWidgetArea)
        self.models_label = QLabel()
        self.statusBar().addPermanentWidget(self.models_label)
        self._build_menus()
        self._show_models()
        fit_to_screen(self)
        if controller.started:
            self.on_event(StateChanged(controller.state))
            self._show_conversation(controller.conversation_id)
        controller.subscribe(self.on_event)

    def _fix_badge_size(self) -> None:
        """A fixed size: the badge changes text several times a turn, and a label whose size
        may change makes Qt lay out the whole window again (15-40 ms) each time."""
        self.state_badge.ensurePolished()
        font = QFont(self.state_badge.font())
        font.setBold(True)
        metrics = QFontMetrics(font)
        words = [*_STATE_WORDS.values(), "Starting…", "Not started"]
        self.state_badge.setFixedSize(max(metrics.horizontalAdvance(w) for w in words) + 34,
                                      self.state_badge.sizeHint().height())
        self.state_badge.setAlignment(Qt.AlignmentFlag.AlignCenter)

    # -- layout ----------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(scrolling(widget))
        self.addDockWidget(area, dock)

    def _build_menus(self) -> None:
        def action(menu: Any, text: str, slot: Any, shortcut: str = "") -> QAction:
            act = QAction(text, self)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        file = self.menuBar().addMenu("&File")
        file.addAction(self.conversations.new_action)  # owns Ctrl+N
        action(file, "&Type a message", self.input.setFocus, "Ctrl+L")
        file.addSeparator()
        action(file, "&Quit", self.close, "Ctrl+Q")
        tools = self.menuBar().addMenu("&Tools")
        action(tools, "&Models…", lambda _=False: self.show_models(), "Ctrl+Shift+M")
        action(tools, "Audio &devices…", self.show_devices, "Ctrl+Shift+D")
        action(tools, "&Settings…", self.show_settings, "Ctrl+,")
        tools.addSeparator()
        self.cloud_action = action(tools, "Cloud &mode", lambda _=False: self.run_async(
            self.switch_mode(self.controller.cloud_settings is None)), "Ctrl+K")
        self.cloud_action.setCheckable(True)
        action(tools, "C&loud…", lambda _=False: self.show_cloud_dialog())
        view = self.menuBar().addMenu("&View")
        for dock in self.findChildren(QDockWidget):
            view.addAction(dock.toggleViewAction())
        themes = view.addMenu("&Theme")
        for name in ("system", "light", "dark"):
            action(themes, name.capitalize(), lambda _=False, n=name: self.set_theme(n))
        help_menu = self.menuBar().addMenu("&Help")
        action(help_menu, "&Keyboard shortcuts", self._show_shortcuts, "F1")

    # -- commands --------------------------------------------------------------------------
    def run_async(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Start a controller coroutine from a Qt slot; its failure lands in the status bar."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self._show_error(str(t.exception()), "")

        task.add_done_callback(done)
        return task

    def _send(self) -> None:
        text = self.input.text().strip()
        if text:
            self.input.clear()
            self.run_async(self.controller.send_text(text))

    def _on_mute(self, muted: bool) -> None:
        self.controller.set_muted(muted)
        self.mute.setText("Un&mute" if muted else "&Mute")

    async def start(self) -> bool:
        """Start the conversation. Chosen catalog models that are not installed are offered
        first (`FirstRunDialog`); the engines then start without any still missing. While
        another model is missing or broken the window stays: it says what is wrong, opens
        the model switcher on that kind, and tries again once the user has downloaded or
        chosen a model (or closed the switcher). False if the user closed the window."""
        if offer := self.controller.models_to_offer():
            self._retry = asyncio.get_running_loop().create_future()
            self.first_run = FirstRunDialog(self.controller, offer, self)
            self.first_run.finished.connect(lambda _: self._try_start_again())
            self.first_run.open()
            if not await self._retry:
                return False
        while True:
            try:
                await self.controller.start(
                    without=[m.kind for m in self.controller.models_to_offer()])
                return True
            except ParleyError as err:
                self._show_error(err.message, err.hint or
                                 "Download or choose a model in the window that opened.")
                self.state_badge.setText("Not started")
                self._retry = asyncio.get_running_loop().create_future()
                missing = self.controller.missing_models()
                self.show_models(missing[0] if missing else None)
                if not await self._retry:
                    return False

    def _try_start_again(self, go_on: bool = True) -> None:
        if self._retry is not None and not self._retry.done():
            self._retry.set_result(go_on)

    def show_models(self, kind: Kind | None = None) -> None:
        """The model switcher, on `kind`'s tab with its chosen model selected if given."""
        if self.models_dialog is None:
            self.models_dialog = ModelsDialog(self.controller, self)
            self.models_dialog.models_changed.connect(self._try_start_again)
            self.models_dialog.finished.connect(lambda _: self._try_start_again())
        self.models_dialog.show()
        self.models_dialog.raise_()
        if kind is not None:
            self.models_dialog.select(kind, self.controller.settings.model(kind))

    def show_devices(self) -> None:
        if self.devices_dialog is None:
            self.devices_dialog = DevicesDialog(self.controller, self)
        self.devices_dialog.show()
        self.devices_dialog.raise_()

    async def switch_mode(self, cloud: bool) -> bool:
        """Local ⇄ cloud; with no API key, the cloud dialog opens so one can be added, and
        saving it switches."""
        switched = await self.controller.set_cloud(cloud)
        if not switched and cloud and not has_key():
            self.show_cloud_dialog(switch_after=True)
        self._show_mode()
        return switched

    def show_cloud_dialog(self, switch_after: bool = False) -> None:
        if self.cloud_dialog is not None:
            self.cloud_dialog.close()
        dialog = self.cloud_dialog = CloudDialog(self.controller, self)
        if switch_after:
            dialog.accepted.connect(lambda: self.run_async(self.switch_mode(True)))
        dialog.show()
        dialog.raise_()

    def show_settings(self) -> None:
        SettingsDialog(self.controller, self).exec()

    def set_theme(self, name: str) -> None:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, name)
        self.run_async(self.controller.update_settings({"ui": {"theme": name}}))

    def _show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in SHORTCUTS)
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{rows}</table>")

    # -- keys: hold Space to talk (unless typing) --------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.controller.stop_speaking()
        elif event.key() == Qt.Key.Key_Space and not self.input.hasFocus():
            if not event.isAutoRepeat():
                self.controller.press_to_talk()
                self.talk.setDown(True)
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not self.input.hasFocus():
            if not event.isAutoRepeat():
                self.controller.release_to_talk()
                self.talk.setDown(False)
        else:
            super().keyReleaseEvent(event)

    # -- rendering -------------------------------------------------------------------------
    def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, StateChanged):
            self.state_badge.setText(_STATE_WORDS.get(event.state, event.state))
            self.state_badge.setProperty("state", str(event.state))
            self.state_badge.style().unpolish(self.state_badge)
            self.state_badge.style().polish(self.state_badge)
        elif isinstance(event, MicLevel):
            self.level.setValue(max(-60, round(event.db)))
        elif isinstance(event, UserSaid):
            self.conversation.add("user", event.text)
        elif isinstance(event, AssistantDelta):
            self.conversation.assistant_delta(event.delta)
        elif isinstance(event, AssistantDone):
            self.conversation.assistant_done(event.text)
        elif isinstance(event, ToolCalled):
            self.conversation.tool_called(event.name, event.arguments, event.waiting)
        elif isinstance(event, ToolFinished):
            self.conversation.tool_finished(event.name, event.result)
        elif isinstance(event, Announcement):
            self.conversation.announcement(event.text)
        elif isinstance(event, Interrupted):
            self.conversation.assistant_interrupted(event.heard_text)
            self.statusBar().showMessage(
                "Stopped speaking." if event.by == "stop" else "You interrupted; listening.",
                4000)
        elif isinstance(event, InterruptionIgnored):
            self.statusBar().showMessage("That was only a noise; carrying on.", 4000)
        elif isinstance(event, ErrorOccurred):
            self._show_error(event.message, event.hint)
        elif isinstance(event, ModelLoading):
            self.statusBar().showMessage(f"Loading {event.kind.upper()} model {event.name}…")
        elif isinstance(event, ModelChanged):
            self._show_models()
            self.statusBar().showMessage(f"{event.kind.upper()} model ready: {event.name}", 5000)
            if self.state_badge.text() == "Starting…":
                self.state_badge.setText(_STATE_WORDS["listening"])
        elif isinstance(event, ModelFailed):
            self._show_error(f"{event.message} The previous {event.kind.upper()} model is "
                             "still in use.", event.hint)
        elif isinstance(event, ModelsMissing):
            self.missing.show_missing(event)
        elif isinstance(event, ConversationOpened):
            self._show_conversation(event.id)
        elif isinstance(event, ModeChanged):
            self._show_mode()
            if event.mode == "cloud":
                self.statusBar().showMessage("Cloud mode: the conversation goes on through "
                                             "OpenAI.", 5000)
        if isinstance(event, UserSaid | TurnMetrics | ConversationOpened):
            self.conversations.refresh(self.controller.conversation_id)
        self.metrics.on_event(event)
        for dialog in (self.models_dialog, self.devices_dialog):
            if dialog is not None:
                dialog.on_event(event)

    def _show_mode(self) -> None:
        """The mode controls and the models label as the controller has them."""
        cloud = self.controller.cloud_settings is not None
        self.where.blockSignals(True)
        self.where.setCurrentIndex(1 if cloud else 0)
        self.where.blockSignals(False)
        self.cloud_action.setChecked(cloud)
        self.mode.setEnabled(not cloud)
        self.mode.setToolTip("In cloud mode, turn detection is a cloud setting (Tools → "
                             "Cloud…)." if cloud else "")
        self._show_models()

    def _show_models(self) -> None:
        """The active models, from the controller (so a window opened later shows them too)."""
        cloud = self.controller.cloud_settings
        if cloud is not None:
            self.models_label.setText(f"Cloud: {cloud.model} · voice {cloud.voice}")
        elif self.controller.started:
            self.models_label.setText("  ·  ".join(
                f"{kind.upper()}: {ref.name}"
                for kind, ref in sorted(self.controller.active_models().items())))

    def _on_deleted(self, conversation_id: int) -> None:
        """The open conversation was deleted: continue in a fresh one."""
        if conversation_id == self.controller.conversation_id:
            self.controller.new_conversation()

    def _show_conversation(self, conversation_id: int) -> None:
        self.conversation.clear()
        for turn in self.controller.turns(conversation_id):
            if turn.role in ("user", "assistant"):
                self.conversation.add(turn.role, turn.text, turn.created_at)

    def _show_error(self, message: str, hint: str) -> None:
        text = f"⚠ {message}" + (f" — {hint}" if hint else "")
        self.statusBar().showMessage(text)
        self.statusBar().setToolTip(text)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.controller.unsubscribe(self.on_event)
        self._try_start_again(False)
        for task in self._tasks:
            task.cancel()
        super().closeEvent(event)
