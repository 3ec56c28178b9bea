"""Compiles `fake_rkllm.c` into a shared library, as the NPU runtime cannot exist here."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("fake_rkllm.c")
DEVICE_TREES = Path(__file__).with_name("device-trees")
"""One folder per board, each holding the `compatible` file its device tree has."""


def build(folder: Path, *defines: str) -> Path:
    """`librkllmrt.so` built in `folder` with the given -D defines (a version variant)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("No C compiler: `make setup` installs build-essential.")
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / "librkllmrt.so"
    subprocess.run([compiler, "-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror",
                    "-O1", "-shared", "-fPIC", *(f"-D{d}" for d in defines), "-o",
                    str(library), str(SOURCE)], check=True, capture_output=True, text=True)
    return library


def report(library: Path) -> str:
    """What the fake runtime last received (its `fake_report()`)."""
    function = ctypes.CDLL(str(library)).fake_report
    function.restype = ctypes.c_char_p
    return str(function().decode())


def offset(library: Path, name: str) -> int:
    """C's offsetof("Struct.field") or sizeof("Struct"), -1 for a name it does not know."""
    function = ctypes.CDLL(str(library)).fake_offset
    function.restype = ctypes.c_long
    function.argtypes = [ctypes.c_char_p]
    return int(function(name.encode()))
