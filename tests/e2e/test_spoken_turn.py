"""A user asks a question into the microphone and hears an answer from the speaker."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from tests.speech import conversation_wav


def test_user_asks_through_the_microphone_and_hears_an_answer(
        pulse: Any, user_dirs: Path, default_models: dict[str, Any]) -> None:
    tmp_path = user_dirs
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"],
                                gap_s=0.2)
    metrics, heard = tmp_path / "m.json", tmp_path / "speaker.wav"
    env = {**os.environ, **pulse.env, "PARLEY_DATA_DIR": str(tmp_path / "data")}
    agent = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--headless", "--max-turns", "1",
         "--metrics-json", str(metrics)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        ready = agent.stdout.readline()  # printed once the models are loaded
        assert "Listening" in ready, agent.stderr.read() if agent.stderr else ready
        recorder = pulse.record_speaker(heard)
        recorder.wait_flowing()
        pulse.wait_for_mic_listener()  # "Listening" comes just before the mic opens
        pulse.play_into_mic(question)
        _, err = agent.communicate(timeout=180)
        recorder.stop()
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    doc = json.loads(metrics.read_text())
    assert len(doc["turns"]) == 1
    turn = doc["turns"][0]
    assert "moon" in turn["user_text"].lower()
    assert turn["metrics_ms"]["end_of_speech_to_first_audio"] > 0

    # the speaker really carried speech: transcribe what was recorded there
    from audio.resample import resample
    from engines.stt_whisper import WhisperSTT

    audio, rate = sf.read(heard, dtype="float32", always_2d=True)
    mono = resample(audio.mean(axis=1), rate, 16000)
    assert np.sqrt(np.mean(mono**2)) > 0.005
    stt = WhisperSTT(default_models["stt"], {"language": "en"})
    text = stt.transcribe(mono).text
    stt.close()
    assert len(text.split()) >= 2, text
    assert turn["assistant_text"]

    # the conversation is kept, as the window keeps it
    with sqlite3.connect(tmp_path / "data" / "parley.db") as db:
        kept = db.execute("SELECT role, text FROM turns ORDER BY id").fetchall()
    assert kept == [("user", turn["user_text"]), ("assistant", turn["assistant_text"])]


def test_each_turn_is_in_the_metrics_file_as_soon_as_it_is_answered(
        pulse: Any, tmp_path: Path, default_models: dict[str, Any]) -> None:
    """`--metrics-json` is written after every turn, not only on the way out: a run that is
    killed (a kiosk's power cut, a benchmark that gives up waiting) keeps its turns."""
    question = conversation_wav(tmp_path / "q.wav", ["What is two plus two?"], gap_s=0.2)
    metrics = tmp_path / "m.json"
    agent = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--headless", "--metrics-json", str(metrics)],
        env={**os.environ, **pulse.env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    try:
        assert agent.stdout is not None
        assert "Listening" in agent.stdout.readline()
        pulse.wait_for_mic_listener()
        pulse.play_into_mic(question)
        while not agent.stdout.readline().startswith("parley:"):  # the turn was answered
            assert agent.poll() is None, "parley exited before answering"
        agent.kill()  # nothing can be written on the way out
        agent.wait(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
    (turn,) = json.loads(metrics.read_text())["turns"]
    assert "plus" in turn["user_text"].lower() and turn["assistant_text"]


def test_a_user_without_an_audio_device_is_told_what_to_do(tmp_path: Path) -> None:
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/no-such-server"}
    result = subprocess.run([sys.executable, "-m", "app.cli", "run", "--headless",
                             "--max-turns", "1"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No audio input device" in result.stderr
    assert "PulseAudio" in result.stderr


def test_an_unknown_microphone_name_lists_the_devices_there_are(pulse: Any) -> None:
    env = {**os.environ, **pulse.env}
    result = subprocess.run([sys.executable, "-m", "app.cli", "run", "--headless",
                             "--input-device", "no-such-mic"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no-such-mic" in result.stderr
    assert "pulse" in result.stderr
