"""`make bench` (part 2): does the window's event loop ever stall?

A 5 ms QTimer samples the Qt loop while the real window loads its models, opens the
microphone and speaker (a private PulseAudio server, as on a desktop), answers typed
turns, switches the LLM and reloads the voice. Any gap beyond the timer period is time
the window could not repaint or react. Reports max and p99 of those gaps per phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TICK_MS = 5


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def main() -> None:
    from tests.pulse import PulseAudio

    with PulseAudio():
        measure()


def measure() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    os.environ["PARLEY_CONFIG"] = str(tmp / "config.toml")
    os.environ["PARLEY_DATA_DIR"] = str(tmp / "data")
    import qasync
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.control.controller import Controller
    from app.gui.main_window import MainWindow
    from app.settings import load_settings
    from app.storage import Storage, default_db_path

    app = QApplication(sys.argv)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    storage = Storage(default_db_path())
    controller = Controller(load_settings(), storage)
    window = MainWindow(controller)
    window.show()

    gaps: dict[str, list[float]] = {}
    phase = ["idle"]
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.setdefault(phase[0], []).append(max(0.0, (now - last[0]) * 1000 - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()

    async def scenario() -> None:
        await asyncio.sleep(0.3)
        phase[0] = "load models"
        await controller.start()
        phase[0] = "typed turns"
        for text in ("Hello there!", "Why is the sky blue?", "Tell me a short joke."):
            await controller.send_text(text)
        phase[0] = "switch LLM"
        await controller.switch_model("llm", controller.settings.model("llm"))
        phase[0] = "reload voice"
        await controller.update_settings({"tts": {"length_scale": 1.1}})
        phase[0] = "turn after switches"
        await controller.send_text("Thank you.")
        phase[0] = "done"

    with loop:
        loop.run_until_complete(scenario())
        loop.run_until_complete(controller.close())
    storage.close()
    report: dict[str, Any] = {}
    for name, values in gaps.items():
        if name == "done":
            continue
        report[name] = {"samples": len(values), "max_stall_ms": round(max(values), 1),
                        "p99_stall_ms": round(pct(values, 0.99), 1),
                        "median_stall_ms": round(statistics.median(values), 2)}
    everything = [v for k, vs in gaps.items() if k != "done" for v in vs]
    report["all"] = {"samples": len(everything), "max_stall_ms": round(max(everything), 1),
                     "p99_stall_ms": round(pct(everything, 0.99), 1)}
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "gui_loop.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| phase | samples | max stall ms | p99 stall ms |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['samples']} | {v['max_stall_ms']} | {v['p99_stall_ms']} |"
              for k, v in report.items()]
    table = "\n".join(lines)
    (out / "gui_loop.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
