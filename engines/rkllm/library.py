"""Finds Rockchip's `librkllmrt.so` and tells which runtime it is before anything calls it.

Calling a library through the wrong struct layout does not fail cleanly: the runtime reads
fields from the wrong places. So the library is identified first, by the version banner it
carries ("rkllm-runtime version: 1.2.3", which it prints at init) and by the functions it
exports, and anything but the 1.2.1 to 1.2.3 ABI that `abi` describes is refused in words.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from engines.errors import ModelError
from engines.rkllm.abi import FUNCTIONS

NAME = "librkllmrt.so"
SUPPORTED = "1.2.1 to 1.2.3"
_GET = ("Install librkllmrt.so from Rockchip's rknn-llm release-v1.2.3 "
        "(rkllm-runtime/Linux/librkllm_api/aarch64/), with models converted by rkllm-toolkit "
        "1.2.3; docs/rockchip.md says where it goes.")
_BANNER = re.compile(rb"rkllm-runtime version:? ?v?(\d+)\.(\d+)\.(\d+)")
_APP = Path(__file__).resolve().parents[2]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Library:
    path: str
    version: str
    """"1.2.3", or "1.2.x" when the library carries no banner (judged by its exports)."""
    cdll: ctypes.CDLL


def search_path() -> list[Path]:
    """Where the library is looked for, in order; then the system loader's own path."""
    env = os.environ.get("PARLEY_RKLLM_LIB")
    places = [Path(env)] if env else []
    return [*places, _APP / "libs" / platform.machine() / NAME, Path("/usr/lib") / NAME,
            Path("/usr/local/lib") / NAME]


def open_library() -> Library:
    """The runtime, loaded, identified and with its functions typed; or a ModelError saying
    what was found, what was searched, and what to install."""
    places = search_path()
    found = next((p for p in places if p.is_file()), None)
    if found is None and os.environ.get("PARLEY_RKLLM_LIB"):
        raise ModelError(f"PARLEY_RKLLM_LIB names {places[0]}, which is not a file.",
                         "Point it at librkllmrt.so, or unset it to search the usual places.")
    target = str(found) if found else ctypes.util.find_library("rkllmrt")
    if target is None:
        searched = "".join(f"\n  - {p}" for p in places)
        raise ModelError(
            f"The RKLLM runtime ({NAME}) is not on this machine ({platform.machine()}). "
            f"Searched:{searched}\n  - the system loader's path",
            "RKLLM runs only on Rockchip RK3588, RK3576 and RK3562 boards. " + _GET)
    try:
        cdll = ctypes.CDLL(target)
    except OSError as err:
        raise ModelError(f"{target} could not be loaded: {err}",
                         "It must be the aarch64 (or armhf) build for this board. " + _GET
                         ) from err
    path = _mapped_path(target) or target
    version = identify(path, cdll)
    for name, (restype, argtypes) in FUNCTIONS.items():
        function = getattr(cdll, name)
        function.restype = restype
        function.argtypes = argtypes
    return Library(path, version, cdll)


def identify(path: str, cdll: ctypes.CDLL) -> str:
    """The runtime's version, if its ABI is the one Parley speaks; otherwise a ModelError."""
    exports = {name for name in [*FUNCTIONS, "rkllm_run_async"] if hasattr(cdll, name)}
    banner = _banner(path)
    if banner is not None:
        major, minor, patch = banner
        version = f"{major}.{minor}.{patch}"
        if (major, minor) == (1, 2) and patch >= 1:
            missing = sorted(set(FUNCTIONS) - exports)
            if not missing:
                return version
            raise ModelError(f"{path} says it is RKLLM runtime {version} but lacks "
                             f"{', '.join(missing)}: it is damaged or not Rockchip's.", _GET)
        why = ("its structs and rkllm_init changed" if (major, minor) >= (1, 3)
               else "it predates the structs Parley uses")
        raise ModelError(f"{path} is RKLLM runtime {version}; Parley speaks runtime "
                         f"{SUPPORTED}, and {why}.", _GET)
    if "rkllm_init" not in exports:
        raise ModelError(f"{path} is not an RKLLM runtime: it has no rkllm_init.", _GET)
    if "rkllm_set_chat_template" not in exports:
        raise ModelError(f"{path} is an RKLLM runtime older than 1.2 (it has no "
                         f"rkllm_set_chat_template); Parley speaks runtime {SUPPORTED}.", _GET)
    if "rkllm_set_function_tools" not in exports or "rkllm_get_kv_cache_size" not in exports:
        raise ModelError(f"{path} is RKLLM runtime 1.2.0 (it has no rkllm_set_function_tools); "
                         f"Parley speaks runtime {SUPPORTED}.", _GET)
    _log.warning("%s carries no version banner; its functions are those of runtime 1.2.1+, so "
                 "Parley takes it for 1.2.x (1.3.0 exports the same names: if Parley crashes, "
                 "check the version)", path)
    return "1.2.x"


def _banner(path: str) -> tuple[int, int, int] | None:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    match = _BANNER.search(data)
    if match is None:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _mapped_path(target: str) -> str | None:
    """The file the loader opened for `target` (a bare name when found on its path)."""
    if os.path.isabs(target):
        return target
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    stem = Path(target).name.split(".so")[0]
    return next((line.split()[-1] for line in maps.splitlines()
                 if line.split()[-1:] and Path(line.split()[-1]).name.startswith(stem)), None)
