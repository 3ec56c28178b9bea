"""What a user can hand Parley by mistake (issue 18): the input as output, a device or a
named pipe, a recording of NaNs, a plain-http or malformed model URL, a broken model of
their own. Each gets a plain error saying what to do, never a traceback or a hang.

The `parley` runs here fail before any model is needed, so they run against an empty
models folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.wav import iter_wav, read_wav
from engines.errors import AudioError, ModelError
from engines.model_ref import ModelRef
from engines.models import load_catalog, reinstall_hint, resolve
from engines.models.catalog import check_source, parse_hf


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh settings file, data folder and (empty) models folder for `parley` runs."""
    return {**os.environ, "PARLEY_CONFIG": str(tmp_path / "config.toml"),
            "PARLEY_DATA_DIR": str(tmp_path / "data"),
            "PARLEY_MODELS_DIR": str(tmp_path / "models")}


def parley(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def recording(path: Path) -> Path:
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)
    sf.write(path, tone.astype(np.float32), 16000)
    return path


# --- 1. the output is the input ---------------------------------------------------------

def _same(tmp: Path, wav: Path) -> Path:
    return wav


def _symlink(tmp: Path, wav: Path) -> Path:
    (tmp / "link.wav").symlink_to(wav)
    return tmp / "link.wav"


def _hardlink(tmp: Path, wav: Path) -> Path:
    os.link(wav, tmp / "hard.wav")
    return tmp / "hard.wav"


def _dotted(tmp: Path, wav: Path) -> Path:
    return tmp / "." / wav.name


@pytest.mark.parametrize("output", [_same, _symlink, _hardlink, _dotted],
                         ids=["same-path", "symlink", "hardlink", "other-spelling"])
def test_talk_refuses_to_write_the_replies_over_the_recording(
    tmp_path: Path, env: dict[str, str], output: Callable[[Path, Path], Path]
) -> None:
    wav = recording(tmp_path / "s.wav")
    before = wav.read_bytes()
    result = parley(env, "talk", "--input", str(wav), "--output", str(output(tmp_path, wav)))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "is the input recording" in result.stderr
    assert "--output" in result.stderr  # the hint says what to change
    assert wav.read_bytes() == before, "the recording must be left untouched"


# --- 2. devices and named pipes -----------------------------------------------------------

@pytest.mark.parametrize("reader", [read_wav, iter_wav], ids=["read_wav", "iter_wav"])
def test_a_device_or_a_named_pipe_is_named_not_called_a_folder(
    tmp_path: Path, reader: Callable[[Path], object]
) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path, what in ((Path("/dev/zero"), "is a device"), (fifo, "is a named pipe")):
        with pytest.raises(AudioError) as err:
            reader(path)
        assert f"{path} {what}, not an audio file" in err.value.message
        assert "folder" not in err.value.message
        assert err.value.hint


def test_talk_names_a_device_or_a_named_pipe_given_as_input(
    tmp_path: Path, env: dict[str, str]
) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path, what in (("/dev/zero", "is a device"), (str(fifo), "is a named pipe")):
        result = parley(env, "talk", "--input", path, "--output", str(tmp_path / "o.wav"))
        assert result.returncode == 2, result.stderr
        assert f"{path} {what}, not an audio file" in result.stderr


def test_a_device_or_a_named_pipe_is_no_model_file(tmp_path: Path, env: dict[str, str]) -> None:
    fifo = tmp_path / "model.gguf"  # with a model's name: opening it to check would hang
    os.mkfifo(fifo)
    for path, what in (("/dev/zero", "is a device"), (str(fifo), "is a named pipe")):
        with pytest.raises(ModelError) as err:
            resolve(path)
        assert f"{path} {what}, not a model file" in err.value.message
        result = parley(env, "--llm", path, "talk", "--input", str(recording(tmp_path / "s.wav")),
                        "--output", str(tmp_path / "o.wav"))
        assert result.returncode == 2, result.stderr
        assert f"{path} {what}, not a model file" in result.stderr


# --- 3. NaN and infinite samples ------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("reader", [read_wav, iter_wav], ids=["read_wav", "iter_wav"])
def test_a_recording_with_invalid_samples_is_refused_without_a_numpy_warning(
    tmp_path: Path, bad: float, subtype: str, reader: Callable[[Path], object]
) -> None:
    audio = 0.3 * np.sin(np.arange(48000) / 5.0)
    audio[30000:30010] = bad  # at 0.62 s of a 48 kHz recording
    path = tmp_path / "broken.wav"
    sf.write(path, audio, 48000, subtype=subtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AudioError) as err:
            reader(path)
    assert "broken.wav" in err.value.message
    assert "not a number or infinite" in err.value.message
    assert "0.62 s" in err.value.message
    assert err.value.hint


def test_talk_refuses_a_recording_of_nans_with_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    audio = np.zeros(16000, dtype=np.float32)
    audio[100:200] = np.nan
    wav = tmp_path / "nan.wav"
    sf.write(wav, audio, 16000, subtype="FLOAT")
    result = parley(env, "talk", "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert result.returncode == 2, result.stderr
    assert "Warning" not in result.stderr
    assert "not a number or infinite" in result.stderr


# --- 4. plain http -------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://example.com/m.gguf", "http://10.0.0.2:8000/m.gguf",
                                 "http://127.0.0.1.example.com/m.gguf"])
