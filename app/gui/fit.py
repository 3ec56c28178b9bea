"""Keeps the window within small screens (a 1024x600 board, a 1280x720 laptop).

The side panels scroll instead of forcing their full size on the window, and where the
screen is too narrow for both beside the conversation they share one dock as tabs.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

PANEL_MIN_WIDTH = 160
"""A panel can be this narrow: it scrolls sideways rather than widen the window."""


class _PanelArea(QScrollArea):
    """Asks for the panel's own size, so where there is room the panel gets it whole."""

    def sizeHint(self) -> QSize:
        panel = self.widget()
        if panel is None:
            return super().sizeHint()
        bar = self.verticalScrollBar().sizeHint().width()
        return panel.sizeHint() + QSize(bar, 0)


def scrolling(panel: QWidget) -> QScrollArea:
    """`panel` in a scroll area that follows the dock's size down to `PANEL_MIN_WIDTH`."""
    area = _PanelArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setMinimumWidth(PANEL_MIN_WIDTH)
    area.setAccessibleName(panel.accessibleName())
    return area


def fit_to_screen(window: QMainWindow) -> None:
    """Stack the docks as tabs when they do not fit beside each other; open the window wide
    enough for every panel whole, or maximized where the screen is smaller than that."""
    screen = window.screen().availableGeometry()
    docks = window.findChildren(QDockWidget)
    columns = len(docks)
    if columns > 1 and window.minimumSizeHint().width() > screen.width():
        first, *rest = docks
        for dock in rest:
            window.tabifyDockWidget(first, dock)
        first.raise_()
        columns = 1
    width = min(max(window.width(), window.sizeHint().width()), screen.width())
    height = min(window.height(), screen.height())
    window.resize(width, height)  # every panel whole where the screen has room
    if width == screen.width() or height == screen.height():
        window.setWindowState(Qt.WindowState.WindowMaximized)  # a desktop fits its frame in
        central = window.centralWidget()
        spare = screen.width() - (central.minimumSizeHint().width() if central else 0) - 24
        window.resizeDocks(docks, [max(PANEL_MIN_WIDTH, spare // max(columns, 1))] * len(docks),
                           Qt.Orientation.Horizontal)  # what the conversation leaves over
