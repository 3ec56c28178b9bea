"""A user on an old PC gets words, not a crashed worker, when llama.cpp cannot run there."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from engines.cpu import LLAMA_NEEDS, missing_features, require_llama_features
from engines.errors import ParleyError

# /proc/cpuinfo's flags of an Intel Core 2 (2008) and of a Sandy Bridge Core i5 (2011): SSE
# only, and AVX without AVX2/FMA/F16C.
CORE2 = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 sse sse2 ssse3 sse4_1\n"
SANDY = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt aes avx\n"
NEEDS = LLAMA_NEEDS["x86_64"]


def test_the_missing_flags_are_named_in_order() -> None:
    assert missing_features(CORE2, NEEDS) == ["avx", "avx2", "fma", "f16c"]
    assert missing_features(SANDY, NEEDS) == ["avx2", "fma", "f16c"]


def test_without_a_flags_line_nothing_is_judged() -> None:
    assert missing_features("Processor\t: AArch64 Processor rev 0\nFeatures\t: neon\n",
                            NEEDS) == []


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the check is for x86-64 CPUs")
def test_an_old_cpu_is_told_what_it_lacks_and_what_to_do(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(SANDY)
    with pytest.raises(ParleyError) as caught:
        require_llama_features(cpuinfo)
    assert "AVX2, FMA, F16C" in caught.value.message
    assert "--cloud" in caught.value.hint


def test_this_machine_runs_the_llm_engine() -> None:
    require_llama_features()  # the CI machine runs llama.cpp in the other tests
