"""llama.cpp's log lines, routed to Python logging instead of straight to stderr."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

_log = logging.getLogger("engines.llm_llama")
_llama_log_callback: Any = None
"""Kept referenced for the life of the process: llama.cpp calls it from C."""


def route_llama_logs() -> None:
    """Send llama.cpp's log lines to Python logging instead of straight to stderr.

    Even with verbose=False, llama-cpp-python prints some of them to the terminal.
    """
    global _llama_log_callback
    if _llama_log_callback is not None:
        return
    import llama_cpp

    # ggml's current numbering (ggml.h); llama-cpp-python's own table predates it and so
    # prints warnings while hiding errors. 5 continues the previous line.
    levels = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
    previous = [logging.DEBUG]

    def forward(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        previous[0] = levels.get(level, previous[0])
        _log.log(previous[0], "%s", text.decode("utf-8", "replace").rstrip())

    _llama_log_callback = llama_cpp.llama_log_callback(forward)
    llama_cpp.llama_log_set(_llama_log_callback, ctypes.c_void_p(0))
