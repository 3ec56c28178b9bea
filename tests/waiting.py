"""Waiting in tests: for the very thing a test checks next, never for a fixed time.

A busy machine stretches every delay, so a test that sleeps "long enough" and then
asserts fails now and then. These poll a condition instead, and when it does not come
true in time they fail with words: what was awaited and, if `what` is a function, what
was there instead (it is called only then).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Describe = str | Callable[[], str]


def _timed_out(timeout_s: float, what: Describe) -> AssertionError:
    said = what() if callable(what) else what
    return AssertionError(f"timed out after {timeout_s:g} s waiting for {said}")


async def until(condition: Callable[[], T], timeout_s: float, what: Describe) -> T:
    """On the running loop: poll `condition()` until it is truthy, and return its value."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise _timed_out(timeout_s, what)
        await asyncio.sleep(0.02)
    return value


def run_until(loop: asyncio.AbstractEventLoop, condition: Callable[[], T], timeout_s: float,
              what: Describe) -> T:
    """Run `loop` (for Qt tests the qasync loop, which drives Qt too) until `condition()`."""
    return loop.run_until_complete(until(condition, timeout_s, what))


def blocking_until(condition: Callable[[], T], timeout_s: float, what: Describe,
                   poll_s: float = 0.02) -> T:
    """The same with no event loop: for subprocesses, servers and audio threads."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise _timed_out(timeout_s, what)
        time.sleep(poll_s)
    return value

