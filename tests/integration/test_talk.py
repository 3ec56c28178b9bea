"""A user hands Parley a recording and gets spoken answers back, or a clear reason why not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.speech import conversation_wav, espeak


def parley(*args: str, timeout: float = 300, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_two_spoken_questions_get_two_spoken_answers(tmp_path: Path) -> None:
    wav = conversation_wav(tmp_path / "in.wav", ["How far away is the moon?",
                                                 "Tell me a short joke."])
    # the input arrives at an unusual rate and in stereo: Parley converts it
    audio, rate = sf.read(wav, dtype="float32")
    sf.write(wav, np.stack([audio, audio], axis=1), rate, subtype="FLOAT")
    out, metrics = tmp_path / "out.wav", tmp_path / "m.json"
    result = parley("talk", "--input", str(wav), "--output", str(out),
                    "--metrics-json", str(metrics))
    assert result.returncode == 0, result.stderr
    doc = json.loads(metrics.read_text())
    assert len(doc["turns"]) == 2
    first, second = doc["turns"]
    assert "moon" in first["user_text"].lower()
    assert "joke" in second["user_text"].lower()
    for turn in doc["turns"]:
        assert turn["assistant_text"].strip()
        assert turn["usage"]["prompt"] > 0 and turn["usage"]["completion"] > 0
        assert turn["tokens"] == turn["usage"]
        for key in ("stt", "llm_first_token", "tts_first_audio",
                    "end_of_speech_to_first_audio"):
            assert turn["metrics_ms"][key] > 0
    assert set(doc["models"]) == {"stt", "llm", "tts", "vad"}
    reply, reply_rate = sf.read(out, dtype="float32")
    assert len(reply) / reply_rate > 1.0
    assert np.sqrt(np.mean(reply**2)) > 0.01  # there is a voice in it, not silence


@pytest.mark.parametrize("make_input, expected", [
    (lambda p: p.write_text("this is not audio at all"), "not"),
    (lambda p: sf.write(p, np.zeros(0, dtype=np.float32), 16000), "no sound"),
    (lambda p: None, "does not exist"),
])
def test_a_bad_input_file_gets_a_clear_message(tmp_path: Path, make_input: object,
                                               expected: str) -> None:
    wav = tmp_path / "in.wav"
    make_input(wav)  # type: ignore[operator]
    result = parley("talk", "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr.lower()
    assert "in.wav" in result.stderr


def test_an_unknown_model_name_lists_what_was_searched(tmp_path: Path) -> None:
    wav = conversation_wav(tmp_path / "in.wav", ["Hello."])
    result = parley("--llm", "no-such-model", "talk", "--input", str(wav),
                    "--output", str(tmp_path / "o.wav"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no-such-model" in result.stderr
    assert "parley models" in result.stderr


def test_a_missing_model_file_is_reported(tmp_path: Path) -> None:
    wav = conversation_wav(tmp_path / "in.wav", ["Hello."])
    result = parley("--llm", str(tmp_path / "gone.gguf"), "talk", "--input", str(wav),
                    "--output", str(tmp_path / "o.wav"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "gone.gguf" in result.stderr


def test_a_truncated_gguf_is_reported_as_corrupt(tmp_path: Path,
                                                default_models: dict[str, object]) -> None:
    real = Path(str(default_models["llm"].path))  # type: ignore[attr-defined]
    broken = tmp_path / "broken.gguf"
    with real.open("rb") as src:
        broken.write_bytes(src.read(2_000_000))
    wav = conversation_wav(tmp_path / "in.wav", ["Hello."])
    result = parley("--llm", str(broken), "talk", "--input", str(wav),
                    "--output", str(tmp_path / "o.wav"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "broken.gguf" in result.stderr
    assert any(w in result.stderr.lower() for w in ("corrupt", "truncated"))
    # the hint names the catalog's model, not the file's stem, which is no catalog name
    assert "parley models pull broken" not in result.stderr
    assert f"`parley models pull {default_models['llm'].name}`" in result.stderr  # type: ignore[attr-defined]


def test_a_ten_minute_recording_is_answered_in_bounded_memory(tmp_path: Path) -> None:
    """Mostly silence at 48 kHz stereo (110 MB as float32): utterances are answered one by one."""
    rate, minutes = 48000, 10
    questions = ["What time is it?", "Say something nice.", "What is two plus two?"]
    wav = tmp_path / "long.wav"
    total = minutes * 60 * rate
    spots = [int(total * f) for f in (0.1, 0.5, 0.9)]
    with sf.SoundFile(wav, "w", rate, 2, subtype="PCM_16") as f:
        written = 0
        for spot, text in zip(spots, questions, strict=True):
            f.write(np.zeros((spot - written, 2), dtype=np.float32))
            speech = espeak(text, rate)
            f.write(np.stack([speech, speech], axis=1))
            written = spot + len(speech)
        f.write(np.zeros((total - written, 2), dtype=np.float32))
    metrics = tmp_path / "m.json"
    result = parley("talk", "--input", str(wav), "--output", str(tmp_path / "o.wav"),
                    "--metrics-json", str(metrics))
    assert result.returncode == 0, result.stderr
    doc = json.loads(metrics.read_text())
    assert len(doc["turns"]) == 3
    # the whole file as float32 would be 230 MB: the reader must stream it
    assert doc["peak_rss_mb"] < 150, doc["peak_rss_mb"]


def test_the_silero_vad_can_replace_webrtcvad(tmp_path: Path) -> None:
    wav = conversation_wav(tmp_path / "in.wav", ["Why is the sky blue?"])
    metrics = tmp_path / "m.json"
    result = parley("--vad", "silero-vad", "talk", "--input", str(wav),
                    "--output", str(tmp_path / "o.wav"), "--metrics-json", str(metrics))
    assert result.returncode == 0, result.stderr
    doc = json.loads(metrics.read_text())
    assert doc["models"]["vad"]["name"] == "silero-vad"
    assert [t["user_text"] for t in doc["turns"]] == ["Why is the sky blue?"]
