"""The performance panel, fed by a real conversation: a spoken and a typed turn go through the
real Controller (worker, engines, PulseAudio devices) and show up in the charts, the table and
the CSV export."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QWidget

from app.conversation.events import ProcessUsage, TurnMetrics
from app.conversation.metrics import STAGES
from app.gui.metrics_panel import MetricsPanel
from tests.speech import conversation_wav

_TAB_POLICIES = (Qt.FocusPolicy.TabFocus, Qt.FocusPolicy.StrongFocus, Qt.FocusPolicy.WheelFocus)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def wait_for(loop: asyncio.AbstractEventLoop, condition: Callable[[], bool],
             timeout: float) -> None:
    """Run the Qt/asyncio loop (so the voice loop, the worker and Qt all progress) until
    `condition` holds."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    loop.run_until_complete(asyncio.wait_for(poll(), timeout))


def test_spoken_and_typed_turns_appear_in_the_chart_table_and_csv(
        controller: Any, pulse: Any, qtbot: Any, tmp_path: Path) -> None:
    panel = MetricsPanel()
    qtbot.addWidget(panel)
    panel.resize(480, 900)
    panel.show()
    events: list[object] = []
    controller.subscribe(panel.on_event)
    controller.subscribe(events.append)
    loop = controller.loop
    loop.run_until_complete(controller.update_settings({"llm": {"max_tokens": 48}}))

    # the user asks aloud: the microphone, the endpointer and every engine are real
    pulse.play_into_mic(conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"],
                                         gap_s=1.2), wait=False)
    wait_for(loop, lambda: len(panel.turns) == 1, timeout=300)
    # then types a second question
    typed = loop.run_until_complete(controller.send_text("Hello"))
    assert isinstance(typed, TurnMetrics)
    wait_for(loop, lambda: any(isinstance(e, ProcessUsage) for e in events), timeout=10)
    # the charts are drawn a moment after the turn, so the window never repaints all at once
    wait_for(loop, lambda: "Turn 2" in panel.stage_plot.accessibleDescription()
             and panel.latency_plot.accessibleDescription().startswith("2 turns"), timeout=5)

    spoken, second = panel.turns
    assert "moon" in spoken.user_text.lower()
    assert second.user_text == "Hello" and second.metrics_ms == typed.metrics_ms
    # the spoken turn has every stage; the typed one no transcription
    assert tuple(spoken.stages) == STAGES
    assert "Transcribe" not in second.stages
    assert spoken.stt_rtf is not None and 0 < spoken.stt_rtf < 5
    assert second.stt_rtf is None
    for turn in panel.turns:
        assert turn.first_audio_ms is not None
        assert sum(turn.stages.values()) == pytest.approx(turn.first_audio_ms)
        assert turn.tokens_per_s is not None and turn.tokens_per_s > 0  # a rate, not a speed test
        # the Agent reports synthesis time and speech length: Piper is far faster than speech
        assert turn.tts_rtf is not None and 0 < turn.tts_rtf < 1

    # chart: one stacked bar per turn (newest on top), segments end to end, the whole bar =
    # the latency
    bars = {name: item.opts for name, item in panel.stage_bars.items()}
    for row, turn in enumerate(reversed(panel.turns)):
        right = 0.0
        for name in STAGES:
            assert bars[name]["x0"][row] == pytest.approx(right)
            assert bars[name]["width"][row] == pytest.approx(turn.stages.get(name, 0.0))
            right += bars[name]["width"][row]
        assert right == pytest.approx(turn.first_audio_ms)
    xs, ys = panel.latency_line.getData()
    assert list(xs) == [1, 2]
    assert list(ys) == pytest.approx([t.first_audio_ms for t in panel.turns])
    assert "Turn 2" in panel.stage_plot.accessibleDescription()

    # tiles and table: newest first
    assert panel.tiles["To first audio"].text() == f"{second.first_audio_ms:,.0f} ms"
    assert panel.tiles["STT RTF"].text() == f"{spoken.stt_rtf:.2f}"  # the latest spoken turn
    assert panel.table.rowCount() == 2
    def cell(row: int, column: int) -> str:
        item = panel.table.item(row, column)
        assert item is not None
        return item.text()

    assert [cell(0, 0), cell(0, 1)] == ["2", "Hello"]
    assert cell(1, 2) == f"{spoken.first_audio_ms:,.0f}"
    assert cell(1, 9) == f"{spoken.stt_rtf:.2f}" and cell(0, 9) == "—"

    # resources of both processes
    usage = next(e for e in reversed(events) if isinstance(e, ProcessUsage))
    assert usage.gui_mb > 50 and usage.worker_mb > 100
    assert "Worker:" in panel.usage_label.text() and "MB" in panel.usage_label.text()
    assert len(panel.gui_cpu_line.getData()[0]) >= 1

    # CSV: one row per turn with every metric
    out = tmp_path / "metrics.csv"
    assert panel.export_csv(out) == 2
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["turn"] for r in rows] == ["1", "2"]
    assert rows[1]["user_text"] == "Hello"
    for line, turn in zip(rows, panel.turns, strict=True):
        for key, value in turn.metrics_ms.items():
            assert float(line[key]) == pytest.approx(value, abs=1e-3)
        assert int(line["completion_tokens"]) == turn.tokens["completion"] > 0
        assert float(line["tokens_per_s"]) > 0
    assert float(rows[0]["stt_rtf"]) > 0 and rows[1]["stt_rtf"] == ""
    assert "Saved 2 turns" in panel.export_status.text()

    DOCS.mkdir(parents=True, exist_ok=True)
    qtbot.wait(50)
    assert panel.grab().save(str(DOCS / "metrics.png"))


