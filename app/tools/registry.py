"""Tools a model may call, shared by both modes: a name, what it is for, the JSON schema of
its arguments, and a handler (plain or async).

Calls are checked against the schema before they run, so a handler only ever sees arguments
of the right shape. Results go back to the model as JSON text; a bad call or a failing tool
returns {"error": ...} instead of raising, so one bad call never ends the conversation.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

CONFIRM = " Ask the user to confirm first."
Announce = Callable[[str], None]
"""How a tool says something later, unprompted (a timer): the mode decides how to voice it."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""
    handler: Callable[..., Any]
    asks_first: bool = False
    """It deletes or cancels something: the user confirms before it runs."""


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self._validators: dict[str, Draft202012Validator] = {}
        for tool in self.tools.values():
            Draft202012Validator.check_schema(tool.parameters)  # a typo fails at start-up
            self._validators[tool.name] = Draft202012Validator(tool.parameters)

    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI Realtime shape (flat). Nothing stands between the Realtime model and
        the tool, so one that asks first tells the model to get the user's yes itself."""
        return [{"type": "function", "name": t.name,
                 "description": t.description + (CONFIRM if t.asks_first else ""),
                 "parameters": t.parameters} for t in self.tools.values()]

    def specs(self) -> list[dict[str, Any]]:
        """The Chat Completions shape (nested), which llama.cpp's chat templates take."""
        return [{"type": "function",
                 "function": {"name": t.name, "description": t.description,
                              "parameters": t.parameters}} for t in self.tools.values()]

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def validate(self, name: str, arguments: str) -> str | None:
        """None when the call can run; otherwise why not, in words the model can act on."""
        parsed = self._parse(name, arguments)
        return parsed if isinstance(parsed, str) else None

    async def call(self, name: str, arguments: str) -> str:
        """Run a call and return its result as JSON text, or {"error": ...}."""
        parsed = self._parse(name, arguments)
        if isinstance(parsed, str):
            return json.dumps({"error": parsed})
        try:
            result = self.tools[name].handler(**parsed)
            if inspect.isawaitable(result):
                result = await result
        except Exception as err:  # the tool failed: the model reads why and can tell the user
            return json.dumps({"error": str(err) or type(err).__name__})
        return json.dumps(result, ensure_ascii=False)

    def _parse(self, name: str, arguments: str) -> dict[str, Any] | str:
        """The arguments of a valid call, or the reason the call is not valid."""
        if name not in self.tools:
            return f"no tool named {name!r}; the tools are {', '.join(self.tools)}"
        try:
            parsed = json.loads(arguments or "{}")
        except json.JSONDecodeError as err:
            return f"the arguments are not valid JSON ({err.msg} at character {err.pos})"
        if not isinstance(parsed, dict):
            return "the arguments must be a JSON object"
        error = best_match(self._validators[name].iter_errors(parsed))
        if error is None:
            return parsed
        where = ".".join(str(p) for p in error.absolute_path)
        return f"invalid arguments for {name}: {error.message}" + (f" (at {where})"
                                                                   if where else "")
