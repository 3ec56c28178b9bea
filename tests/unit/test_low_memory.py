"""The low-memory default: on a machine with little RAM the catalog's stand-in replaces the
default LLM, says why, and never replaces a model the settings name on purpose.

The machine's memory is passed in, so every case runs on any machine; only
`total_memory()` itself reads this one.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from app.settings import RESOURCES
from engines.errors import ModelError
from engines.models import Catalog, for_this_machine, info, load_catalog, total_memory
from engines.models.catalog import GIB

CATALOG = """
[defaults]
llm = "big-llm"
stt = "some-stt"
tts = "some-voice"
vad = "webrtcvad"
{low}
[[models]]
name = "big-llm"
kind = "llm"
format = "gguf"
path = "big.gguf"
[[models.files]]
name = "big.gguf"
sources = ["https://example.invalid/big.gguf"]

[[models]]
name = "small-llm"
kind = "llm"
format = "gguf"
path = "small.gguf"
[[models.files]]
name = "small.gguf"
sources = ["https://example.invalid/small.gguf"]

[[models]]
name = "some-stt"
kind = "stt"
format = "ct2-whisper"
path = "."
[[models.files]]
name = "model.bin"
sources = ["https://example.invalid/model.bin"]

[[models]]
name = "some-voice"
kind = "tts"
format = "piper"
path = "v.onnx"
[[models.files]]
name = "v.onnx"
sources = ["https://example.invalid/v.onnx"]

[[models]]
name = "webrtcvad"
kind = "vad"
format = "webrtcvad"
"""
LOW = '[defaults.low_memory]\nram_below_gib = 4\nllm = "small-llm"\n'


def _catalog(tmp_path: Path, low: str = LOW) -> Catalog:
    path = tmp_path / "models.toml"
    path.write_text(CATALOG.format(low=low))
    return load_catalog(path)


def test_below_the_threshold_the_stand_in_is_the_default_and_the_reason_says_why(
    tmp_path: Path,
) -> None:
    catalog = _catalog(tmp_path)
    small = catalog.choice("llm", 3 * GIB)
    assert small.name == "small-llm" == catalog.default("llm", 3 * GIB).name
    assert small.reason == ("this machine has 3.0 GiB of RAM, less than the 4 GiB big-llm "
                            "needs beside the other models")
    assert catalog.choice("llm", 4 * GIB).name == "big-llm"
    assert catalog.choice("llm", 4 * GIB).reason == ""
    assert catalog.default("stt", 1 * GIB).name == "some-stt"  # no stand-in for that kind
    assert catalog.defaults["llm"] == "big-llm"  # the defaults as written stay as written


def test_a_catalog_without_stand_ins_has_one_default_everywhere(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, low="")
    assert catalog.low_memory is None
    assert catalog.choice("llm", 1 * GIB).name == "big-llm"


def test_a_setting_naming_the_default_gets_the_stand_in_and_the_log_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = _catalog(tmp_path)
    with caplog.at_level(logging.WARNING, logger="engines.models"):
        assert for_this_machine("big-llm", "llm", catalog, 2 * GIB) == "small-llm"
    assert caplog.messages == [
        "Using the LLM model small-llm: this machine has 2.0 GiB of RAM, less than the 4 GiB "
        "big-llm needs beside the other models."]
    caplog.clear()
    assert for_this_machine("big-llm", "llm", catalog, 8 * GIB) == "big-llm"
    assert caplog.messages == []


@pytest.mark.parametrize("chosen", ["small-llm", "some-other-llm", "/models/mine.gguf",
                                    "https://example.com/m.gguf"])
def test_a_setting_naming_another_model_is_used_as_named(tmp_path: Path, chosen: str) -> None:
    assert for_this_machine(chosen, "llm", _catalog(tmp_path), 1 * GIB) == chosen


def test_models_list_marks_the_default_for_the_machine_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path / "models"))
    catalog = _catalog(tmp_path)
    small, big = (info(n, catalog, 3 * GIB) for n in ("small-llm", "big-llm"))
    assert (small["default"], big["default"]) == (True, False)
    assert small["default_reason"].startswith("this machine has 3.0 GiB of RAM")
    assert big["default_reason"] == ""
    small, big = (info(n, catalog, 8 * GIB) for n in ("small-llm", "big-llm"))
    assert (small["default"], big["default"], big["default_reason"]) == (False, True, "")


def test_the_shipped_default_llm_is_qwen_coder_1_5b_and_0_5b_below_4_gib() -> None:
    catalog = load_catalog()
    with (RESOURCES / "parley.toml").open("rb") as f:
        setting = tomllib.load(f)["models"]["llm"]
    assert setting == catalog.defaults["llm"] == "qwen2.5-coder-1.5b-instruct"
    assert for_this_machine(setting, "llm", catalog, 16 * GIB) == "qwen2.5-coder-1.5b-instruct"
    assert for_this_machine(setting, "llm", catalog, int(3.8 * GIB)) == (
        "qwen2.5-coder-0.5b-instruct")
    assert "smollm2-135m-instruct" in catalog


def test_this_machines_memory_is_read() -> None:
    assert total_memory() > 256 * 2**20


@pytest.mark.parametrize(("low", "complaint"), [
    ('[defaults.low_memory]\nram_below_gib = 4\nllm = "some-stt"\n',
     "the low-memory llm model must be a llm entry (got 'some-stt')"),
    ('[defaults.low_memory]\nram_below_gib = 4\nllm = "nothing"\n',
     "the low-memory llm model must be a llm entry (got 'nothing')"),
    ('[defaults.low_memory]\nram_below_gib = 0\nllm = "small-llm"\n',
     "ram_below_gib must be a positive number of GiB (got 0)"),
    ('[defaults.low_memory]\nram_below_gib = "4 GB"\nllm = "small-llm"\n',
     "ram_below_gib must be a positive number of GiB (got '4 GB')"),
    ('[defaults.low_memory]\nllm = "small-llm"\n', "the field 'ram_below_gib' is missing"),
    ('[defaults.low_memory]\nram_below_gib = 4\nlm = "small-llm"\n',
     "[defaults.low_memory] has no setting 'lm'"),
    ("[defaults.low_memory]\nram_below_gib = 4\n", "[defaults.low_memory] names no model"),
])
def test_a_broken_low_memory_table_is_refused_with_the_reason(
    tmp_path: Path, low: str, complaint: str
) -> None:
    with pytest.raises(ModelError) as caught:
        _catalog(tmp_path, low)
    assert complaint in str(caught.value)
