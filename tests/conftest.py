"""Shared fixtures: the real default models, and markers taken from each test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.model_ref import Kind, ModelRef

_FOLDER_MARKERS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration,
                   "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in _FOLDER_MARKERS:
            item.add_marker(_FOLDER_MARKERS[folder])


@pytest.fixture(scope="session")
def default_models() -> dict[Kind, ModelRef]:
    """The default model of each kind, as installed by `make setup` into the models folder."""
    import os

    from platformdirs import user_data_dir

    root = Path(os.environ.get("PARLEY_MODELS_DIR") or Path(user_data_dir("parley")) / "models")
    return {
        "stt": ModelRef("whisper-base", "stt", "ct2-whisper", root / "whisper-base"),
        "llm": ModelRef("smollm2-135m-instruct", "llm", "gguf",
                        root / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"),
        "tts": ModelRef("piper-en_US-joe-medium", "tts", "piper",
                        root / "piper-en_US-joe-medium" / "en_US-joe-medium.onnx"),
        "vad": ModelRef("webrtcvad", "vad", "webrtcvad", Path()),
    }
