"""The engines that ship with Parley, registered by model kind and format.

Each factory imports its module only when called, so building the registry (for
`parley models list`, the GUI, or the worker before it knows which models to load) costs
nothing and never imports faster-whisper, llama.cpp, Piper or onnxruntime.
"""

from __future__ import annotations

from engines.model_ref import ModelRef
from engines.protocols import Engine
from engines.registry import Options, Registry


def _whisper(ref: ModelRef, options: Options) -> Engine:
    from engines.stt_whisper import WhisperSTT

    return WhisperSTT(ref, options)


def _llama(ref: ModelRef, options: Options) -> Engine:
    from engines.cpu import require_llama_features
    from engines.llm_llama import LlamaLLM

    require_llama_features()  # before llama.cpp's library is loaded: an old CPU is told why

    return LlamaLLM(ref, options)


def _rkllm(ref: ModelRef, options: Options) -> Engine:
    from engines.llm_rkllm import RkllmLLM

    return RkllmLLM(ref, options)


def _piper(ref: ModelRef, options: Options) -> Engine:
    from engines.tts_piper import PiperTTS

    return PiperTTS(ref, options)


def _webrtcvad(ref: ModelRef, options: Options) -> Engine:
    from engines.vad_webrtc import WebRtcVAD

    return WebRtcVAD(ref, options)


def _silero(ref: ModelRef, options: Options) -> Engine:
    from engines.vad_silero import SileroVAD

    return SileroVAD(ref, options)


def default_registry() -> Registry:
    """A registry holding every built-in engine."""
    registry = Registry()
    registry.register("faster-whisper", "stt", {"ct2-whisper"}, _whisper)
    registry.register("llama.cpp", "llm", {"gguf"}, _llama)
    registry.register("rkllm", "llm", {"rkllm"}, _rkllm)
    registry.register("piper", "tts", {"piper"}, _piper)
    registry.register("webrtcvad", "vad", {"webrtcvad"}, _webrtcvad)
    registry.register("silero", "vad", {"silero"}, _silero)
    return registry
