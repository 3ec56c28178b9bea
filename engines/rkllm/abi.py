"""The RKLLM 1.2.1 to 1.2.3 C structs, field by field as `rkllm.h` declares them.

ctypes lays a Structure out as the C compiler does, so field order and types are the ABI:
one wrong field shifts every later one and the runtime reads garbage. 1.2.1, 1.2.2 and 1.2.3
share this layout (their headers differ only in a type's name); 1.1.x, 1.2.0 and 1.3.x do
not, and `library.identify` refuses them.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    POINTER,
    Structure,
    Union,
    c_bool,
    c_char_p,
    c_float,
    c_int,
    c_int8,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_void_p,
)

RUN_NORMAL, RUN_WAITING, RUN_FINISH, RUN_ERROR = 0, 1, 2, 3
"""LLMCallState: a piece of text; a character still incomplete; done; failed."""
INPUT_PROMPT = 0
INFER_GENERATE = 0


class ExtendParam(Structure):
    _fields_ = [
        ("base_domain_id", c_int32),
        ("embed_flash", c_int8),
        ("enabled_cpus_num", c_int8),
        ("enabled_cpus_mask", c_uint32),
        ("n_batch", c_uint8),
        ("use_cross_attn", c_int8),
        ("reserved", c_uint8 * 104),
    ]


class Param(Structure):
    _fields_ = [
        ("model_path", c_char_p),
        ("max_context_len", c_int32),
        ("max_new_tokens", c_int32),
        ("top_k", c_int32),
        ("n_keep", c_int32),
        ("top_p", c_float),
        ("temperature", c_float),
        ("repeat_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("mirostat", c_int32),
        ("mirostat_tau", c_float),
        ("mirostat_eta", c_float),
        ("skip_special_token", c_bool),
        ("is_async", c_bool),
        ("img_start", c_char_p),
        ("img_end", c_char_p),
        ("img_content", c_char_p),
        ("extend_param", ExtendParam),
    ]


class LoraAdapter(Structure):
    _fields_ = [
        ("lora_adapter_path", c_char_p),
        ("lora_adapter_name", c_char_p),
        ("scale", c_float),
    ]


class EmbedInput(Structure):
    _fields_ = [("embed", POINTER(c_float)), ("n_tokens", c_size_t)]


class TokenInput(Structure):
    _fields_ = [("input_ids", POINTER(c_int32)), ("n_tokens", c_size_t)]


class MultiModalInput(Structure):
    _fields_ = [
        ("prompt", c_char_p),
        ("image_embed", POINTER(c_float)),
        ("n_image_tokens", c_size_t),
        ("n_image", c_size_t),
        ("image_width", c_size_t),
        ("image_height", c_size_t),
    ]


class _InputUnion(Union):
    _fields_ = [
        ("prompt_input", c_char_p),
        ("embed_input", EmbedInput),
        ("token_input", TokenInput),
        ("multimodal_input", MultiModalInput),
    ]


class Input(Structure):
    _anonymous_ = ("_u",)
    _fields_ = [
        ("role", c_char_p),
        ("enable_thinking", c_bool),
        ("input_type", c_int),
        ("_u", _InputUnion),
    ]


class LoraParam(Structure):
    _fields_ = [("lora_adapter_name", c_char_p)]


class PromptCacheParam(Structure):
    _fields_ = [("save_prompt_cache", c_int), ("prompt_cache_path", c_char_p)]


class CrossAttnParam(Structure):
    _fields_ = [
        ("encoder_k_cache", POINTER(c_float)),
        ("encoder_v_cache", POINTER(c_float)),
        ("encoder_mask", POINTER(c_float)),
        ("encoder_pos", POINTER(c_int32)),
        ("num_tokens", c_int),
    ]


class InferParam(Structure):
    _fields_ = [
        ("mode", c_int),
        ("lora_params", POINTER(LoraParam)),
        ("prompt_cache_params", POINTER(PromptCacheParam)),
        ("keep_history", c_int),
    ]


class ResultLastHiddenLayer(Structure):
    _fields_ = [
        ("hidden_states", POINTER(c_float)),
        ("embd_size", c_int),
        ("num_tokens", c_int),
    ]


class ResultLogits(Structure):
    _fields_ = [("logits", POINTER(c_float)), ("vocab_size", c_int), ("num_tokens", c_int)]


class PerfStat(Structure):
    _fields_ = [
        ("prefill_time_ms", c_float),
        ("prefill_tokens", c_int),
        ("generate_time_ms", c_float),
        ("generate_tokens", c_int),
        ("memory_usage_mb", c_float),
    ]


class Result(Structure):
    _fields_ = [
        ("text", c_char_p),
        ("token_id", c_int32),
        ("last_hidden_layer", ResultLastHiddenLayer),
        ("logits", ResultLogits),
        ("perf", PerfStat),
    ]


Callback = ctypes.CFUNCTYPE(c_int, POINTER(Result), c_void_p, c_int)
"""`int (*LLMResultCallback)(RKLLMResult*, void* userdata, LLMCallState)`: 0 goes on."""

STRUCTS: dict[str, type[Structure]] = {
    "RKLLMExtendParam": ExtendParam, "RKLLMParam": Param, "RKLLMLoraAdapter": LoraAdapter,
    "RKLLMEmbedInput": EmbedInput, "RKLLMTokenInput": TokenInput,
    "RKLLMMultiModalInput": MultiModalInput, "RKLLMInput": Input, "RKLLMLoraParam": LoraParam,
    "RKLLMPromptCacheParam": PromptCacheParam, "RKLLMCrossAttnParam": CrossAttnParam,
    "RKLLMInferParam": InferParam, "RKLLMResultLastHiddenLayer": ResultLastHiddenLayer,
    "RKLLMResultLogits": ResultLogits, "RKLLMPerfStat": PerfStat, "RKLLMResult": Result,
}
"""Each struct by its C name, so a test can hold every field to the C compiler's offsets."""

FUNCTIONS: dict[str, tuple[object, list[object]]] = {
    "rkllm_createDefaultParam": (Param, []),
    "rkllm_init": (c_int, [POINTER(c_void_p), POINTER(Param), Callback]),
    "rkllm_load_lora": (c_int, [c_void_p, POINTER(LoraAdapter)]),
    "rkllm_load_prompt_cache": (c_int, [c_void_p, c_char_p]),
    "rkllm_release_prompt_cache": (c_int, [c_void_p]),
    "rkllm_destroy": (c_int, [c_void_p]),
    "rkllm_run": (c_int, [c_void_p, POINTER(Input), POINTER(InferParam), c_void_p]),
    "rkllm_abort": (c_int, [c_void_p]),
    "rkllm_clear_kv_cache": (c_int, [c_void_p, c_int, POINTER(c_int), POINTER(c_int)]),
    "rkllm_get_kv_cache_size": (c_int, [c_void_p, POINTER(c_int)]),
    "rkllm_set_chat_template": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
    "rkllm_set_function_tools": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
}
"""The functions Parley calls: return type and argument types."""
