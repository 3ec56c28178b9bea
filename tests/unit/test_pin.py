"""The kiosk PIN: only a salted hash is kept, and guessing gets slower."""

from __future__ import annotations

import pytest

from app.control.pin import FREE_TRIES, MAX_WAIT_S, PinGuard, check_pin, hash_pin, valid_pin
from engines.errors import ParleyError


def test_a_pin_is_kept_as_a_salted_hash_that_only_it_opens() -> None:
    stored = hash_pin("2468")
    assert stored.startswith("scrypt$") and "2468" not in stored
    assert hash_pin("2468") != stored  # salted: the same PIN hashes differently
    assert check_pin("2468", stored)
    assert not check_pin("2469", stored) and not check_pin("", stored)
    for broken in ("", "2468", "scrypt$1$2", "md5$16384$8$1$00$00", stored[:-2] + "zz"):
        assert not check_pin("2468", broken)


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "\uff11\uff12\uff13\uff14", " 1234"])
def test_only_4_to_8_plain_digits_make_a_pin(pin: str) -> None:
    assert not valid_pin(pin)
    with pytest.raises(ParleyError):
        hash_pin(pin)


def test_wrong_guesses_wait_longer_and_longer_and_the_right_one_starts_over() -> None:
    now = [100.0]
    guard = PinGuard(clock=lambda: now[0])
    for _ in range(FREE_TRIES - 1):
        guard.record(False)
        assert guard.wait_s() == 0
    waits = []
    for _ in range(8):
        guard.record(False)
        waits.append(guard.wait_s())
        now[0] += waits[-1]
    assert waits == [2, 4, 8, 16, 32, MAX_WAIT_S, MAX_WAIT_S, MAX_WAIT_S]
    guard.record(True)
    assert guard.failures == 0 and guard.wait_s() == 0
