"""A user drops a model they converted (an .rkllm for their board) into the models folder:
Parley lists it beside the catalog and finds it by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engines.models import own_models, resolve


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(folder))
    (folder / "my-qwen-rk3588.rkllm").write_bytes(b"converted by rkllm-toolkit")
    (folder / "notes.txt").write_text("not a model")
    return folder


def test_a_model_in_the_models_folder_is_found_by_its_name(models: Path) -> None:
    ref = resolve("my-qwen-rk3588", "llm")
    assert (ref.format, ref.path) == ("rkllm", models / "my-qwen-rk3588.rkllm")
    assert [r.name for r in own_models()] == ["my-qwen-rk3588"]
    assert own_models("stt") == []


def test_parley_models_list_shows_the_users_own_models(models: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "app.cli", "models", "list"],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert run.returncode == 0, run.stderr
    assert f"Your own models, in {models}" in run.stdout
    assert "  my-qwen-rk3588  llm  rkllm  0.0 MB" in run.stdout
    listed = subprocess.run([sys.executable, "-m", "app.cli", "models", "list", "--json"],
                            capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[2])
    own = [row for row in json.loads(listed.stdout) if row.get("own")]
    assert own == [{"name": "my-qwen-rk3588", "kind": "llm", "format": "rkllm",
                    "path": str(models / "my-qwen-rk3588.rkllm"), "size": 26,
                    "installed": True, "own": True}]