def test_the_panel_follows_a_dark_palette_and_every_part_is_reachable_by_keyboard(
        qtbot: Any, tmp_path: Path) -> None:
    panel = MetricsPanel()
    qtbot.addWidget(panel)
    dark = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, "#202124"),
                         (QPalette.ColorRole.Base, "#17181a"),
                         (QPalette.ColorRole.Text, "#e8eaed"),
                         (QPalette.ColorRole.WindowText, "#e8eaed")):
        dark.setColor(role, QColor(colour))
    panel.setPalette(dark)
    for plot in (panel.stage_plot, panel.latency_plot, panel.usage_plot):
        assert plot.backgroundBrush().color() == QColor("#17181a")
        assert plot.getAxis("bottom").textPen().color() == QColor("#e8eaed")

    tab_stops: list[QWidget] = []
    widget = panel.nextInFocusChain()
    while widget is not None and widget is not panel:  # the order Tab walks
        if widget.focusPolicy() in _TAB_POLICIES:
            tab_stops.append(widget)
        widget = widget.nextInFocusChain()
    for part in (panel.stage_plot, panel.latency_plot, panel.usage_plot, panel.table,
                 panel.export_button):
        assert part in tab_stops
        assert part.accessibleName()

    # a failed export is said beside the button, not raised into the event loop
    assert panel.export_csv(tmp_path) == 0
    assert "Could not write" in panel.export_status.text()


def test_synthesis_time_and_a_reported_decode_rate_are_used_when_the_agent_gives_them(
        qtbot: Any) -> None:
    panel = MetricsPanel()
    qtbot.addWidget(panel)
    record = panel.add_turn(TurnMetrics(
        1, "Hi", "Hello!", {"llm_first_token": 200.0, "tts_first_audio": 80.0,
                            "end_of_speech_to_first_audio": 300.0, "tts_ms": 450.0,
                            "tts_audio_seconds": 1.5, "tokens_per_s": 31.0},
        {"prompt": 10, "completion": 4}))
    assert record.tts_rtf == pytest.approx(0.3)
    assert record.tokens_per_s == 31.0
    assert record.stages == {"First token": 200.0, "First audio": 80.0, "Other": 20.0}
    assert panel.tiles["TTS RTF"].text() == "0.30"
