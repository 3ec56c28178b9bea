"""Models archives: a real installed model exported, then imported into an empty models folder
(as on a machine without a network); tampered, hostile, cut-short and cancelled imports
install nothing.

The archive is written from the machine's models folder, where `make setup` installs
silero-vad; each import goes into a fresh folder of its own (PARLEY_MODELS_DIR).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engines.errors import ModelError
from engines.models import MARKER, DownloadCancelled, load_catalog, resolve
from engines.models.archive import MANIFEST, export_archive, import_archive
from engines.vad_silero import SileroVAD

MODEL = "silero-vad"
MEMBER = "silero-vad/silero_vad.onnx"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """silero-vad exported from this machine's models folder, once for the module."""
    dest = tmp_path_factory.mktemp("archive") / "models.tar"
    seen: list[tuple[int, int | None]] = []
    assert export_archive([MODEL], dest, lambda done, total: seen.append((done, total))) == dest
    size = load_catalog().get(MODEL).size
    assert seen[-1] == (size, size)
    assert not list(dest.parent.glob(".*")), "the temporary file must be renamed away"
    return dest


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder with nothing in it yet, as on the machine the archive is carried to."""
    root = tmp_path / "models"
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(root))
    return root


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def rewritten(archive: Path, dest: Path, change: Callable[[tarfile.TarFile], None],
              keep: Callable[[str], bool] = lambda name: True) -> Path:
    """A copy of `archive` with the members `keep` accepts, then whatever `change` adds."""
    with tarfile.open(archive) as src, tarfile.open(dest, "w") as out:
        for member in src.getmembers():
            if keep(member.name):
                out.addfile(member, src.extractfile(member))
        change(out)
    return dest


def add(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
        ) -> Callable[[tarfile.TarFile], None]:
    def change(out: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        out.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return change


def test_an_exported_model_imports_into_an_empty_folder_resolves_and_loads(
    archive: Path, empty: Path
) -> None:
    entry = load_catalog().get(MODEL)
    with tarfile.open(archive) as tar:
        assert tar.getnames() == [MANIFEST, MEMBER]
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    assert manifest["models"] == [{"name": MODEL, "files": [
        {"name": "silero_vad.onnx", "size": entry.size, "sha256": entry.files[0].sha256}]}]
    seen: list[tuple[int, int | None]] = []

    assert import_archive(archive, lambda done, total: seen.append((done, total))) == [MODEL]

    assert seen[-1] == (entry.size, entry.size)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})
    ref = resolve(MODEL, "vad")
    assert ref.path == empty / MODEL / "silero_vad.onnx"
    marker = json.loads((empty / MODEL / MARKER).read_text())
    assert marker == {"silero_vad.onnx": {"size": entry.size, "sha256": entry.files[0].sha256}}
    assert sorted(p.name for p in empty.iterdir()) == [MODEL], "no scratch left behind"
    vad = SileroVAD(ref, {})
    vad.load()
    assert vad.is_speech(np.zeros(vad.frame_samples, dtype=np.float32)) is False

    installed = ref.path.stat().st_mtime_ns
    seen.clear()
    assert import_archive(archive, lambda done, total: seen.append((done, total))) == []
    assert seen == [] and ref.path.stat().st_mtime_ns == installed, "installed: skipped"


def test_a_tampered_file_is_refused_and_nothing_is_left(
    archive: Path, empty: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(archive.read_bytes())
    with tarfile.open(tampered) as tar:
        offset = tar.getmember(MEMBER).offset_data + 100_000
    with tampered.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(ModelError, match=f"damaged or altered {MEMBER}: its sha256") as caught:
        import_archive(tampered, lambda done, total: None)
    assert "Nothing was installed" in caught.value.message
    assert nothing_in(empty)


@pytest.mark.parametrize(("change", "keep", "why"), [
    (add("../x"), None, r"holds '\.\./x', which is not a file of a model it lists"),
    (add(f"{MODEL}/extra.onnx"), None, "which is not a file of a model it lists"),
    (add(MEMBER, kind=tarfile.SYMTYPE, link="/etc/passwd"), MANIFEST, "is a link"),
    (add(MEMBER, kind=tarfile.LNKTYPE, link="../../x"), MANIFEST, "is a link"),
    (add(MEMBER, kind=tarfile.CHRTYPE), MANIFEST, "is special, not a plain file"),
    (add(MANIFEST, json.dumps({"format": 1, "models": [
        {"name": "evil", "files": []}]}).encode()), MEMBER, "'evil', which is not a model"),
    (add(MANIFEST, json.dumps({"format": 1, "models": [{"name": MODEL, "files": [
        {"name": "../x", "size": 1, "sha256": "0" * 64}]}]}).encode()), MEMBER,
     "files of silero-vad are not the ones the catalog names"),
    (add(MANIFEST, b"{"), MEMBER, f"its {MANIFEST} is not JSON"),
    (lambda out: None, MEMBER, f"it has no {MANIFEST}"),
], ids=["traversal", "stray-file", "symlink", "hardlink", "device", "unknown-model",
        "unknown-file", "bad-manifest", "no-manifest"])  # fmt: skip
def test_anything_but_the_catalog_files_is_refused(
    archive: Path, empty: Path, tmp_path: Path, change: Callable[[tarfile.TarFile], None],
    keep: str | None, why: str
) -> None:
    hostile = rewritten(archive, tmp_path / "hostile.tar", change,
                        lambda name: keep is None or name == keep)  # fmt: skip
    with pytest.raises(ModelError, match=why) as caught:
        import_archive(hostile, lambda done, total: None)
    assert "Nothing was installed" in caught.value.message
    assert "parley models export" in caught.value.hint
    assert nothing_in(empty) and not (tmp_path / "x").exists()


def test_a_cut_short_archive_or_another_file_is_a_clear_error(
    archive: Path, empty: Path, tmp_path: Path
) -> None:
    data = archive.read_bytes()
    with tarfile.open(archive) as tar:
        second = tar.getmember(MEMBER).offset
    cases = {"half.tar": data[: len(data) // 2], "header.tar": data[:second],
             "readme.tar": (ROOT / "README.md").read_bytes(), "empty.tar": b""}  # fmt: skip
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError, match=r"(cut short|missing)") as caught:
            import_archive(tmp_path / name, lambda done, total: None)
        assert "Nothing was installed" in caught.value.message, name
        assert caught.value.hint, name
    assert nothing_in(empty)


def test_a_cancelled_import_leaves_nothing_and_can_be_run_again(
    archive: Path, empty: Path
) -> None:
    cancel = threading.Event()
    with pytest.raises(DownloadCancelled, match="cancelled: nothing was installed"):
        import_archive(archive, lambda done, total: cancel.set(), cancel)
    assert nothing_in(empty)
    assert import_archive(archive, lambda done, total: None) == [MODEL]


def test_export_refuses_what_is_not_installed_built_in_or_damaged(
    archive: Path, empty: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out.tar"
    with pytest.raises(ModelError, match="not installed") as caught:
        export_archive([MODEL], dest, lambda done, total: None)
    assert caught.value.hint == f"Run `parley models pull {MODEL}` first."
    with pytest.raises(ModelError, match="built into Parley"):
        export_archive(["webrtcvad"], dest, lambda done, total: None)

    import_archive(archive, lambda done, total: None)
    installed = empty / MEMBER
    installed.write_bytes(bytes(installed.stat().st_size))  # same size, other bytes
    with pytest.raises(ModelError, match="is damaged") as caught:
        export_archive([MODEL], dest, lambda done, total: None)
    assert f"parley models remove {MODEL}" in caught.value.hint
    assert list(tmp_path.glob("*out.tar*")) == [], "neither the archive nor its temporary file"


def test_the_commands_export_and_import(archive: Path, empty: Path, tmp_path: Path) -> None:
    """`parley models import FILE`, then `parley models export NAME FILE` of what it installed."""
    def parley(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", "models", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    imported = parley("import", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == f"{MODEL}: ready ({empty / MEMBER})\n"
    assert "importing" in imported.stderr and "(100%)" in imported.stderr
    again = parley("import", str(archive))
    assert again.stdout == f"{archive}: every model in it is installed already\n"

    copy = tmp_path / "dist" / "copy.tar"
    exported = parley("export", MODEL, str(copy))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"{copy}: {MODEL} (")
    with tarfile.open(copy) as tar:
        digest = hashlib.sha256(tar.extractfile(MEMBER).read()).hexdigest()  # type: ignore[union-attr]
    assert digest == load_catalog().get(MODEL).files[0].sha256
    nothing = parley("export", str(copy))
    assert nothing.returncode != 0 and "--defaults" in nothing.stderr
