"""End-to-end fixtures: a private PulseAudio server standing in for the sound card."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pulse import PulseAudio


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseAudio]:
    """The virtual mic and speaker. A missing PulseAudio fails the tests, never skips them:
    a skipped device test would look like a passing one."""
    server = PulseAudio()
    error = None
    try:
        server.start()
    except RuntimeError as e:
        error = str(e)
    if error is not None:
        pytest.fail(error, pytrace=False)
    try:
        yield server
    finally:
        server.stop()
