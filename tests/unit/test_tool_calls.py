"""How the engine tells a spoken reply from the opening of a tool call, and how calls and
results are written into a prompt for any chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.protocols import ChatMessage, ToolCall
from engines.tool_calls import (
    MAX_STRING,
    call_schema,
    call_start,
    parse_call,
    request_alone,
    template_messages,
)

NAMES = ["set_timer", "calculate"]
SPECS = [{"type": "function", "function": {
    "name": "set_timer", "description": "Start a countdown timer.",
    "parameters": {"type": "object", "properties": {"seconds": {"type": "number"}},
                   "required": ["seconds"], "additionalProperties": False}}}]


@pytest.mark.parametrize("text", [
    "<tool_call>", '{"name": "set_timer"', '{{"name":', '```json\n{', "set_timer(5)",
    "TOOL: set_timer(", "  <tool_call>\n{", "{ TOOL: set_timer, seconds: 4 }", "<tools>",
    "set_timer (5)", "[",
])
def test_the_ways_small_models_open_a_call_are_recognised(text: str) -> None:
    assert call_start(text, NAMES) is True


@pytest.mark.parametrize("text", ["The capital", "Paris.", "Sure", "Setting it", "Tools are",
                                  "calculated"])
def test_a_spoken_reply_is_released_at_once_or_soon(text: str) -> None:
    assert call_start(text, NAMES) is False


@pytest.mark.parametrize("text", ["", "  ", "set_ti", "TOO", "calc", "Set"])
def test_a_reply_that_may_still_open_a_call_is_held(text: str) -> None:
    assert call_start(text, NAMES) is None


def test_a_call_and_its_result_become_tagged_text_and_the_tools_join_the_system_prompt(
) -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Time me 5 s."),
                ChatMessage("assistant", "", (ToolCall("set_timer", '{"seconds": 5}'),)),
                ChatMessage("tool", '{"started": true}')]
    out = template_messages(messages, SPECS)
    assert out[0]["role"] == "system" and "set_timer(seconds)" in out[0]["content"]
    assert out[2] == {"role": "assistant", "content":
                      '<tool_call>{"name": "set_timer", "arguments": {"seconds": 5}}</tool_call>'}
    assert out[3] == {"role": "user",
                      "content": '<tool_response>\n{"started": true}\n</tool_response>'}
    assert template_messages(messages[:2], []) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Time me 5 s."}]


def test_the_grammar_schema_names_each_tool_and_its_arguments() -> None:
    schema = call_schema(SPECS)
    (option,) = schema["oneOf"]
    assert option["properties"]["name"] == {"const": "set_timer"}
    assert option["properties"]["arguments"]["required"] == ["seconds"]


def test_the_grammar_bounds_every_string_so_a_call_always_ends() -> None:
    """The 1.5B model once wrote a second call inside a calculator expression until the
    token cap cut the call off unparsed."""
    from llama_cpp import LlamaGrammar

    from app.tools import default_tools

    specs = default_tools(lambda _text: None, Path("/nonexistent")).specs()
    schema = call_schema(specs)
    arguments = {o["properties"]["name"]["const"]: o["properties"]["arguments"]
                 for o in schema["oneOf"]}
    assert arguments["calculate"]["properties"]["expression"] == {
        "type": "string", "maxLength": MAX_STRING}
    assert arguments["cancel_timer"]["properties"]["which"]["anyOf"] == [
        {"type": "integer"}, {"type": "string", "maxLength": MAX_STRING}]
    own = {spec["function"]["name"]: spec["function"]["parameters"] for spec in specs}
    assert own["calculate"]["properties"]["expression"] == {"type": "string"}  # untouched
    LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)  # llama.cpp takes it


def test_a_call_cut_short_parses_to_a_nameless_call_the_agent_reports() -> None:
    assert parse_call('{"name": "set_timer", "arguments": {"seconds": 5}}') == ToolCall(
        "set_timer", json.dumps({"seconds": 5}))
    assert parse_call('{"name": "set_ti') == ToolCall("", '{"name": "set_ti')


def test_a_later_request_is_also_seen_as_if_it_opened_the_conversation() -> None:
    system, note = ChatMessage("system", "Be brief."), ChatMessage("system", "It is 9:00.")
    later = ChatMessage("system", "It is 9:01.")
    ask, cancel = ChatMessage("user", "Time me 5 s."), ChatMessage("user", "Cancel it.")
    call = ChatMessage("assistant", "", (ToolCall("set_timer", '{"seconds": 5}'),))
    result, said = ChatMessage("tool", '{"started": true}'), ChatMessage("assistant", "Set.")
    assert request_alone([system, note, ask, call, result, said, later, cancel]) == [
        system, note, cancel]
    assert request_alone([system, note, ask]) is None  # the first request is alone already
    assert request_alone([system, note, ask, call, result]) is None  # a result to speak
