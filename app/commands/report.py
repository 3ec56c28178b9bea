"""What the terminal front doors print and write: each turn as it ends, and the metrics JSON
(`--metrics-json`), whose shape is a contract shared by local and cloud runs."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

from app.conversation.events import AgentEvent, Announcement, Interrupted, TurnMetrics
from app.conversation.session import Session


def print_turn(event: AgentEvent) -> None:
    """What the window's conversation shows, as lines: each turn when it ends, a reply the
    user spoke over, and what Parley says unprompted (a timer going off)."""
    if isinstance(event, TurnMetrics):
        print(f"you: {event.user_text}\nparley: {event.assistant_text}", flush=True)
    elif isinstance(event, Interrupted) and event.by == "speech":
        print("parley: (you spoke over the reply: it stopped after "
              f"\"{event.heard_text or '…'}\")", flush=True)
    elif isinstance(event, Announcement):
        print(f"parley: {event.text}", flush=True)


def peak_rss_mb() -> float:
    """This process's own peak memory. Linux's VmHWM, unlike ru_maxrss, does not inherit
    the peak of the parent that forked us."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def turn_rows(turns: list[TurnMetrics]) -> list[dict[str, Any]]:
    """Each turn as the metrics JSON shows it, local or cloud. `usage` is the contract's
    name for the token counts; `tokens` (the same dict) stays for older readers."""
    return [{"turn": t.turn, "user_text": t.user_text, "assistant_text": t.assistant_text,
             "metrics_ms": {k: round(v, 1) for k, v in t.metrics_ms.items()},
             "usage": t.tokens, "tokens": t.tokens} for t in turns]


def local_metrics(session: Session) -> dict[str, Any]:
    """A local run: its turns, the models loaded, and how often the worker was restarted."""
    return {
        "turns": turn_rows(session.agent.turns),
        "models": session.models_report(),
        "worker_restarts": session.engines.restarts,
        "peak_rss_mb": peak_rss_mb(),
    }


def write_metrics(path: Path | None, document: dict[str, Any]) -> None:
    """Whole or not at all: a reader never finds half a file."""
    if path is not None:
        part = path.with_name(path.name + ".part")
        part.write_text(json.dumps(document, indent=2) + "\n")
        part.replace(path)
