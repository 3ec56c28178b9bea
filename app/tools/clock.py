"""The local date and time, said the way people say them.

The model knows no time of its own: the get_current_time tool and the agent's per-turn
context both come from here. Names of days and months are English whatever the process
locale (Qt sets it from the environment), because the model and the voice speak English;
the user's locale is reported on its own.
"""

from __future__ import annotations

import contextlib
import datetime
import locale
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def now() -> datetime.datetime:
    """Now, as an aware local datetime."""
    return datetime.datetime.now().astimezone()


def current_time() -> dict[str, Any]:
    """The get_current_time tool."""
    at = now()
    return {"time": f"{at:%H:%M}", "weekday": DAYS[at.weekday()], "date": spoken_date(at),
            "timezone": zone_name(at), "utc_offset": utc_offset(at)}


def now_line(at: datetime.datetime | None = None) -> str:
    """One line for the model's context: "Sunday 6 December 2026, 18:25, time zone
    Europe/Paris (UTC+01:00)"."""
    at = at or now()
    return (f"{spoken_date(at)}, {at:%H:%M}, time zone {zone_name(at)} "
            f"(UTC{utc_offset(at)})")


def locale_name() -> str:
    """The user's locale, e.g. "fr_FR" (empty when unset or "C"): which language and
    conventions the user probably expects."""
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := os.environ.get(variable, ""):
            return _bare_locale(value)
    return _bare_locale(locale.getlocale()[0] or "")


def zone_name(at: datetime.datetime | None = None) -> str:
    """The IANA name ("Europe/Paris") when the system says which, else the abbreviation. A
    name whose offset is not the one in use (TZ set to a POSIX rule, a stale
    /etc/timezone) is passed over."""
    at = at or now()
    for candidate in _zone_candidates():
        name = candidate.strip().lstrip(":").split("zoneinfo/")[-1]
        try:
            if at.astimezone(ZoneInfo(name)).utcoffset() == at.utcoffset():
                return name
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return at.tzname() or "local time"


def utc_offset(at: datetime.datetime) -> str:
    """"+01:00", "-05:30"."""
    offset = at.utcoffset() or datetime.timedelta()
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def spoken_date(at: datetime.datetime) -> str:
    """"Sunday 6 December 2026"."""
    return f"{DAYS[at.weekday()]} {at.day} {MONTHS[at.month - 1]} {at.year}"


def spoken_when(at: datetime.datetime, today: datetime.datetime) -> str:
    """When something rings or rang, relative to `today`: "at 18:25", "tomorrow at 07:30",
    "yesterday at 22:00", "on Saturday 5 December at 07:30"."""
    days = (at.date() - today.date()).days
    day = {0: "", 1: "tomorrow ", -1: "yesterday "}.get(
        days, f"on {DAYS[at.weekday()]} {at.day} {MONTHS[at.month - 1]} ")
    return f"{day}at {at:%H:%M}"


def spoken_duration(seconds: float, adjective: bool = False) -> str:
    """"2 minutes and 5 seconds"; as an adjective "2 minute 5 second" (a 2 minute timer)."""
    if seconds < 60:
        parts = [(round(seconds, 1), "second")]
    else:
        whole = round(seconds)
        parts = [(n, unit) for n, unit in ((whole // 3600, "hour"), (whole % 3600 // 60,
                                           "minute"), (whole % 60, "second")) if n]
    words = [f"{n:g} {unit}" + ("" if adjective or n == 1 else "s") for n, unit in parts]
    return (" " if adjective else " and ").join(words)


def _zone_candidates() -> list[str]:
    """Where the system names its zone, in the order the C library honours them."""
    found = [os.environ.get("TZ", "")]
    with contextlib.suppress(OSError):  # a missing file is one place fewer to look
        found.append(Path("/etc/timezone").read_text(encoding="utf-8"))
    with contextlib.suppress(OSError):
        found.append(str(Path("/etc/localtime").readlink()))
    return [name for name in found if name.strip()]


def _bare_locale(value: str) -> str:
    name = value.split(".")[0].split("@")[0]
    return "" if name in ("C", "POSIX") else name
