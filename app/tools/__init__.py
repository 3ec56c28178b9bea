"""The tools both modes give the model, built in one place: the local Agent and the
CloudAgent each call `default_tools(announce)` and get the same names, schemas and
behaviour; only how an announcement is voiced differs.

Qt-free, and nothing of the engines but their error type; the reminders and notes live in
tools.db in Parley's data folder (app/tools/store.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.tools.calculator import calculate
from app.tools.clock import current_time
from app.tools.notes import Notes
from app.tools.registry import Announce, Tool, ToolRegistry
from app.tools.reminders import Reminders
from app.tools.store import tools_db_path

__all__ = ["Announce", "Tool", "ToolRegistry", "Toolbox", "default_tools"]

_TEXT = {"type": "string"}
_NUMBER = {"type": "number"}
_WHICH = {"type": ["integer", "string"], "description": "id or words"}


class Toolbox(ToolRegistry):
    """The registry, and the reminders it owns: `start` on the loop that should announce
    them, `close` when the conversation ends (pending ones wait in tools.db)."""

    def __init__(self, tools: Iterable[Tool], reminders: Reminders, notes: Notes) -> None:
        super().__init__(tools)
        self.reminders = reminders
        self.notes = notes

    def known(self) -> str:
        """What the tools hold now, for the model's context before each message: a small
        model answers "where is my car?" from a note in front of it far more often than it
        thinks of calling recall."""
        return f"{self.reminders.summary()} {self.notes.summary()}"

    def start(self) -> None:
        self.reminders.start()

    def close(self) -> None:
        self.reminders.close()


def default_tools(announce: Announce, data_dir: Path | None = None) -> Toolbox:
    """Every tool, kept in `data_dir`/tools.db (default: Parley's data folder). The
    schemas say only what a small model needs, since it reads them in every prompt: ranges
    and formats are checked by the tools, which say what was wrong. An example is given only
    where the 1.5B model called too seldom without it (calculate, remember): it copies
    example values now and then (it filed "where did I park?" as a recall query,
    calculated 12*34 when asked for the wifi password and saved "the keys are in the
    drawer" when asked what it had been told to remember), so remember's is a pattern;
    without these two it did sums in its head and wrong (4 of 14)."""
    path = tools_db_path(data_dir)
    reminders, notes = Reminders(path, announce), Notes(path)
    return Toolbox([
        Tool("get_current_time", "Local time, date and time zone.", _object({}),
             current_time),
        Tool("set_timer",
             'Start a countdown timer, also for "remind me in ...": its length in hours, '
             "minutes and/or seconds.",
             _object({"hours": _NUMBER, "minutes": _NUMBER, "seconds": _NUMBER,
                      "label": _TEXT}), reminders.set_timer),
        Tool("set_alarm",
             'Set an alarm for a time of day, the next time the clock shows `time`: "7:30 am",'
             ' "6:45 pm" or "19:45".',
             _object({"time": _TEXT, "label": _TEXT}, "time"),
             reminders.set_alarm),
        Tool("timers_left",
             "Pending timers and alarms: the time each has left and when it rings.",
             _object({}), reminders.timers_left),
        Tool("cancel_timer", "Cancel a timer or alarm.", _object({"which": _WHICH}, "which"),
             reminders.cancel_timer, asks_first=True),
        Tool("calculate",
             'Exact arithmetic, for every calculation, also on an earlier result. "What is 12 '
             'times 34" -> {"expression": "12*34"}; percentages as "20% of 35".',
             _object({"expression": _TEXT}, "expression"), calculate),
        Tool("remember", 'Save a note: "Remember that X" -> {"note": "X"}',
             _object({"note": _TEXT}, "note"),
             notes.remember),
        Tool("recall", "Find saved notes by their words; all of them without a query.",
             _object({"query": _TEXT}), notes.recall),
        Tool("forget", "Delete a saved note.", _object({"which": _WHICH}, "which"),
             notes.forget, asks_first=True),
    ], reminders, notes)


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    """An arguments schema: these properties, no others."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return schema | {"required": list(required)} if required else schema
