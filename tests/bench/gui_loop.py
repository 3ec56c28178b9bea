"""`make bench` (part 2): does the window's event loop ever stall?

A 5 ms QTimer samples the Qt loop while the real window loads its models, opens the
microphone and speaker (a private PulseAudio server, as on a desktop), answers typed
turns, switches the LLM and reloads the voice. Any gap beyond the timer period is time
the window could not repaint or react. Reports max and p99 of those gaps per phase, for the
desktop window and the kiosk window, each on a screen of the size given (`--screen`,
default a board's 1024x600; Qt's offscreen platform is told the size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TICK_MS = 5
WINDOWS = ("desktop", "kiosk")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--screen", default="1024x600", help="WIDTHxHEIGHT")
    parser.add_argument("--window", choices=WINDOWS, help="one window, in this process")
    args = parser.parse_args()
    if args.window is None:  # each window in a process of its own: one QApplication each
        for window in WINDOWS:
            subprocess.run([sys.executable, "-m", "tests.bench.gui_loop", "--screen",
                            args.screen, "--window", window], check=True)
        return
    from tests.pulse import PulseAudio

    width, height = (int(n) for n in args.screen.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    screens = tmp / "screens.json"
    screens.write_text(json.dumps({"screens": [{"name": "bench", "x": 0, "y": 0, "width": width,
                                                "height": height, "logicalDpi": 96}]}))
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={screens}"
    with PulseAudio():
        measure(tmp, args.window, args.screen)


def measure(tmp: Path, kind: str, screen: str) -> None:
    os.environ["PARLEY_CONFIG"] = str(tmp / "config.toml")
    os.environ["PARLEY_DATA_DIR"] = str(tmp / "data")
    import qasync
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.control.controller import Controller
    from app.gui.kiosk_window import KioskWindow
    from app.gui.main_window import MainWindow
    from app.settings import load_settings
    from app.storage import Storage, default_db_path

    app = QApplication(sys.argv)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    storage = Storage(default_db_path())
    controller = Controller(load_settings(), storage)
    window: MainWindow | KioskWindow
    if kind == "kiosk":
        window = KioskWindow(controller)
        window.show_kiosk()
    else:
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
        assert await window.start()
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
    name = f"gui_loop-{kind}-{screen}"
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"{kind} window, {screen} screen:", "",
             "| phase | samples | max stall ms | p99 stall ms |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['samples']} | {v['max_stall_ms']} | {v['p99_stall_ms']} |"
              for k, v in report.items()]
    table = "\n".join(lines)
    (out / f"{name}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
