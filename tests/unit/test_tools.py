"""The tool registry both modes use: what the tools describe, which calls it lets through,
what they return and how they fail; and the clock the model reads the time from."""

from __future__ import annotations

import asyncio
import datetime
import json
from pathlib import Path

import pytest
from openai.types.realtime import RealtimeFunctionTool

from app.tools import Tool, ToolRegistry, default_tools
from app.tools.clock import current_time, locale_name, now_line, spoken_duration, zone_name

NAMES = {"get_current_time", "set_timer", "set_alarm", "timers_left", "cancel_timer",
         "calculate", "remember", "recall", "forget"}


def _quiet(text: str) -> None:
    """An announce callback for tests that set no timers."""


def test_the_tools_describe_themselves_in_both_shapes(tmp_path: Path) -> None:
    registry = default_tools(_quiet, tmp_path)
    for schema in registry.schemas():  # the cloud's Realtime session takes these
        tool = RealtimeFunctionTool.model_validate(schema)
        assert not tool.model_extra
        assert tool.description and tool.parameters["type"] == "object"
        assert tool.parameters["additionalProperties"] is False
    assert {s["name"] for s in registry.schemas()} == NAMES
    specs = registry.specs()  # llama.cpp's chat templates take the nested shape
    assert [s["function"]["name"] for s in specs] == [s["name"] for s in registry.schemas()]
    assert all(set(s) == {"type", "function"} and s["type"] == "function" for s in specs)
    assert all(set(s["function"]) == {"name", "description", "parameters"} for s in specs)
    # a small local model reads them in every prompt: they stay short (an example for the
    # tools small models forgot to call or filled wrongly is worth its tokens)
    assert len(json.dumps(specs)) < 2800


def test_only_the_tools_that_delete_or_cancel_ask_first(tmp_path: Path) -> None:
    registry = default_tools(_quiet, tmp_path)
    asking = {name for name in NAMES if (tool := registry.get(name)) and tool.asks_first}
    assert asking == {"cancel_timer", "forget"}
    assert registry.get("open_the_pod_bay_doors") is None
    # the Realtime model has no confirm step around it: it is told to ask
    told = {s["name"] for s in registry.schemas() if "confirm" in s["description"]}
    assert told == asking


def test_well_formed_calls_pass_validation(tmp_path: Path) -> None:
    registry = default_tools(_quiet, tmp_path)
    for name, arguments in [("get_current_time", "{}"), ("get_current_time", ""),
                            ("set_timer", '{"seconds": 90}'),
                            ("set_timer", '{"seconds": 2.5, "label": "tea"}'),
                            ("set_timer", '{"hours": 1, "minutes": 30}'),
                            ("set_alarm", '{"time": "07:30"}'), ("cancel_timer", '{"which": 3}'),
                            ("cancel_timer", '{"which": "tea"}'), ("recall", "{}"),
                            ("calculate", '{"expression": "2 + 2"}')]:
        assert registry.validate(name, arguments) is None, (name, arguments)


@pytest.mark.parametrize(("name", "arguments", "reason"), [
    ("open_the_pod_bay_doors", "{}", "no tool named 'open_the_pod_bay_doors'"),
    ("set_timer", '{"seconds": 5', "not valid JSON"),
    ("set_timer", '[5]', "must be a JSON object"),
    ("set_timer", '{"seconds": "five"}', "'five' is not of type 'number' (at seconds)"),
    ("set_timer", '{"seconds": 5, "days": 1}', "('days' was unexpected)"),
    ("cancel_timer", '{"which": null}', "None is not of type 'integer', 'string'"),
])
def test_a_bad_call_is_refused_with_the_reason(tmp_path: Path, name: str, arguments: str,
                                               reason: str) -> None:
    registry = default_tools(_quiet, tmp_path)
    said = registry.validate(name, arguments)
    assert said is not None and reason in said, said
    # and calling it anyway gives the model the same reason, and runs nothing
    assert json.loads(asyncio.run(registry.call(name, arguments))) == {"error": said}
    assert not (tmp_path / "tools.db").exists()


def test_a_failing_tool_answers_with_its_error(tmp_path: Path) -> None:
    registry = default_tools(_quiet, tmp_path)
    for name, arguments, expected in [
            ("set_timer", '{"seconds": -5}', "more than 0"),
            ("set_timer", '{"label": "tea"}', "more than 0"),
            ("set_alarm", '{"time": "after lunch"}', "time must be like"),
            ("calculate", '{"expression": "1/0"}', "division by zero")]:
        result = json.loads(asyncio.run(registry.call(name, arguments)))
        assert expected in result["error"], (name, result)


def test_async_handlers_are_awaited() -> None:
    async def slow_echo(text: str) -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"echo": text}

    registry = ToolRegistry([Tool("echo", "Echo.", {"type": "object"}, slow_echo)])
    assert json.loads(asyncio.run(registry.call("echo", '{"text": "hi"}'))) == {"echo": "hi"}


def test_the_tools_keep_their_file_in_the_data_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    registry = default_tools(_quiet)
    assert "id" in json.loads(asyncio.run(registry.call("remember", '{"note": "hello"}')))
    assert (tmp_path / "data" / "tools.db").is_file()


def test_the_time_tool_tells_the_local_time(tmp_path: Path) -> None:
    registry = default_tools(_quiet, tmp_path)
    before = datetime.datetime.now().astimezone()
    result = json.loads(asyncio.run(registry.call("get_current_time", "{}")))
    after = datetime.datetime.now().astimezone()
    assert result["time"] in {before.strftime("%H:%M"), after.strftime("%H:%M")}
    assert result["weekday"] in result["date"] and str(after.year) in result["date"]
    assert result["utc_offset"][0] in "+-" and result["timezone"]


def test_the_context_line_names_the_day_the_time_and_the_zone() -> None:
    at = datetime.datetime(2026, 12, 6, 18, 25,
                           tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert now_line(at).startswith("Sunday 6 December 2026, 18:25, time zone ")
    assert now_line(at).endswith(" (UTC+01:00)")


def test_the_zone_is_named_as_the_system_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    paris = datetime.datetime(2026, 12, 6, 18, 25,
                              tzinfo=datetime.timezone(datetime.timedelta(hours=1), "CET"))
    monkeypatch.setenv("TZ", "Europe/Paris")
    assert zone_name(paris) == "Europe/Paris"
    monkeypatch.setenv("TZ", ":/usr/share/zoneinfo/Europe/Paris")
    assert zone_name(paris) == "Europe/Paris"
    monkeypatch.setenv("TZ", "America/New_York")  # its offset is not the one in use
    assert zone_name(paris) != "America/New_York"
    assert current_time()["timezone"]


def test_the_locale_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    assert locale_name() == "fr_FR"
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    assert locale_name() == ""


def test_durations_are_said_the_way_people_say_them() -> None:
    assert spoken_duration(5, adjective=True) == "5 second"
    assert spoken_duration(120, adjective=True) == "2 minute"
    assert spoken_duration(5400, adjective=True) == "1 hour 30 minute"
    assert spoken_duration(1) == "1 second"
    assert spoken_duration(125) == "2 minutes and 5 seconds"
