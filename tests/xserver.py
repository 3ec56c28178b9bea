"""A private X server (Xvfb) on a display number it picks itself, so tests that run at the
same time (or a display left behind) never share a screen."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def xvfb(*sizes: tuple[int, int]) -> Iterator[str]:
    """The display (":N") of a new Xvfb with one screen per size, taking connections (and no
    window manager, as on a kiosk board that starts straight into Parley)."""
    screens = [arg for i, (width, height) in enumerate(sizes)
               for arg in ("-screen", str(i), f"{width}x{height}x24")]
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), *screens, "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as numbers:  # written once the server takes connections
            number = numbers.readline().strip()
        if not number or server.poll() is not None:
            raise RuntimeError("Xvfb did not start (is the xvfb package installed?)")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)
