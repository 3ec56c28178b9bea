"""The tools a model may call: what they describe, what they return, and how they fail."""

from __future__ import annotations

import asyncio
import datetime
import json

from openai.types.realtime import RealtimeFunctionTool

from app.conversation.tools import Timers, Tool, ToolRegistry, default_tools
from tests.waiting import until


def test_the_default_tools_describe_themselves_as_realtime_function_tools() -> None:
    registry = default_tools(Timers(lambda text: None))
    for schema in registry.schemas():
        tool = RealtimeFunctionTool.model_validate(schema)
        assert not tool.model_extra
        assert tool.description and tool.parameters["type"] == "object"
    assert {s["name"] for s in registry.schemas()} == {"get_current_time", "set_timer"}


def test_the_time_tool_tells_the_local_time() -> None:
    registry = default_tools(Timers(lambda text: None))
    before = datetime.datetime.now().astimezone()
    result = json.loads(asyncio.run(registry.call("get_current_time", "{}")))
    after = datetime.datetime.now().astimezone()
    assert result["time"] in {before.strftime("%H:%M"), after.strftime("%H:%M")}
    assert str(after.year) in result["date"]


def test_a_timer_speaks_up_when_it_runs_out() -> None:
    said: list[str] = []

    async def story() -> dict[str, object]:
        registry = default_tools(Timers(said.append))
        started = json.loads(await registry.call("set_timer",
                                                 '{"seconds": 0.2, "label": "tea timer"}'))
        assert said == []  # not yet
        await until(lambda: said, 5, "the timer to speak up")
        await asyncio.sleep(0.2)  # and only once: nothing more for as long again
        return started

    started = asyncio.run(story())
    assert started["started"] is True
    assert len(said) == 1 and "tea timer" in said[0]


def test_closing_stops_pending_timers() -> None:
    said: list[str] = []

    async def story() -> None:
        timers = Timers(said.append)
        timers.start(0.2)
        timers.close()
        await asyncio.sleep(0.4)

    asyncio.run(story())
    assert said == []


def test_bad_calls_come_back_as_errors_the_model_can_read() -> None:
    registry = default_tools(Timers(lambda text: None))
    for name, arguments, expected in [
            ("set_timer", '{"seconds": -5}', "between"),
            ("set_timer", '{"minutes": 5}', "TypeError"),
            ("set_timer", "not json", "JSONDecodeError"),
            ("open_the_pod_bay_doors", "{}", "no tool")]:
        result = json.loads(asyncio.run(registry.call(name, arguments)))
        assert expected in result["error"], (name, result)


def test_async_handlers_are_awaited() -> None:
    async def slow_echo(text: str) -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"echo": text}

    registry = ToolRegistry([Tool("echo", "Echo.", {"type": "object"}, slow_echo)])
    assert json.loads(asyncio.run(registry.call("echo", '{"text": "hi"}'))) == {"echo": "hi"}
