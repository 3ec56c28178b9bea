"""Which Rockchip SoC this is, and the RKLLM settings that suit it.

The SoC is read from the device tree's `compatible` list (e.g. "rockchip,rk3588s-orangepi-5",
"rockchip,rk3588"). A profile only sets defaults: the settings file and flags win, so a
board can be tuned without code. Starting points from ../shared/reference/rkllm-api.md, to be
measured on the boards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DEVICE_TREES = (Path("/proc/device-tree"), Path("/sys/firmware/devicetree/base"))
SYS = Path("/sys")
MIN_DRIVER = (0, 9, 8)
"""The rknpu kernel driver the 1.2 runtime was released with; older ones fail oddly."""


@dataclass(frozen=True)
class Profile:
    soc: str
    n_ctx: int
    """The runtime's max_context_len: the KV cache it allocates on the NPU."""
    n_threads: int
    """CPU cores the runtime may use (enabled_cpus_num)."""
    cpu_mask: int
    """Which cores (enabled_cpus_mask): the big ones where there are two kinds."""
    n_batch: int
    """Sequences the runtime runs at once."""
    embed_flash: bool
    """Read word embeddings from storage instead of RAM: saves memory on smaller boards."""
    max_tokens: int | None = None
    """A shorter reply cap where the NPU is slow."""

    def llm_defaults(self) -> dict[str, Any]:
        """The [llm] settings this profile sets, before the user's file."""
        values: dict[str, Any] = {"n_ctx": self.n_ctx, "n_threads": self.n_threads,
                                  "cpu_mask": self.cpu_mask, "n_batch": self.n_batch,
                                  "embed_flash": self.embed_flash}
        if self.max_tokens is not None:
            values["max_tokens"] = self.max_tokens
        return values


_RK3588 = Profile("RK3588", n_ctx=4096, n_threads=4, cpu_mask=0xF0, n_batch=1,
                  embed_flash=False)
PROFILES: dict[str, Profile] = {
    "rk3588": _RK3588,
    "rk3588s": replace(_RK3588, soc="RK3588S"),
    "rk3576": Profile("RK3576", n_ctx=2048, n_threads=4, cpu_mask=0xF0, n_batch=1,
                      embed_flash=True),
    "rk3562": Profile("RK3562", n_ctx=1024, n_threads=2, cpu_mask=0x03, n_batch=1,
                      embed_flash=True, max_tokens=128),
}
"""By the chip's name in `compatible`. The runtime gets the big cores (4-7 on RK3588 and
RK3576, as Rockchip's own server demo at 1.2.3 does), leaving the little ones to Whisper and
Piper; the reference's 8 cores (0xFF) on RK3588 would leave them none. One sequence
(n_batch 1): a conversation runs one at a time, and each more costs a KV cache of n_ctx."""


def compatible(device_tree: Path | None = None) -> list[str]:
    """The device tree's `compatible` strings, most specific first ([] off a device tree)."""
    for root in [device_tree] if device_tree else DEVICE_TREES:
        try:
            raw = (root / "compatible").read_bytes()
        except OSError:
            continue
        return [s.decode("ascii", "replace") for s in raw.split(b"\0") if s]
    return []


def detect(device_tree: Path | None = None) -> Profile | None:
    """The profile of the Rockchip SoC this runs on; None on any other machine."""
    for entry in compatible(device_tree):
        vendor, _, chip = entry.partition(",")
        if vendor == "rockchip" and chip in PROFILES:
            return PROFILES[chip]
    return None


def driver_problem(sys_root: Path | None = None) -> str | None:
    """Why the NPU cannot run RKLLM here, judged from the rknpu kernel driver; None if fine."""
    version_file = (sys_root or SYS) / "module" / "rknpu" / "version"
    try:
        text = version_file.read_text().strip()
    except OSError:
        return ("the rknpu kernel driver is not loaded (no /sys/module/rknpu): this kernel "
                "has no NPU support, or it is not a Rockchip board")
    try:
        version = tuple(int(p) for p in text.split("."))
    except ValueError:
        return None  # an unusual version string: let the runtime judge
    if version < MIN_DRIVER:
        wanted = ".".join(map(str, MIN_DRIVER))
        return (f"the rknpu kernel driver is {text}, older than the {wanted} that RKLLM 1.2 "
                "needs: update the board's kernel (docs/rockchip.md)")
    return None
