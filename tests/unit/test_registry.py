"""Choosing an engine for a model: by kind, format and priority, without loading anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engines.builtin import default_registry
from engines.errors import ModelError
from engines.model_ref import Kind, ModelRef
from engines.protocols import EngineStats
from engines.registry import Options, Registry


class FakeEngine:
    def __init__(self, ref: ModelRef, options: Options) -> None:
        self.ref, self.options = ref, options
        self._stats = EngineStats(name="fake", model=ref.name)

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def load(self) -> None:
        pass

    def close(self) -> None:
        pass


def ref(kind: Kind, fmt: str, name: str = "some-model") -> ModelRef:
    return ModelRef(name, kind, fmt, Path("/models") / name)


@pytest.mark.parametrize(("kind", "fmt", "provider"), [
    ("stt", "ct2-whisper", "faster-whisper"),
    ("llm", "gguf", "llama.cpp"),
    ("tts", "piper", "piper"),
    ("vad", "webrtcvad", "webrtcvad"),
    ("vad", "silero", "silero"),
])
def test_each_builtin_format_has_an_engine(kind: Kind, fmt: str, provider: str) -> None:
    assert default_registry().pick(ref(kind, fmt)).name == provider


def test_an_unknown_format_names_the_formats_that_would_work() -> None:
    with pytest.raises(ModelError) as caught:
        default_registry().pick(ref("vad", "pyannote", "my-vad"))
    assert "my-vad" in caught.value.message and "pyannote" in caught.value.message
    assert "silero, webrtcvad" in caught.value.hint


def test_a_format_of_another_kind_is_not_accepted() -> None:
    with pytest.raises(ModelError, match="No STT engine"):
        default_registry().pick(ref("stt", "gguf"))


def test_the_highest_priority_engine_wins_and_others_remain_for_their_formats() -> None:
    registry = Registry()
    registry.register("slow", "llm", {"gguf", "ggml"}, FakeEngine)
    registry.register("fast", "llm", {"gguf"}, FakeEngine, priority=10)
    assert [p.name for p in registry.providers("llm")] == ["fast", "slow"]
    assert registry.pick(ref("llm", "gguf")).name == "fast"
    assert registry.pick(ref("llm", "ggml")).name == "slow"
    assert registry.providers("tts") == []


def test_create_hands_the_model_and_options_to_the_factory() -> None:
    registry = Registry()
    registry.register("fake", "stt", {"x"}, FakeEngine)
    model = ref("stt", "x")
    engine = registry.create(model, {"language": "de"})
    assert isinstance(engine, FakeEngine)
    assert engine.ref == model and engine.options == {"language": "de"}


def test_a_models_measured_tuning_reaches_its_engine_and_the_users_settings_win() -> None:
    registry = Registry()
    registry.register("fake", "llm", {"gguf"}, FakeEngine)
    model = ModelRef("small", "llm", "gguf", Path("/models/small"), (("call_chance", 0.5),))
    tuned = registry.create(model, {"n_ctx": 2048})
    assert isinstance(tuned, FakeEngine) and tuned.options == {"call_chance": 0.5, "n_ctx": 2048}
    chosen = registry.create(model, {"call_chance": 0.2})
    assert isinstance(chosen, FakeEngine) and chosen.options == {"call_chance": 0.2}


def test_creating_a_builtin_engine_loads_nothing() -> None:
    """A bogus path is fine until `load`: creating an engine must stay cheap."""
    engine = default_registry().create(ref("llm", "gguf"), {"n_ctx": 512})
    assert engine.stats.load_seconds == 0.0 and engine.stats.model == "some-model"


def test_building_the_registry_imports_no_engine_library() -> None:
    heavy = ["faster_whisper", "ctranslate2", "llama_cpp", "piper", "onnxruntime", "webrtcvad"]
    code = ("import sys; from engines.builtin import default_registry; default_registry(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
