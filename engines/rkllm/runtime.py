"""One model loaded on the NPU through `librkllmrt.so`: the calls Parley makes, in Python
types, with every failure turned into a message a person can act on.

`rkllm_run` blocks until the reply is done and hands each piece of text to a callback on
its own thread; `run` turns that into a generator (a queue between the two), and stopping
the generator aborts the run, so barge-in and Stop free the NPU at once.
"""

from __future__ import annotations

import codecs
import ctypes
import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engines.errors import ModelError, ParleyError
from engines.rkllm import abi
from engines.rkllm.library import Library


@dataclass(frozen=True)
class Setup:
    """What `rkllm_init` is given (the rest keeps the runtime's defaults). Sampling is fixed
    here: the 1.2 runtime takes no per-run temperature."""

    max_context_len: int
    max_new_tokens: int
    enabled_cpus_num: int
    enabled_cpus_mask: int
    n_batch: int = 1
    embed_flash: bool = False
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.0


@dataclass(frozen=True)
class Perf:
    """The runtime's own account of a run (RKLLMPerfStat)."""

    prefill_ms: float
    prefill_tokens: int
    generate_ms: float
    generate_tokens: int
    memory_mb: float


_DONE, _FAILED = object(), object()
"""Put on the queue when `rkllm_run` has returned; when the runtime reported an error."""


