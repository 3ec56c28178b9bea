"""The models dialog on the real Controller (worker, engines, devices, SQLite): switching the LLM
to another GGUF on disk, a corrupt model, the voice reloading, and downloads that fail or are
cancelled. Downloads never reach the real hub: HF_ENDPOINT points at a closed port or at a
local server."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import itertools
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from PySide6.QtCore import Qt

from app.conversation.events import ModelChanged, ModelFailed, ModelLoading, TurnMetrics
from app.gui.models_dialog import ModelsDialog
from engines.model_ref import Kind, ModelRef
from engines.models import resolve

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HUB_MODEL = "qwen2.5-0.5b-instruct"
"""A catalog LLM fetched from the hub whose catalog entry gives no size (indeterminate bar)."""
HUB_PATH = "Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf"


@pytest.fixture
def dialog(controller: Any, qtbot: Any) -> ModelsDialog:
    """The dialog as the window shows it: every event forwarded to it."""
    dialog = ModelsDialog(controller)
    qtbot.addWidget(dialog)
    controller.subscribe(dialog.on_event)
    dialog.show()
    return dialog


def run(controller: Any, awaitable: Any) -> Any:
    return controller.loop.run_until_complete(awaitable)


def answered(controller: Any, text: str) -> str:
    result = run(controller, controller.send_text(text))
    assert isinstance(result, TurnMetrics)
    assert result.assistant_text.strip()
    return result.assistant_text


def quantize_q8(source: Path, target: Path) -> Path:
    """A genuinely different GGUF of the same model, made by llama.cpp's own quantizer."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                          ctypes.byref(params))
    assert code == 0, f"llama_model_quantize failed ({code})"
    return target


def test_a_corrupt_gguf_is_refused_then_another_gguf_takes_over_and_the_talk_goes_on(
        controller: Any, dialog: ModelsDialog, default_models: dict[Kind, ModelRef],
        qtbot: Any, tmp_path: Path) -> None:
    events: list[object] = []
    controller.subscribe(events.append)
    loop = controller.loop
    run(controller, controller.update_settings({"llm": {"max_tokens": 32}}))
    default = default_models["llm"]
    tree = dialog.trees["llm"]

    # the dialog opens on the LLM tab with the model in use selected and marked
    assert dialog.current_kind() == "llm"
    row = dialog.selected_row()
    assert row is not None and row.name == default.name and row.active
    current = tree.currentItem()
    assert current is not None and current.text(2) == "● In use"
    assert not dialog.use_button.isEnabled()  # it is in use already
    assert {r.name for r in dialog.rows["llm"]} >= {default.name, HUB_MODEL}
    assert all(r.description for r in dialog.rows["llm"])
    assert [tree.topLevelItem(i).toolTip(0)  # type: ignore[union-attr]
            for i in range(tree.topLevelItemCount())] == [r.description for r in dialog.rows["llm"]]
    # Delete does nothing destructive
    qtbot.keyClick(tree, Qt.Key.Key_Delete)
    assert tree.topLevelItemCount() == len(dialog.rows["llm"]) and default.path.is_file()

    # a truncated GGUF: the failure is said in words and the old model keeps answering
    broken = tmp_path / "broken.gguf"
    with default.path.open("rb") as whole:
        broken.write_bytes(whole.read(1 << 20))
    failing = dialog.add_local_file(broken)
    assert "Loading the LLM model" in dialog.status.text()
    assert not dialog.add_button.isEnabled()  # one switch per kind at a time
    assert run(controller, failing) is False
    failed = next(e for e in events if isinstance(e, ModelFailed))
    status = dialog.status.text()
    assert failed.message in status and failed.hint in status
    assert "Could not load" in status and "broken.gguf" in status
    assert f"The previous LLM model, {default.name}, is still in use." in status
    assert controller.active_models()["llm"].path == default.path
    answered(controller, "Hello")

    # another model, quantized here by llama.cpp so the dialog has never seen it, added from disk
    small = resolve("smollm2-135m-instruct", "llm")
    q8 = quantize_q8(small.path, tmp_path / "SmolLM2-135M-Instruct.Q8_0.gguf")
    assert q8.stat().st_size > small.path.stat().st_size * 1.2
    switching = dialog.add_local_file(q8)

    async def ticks_while(future: asyncio.Future[bool]) -> list[float]:
        """The loop's heartbeat while the worker loads: the window must stay responsive."""
        beats = [loop.time()]
        while not future.done():
            await asyncio.sleep(0.02)
            beats.append(loop.time())
        return beats

    beats = run(controller, ticks_while(switching))
    assert switching.result() is True
    assert max(b - a for a, b in itertools.pairwise(beats)) < 0.5
    changed = [e for e in events if isinstance(e, ModelChanged) and e.kind == "llm"]
    assert changed[-1].name == q8.stem
    assert controller.active_models()["llm"].path == q8
    active = next(r for r in dialog.rows["llm"] if r.active)
    assert active.name == q8.stem and active.description == str(q8)
    assert dialog.selected_row() == active
    assert f"LLM model ready: {q8.stem}" in dialog.status.text()
    answered(controller, "What is two plus two?")
    assert dialog.select("llm", "qwen2.5-1.5b-instruct")  # for the picture: a catalog row
    qtbot.wait(50)
    DOCS.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(DOCS / "models.png"))

    # back to the catalog model from the keyboard: select it and press Enter
    assert dialog.select("llm", default.name)
    tree.setFocus()
    qtbot.keyClick(tree, Qt.Key.Key_Return)
    assert dialog.pending == {"llm": default.name}

    async def settled() -> None:
        while dialog.pending:
            await asyncio.sleep(0.05)

    run(controller, asyncio.wait_for(settled(), 300))  # loading the 1.5B default
    assert controller.active_models()["llm"].name == default.name
    assert next(r for r in dialog.rows["llm"] if r.active).name == default.name
    answered(controller, "Thank you")


