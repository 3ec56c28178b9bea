"""The local model's tool calls: checked, run (after a yes, for tools with side effects) and
turned into the history messages that carry the result back to the model."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from app.conversation.events import AgentEvent, ToolCalled, ToolFinished
from app.tools import ToolRegistry
from engines.protocols import ChatMessage, ToolCall, ToolSpec

ROUNDS = 2
"""Model calls per turn: a tool call, then an answer in words (the tools still in the prompt,
so its cached start holds). A second call was never right: in a 116-turn benchmark the 1.5B
made none, and all 18 of the 0.5B's were wrong (`calculate` on its own result, or
`get_current_time`, then the time read out instead of the sum)."""

_YES = re.compile(r"\b(yes|yeah|yep|sure|ok|okay|go ahead|do it|please do|confirm)\b", re.I)
_NO = re.compile(r"\b(no|nope|don't|do not|cancel|stop|never mind)\b", re.I)


class ToolUse:
    def __init__(self, registry: ToolRegistry, publish: Callable[[AgentEvent], None]) -> None:
        self.registry = registry
        self.publish = publish
        self.pending: tuple[int, ToolCall] | None = None
        """A call waiting for the user's yes, and the turn that made it."""

    def specs(self) -> list[ToolSpec]:
        return self.registry.specs()

    async def run(self, turn: int, call: ToolCall) -> list[ChatMessage] | str:
        """The messages that record the call and its result; or, for a tool that asks
        first, the question to put to the user (the call waits for the next turn)."""
        problem = self.registry.validate(call.name, call.arguments)
        tool = self.registry.get(call.name) if problem is None else None
        if tool is not None and tool.asks_first:
            self.pending = (turn, call)
            self.publish(ToolCalled(turn, call.name, call.arguments, waiting=True))
            return f"Shall I {_describe(call)}? Please say yes or no."
        self.publish(ToolCalled(turn, call.name, call.arguments))
        result = (json.dumps({"error": problem}) if problem is not None
                  else await self.registry.call(call.name, call.arguments))
        return self._record(turn, call, result)

    async def settle(self, turn: int, answer: str) -> list[ChatMessage]:
        """The user's answer to a pending question: yes runs the call, anything else drops
        it (the model hears which, so it can say so)."""
        if self.pending is None:
            return []
        _, call = self.pending
        self.pending = None
        if _YES.search(answer) and not _NO.search(answer):
            result = await self.registry.call(call.name, call.arguments)
        else:
            result = json.dumps({"error": "The user did not confirm, so nothing was done."})
        return self._record(turn, call, result)

    def _record(self, turn: int, call: ToolCall, result: str) -> list[ChatMessage]:
        self.publish(ToolFinished(turn, call.name, result))
        return [ChatMessage("assistant", "", (call,)), ChatMessage("tool", result)]


def _describe(call: ToolCall) -> str:
    """`cancel timer "tea"`: the tool's name in words and its arguments' values."""
    try:
        values = [str(v) for v in json.loads(call.arguments).values()]
    except (json.JSONDecodeError, AttributeError):
        values = []
    quoted = " ".join(f'"{v}"' for v in values)
    return f"{call.name.replace('_', ' ')} {quoted}".strip()
