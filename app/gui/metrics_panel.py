"""Where the time of each turn went, live: the numbers that decide whether Parley feels quick.

Everything is computed from the events the Agent already publishes (TurnMetrics, the reply's
AssistantDelta stream, ProcessUsage); the panel measures nothing on its own engines.
"""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QColor, QFontMetrics, QPalette, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.conversation import metrics
from app.conversation.events import (
    AgentEvent,
    AssistantDelta,
    ProcessUsage,
    RateLimitsUpdated,
    TurnMetrics,
)

_COLOURS = {metrics.END_OF_TURN: "#D55E00", metrics.TRANSCRIBE: "#0072B2",
            metrics.FIRST_TOKEN: "#E69F00", metrics.FIRST_PHRASE: "#009E73",
            metrics.FIRST_AUDIO: "#CC79A7", metrics.OTHER: "#8C8C8C"}
"""The stages in the Okabe-Ito colours: distinct for colour-blind eyes and readable on light
and dark backgrounds alike."""

_GUI_COLOUR, _WORKER_COLOUR = _COLOURS[metrics.TRANSCRIBE], _COLOURS[metrics.FIRST_TOKEN]
_BARS = 8
_TABLE_ROWS = 50
_USAGE_SAMPLES = 60
_STAGGER_MS = 25
_COLUMNS = ("#", "You said", "To first audio (ms)", "End of turn (ms)", "Transcribe (ms)",
            "First token (ms)", "First phrase (ms)", "First audio (ms)", "Tokens/s", "STT RTF",
            "TTS RTF", "Tokens in / out")
_CSV_FIRST = (metrics.END_OF_SPEECH_TO_FIRST_AUDIO, metrics.STT, metrics.AUDIO_SECONDS,
              metrics.LLM_FIRST_TOKEN, metrics.LLM_FIRST_PIECE, metrics.TTS_FIRST_AUDIO)
"""The CSV's first metric columns, in this order whether or not a turn has them; any other
metric follows, sorted."""


@dataclass(frozen=True)
class TurnRecord:
    """One answered turn with the figures derived from it."""

    turn: int
    when: float
    user_text: str
    assistant_text: str
    metrics_ms: dict[str, float]
    tokens: dict[str, int]
    stages: dict[str, float]
    tokens_per_s: float | None
    stt_rtf: float | None
    tts_rtf: float | None

    @property
    def first_audio_ms(self) -> float | None:
        return self.metrics_ms.get(metrics.END_OF_SPEECH_TO_FIRST_AUDIO)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


