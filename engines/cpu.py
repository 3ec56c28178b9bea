"""The CPU features Parley's native code was built for, checked before that code is loaded.

llama.cpp is compiled once for a portable x86-64 level (packaging/setup.sh: AVX, AVX2, FMA,
F16C, the level of most PCs since 2013); on an older CPU its first instruction of those
kills the worker with SIGILL, which the user would only see as "the engines died". Checking
/proc/cpuinfo first turns that into words. Whisper (CTranslate2) and ONNX Runtime pick their
kernels at run time and need no check; on aarch64 the NEON baseline is all llama.cpp needs.
"""

from __future__ import annotations

import platform
from pathlib import Path

from engines.errors import ParleyError

LLAMA_NEEDS = {"x86_64": ("avx", "avx2", "fma", "f16c")}
"""Per machine (`uname -m`), the /proc/cpuinfo flags the bundled llama.cpp was built with."""


def missing_features(cpuinfo: str, needs: tuple[str, ...]) -> list[str]:
    """The flags in `needs` that the first processor's "flags" line does not list."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            have = set(value.split())
            return [flag for flag in needs if flag not in have]
    return []  # no flags line (not Linux x86): nothing to judge by, let the library try


def require_llama_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
    """Raise a ParleyError naming what is missing if this CPU cannot run the LLM engine."""
    needs = LLAMA_NEEDS.get(platform.machine(), ())
    if not needs:
        return
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    missing = missing_features(text, needs)
    if missing:
        raise ParleyError(
            "This computer's processor lacks " + ", ".join(f.upper() for f in missing)
            + ", which Parley's local LLM engine (llama.cpp) was built to use, so it cannot "
            "run here.",
            "Use cloud mode (`parley run --cloud`), or build Parley from source on this "
            "computer with `make setup` after changing its llama.cpp flags to "
            "-DGGML_NATIVE=ON (docs/packaging.md).",
        )
