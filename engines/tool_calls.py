"""Tool calls on a local model: how the prompt offers tools, how a call is spotted in the
reply's first characters, and the grammar that makes every call parse and validate.

Small models announce a call in several ways (Qwen's `<tool_call>` tag, a ```json fence,
a bare `{"name": …}`), and write it sloppily. So the engine only *spots* the start of a
call; the call itself is then generated again under a llama.cpp grammar built from the
tools' JSON schemas, so it always names a real tool with valid arguments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engines.protocols import ChatMessage, ToolCall, ToolSpec

OPENING = "<tool_call>\n"
"""What the prompt is given before a constrained call: the Hermes/Qwen call tag."""

MAX_STRING = 200
"""The longest string argument a constrained call may write (the calculator takes 200)."""
_OPENERS = "{[<`"
"""A spoken reply never starts with one of these; a call (tagged, JSON, fenced) does."""


def call_start(text: str, names: Sequence[str]) -> bool | None:
    """True when the reply so far opens a tool call, False when it cannot, None when it is
    too early to tell (the text is held back until then).

    Small models open calls in many ways: Qwen's `<tool_call>` tag, `<tools>`, a JSON
    object, a ```json fence, `TOOL: name`, or `name(...)` as code. Whatever follows is
    discarded and the call written again under the grammar.
    """
    stripped = text.lstrip()
    if not stripped:
        return None
    if stripped[0] in _OPENERS:
        return True
    starts = ("tool:", *(f"{n}(" for n in names), *(f"{n} (" for n in names))
    lowered = stripped.lower()
    if any(lowered.startswith(s) for s in starts):
        return True
    return None if any(s.startswith(lowered) for s in starts) else False


def call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """The JSON schema of one call of any of `tools`: the grammar that constrains it."""
    return {"oneOf": [{
        "type": "object",
        "properties": {"name": {"const": spec["function"]["name"]},
                       "arguments": _bounded(spec["function"].get("parameters",
                                                                  {"type": "object"}))},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    } for spec in tools]}


def _bounded(schema: Any) -> Any:
    """`schema` with every string at most `MAX_STRING` characters: a model that rambles
    inside a string (the 1.5B wrote a whole second call into an expression) would
    otherwise hit the token cap and leave a call that does not parse."""
    if isinstance(schema, list):
        return [_bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: _bounded(value) for key, value in schema.items()}
    kind = schema.get("type")
    if kind == "string":
        bounded.setdefault("maxLength", MAX_STRING)
    elif isinstance(kind, list) and "string" in kind:  # e.g. an id or words
        del bounded["type"]
        bounded["anyOf"] = [{"type": "string", "maxLength": MAX_STRING} if k == "string"
                            else {"type": k} for k in kind]
    return bounded


def parse_call(text: str) -> ToolCall:
    """The call the grammar produced; text that is no JSON object (cut short by the token
    cap) gives a nameless call, which the caller's validation reports."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return ToolCall("", text)
    if not isinstance(data, dict):
        return ToolCall("", text)
    return ToolCall(str(data.get("name", "")), json.dumps(data.get("arguments", {})))


def instructions(tools: Sequence[ToolSpec]) -> str:
    """Tools offered in the system prompt, one short line each (every token of it costs
    prefill time on a small CPU)."""
    lines = "\n".join(f"- {_signature(spec['function'])}: {spec['function']['description']}"
                       for spec in tools)
    return ("\n\nYou have these tools:\n" + lines + "\nWhen a request needs one, reply with "
            'only <tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>; never say you '
            "did something without calling its tool. Otherwise answer in words.")


def _signature(function: dict[str, Any]) -> str:
    """`name(arg, optional?)`, as a reader of Python would guess the arguments."""
    parameters = function.get("parameters", {})
    required = set(parameters.get("required", []))
    names = [n if n in required else f"{n}?" for n in parameters.get("properties", {})]
    return f"{function['name']}({', '.join(names)})"


def template_messages(messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
                      ) -> list[dict[str, str]]:
    """Messages as any chat template reads them: the tools described in the system prompt,
    calls and results as tagged text. Native tool templates are not used: on the small
    Qwen models they made calls for questions that needed none."""
    out: list[dict[str, str]] = []
    for message in messages:
        if message.role == "tool":
            out.append({"role": "user",
                        "content": f"<tool_response>\n{message.content}\n</tool_response>"})
            continue
        calls = "".join(f'<tool_call>{{"name": {json.dumps(c.name)}, "arguments": '
                        f"{c.arguments}}}</tool_call>" for c in message.tool_calls)
        out.append({"role": message.role, "content": message.content + calls})
    if tools:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + instructions(tools)}
        else:
            out.insert(0, {"role": "system", "content": instructions(tools).strip()})
    return out


def request_alone(messages: Sequence[ChatMessage]) -> list[ChatMessage] | None:
    """The conversation's opening (its leading system messages: the system prompt and the
    first turn's note) and the user's last message, when replies stand between them:
    the request as if it had opened the conversation. None for the first request, or a
    turn that ends with a tool's result. (The opening rather than the system prompt alone
    or the latest note: measured best, 103/116 against 101 and 48/54 of a subset, and its
    tokens stay in the side context's cache, so a look reads only the request.)"""
    if not messages or messages[-1].role != "user":
        return None
    lead = 0
    while lead < len(messages) and messages[lead].role == "system":
        lead += 1
    if not any(m.role in ("assistant", "tool") for m in messages[lead:]):
        return None
    return [*messages[:lead], messages[-1]]
