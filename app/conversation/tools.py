"""Tools the model may call, shared by every mode: a name, what it is for, the JSON schema of
its arguments, and a handler (plain or async).

Results go back to the model as JSON text; a failing tool returns {"error": ...} instead of
raising, so one bad call never ends the conversation.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Announce = Callable[[str], None]
"""How a tool says something later, unprompted (the timer): the mode decides how to voice it."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[..., Any]


class ToolRegistry:
    def __init__(self, tools: list[Tool]) -> None:
        self.tools = {tool.name: tool for tool in tools}

    def schemas(self) -> list[dict[str, Any]]:
        """The function descriptions in the shape both OpenAI and llama.cpp accept."""
        return [{"type": "function", "name": t.name, "description": t.description,
                 "parameters": t.parameters} for t in self.tools.values()]

    async def call(self, name: str, arguments: str) -> str:
        tool = self.tools.get(name)
        if tool is None:
            return json.dumps({"error": f"no tool named {name!r}"})
        try:
            kwargs = json.loads(arguments or "{}")
            result = tool.handler(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as err:  # the model sent bad arguments, or the tool failed
            return json.dumps({"error": f"{type(err).__name__}: {err}"})
        return json.dumps(result)


def current_time() -> dict[str, str]:
    now = datetime.datetime.now().astimezone()
    return {"time": now.strftime("%H:%M"), "date": now.strftime("%A %d %B %Y"),
            "timezone": now.tzname() or ""}


class Timers:
    """Timers that announce themselves when they fire; cancelled together on close."""

    def __init__(self, announce: Announce) -> None:
        self.announce = announce
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, seconds: float, label: str = "timer") -> dict[str, Any]:
        if not 0 < seconds <= 24 * 3600:
            raise ValueError("seconds must be between 0 and 86400")
        task = asyncio.get_running_loop().create_task(self._ring(seconds, label))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"started": True, "seconds": seconds, "label": label}

    async def _ring(self, seconds: float, label: str) -> None:
        await asyncio.sleep(seconds)
        self.announce(f"The {label} set for {seconds:g} seconds has finished.")

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def default_tools(timers: Timers) -> ToolRegistry:
    return ToolRegistry([
        Tool("get_current_time", "The current local time, date and weekday.",
             {"type": "object", "properties": {}, "additionalProperties": False},
             current_time),
        Tool("set_timer", "Start a timer; when it ends the assistant tells the user.",
             {"type": "object",
              "properties": {"seconds": {"type": "number", "description": "duration"},
                             "label": {"type": "string", "description": "what it is for"}},
              "required": ["seconds"], "additionalProperties": False},
             timers.start),
    ])