def test_a_slower_voice_reloads_the_tts_and_speaks_longer(
        controller: Any, dialog: ModelsDialog) -> None:
    events: list[object] = []
    controller.subscribe(events.append)
    engines = controller.agent.engines

    async def seconds_of(text: str) -> float:
        chunks = [chunk async for chunk in
                  engines.synthesize(text, 0, controller.agent.generation)]
        return float(sum(len(c.samples) / c.sample_rate for c in chunks))

    sentence = "The quick brown fox jumps over the lazy dog."
    before = run(controller, seconds_of(sentence))
    run(controller, controller.update_settings({"tts": {"length_scale": 1.5}}))
    tts = [e for e in events if isinstance(e, ModelLoading | ModelChanged | ModelFailed)]
    assert [type(e) for e in tts] == [ModelLoading, ModelChanged]
    assert all(e.kind == "tts" for e in tts)
    assert "TTS model ready: piper-en_US-joe-medium" in dialog.status.text()
    after = run(controller, seconds_of(sentence))
    assert after > before * 1.25
    dialog.tabs.setCurrentIndex(2)
    voice = dialog.selected_row()
    assert dialog.current_kind() == "tts" and voice is not None and voice.active
    answered(controller, "Hello")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def empty_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Downloads go to a fresh models folder (the loaded models stay loaded)."""
    root = tmp_path / "models"
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(root))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return root


def model_bytes_left(root: Path) -> list[Path]:
    """Anything that holds model data: installed files, parts, half-done hub downloads."""
    return [p for p in root.rglob("*")
            if p.is_file() and (p.suffix in (".gguf", ".part", ".incomplete"))]


def test_a_failed_download_is_reported_leaves_nothing_and_the_talk_goes_on(
        controller: Any, dialog: ModelsDialog, empty_models: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    dialog.refresh()
    assert dialog.select("llm", HUB_MODEL)
    assert dialog.download_button.isEnabled() and not dialog.use_button.isEnabled()
    download = dialog.download_selected()
    assert download is not None
    assert dialog.progress.isVisible() and dialog.progress.maximum() == 0  # size unknown
    assert dialog.cancel_button.isVisible() and not dialog.download_button.isEnabled()

    answered(controller, "Hello")  # huggingface_hub retries for ~20 s meanwhile
    assert run(controller, download) is False
    status = dialog.status.text()
    assert "from the hub failed" in status and "Check the network connection" in status
    assert not dialog.progress.isVisible() and not dialog.cancel_button.isVisible()
    row = dialog.selected_row()
    assert row is not None and row.name == HUB_MODEL and not row.installed
    assert dialog.download_button.isEnabled()
    assert not (empty_models / HUB_MODEL).exists()
    assert model_bytes_left(empty_models) == []


class PausingHub(ThreadingHTTPServer):
    """Answers like the hub for one file, then stalls after `pause_at` bytes until released,
    so a cancel is sure to land in the middle of the download."""

    daemon_threads = True

    def __init__(self, data: bytes, pause_at: int) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.data, self.pause_at = data, pause_at
        self.sha = hashlib.sha256(data).hexdigest()
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The client hanging up on a cancel is expected."""


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PausingHub

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        hub = self.server
        if self.path.lstrip("/") == HUB_PATH:  # the hub redirects LFS files to its CDN
            self._head(302, {"Location": f"/cdn/{hub.sha}", "X-Repo-Commit": "0" * 40,
                             "ETag": '"pointer"', "X-Linked-Etag": f'"{hub.sha}"',
                             "X-Linked-Size": str(len(hub.data))}, 0)
        elif self.path == f"/cdn/{hub.sha}":
            self._head(200, {"ETag": f'"{hub.sha}"', "X-Repo-Commit": "0" * 40},
                       len(hub.data))
            if body:
                self.wfile.write(hub.data[:hub.pause_at])
                self.wfile.flush()
                hub.release.wait(60)
                self.wfile.write(hub.data[hub.pause_at:])
        else:
            self._head(404, {}, 0)

    def _head(self, status: int, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(length)}.items():
            self.send_header(key, value)
        self.end_headers()


@pytest.fixture
def pausing_hub(empty_models: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PausingHub]:
    # more than two of huggingface_hub's 10 MB chunks: its progress hook is where it can stop
    server = PausingHub(b"GGUF" + bytes(25_000_000), pause_at=11_000_000)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_a_download_shows_its_progress_and_can_be_cancelled(
        controller: Any, dialog: ModelsDialog, pausing_hub: PausingHub, empty_models: Path,
        qtbot: Any) -> None:
    dialog.refresh()
    assert dialog.select("llm", HUB_MODEL)
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert dialog.download is not None

    async def first_progress() -> None:
        while "MB downloaded" not in dialog.progress_label.text():
            await asyncio.sleep(0.02)

    run(controller, asyncio.wait_for(first_progress(), 30))
    assert dialog.progress_label.text() == "10 MB downloaded"
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert "Stopping the download" in dialog.status.text()
    assert not dialog.cancel_button.isEnabled()
    pausing_hub.release.set()

    async def stopped() -> None:
        while dialog.download is not None:
            await asyncio.sleep(0.02)

    run(controller, asyncio.wait_for(stopped(), 30))
    assert "cancelled" in dialog.status.text()
    assert not dialog.progress.isVisible()
    row = dialog.selected_row()
    assert row is not None and not row.installed and dialog.download_button.isEnabled()
    assert not (empty_models / HUB_MODEL).exists()