def test_a_plain_http_model_url_is_refused(url: str) -> None:
    with pytest.raises(ModelError) as err:
        check_source(url)
    assert "https" in err.value.message
    assert "https://" in err.value.hint


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/m.gguf", "http://127.9.9.9/m.gguf",
                                 "http://[::1]:8000/m.gguf", "http://localhost/m.gguf",
                                 "https://example.com/m.gguf"])
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    check_source(url)


def test_parley_models_pull_refuses_plain_http(env: dict[str, str]) -> None:
    result = parley(env, "models", "pull", "http://example.com/m.gguf")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "only over https" in result.stderr
    assert "Cannot download" not in result.stderr, "refused before any network request"


def test_a_catalog_with_a_plain_http_source_is_refused(tmp_path: Path) -> None:
    text = (Path(load_catalog().path).read_text()
            + '\n[[models]]\nname = "lan"\nkind = "llm"\nformat = "gguf"\npath = "m.gguf"\n'
            '[[models.files]]\nname = "m.gguf"\nsources = ["http://mirror.lan/m.gguf"]\n')
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(ModelError, match="only over https"):
        load_catalog(tmp_path / "models.toml")


# --- 6. malformed hub URLs -------------------------------------------------------------------

@pytest.mark.parametrize("url", ["hf://org/..@x/e.gguf", "hf://../repo/e.gguf",
                                 "hf://org/-repo/e.gguf", "hf://org/re po/e.gguf",
                                 "hf://org/repo/../e.gguf", "hf://org/repo@/e.gguf",
                                 "hf://org/a--b/e.gguf"])
def test_a_malformed_hub_url_is_a_model_error(url: str) -> None:
    with pytest.raises(ModelError, match="is not a hub source") as err:
        parse_hf(url)
    assert "hf://org/repo" in err.value.hint


def test_parley_models_pull_of_a_malformed_hub_url_says_so(env: dict[str, str]) -> None:
    result = parley(env, "models", "pull", "hf://org/..@x/e.gguf")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "'hf://org/..@x/e.gguf' is not a hub source" in result.stderr


# --- 7. the hint for a broken model of the user's own ----------------------------------------

def test_the_hint_for_a_broken_file_of_ones_own_names_real_catalog_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path / "models"))
    catalog = load_catalog()
    own = tmp_path / "my-model.gguf"
    own.write_bytes(b"GGUF" + bytes(100))
    hint = reinstall_hint(resolve(str(own)), catalog)
    assert "my-model" not in hint.replace(str(own), ""), "a file stem is no catalog name"
    assert str(own) in hint
    default = catalog.default("llm").name
    assert f"`parley models pull {default}`" in hint
    assert f"--llm {default}" in hint


def test_the_hint_for_a_broken_catalog_model_is_to_pull_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path / "models"))
    catalog = load_catalog()
    entry = catalog.default("tts")
    ref = ModelRef(entry.name, "tts", entry.format,
                   tmp_path / "models" / entry.name / entry.path)
    assert reinstall_hint(ref, catalog) == (
        f"Download it again: `parley models remove {entry.name}`, then "
        f"`parley models pull {entry.name}`.")
    # a file of one's own that happens to bear a catalog name is still one's own
    stray = ModelRef(entry.name, "tts", entry.format, tmp_path / f"{entry.name}.onnx")
    assert "Check" in reinstall_hint(stray, catalog)


def _broken_piper(tmp: Path) -> ModelRef:
    voice = tmp / "my-voice.onnx"
    voice.write_bytes(b"not an onnx model")
    voice.with_name("my-voice.onnx.json").write_text('{"audio": {"sample_rate": 22050}}')
    return resolve(str(voice))


def _broken_silero(tmp: Path) -> ModelRef:
    (tmp / "my-silero.onnx").write_bytes(b"not an onnx model")
    return resolve(str(tmp / "my-silero.onnx"))


def _broken_gguf(tmp: Path) -> ModelRef:
    (tmp / "my-model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(1000))
    return resolve(str(tmp / "my-model.gguf"))


def _broken_whisper(tmp: Path) -> ModelRef:
    folder = tmp / "my-whisper"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"junk")
    (folder / "config.json").write_text("{}")
    return resolve(str(folder))


@pytest.mark.parametrize("make", [_broken_gguf, _broken_whisper, _broken_piper, _broken_silero],
                         ids=["llm", "stt", "tts", "vad"])
def test_an_engine_given_a_broken_file_of_ones_own_never_suggests_pulling_its_stem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], ModelRef]
) -> None:
    from engines.builtin import default_registry

    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path / "models"))
    ref = make(tmp_path)
    with pytest.raises(ModelError) as err:
        default_registry().create(ref, {}).load()
    assert f"parley models pull {ref.name}" not in err.value.hint
    assert f"`parley models pull {load_catalog().default(ref.kind).name}`" in err.value.hint
