"""A user runs `parley run --headless --cloud`: their voice goes to the (local stand-in for
the) OpenAI Realtime API, its spoken answer comes out of the speaker, and the metrics JSON
has the same shape as in local mode."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.realtime_server import RATE, RealtimeServer, Reply, Scenario
from tests.speech import conversation_wav

_NO_KEYRING = "keyring.backends.fail.Keyring"


@pytest.fixture
def server() -> Iterator[RealtimeServer]:
    srv = RealtimeServer(Scenario(
        heard=["How far away is the moon?"],
        replies=[Reply("The moon is about three hundred and eighty thousand kilometres "
                       "away from the Earth.")])).start()
    yield srv
    srv.stop()
    assert srv.faults == [] and srv.rejected == []


def _env(pulse: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's audio server, fresh settings, no keyring and no key but `extra`'s."""
    env = {**os.environ, **pulse.env, "PARLEY_CONFIG": str(tmp_path / "config.toml"),
           "PARLEY_DATA_DIR": str(tmp_path / "data"), "PYTHON_KEYRING_BACKEND": _NO_KEYRING}
    env.pop("OPENAI_API_KEY", None)
    return {**env, **extra}


def sounding_seconds(path: Path) -> float:
    """How long the recording carries sound, from its first to its last loud 5 ms."""
    audio, rate = sf.read(path, dtype="float32")
    window = rate // 200
    frames = audio[:audio.size // window * window].reshape(-1, window)
    loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 0.002)
    return float((loud[-1] - loud[0] + 1) * window / rate) if loud.size else 0.0


def test_a_spoken_question_is_answered_aloud_by_the_cloud(
        pulse: Any, server: RealtimeServer, tmp_path: Path) -> None:
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"], gap_s=1.0)
    metrics, heard = tmp_path / "m.json", tmp_path / "speaker.wav"
    env = _env(pulse, tmp_path, OPENAI_BASE_URL=server.base_url,
               OPENAI_API_KEY="sk-test-never-leaves-this-machine")
    agent = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--headless", "--cloud", "--max-turns", "1",
         "--metrics-json", str(metrics)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        ready = agent.stdout.readline()
        assert "Listening" in ready, agent.stderr.read() if agent.stderr else ready
        recorder = pulse.record_speaker(heard)
        recorder.wait_flowing()
        pulse.wait_for_mic_listener()  # "Listening" comes just before the mic opens
        pulse.play_into_mic(question)
        _, err = agent.communicate(timeout=120)
        recorder.stop()
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    assert "Traceback" not in err and "never awaited" not in err, err

    session = server.connections[0]
    # the key went in the handshake, the persona and voice in the session
    assert session.headers["Authorization"] == "Bearer sk-test-never-leaves-this-machine"
    update = session.of_type("session.update")[0]["session"]
    assert "Parley" in update["instructions"]
    assert update["audio"]["output"]["voice"] == "marin"
    # the server's VAD heard the question in the streamed microphone audio
    kinds = [e["type"] for e in session.sent]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index(
        "input_audio_buffer.speech_stopped") < kinds.index("response.created")

    doc = json.loads(metrics.read_text())
    assert len(doc["turns"]) == 1
    turn = doc["turns"][0]
    done = next(e for e in session.sent if e["type"] == "response.done")["response"]
    assert turn["user_text"] == session.sent[kinds.index(
        "conversation.item.input_audio_transcription.completed")]["transcript"]
    assert turn["assistant_text"] == done["output"][0]["content"][0]["transcript"]
    assert turn["usage"]["prompt"] == done["usage"]["input_tokens"]
    assert turn["usage"]["completion"] == done["usage"]["output_tokens"]
    assert turn["usage"]["total"] == done["usage"]["total_tokens"]
    assert 0 < turn["metrics_ms"]["end_of_speech_to_first_audio"] < 5000
    assert doc["rate_limits"][0]["name"] == "requests"

    # the whole reply came out of the speaker (a busy machine may stretch it a little)
    reply_seconds = next(iter(server.played.values())).size / RATE
    assert reply_seconds - 0.3 < sounding_seconds(heard) < reply_seconds + 1.0


def test_without_an_api_key_cloud_mode_says_how_to_add_one(pulse: Any, tmp_path: Path
                                                            ) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "--headless", "--cloud", "--max-turns", "1"],
        env=_env(pulse, tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1"),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "API key" in result.stderr
    assert "parley cloud set-key" in result.stderr and "OPENAI_API_KEY" in result.stderr


def test_set_key_without_a_system_keyring_points_to_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": _NO_KEYRING,
           "PARLEY_CONFIG": str(tmp_path / "config.toml")}
    result = subprocess.run([sys.executable, "-m", "app.cli", "cloud", "set-key"],
                            input="sk-typed-by-the-user\n", env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "keyring" in result.stderr and "OPENAI_API_KEY" in result.stderr
    assert "sk-typed-by-the-user" not in result.stderr + result.stdout
    assert not (tmp_path / "config.toml").exists()


def test_parley_run_cloud_opens_the_window_in_cloud_mode(
        pulse: Any, server: RealtimeServer, tmp_path: Path) -> None:
    """`parley run --cloud` (no --headless): the window starts, moves its conversation to
    the cloud, and a spoken question is answered there and kept in the conversation store."""
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"], gap_s=1.0)
    shot = tmp_path / "window.png"
    env = _env(pulse, tmp_path, OPENAI_BASE_URL=server.base_url,
               OPENAI_API_KEY="sk-test-never-leaves-this-machine", QT_QPA_PLATFORM="offscreen")
    window = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--cloud", "--max-turns", "1",
         "--screenshot", str(shot)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        server.wait_for(lambda: server.connections
                        and server.connections[0].of_type("session.update"), 180)
        pulse.wait_for_mic_listener()  # the cloud's own microphone feed
        pulse.play_into_mic(question)
        _, err = window.communicate(timeout=120)
    finally:
        if window.poll() is None:
            window.kill()
    assert window.returncode == 0, err
    assert shot.stat().st_size > 0
    with sqlite3.connect(tmp_path / "data" / "parley.db") as db:
        turns = db.execute("SELECT role, text FROM turns ORDER BY id").fetchall()
    done = next(e for e in server.connections[0].sent if e["type"] == "response.done")
    assert turns == [("user", "How far away is the moon?"),
                     ("assistant", done["response"]["output"][0]["content"][0]["transcript"])]