class MetricsPanel(QWidget):
    """Per-turn stage chart, latency trend, throughput, resource use, a table and a CSV."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Performance")
        self.turns: list[TurnRecord] = []
        self.usage: deque[tuple[float, ProcessUsage]] = deque(maxlen=_USAGE_SAMPLES)
        """(arrival time, sample): the x axis is real seconds, whatever the sampling rate."""
        self._deltas: dict[int, tuple[float, float]] = {}
        """Per turn, when its first and latest reply text arrived: the decode rate."""

        self.tiles: dict[str, QLabel] = {}
        tiles = QGridLayout()
        for i, (name, tip) in enumerate((
                ("To first audio", "End of your speech (or Enter) until Parley's voice starts."),
                ("Tokens/s", "Reply tokens per second, from the first token to the last."),
                ("STT RTF", "Transcription time ÷ length of the speech: below 1 is faster "
                            "than real time. Only spoken turns have one."),
                ("TTS RTF", "Synthesis time ÷ length of the audio made: below 1 is faster "
                            "than real time."))):
            caption, value = QLabel(name), QLabel("—")
            caption.setToolTip(tip)
            value.setToolTip(tip)
            value.setAccessibleName(name)
            value.setAccessibleDescription(tip)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByKeyboard
                                          | Qt.TextInteractionFlag.TextSelectableByMouse)
            font = value.font()
            font.setPointSizeF(font.pointSizeF() * 1.35)
            font.setBold(True)
            value.setFont(font)
            # fixed, so a new figure repaints the tile without re-laying out the window
            value.setFixedSize(QFontMetrics(font).horizontalAdvance("00,000 ms") + 8,
                               QFontMetrics(font).height() + 4)
            tiles.addWidget(caption, 0, i)
            tiles.addWidget(value, 1, i)
            self.tiles[name] = value

        self.stage_plot = self._plot("Stage times of the last turns", 150)
        self.stage_bars: dict[str, pg.BarGraphItem] = {}
        self.stage_plot.invertY(True)
        for name in metrics.STAGES:
            bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.6, brush=_COLOURS[name],
                                   pen=pg.mkPen(None), name=name)
            self.stage_plot.addItem(bars)
            self.stage_bars[name] = bars
        self.legend = QLabel("  ".join(
            f'<span style="color:{_COLOURS[name]}">■</span>&nbsp;{name}'
            for name in metrics.STAGES))
        self.legend.setWordWrap(True)
        self.legend.setAccessibleName("Stage colours")
        self.legend.setToolTip("End of turn: the pause that tells Parley you have finished. "
                               "Transcribe: speech to text. First token: until the LLM's first "
                               "word. First phrase: until a phrase is ready to speak. First "
                               "audio: synthesizing it. Other: the rest (handing over, queues).")

        self.latency_plot = self._plot("End of speech to first audio, per turn", 110)
        self.latency_line = self.latency_plot.plot([], [], symbol="o", symbolSize=6)

        self.usage_plot = self._plot("CPU use of the window and the engine worker", 90)
        self.usage_plot.setXRange(-_USAGE_SAMPLES, 0, padding=0.02)
        self._usage_ceiling = 0.0
        self.gui_cpu_line = self.usage_plot.plot([], [])
        self.worker_cpu_line = self.usage_plot.plot([], [])
        self.usage_label = QLabel("CPU and memory: waiting for the first sample…")
        self.usage_label.setAccessibleName("CPU and memory use")
        self.usage_label.setWordWrap(True)

        self.limits_label = QLabel()
        self.limits_label.setAccessibleName("Cloud rate limits")
        self.limits_label.setWordWrap(True)
        self.limits_label.setVisible(False)

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setAccessibleName("Last turns")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setMinimumHeight(120)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.
                                                           ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(1, 130)

        self.export_button = QPushButton("&Export CSV…")
        self.export_button.setAccessibleName("Export the turns as CSV")
        self.export_button.clicked.connect(self._ask_export)
        self.export_status = QLabel()
        self.export_status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(tiles)
        for widget in (self._caption("Where the time went"), self.stage_plot, self.legend,
                       self._caption("Latency over turns"), self.latency_plot,
                       self._caption("Resources"), self.usage_plot, self.usage_label,
                       self.limits_label):
            layout.addWidget(widget)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.export_status, 1)
        bottom.addWidget(self.export_button)
        layout.addLayout(bottom)
        self._apply_palette()

    @staticmethod
    def _caption(text: str) -> QLabel:
        label = QLabel(f"<b>{text}</b>")
        label.setAccessibleName(text)
        return label

    @staticmethod
    def _plot(name: str, height: int) -> pg.PlotWidget:
        """A static chart: no mouse panning, yet a tab stop whose description reads out the
        numbers for those who cannot see it."""
        plot = pg.PlotWidget()
        plot.setAccessibleName(name)
        plot.setAccessibleDescription("No turns yet.")
        plot.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        plot.setMinimumHeight(height)
        plot.setMaximumHeight(height + 60)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.disableAutoRange()  # the panel sets each range itself, only when it must change
        return plot

    # -- events ----------------------------------------------------------------------------
    def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, AssistantDelta):
            now = time.perf_counter()
            first, _ = self._deltas.get(event.turn, (now, now))
            self._deltas[event.turn] = (first, now)
        elif isinstance(event, TurnMetrics):
            self.add_turn(event)
        elif isinstance(event, ProcessUsage):
            self.usage.append((time.monotonic(), event))
            self._show_usage()
        elif isinstance(event, RateLimitsUpdated):
            self._show_limits(event)

    def add_turn(self, event: TurnMetrics) -> TurnRecord:
        values = event.metrics_ms
        completion = event.tokens.get("completion", 0)
        first, last = self._deltas.pop(event.turn, (0.0, 0.0))
        self._deltas = {t: times for t, times in self._deltas.items() if t > event.turn}
        measured = (completion - 1) / (last - first) if completion > 1 and last > first else None
        audio_s = values.get(metrics.AUDIO_SECONDS)
        tts_audio_s = values.get(metrics.TTS_AUDIO_SECONDS)
        record = TurnRecord(
            turn=event.turn, when=time.time(), user_text=event.user_text,
            assistant_text=event.assistant_text, metrics_ms=dict(values),
            tokens=dict(event.tokens), stages=metrics.stage_times(values),
            tokens_per_s=values.get(metrics.TOKENS_PER_S, measured),
            stt_rtf=_ratio(values.get(metrics.STT), audio_s * 1000 if audio_s else None),
            tts_rtf=_ratio(values.get(metrics.TTS_MS), tts_audio_s * 1000 if tts_audio_s else None),
        )
        self.turns.append(record)
        self._show_tiles()
        self._add_row(record)
        # Each chart costs ~8 ms to repaint; drawn in one pass with the tiles, the table and
        # the reply's last words they held the window up to 50 ms. Staggered, no pass
        # takes long.
        QTimer.singleShot(_STAGGER_MS, self, self._show_stages)
        QTimer.singleShot(2 * _STAGGER_MS, self, self._show_latency)
        return record

    # -- rendering -------------------------------------------------------------------------
    def _show_tiles(self) -> None:
        """Each tile shows the latest turn that has that figure: a typed turn has no STT."""
        def latest(value: Callable[[TurnRecord], float | None]) -> float | None:
            return next((v for r in reversed(self.turns) if (v := value(r)) is not None), None)

        first_audio = latest(lambda r: r.first_audio_ms)
        self.tiles["To first audio"].setText(
            "—" if first_audio is None else f"{first_audio:,.0f} ms")
        self.tiles["Tokens/s"].setText(_fmt(latest(lambda r: r.tokens_per_s), 1))
        self.tiles["STT RTF"].setText(_fmt(latest(lambda r: r.stt_rtf), 2))
        self.tiles["TTS RTF"].setText(_fmt(latest(lambda r: r.tts_rtf), 2))

    def _show_stages(self) -> None:
        shown = self.turns[-_BARS:][::-1]  # newest on top, as in the table
        for name in metrics.STAGES:
            lefts = [sum(v for k, v in r.stages.items() if _before(k, name)) for r in shown]
            widths = [r.stages.get(name, 0.0) for r in shown]
            self.stage_bars[name].setOpts(x0=lefts, y=list(range(len(shown))), width=widths)
        self.stage_plot.getAxis("left").setTicks(
            [[(i, f"#{r.turn}") for i, r in enumerate(shown)]])
        self.stage_plot.setYRange(-0.6, max(len(shown), 2) - 0.4, padding=0)
        self.stage_plot.setXRange(0, max(sum(r.stages.values()) for r in shown) * 1.05 or 1,
                                  padding=0)
        last = shown[0]
        self.stage_plot.setAccessibleDescription(
            f"Turn {last.turn}: " + ", ".join(f"{k} {v:,.0f} ms" for k, v in last.stages.items()))

    def _show_latency(self) -> None:
        points = [(r.turn, r.first_audio_ms) for r in self.turns if r.first_audio_ms is not None]
        self.latency_line.setData([p[0] for p in points], [p[1] for p in points])
        if points:
            values = [p[1] for p in points]
            self.latency_plot.getAxis("bottom").setTickSpacing(
                major=max(1, len(self.turns) // 6), minor=1)
            self.latency_plot.setYRange(0, max(values) * 1.1, padding=0)
            turns = [p[0] for p in points]
            self.latency_plot.setXRange(min(turns) - 0.5, max(turns) + 0.5, padding=0)
            self.latency_plot.setAccessibleDescription(
                f"{len(values)} turns; latest {values[-1]:,.0f} ms, best {min(values):,.0f} ms,"
                f" worst {max(values):,.0f} ms.")

    def _add_row(self, record: TurnRecord) -> None:
        cells = (str(record.turn), record.user_text, _fmt(record.first_audio_ms),
                 *(_fmt(record.stages.get(s)) for s in metrics.STAGES if s != metrics.OTHER),
                 _fmt(record.tokens_per_s, 1), _fmt(record.stt_rtf, 2), _fmt(record.tts_rtf, 2),
                 _token_cell(record.tokens))
        self.table.insertRow(0)
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if column == len(cells) - 1 and record.tokens:
                item.setToolTip(", ".join(f"{k}: {v:,}" for k, v in record.tokens.items()))
            if column != 1:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            else:
                item.setToolTip(f"You: {record.user_text}\nParley: {record.assistant_text}")
            self.table.setItem(0, column, item)
        if self.table.rowCount() > _TABLE_ROWS:
            self.table.removeRow(_TABLE_ROWS)

    def _show_usage(self) -> None:
        """Once a second. Repainting the chart is the costliest thing the window does while
        a turn runs, so a hidden panel only keeps the samples, and the axes move only when
        the scale must change."""
        samples = [s for _, s in self.usage]
        now = samples[-1]
        if self.isVisible():
            latest = self.usage[-1][0]
            ago = [t - latest for t, _ in self.usage]
            self.gui_cpu_line.setData(ago, [s.gui_cpu for s in samples])
            self.worker_cpu_line.setData(ago, [s.worker_cpu for s in samples])
            ceiling = max(100.0, *(s.worker_cpu for s in samples),
                          *(s.gui_cpu for s in samples))
            if ceiling != self._usage_ceiling:
                self._usage_ceiling = ceiling
                self.usage_plot.setYRange(0, ceiling, padding=0.05)
        text = (f"Window: {now.gui_cpu:.0f} % CPU, {now.gui_mb:,.0f} MB  ·  "
                f"Worker: {now.worker_cpu:.0f} % CPU, {now.worker_mb:,.0f} MB")
        self.usage_label.setText(
            f'<span style="color:{_GUI_COLOUR}">■</span>&nbsp;Window: {now.gui_cpu:.0f} % CPU,'
            f' {now.gui_mb:,.0f} MB &nbsp; <span style="color:{_WORKER_COLOUR}">■</span>&nbsp;'
            f"Worker: {now.worker_cpu:.0f} % CPU, {now.worker_mb:,.0f} MB")
        self.usage_plot.setAccessibleDescription(text + " (CPU: % of one core, last minute).")

    def _show_limits(self, event: RateLimitsUpdated) -> None:
        """Cloud mode: how much of each limit is left, so a slowdown is no surprise."""
        parts = [f"{limit.name}: {limit.remaining:,} of {limit.limit:,} left"
                 + (f", resets in {limit.reset_seconds:.0f} s" if limit.reset_seconds else "")
                 for limit in event.limits]
        self.limits_label.setText("Cloud limits — " + "; ".join(parts) if parts else "")
        self.limits_label.setVisible(bool(parts))

    def showEvent(self, event: QShowEvent) -> None:
        """Catch up with the samples taken while hidden."""
        super().showEvent(event)
        if self.usage:
            self._show_usage()

    # -- palette ---------------------------------------------------------------------------
    def changeEvent(self, event: QEvent) -> None:
        """Follow a light/dark theme switch: the charts are drawn, not styled."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange):
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        accent = palette.color(QPalette.ColorRole.Highlight)
        for plot in (self.stage_plot, self.latency_plot, self.usage_plot):
            plot.setBackground(base)
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setPen(pg.mkPen(text))
                axis.setTextPen(pg.mkPen(text))
        self.stage_plot.setLabel("bottom", "ms", color=text.name())
        self.latency_plot.setLabel("left", "ms", color=text.name())
        self.latency_plot.setLabel("bottom", "turn", color=text.name())
        self.latency_line.setPen(pg.mkPen(accent, width=2))
        self.latency_line.setSymbolBrush(accent)
        self.latency_line.setSymbolPen(pg.mkPen(accent))
        self.usage_plot.setLabel("bottom", "seconds ago", color=text.name())
        self.usage_plot.setLabel("left", "CPU %", color=text.name())
        self.gui_cpu_line.setPen(pg.mkPen(QColor(_GUI_COLOUR), width=2))
        self.worker_cpu_line.setPen(pg.mkPen(QColor(_WORKER_COLOUR), width=2))

    # -- export ----------------------------------------------------------------------------
    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export turn metrics", "parley-metrics.csv",
                                              "CSV files (*.csv)")
        if path:
            self.export_csv(Path(path))

    def export_csv(self, path: Path) -> int:
        """Write one row per turn with every metric; returns the number of rows. A failure is
        shown beside the button rather than raised into the event loop."""
        extra = sorted({k for r in self.turns for k in r.metrics_ms} - set(_CSV_FIRST))
        metric_keys = [*_CSV_FIRST, *extra]
        header = ["turn", "time", "user_text", "assistant_text", *metric_keys,
                  *(f"stage_{name.lower().replace(' ', '_')}" for name in metrics.STAGES),
                  "prompt_tokens", "completion_tokens", "tokens_per_s", "stt_rtf", "tts_rtf"]
        try:
            with Path(path).open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                for r in self.turns:
                    writer.writerow([
                        r.turn, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r.when)),
                        r.user_text, r.assistant_text,
                        *(_cell(r.metrics_ms.get(k)) for k in metric_keys),
                        *(_cell(r.stages.get(name)) for name in metrics.STAGES),
                        r.tokens.get("prompt", ""), r.tokens.get("completion", ""),
                        _cell(r.tokens_per_s), _cell(r.stt_rtf), _cell(r.tts_rtf)])
        except OSError as err:
            self.export_status.setText(f"Could not write {path}: {err.strerror or err}.")
            return 0
        self.export_status.setText(f"Saved {len(self.turns)} turns to {Path(path).name}.")
        return len(self.turns)


def _before(stage: str, name: str) -> bool:
    return metrics.STAGES.index(stage) < metrics.STAGES.index(name)


def _token_cell(tokens: dict[str, int]) -> str:
    """Prompt / completion tokens of the turn: what a cloud turn is billed by (the tooltip
    has the audio and cached parts)."""
    if "prompt" not in tokens and "completion" not in tokens:
        return "—"
    return f"{tokens.get('prompt', 0):,} / {tokens.get('completion', 0):,}"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
