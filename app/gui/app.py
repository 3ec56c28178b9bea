"""Starts the window on a qasync loop: Qt and asyncio share one thread and one event loop."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from app.conversation.events import AgentEvent, TurnMetrics
from app.settings import RESOURCES, Settings


def run_gui(settings: Settings, screenshot: Path | None = None,
            max_turns: int | None = None, cloud: bool = False, kiosk: bool = False) -> int:
    """Open the window, load the models behind it, and run until the window closes
    (`cloud`: then switch the conversation to cloud mode, as the user can at any time;
    `kiosk`: the full-screen kiosk window instead of the desktop one).

    With `max_turns` the window closes after that many answered turns; `screenshot` saves
    the window just before closing (or, without `max_turns`, once the models are loaded) —
    for smoke tests of a bundle and for the docs."""
    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.control.controller import Controller
    from app.gui.kiosk_window import KioskWindow
    from app.gui.main_window import MainWindow
    from app.gui.theme import apply_theme, configure_high_dpi
    from app.storage import Storage, default_db_path
    from app.watchdog import Watchdog

    configure_high_dpi()
    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("Parley")
    app.setDesktopFileName("parley")  # Wayland finds the icon through packaging/parley.desktop
    app.setWindowIcon(QIcon(str(RESOURCES / "parley.png")))
    apply_theme(app, settings.ui.theme)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    storage = Storage(default_db_path())
    controller = Controller(settings, storage)
    window: MainWindow | KioskWindow
    if kiosk:
        window = KioskWindow(controller)
        window.show_kiosk()
    else:
        window = MainWindow(controller)
        window.show()
    closed: asyncio.Future[None] = loop.create_future()

    def on_quit() -> None:
        if not closed.done():
            closed.set_result(None)

    app.aboutToQuit.connect(on_quit)
    stopped_by: list[int] = []

    def stop(signum: int) -> None:
        """Ctrl+C in the terminal, or SIGTERM: close as the window's own close does."""
        stopped_by.append(signum)
        window.close()
        app.quit()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)

    watchdog = Watchdog()  # systemd's notify socket, when started by parley.service

    async def main() -> int:
        watchdog.start()  # while the models load, keeps systemd's start timeout open
        if not await window.start():
            return 2
        watchdog.ready()  # from now on a stalled loop stops the pings: systemd restarts it
        if cloud and isinstance(window, MainWindow):
            await window.switch_mode(True)
        elif cloud:
            await controller.set_cloud(True)
        if max_turns is not None:
            turns = 0

            def count(event: AgentEvent) -> None:
                nonlocal turns
                if isinstance(event, TurnMetrics):
                    turns += 1
                    if turns >= max_turns:
                        QTimer.singleShot(300, finish)

            controller.subscribe(count)
        elif screenshot is not None:
            QTimer.singleShot(500, finish)
        await closed
        return 0

    def finish() -> None:
        if screenshot is not None:
            window.grab().save(str(screenshot))
        app.quit()

    try:
        with loop:
            code: int = loop.run_until_complete(main())
            watchdog.stopping()
            loop.run_until_complete(controller.close())
    finally:
        storage.close()
    if stopped_by:
        print("parley: stopped.", file=sys.stderr)
        return 128 + stopped_by[0]
    return code
