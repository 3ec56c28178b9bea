"""Timers and alarms on a real tools.db and the real event loop: each one is said once, when
it is due, also across a restart; one that came due while Parley was off is said at start.

"Only once" is checked by setting a later timer and waiting for it: the scheduler has gone
round many times by then, and anything said twice would come before it.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.tools.reminders import Reminders, clock_time, next_occurrence
from tests.waiting import until


def _clock(offset: float) -> Callable[[], float]:
    """The wall clock, `offset` seconds later: a restart an hour on, without the wait."""
    return lambda: time.time() + offset


async def _said_after(reminders: Reminders, said: list[str], label: str) -> None:
    """Set a short timer and wait until it is said: everything due before it was said."""
    reminders.set_timer(seconds=0.2, label=label)
    await until(lambda: any(label in s for s in said), 10, lambda: f"{label!r} in {said}")


def test_a_timer_is_announced_once_when_it_runs_out(tmp_path: Path) -> None:
    said: list[str] = []

    async def story() -> float:
        reminders = Reminders(tmp_path / "tools.db", said.append)
        reminders.start()
        started = time.monotonic()
        result = reminders.set_timer(seconds=1, label="tea")
        assert result["set"] == "1 second timer 'tea'" and result["rings"].startswith("at ")
        await until(lambda: said, 10, "the timer to go off")
        took = time.monotonic() - started
        await _said_after(reminders, said, "sentinel")
        reminders.close()
        return took

    took = asyncio.run(story())
    assert took >= 0.95
    assert said[0] == "Your 1 second timer 'tea' is done."
    assert len(said) == 2 and "sentinel" in said[1]


def test_a_timer_outlives_a_restart(tmp_path: Path) -> None:
    said: list[str] = []

    async def before_the_restart() -> None:
        reminders = Reminders(tmp_path / "tools.db", said.append)
        reminders.start()
        reminders.set_timer(seconds=1.5)
        reminders.close()

    async def after_the_restart() -> None:
        reminders = Reminders(tmp_path / "tools.db", said.append)
        reminders.start()
        await until(lambda: said, 10, "the timer set before the restart")
        await _said_after(reminders, said, "sentinel")
        reminders.close()

    asyncio.run(before_the_restart())
    assert said == []
    asyncio.run(after_the_restart())
    assert said[0] == "Your 1.5 second timer is done."
    assert len(said) == 2


def test_one_due_while_parley_was_off_is_said_at_start_once(tmp_path: Path) -> None:
    said: list[str] = []
    path = tmp_path / "tools.db"

    async def set_it() -> str:
        rings: str = Reminders(path, said.append).set_timer(seconds=300, label="bread")["rings"]
        return rings[-5:]  # HH:MM

    async def an_hour_later(sentinel: str) -> None:
        reminders = Reminders(path, said.append, _clock(3600))
        reminders.start()
        await _said_after(reminders, said, sentinel)
        reminders.close()

    due = asyncio.run(set_it())
    asyncio.run(an_hour_later("first start"))
    assert said[0].startswith("While Parley was off, your 5 minute timer 'bread' went off ")
    assert said[0].endswith(f"at {due}."), said
    asyncio.run(an_hour_later("second start"))
    assert [s for s in said if "bread" in s] == [said[0]]


def test_two_schedulers_on_one_file_say_it_once(tmp_path: Path) -> None:
    said: list[str] = []

    async def story() -> None:
        window = Reminders(tmp_path / "tools.db", said.append)
        other = Reminders(tmp_path / "tools.db", said.append)
        window.start()
        window.set_timer(seconds=1, label="pasta")
        other.start()  # reads the timer at start: both wake for it
        await until(lambda: said, 10, "the timer to go off")
        await _said_after(other, said, "sentinel")
        window.close()
        other.close()

    asyncio.run(story())
    assert [s for s in said if "pasta" in s] == ["Your 1 second timer 'pasta' is done."]


def test_an_alarm_rings_at_the_next_time_the_clock_shows(tmp_path: Path) -> None:
    now = time.time()
    next_minute = (datetime.datetime.fromtimestamp(now) + datetime.timedelta(minutes=1)
                   ).replace(second=0, microsecond=0)
    offset = next_minute.timestamp() - 1 - now  # the clock reads a second before it
    said: list[str] = []

    async def story() -> dict[str, object]:
        reminders = Reminders(tmp_path / "tools.db", said.append, _clock(offset))
        reminders.start()
        result = reminders.set_alarm(f"{next_minute:%H:%M}", "wake up")
        await until(lambda: said, 10, "the alarm to go off")
        reminders.close()
        return result

    result = asyncio.run(story())
    assert result["set"] == "alarm 'wake up'"
    assert result["rings"] in {f"at {next_minute:%H:%M}", f"tomorrow at {next_minute:%H:%M}"}
    assert said == [f"It's {next_minute:%H:%M}: your alarm 'wake up' is going off."]


@pytest.mark.parametrize(("hh_mm", "now", "expected"), [
    ("07:30", (8, 0), (1, 7, 30)),   # past today: tomorrow
    ("07:30", (7, 0), (0, 7, 30)),   # still to come today
    ("07:30", (7, 30), (1, 7, 30)),  # now is not "next"
    ("0:05", (23, 59), (1, 0, 5)),
])
def test_an_alarm_time_means_its_next_occurrence(hh_mm: str, now: tuple[int, int],
                                                 expected: tuple[int, int, int]) -> None:
    today = datetime.datetime(2026, 3, 10, *now)
    days, hour, minute = expected
    due = datetime.datetime.fromtimestamp(next_occurrence(hh_mm, today.timestamp()))
    assert due == datetime.datetime(2026, 3, 10 + days, hour, minute)


@pytest.mark.parametrize(("said", "expected"), [
    ("19:45", (19, 45)), ("7:30 am", (7, 30)), ("6:45 p.m.", (18, 45)), ("7 pm", (19, 0)),
    ("12 am", (0, 0)), ("12:30 PM", (12, 30)), ("06:00", (6, 0)), ("6.30", (6, 30)),
    # as it is said (the model passes the user's words on)
    ("half past six tomorrow morning", (6, 30)), ("quarter to seven in the morning", (6, 45)),
    ("6 tomorrow", (6, 0)), ("6:45 in the evening", (18, 45)), ("ten past 8 tonight", (20, 10)),
    ("six thirty", (6, 30)), ("twenty to seven", (6, 40)), ("noon", (12, 0)),
    ("midnight", (0, 0)), ("7 o'clock", (7, 0)),
])
def test_an_alarm_time_is_read_as_people_write_it(said: str, expected: tuple[int, int]) -> None:
    assert clock_time(said) == expected


@pytest.mark.parametrize(("said", "reason"), [
    ("13 pm", "the hour is 1 to 12"), ("24:00", "not a time of day"),
    ("7:60", "not a time of day"), ("after lunch", 'time must be like "7:30 am"'),
])
def test_a_time_that_is_no_time_is_refused_with_the_reason(said: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        clock_time(said)


def test_a_cancelled_timer_says_nothing(tmp_path: Path) -> None:
    said: list[str] = []

    async def story() -> None:
        reminders = Reminders(tmp_path / "tools.db", said.append)
        reminders.start()
        reminders.set_timer(seconds=0.5, label="tea")
        eggs = reminders.set_timer(seconds=600, label="eggs")["id"]
        an_hour_ago = datetime.datetime.now() - datetime.timedelta(hours=1)
        reminders.set_alarm(f"{an_hour_ago:%H:%M}")  # rings tomorrow, after the eggs
        listed = reminders.timers_left()["timers"]
        assert [t["what"] for t in listed] == ["0.5 second timer 'tea'",
                                               "10 minute timer 'eggs'", "alarm"]
        assert listed[1]["left"] in {"10 minutes", "9 minutes and 59 seconds"}
        assert reminders.cancel_timer("tea") == {"cancelled": "0.5 second timer 'tea'"}
        assert reminders.cancel_timer(str(eggs)) == {"cancelled": "10 minute timer 'eggs'"}
        with pytest.raises(ValueError, match="0 timers or alarms match 'tea'"):
            reminders.cancel_timer("tea")
        await _said_after(reminders, said, "sentinel")
        assert [t["what"] for t in reminders.timers_left()["timers"]] == ["alarm"]
        reminders.close()

    asyncio.run(story())
    assert len(said) == 1 and "sentinel" in said[0]


def test_cancelling_by_words_that_fit_two_asks_which(tmp_path: Path) -> None:
    reminders = Reminders(tmp_path / "tools.db", lambda text: None)
    first = reminders.set_timer(seconds=60, label="tea for me")["id"]
    second = reminders.set_timer(seconds=120, label="tea for you")["id"]
    with pytest.raises(ValueError, match="2 timers or alarms match 'tea'") as asked:
        reminders.cancel_timer("tea")
    assert f"{first}: 1 minute timer 'tea for me'" in str(asked.value)
    assert f"{second}: 2 minute timer 'tea for you'" in str(asked.value)
    with pytest.raises(ValueError, match="0 timers or alarms match 'that one'"):
        reminders.cancel_timer("that one")
    assert reminders.cancel_timer("tea you") == {"cancelled": "2 minute timer 'tea for you'"}
    assert reminders.cancel_timer("that one") == {"cancelled": "1 minute timer 'tea for me'"}
