"""The kiosk's settings PIN. No Qt.

Only a salted scrypt hash is stored (in the user's settings file), so reading that file
does not give the PIN away, and each guess costs ~50 ms of memory-hard work. Guesses are
compared in constant time, and after a few wrong ones each further try has to wait longer:
a four-digit PIN is then not worth guessing at a public screen.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from engines.errors import ParleyError

_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1
"""scrypt's cost: 16 MiB and ~50 ms per guess on a desktop core, a few times that on a board."""
_MAX_MEM = 64 * 1024 * 1024
MIN_DIGITS, MAX_DIGITS = 4, 8
FREE_TRIES = 3
"""Wrong guesses allowed before each further one has to wait."""
MAX_WAIT_S = 60.0


def valid_pin(pin: str) -> bool:
    """4 to 8 plain digits: what the on-screen number pad can type."""
    return pin.isascii() and pin.isdigit() and MIN_DIGITS <= len(pin) <= MAX_DIGITS


def hash_pin(pin: str) -> str:
    """"scrypt$n$r$p$salt$hash" (hex) for the settings file."""
    if not valid_pin(pin):
        raise ParleyError(f"A kiosk PIN is {MIN_DIGITS} to {MAX_DIGITS} digits.",
                          "Choose one made of digits only, so it can be typed on the screen.")
    salt = secrets.token_bytes(16)
    digest = _scrypt(pin, salt, _N, _R, _P)
    return f"{_SCHEME}${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str) -> bool:
    """Whether `pin` is the one `stored` was made from; a malformed `stored` opens nothing."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = bytes.fromhex(digest)
        got = _scrypt(pin, bytes.fromhex(salt), int(n), int(r), int(p))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, expected)


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEM, dklen=32)


class PinGuard:
    """Counts wrong guesses: after `FREE_TRIES`, the next try waits 2 s, then 4, 8, … up to
    a minute. The right PIN starts the count again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = 0
        self._clock = clock
        self._until = 0.0

    def wait_s(self) -> float:
        """Seconds before the next guess is looked at (0: now)."""
        return max(0.0, self._until - self._clock())

    def record(self, right: bool) -> None:
        if right:
            self.failures, self._until = 0, 0.0
            return
        self.failures += 1
        if self.failures >= FREE_TRIES:
            wait = min(MAX_WAIT_S, 2.0 ** (self.failures - FREE_TRIES + 1))
            self._until = self._clock() + wait
