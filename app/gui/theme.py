"""Light and dark looks for the window: a Fusion palette plus a small stylesheet.

Fusion draws every widget from the palette and looks the same on every platform, so one
palette per theme colours all standard widgets consistently; the stylesheets in
resources/styles add only what a palette cannot say (chat bubbles, the state badge).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.settings import RESOURCES

_STYLES = RESOURCES / "styles"
_THEME_PROPERTY = "parleyTheme"
_FOLLOWING_PROPERTY = "parleyFollowsSystem"

_Role = QPalette.ColorRole
_COLOURS: dict[str, dict[QPalette.ColorRole, str]] = {
    "light": {
        _Role.Window: "#f4f5f7", _Role.WindowText: "#1f2328", _Role.Base: "#ffffff",
        _Role.AlternateBase: "#eef0f3", _Role.ToolTipBase: "#ffffff",
        _Role.ToolTipText: "#1f2328", _Role.PlaceholderText: "#8c959f", _Role.Text: "#1f2328",
        _Role.Button: "#eceef1", _Role.ButtonText: "#1f2328", _Role.BrightText: "#cf222e",
        _Role.Light: "#ffffff", _Role.Midlight: "#e3e6ea", _Role.Mid: "#c6cbd1",
        _Role.Dark: "#9aa1aa", _Role.Shadow: "#6e7781", _Role.Highlight: "#2f6feb",
        _Role.HighlightedText: "#ffffff", _Role.Link: "#0969da", _Role.LinkVisited: "#8250df",
        _Role.Accent: "#2f6feb",
    },
    "dark": {
        _Role.Window: "#1e2126", _Role.WindowText: "#e6e8eb", _Role.Base: "#16181c",
        _Role.AlternateBase: "#23272e", _Role.ToolTipBase: "#2b3038",
        _Role.ToolTipText: "#e6e8eb", _Role.PlaceholderText: "#7d8590", _Role.Text: "#e6e8eb",
        _Role.Button: "#2b3038", _Role.ButtonText: "#e6e8eb", _Role.BrightText: "#ff7b72",
        _Role.Light: "#3b414b", _Role.Midlight: "#323740", _Role.Mid: "#262a31",
        _Role.Dark: "#111317", _Role.Shadow: "#000000", _Role.Highlight: "#3d7eff",
        _Role.HighlightedText: "#ffffff", _Role.Link: "#58a6ff", _Role.LinkVisited: "#bc8cff",
        _Role.Accent: "#3d7eff",
    },
}
_DISABLED: dict[str, str] = {"light": "#8c959f", "dark": "#6e7681"}
"""Text colour of disabled widgets, which must stay readable but look inactive."""


def configure_high_dpi() -> None:
    """Render at the screen's real scale (e.g. 150 %) instead of rounding it to 100 % or
    200 %, so text is crisp and sized as the user set it. Qt reads this only before the
    QApplication exists."""
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)


def palette(name: str) -> QPalette:
    """The palette of the "light" or "dark" theme."""
    result = QPalette()
    for role, colour in _COLOURS[name].items():
        result.setColor(role, QColor(colour))
    disabled = QColor(_DISABLED[name])
    for role in (_Role.WindowText, _Role.Text, _Role.ButtonText, _Role.HighlightedText):
        result.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    result.setColor(QPalette.ColorGroup.Disabled, _Role.Highlight,
                    QColor(_COLOURS[name][_Role.Mid]))
    return result


def resolve_theme(app: QApplication, name: str) -> str:
    """"light" or "dark": what `name` means now. "system" (and anything unknown, such as a
    typo in the settings file, which must not stop the window) follows the desktop."""
    if name in ("light", "dark"):
        return name
    return "dark" if app.styleHints().colorScheme() == Qt.ColorScheme.Dark else "light"


def apply_theme(app: QApplication, name: str) -> str:
    """Switch the whole application to `name` ("light", "dark" or "system") and return the
    look used ("light" or "dark"). With "system" it follows later desktop changes too."""
    hints = app.styleHints()
    if name in ("light", "dark"):
        # Tells the platform too, so native title bars and dialogs match.
        hints.setColorScheme(Qt.ColorScheme.Dark if name == "dark" else Qt.ColorScheme.Light)
    else:
        hints.setColorScheme(Qt.ColorScheme.Unknown)  # back to what the desktop says
    app.setProperty(_THEME_PROPERTY, name)
    look = resolve_theme(app, name)
    app.setStyle("Fusion")
    app.setPalette(palette(look))
    app.setStyleSheet((_STYLES / f"{look}.qss").read_text(encoding="utf-8"))
    if not app.property(_FOLLOWING_PROPERTY):
        app.setProperty(_FOLLOWING_PROPERTY, True)
        hints.colorSchemeChanged.connect(lambda _scheme: _follow_system(app))
    return look


def _follow_system(app: QApplication) -> None:
    """Re-apply when the desktop switches between light and dark, if the user chose
    "system"; a fixed choice stays put."""
    if app.property(_THEME_PROPERTY) not in ("light", "dark"):
        look = resolve_theme(app, "system")
        if app.palette().color(_Role.Window) != palette(look).color(_Role.Window):
            apply_theme(app, "system")