class Runtime:
    """A handle from `rkllm_init`, its callback, and the calls Parley makes on it."""

    def __init__(self, library: Library, model: Path, setup: Setup) -> None:
        self.library = library
        self.perf: Perf | None = None
        """The last finished run's stats."""
        self._lib: Any = library.cdll
        self._model = model
        self._sink: queue.Queue[Any] | None = None
        self._callback = abi.Callback(self._on_result)  # kept alive as long as the handle
        param = self._lib.rkllm_createDefaultParam()
        param.model_path = str(model).encode()
        for field in fields(Setup):
            value = getattr(setup, field.name)
            target = param.extend_param if field.name in _EXTEND else param
            setattr(target, field.name, int(value) if isinstance(value, bool) else value)
        param.skip_special_token = True
        param.is_async = False
        self._param = param
        self._handle = ctypes.c_void_p()
        rc = self._lib.rkllm_init(ctypes.byref(self._handle), ctypes.byref(param),
                                  self._callback)
        if rc != 0:
            self._handle = ctypes.c_void_p()
            raise ModelError(
                f"The RKLLM runtime {library.version} refused the model {model} "
                f"(rkllm_init returned {rc}).",
                f"A .rkllm file runs only on the SoC and runtime version it was converted for "
                f"(rkllm-toolkit {library.version[:3]}, this board); the runtime's own reason "
                "is in the lines it printed just above. Convert the model again, or pick "
                "another with --llm.")

    def close(self) -> None:
        if self._handle:
            self._lib.rkllm_destroy(self._handle)
            self._handle = ctypes.c_void_p()

    def set_chat_template(self, system: str, prefix: str, postfix: str) -> None:
        self._check("rkllm_set_chat_template", self._lib.rkllm_set_chat_template(
            self._handle, system.encode(), prefix.encode(), postfix.encode()))

    def set_function_tools(self, system: str, tools_json: str, response_tag: str) -> None:
        self._check("rkllm_set_function_tools", self._lib.rkllm_set_function_tools(
            self._handle, system.encode(), tools_json.encode(), response_tag.encode()))

    def load_lora(self, path: Path, name: str, scale: float) -> None:
        adapter = abi.LoraAdapter(str(path).encode(), name.encode(), scale)
        if self._lib.rkllm_load_lora(self._handle, ctypes.byref(adapter)) != 0:
            raise ModelError(f"The RKLLM runtime could not load the LoRA adapter {path}.",
                             "It must be converted by rkllm-toolkit for this very model; "
                             "check the path in [llm] lora.")

    def load_prompt_cache(self, path: Path) -> bool:
        """True when the saved prompt cache was loaded (a stale one is simply not used)."""
        return bool(self._lib.rkllm_load_prompt_cache(self._handle, str(path).encode()) == 0)

    def clear_kv_cache(self, keep_system_prompt: bool) -> None:
        self._check("rkllm_clear_kv_cache", self._lib.rkllm_clear_kv_cache(
            self._handle, int(keep_system_prompt), None, None))

    def kv_cache_size(self) -> int:
        """Tokens the runtime holds for the first sequence."""
        sizes = (ctypes.c_int * max(1, self._param.extend_param.n_batch))()
        self._check("rkllm_get_kv_cache_size",
                    self._lib.rkllm_get_kv_cache_size(self._handle, sizes))
        return int(sizes[0])

    def run(self, prompt: str, *, role: str = "user", keep_history: bool = True,
            lora: str | None = None, save_cache: Path | None = None
            ) -> Generator[str, None, None]:
        """The reply's text as the runtime streams it (whole characters only). Closing the
        generator early aborts the run; `perf` then holds what the runtime reported."""
        encoded = [prompt.encode(), role.encode()]  # alive until the run returns
        run_input = abi.Input(role=encoded[1], enable_thinking=False,
                              input_type=abi.INPUT_PROMPT)
        run_input.prompt_input = encoded[0]
        lora_param = abi.LoraParam(lora.encode()) if lora else None
        cache_param = (abi.PromptCacheParam(1, str(save_cache).encode()) if save_cache
                       else None)
        infer = abi.InferParam(
            mode=abi.INFER_GENERATE,
            lora_params=ctypes.pointer(lora_param) if lora_param else None,
            prompt_cache_params=ctypes.pointer(cache_param) if cache_param else None,
            keep_history=int(keep_history))
        sink: queue.Queue[Any] = queue.Queue()
        self._sink, self.perf = sink, None
        returned: list[int] = []

        def call() -> None:
            try:
                returned.append(self._lib.rkllm_run(self._handle, ctypes.byref(run_input),
                                                    ctypes.byref(infer), None))
            finally:
                sink.put(_DONE)

        thread = threading.Thread(target=call, name="rkllm-run", daemon=True)
        thread.start()
        failed = finished = False
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while (item := sink.get()) is not _DONE:
                if item is _FAILED:
                    failed = True
                elif isinstance(item, Perf):
                    self.perf, finished = item, True
                elif not finished and (text := decoder.decode(item)):
                    yield text
        finally:
            if thread.is_alive():
                self._lib.rkllm_abort(self._handle)
                thread.join()
            self._sink = None
            while not sink.empty():  # an aborted run still reports what it did
                if isinstance(item := sink.get_nowait(), Perf):
                    self.perf = item
        if failed or (returned and returned[0] != 0):
            raise ParleyError(
                f"The RKLLM runtime failed while answering (rkllm_run returned "
                f"{returned[0] if returned else '?'}{', and reported an error' if failed else ''}"
                f"); the conversation may be longer than its context of "
                f"{self._param.max_context_len} tokens.",
                "Start a new conversation; if the first question fails too, the runtime's "
                "lines above say why (a lower n_ctx in [llm] needs less NPU memory).")

    def abort(self) -> None:
        self._lib.rkllm_abort(self._handle)

    def _on_result(self, result: Any, _userdata: Any, state: int) -> int:
        """Called by the runtime on its thread: copy what it gave (its pointers die when
        this returns) onto the queue. Never raises: an exception cannot cross into C."""
        sink = self._sink
        if sink is None:
            return 0
        try:
            if state == abi.RUN_NORMAL:
                text = result.contents.text
                if text:
                    sink.put(bytes(text))
            elif state == abi.RUN_FINISH:
                perf = result.contents.perf
                sink.put(Perf(perf.prefill_time_ms, perf.prefill_tokens, perf.generate_time_ms,
                              perf.generate_tokens, perf.memory_usage_mb))
            elif state == abi.RUN_ERROR:
                sink.put(_FAILED)
        except Exception:  # reported as a failed run
            sink.put(_FAILED)
        return 0

    def _check(self, function: str, rc: int) -> None:
        if rc != 0:
            raise ParleyError(f"The RKLLM runtime {self.library.version} failed in {function} "
                              f"(it returned {rc}) for the model {self._model}.",
                              "Its own reason is in the lines it printed just above; a newer "
                              "runtime or a model converted again may fix it.")


_EXTEND = {"enabled_cpus_num", "enabled_cpus_mask", "n_batch", "embed_flash"}
"""Setup fields that live in RKLLMParam.extend_param."""
