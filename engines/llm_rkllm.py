"""A chat LLM on the Rockchip NPU through the RKLLM runtime, for `.rkllm` models.

The runtime keeps the conversation in its KV cache (`keep_history`), so a turn sends only
the user's new words; the engine remembers what the cache holds and, when the conversation
it is given no longer starts with that (a new conversation, a reply cut short), clears the
cache and writes the conversation out again (`chat.replay`). The system prompt and the
chat template are set through the runtime, and so are the tools: the model writes a call as
a `<tool_call>` block, which ends the stream as one Token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from engines.errors import ModelError
from engines.model_ref import ModelRef
from engines.prompt_cache import cache_folder
from engines.protocols import ChatMessage, EngineStats, Token, ToolCall, ToolSpec
from engines.rkllm.boards import driver_problem
from engines.rkllm.chat import Template, replay, split_system, template_for
from engines.rkllm.library import open_library
from engines.rkllm.runtime import Perf, Runtime, Setup
from engines.tool_calls import call_start, parse_call

_log = logging.getLogger(__name__)
_CHARS_PER_TOKEN = 3
"""A cautious guess (English runs near 4): the engine has no tokenizer of the model's, and a
conversation written out again must fit the runtime's context."""
_TOOL_RESPONSE = "tool_response"
"""The tag the runtime wraps a tool's result in (Qwen's)."""


class RkllmLLM:
    """Options: `n_ctx` (the runtime's max_context_len), `n_threads` and `cpu_mask` (the CPU
    cores it may use), `n_batch`, `embed_flash`, `chat_template` ("auto", "none" or a family
    in `chat.TEMPLATES`), `lora` and `lora_scale` (an adapter converted for the model),
    `prompt_cache` (save the first prompt's cache and load it at the next start). A board
    profile sets the first five (`boards`); the settings file wins."""

    def __init__(self, ref: ModelRef, options: Mapping[str, Any]) -> None:
        self._ref = ref
        n_ctx = int(options.get("n_ctx", 2048))
        self._setup = Setup(
            max_context_len=n_ctx, max_new_tokens=max(64, n_ctx // 4),
            enabled_cpus_num=int(options.get("n_threads", 4)),
            enabled_cpus_mask=int(options.get("cpu_mask", 0xF0)),
            n_batch=int(options.get("n_batch", 1)),
            embed_flash=bool(options.get("embed_flash", False)))
        self._template_choice = str(options.get("chat_template", "auto"))
        lora = options.get("lora")
        self._lora = Path(str(lora)).expanduser() if lora else None
        self._lora_scale = float(options.get("lora_scale", 1.0))
        self._use_cache = bool(options.get("prompt_cache", True))
        self._runtime: Runtime | None = None
        self._template: Template | None = None
        self._configured: tuple[str, str] | None = None
        """The system prompt and tools the runtime was given."""
        self._held: list[ChatMessage] | None = []
        """The conversation the runtime's KV cache holds (None: unknown, write it out)."""
        self._save_cache: Path | None = None
        self._stats = EngineStats(name="rkllm", model=ref.name)

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def load(self) -> None:
        if self._runtime is not None:
            return
        path = self._ref.path
        if not path.is_file():
            raise ModelError(f"The RKLLM model file for '{self._ref.name}' is missing: {path}",
                             "Check the path given with --llm or in [models] llm.")
        template = template_for(self._template_choice, path.name)
        library = open_library()
        problem = driver_problem()
        if problem:
            _log.warning("The NPU may not work: %s.", problem)
        start = time.perf_counter()
        try:
            runtime = Runtime(library, path, self._setup)
        except ModelError as err:
            raise ModelError(f"{err.message} Likely why: {problem}." if problem else err.message,
                             err.hint) from err
        try:
            if self._lora is not None:
                runtime.load_lora(self._lora, "parley", self._lora_scale)
        except BaseException:
            runtime.close()
            raise
        self._runtime, self._template = runtime, template
        self._stats.load_seconds = time.perf_counter() - start
        _log.info("RKLLM runtime %s (%s) loaded %s in %.1f s", library.version, library.path,
                  path.name, self._stats.load_seconds)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
        self._runtime, self._configured, self._held = None, None, []

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float,
        tools: Sequence[ToolSpec] = (), may_call: bool = True,
    ) -> Generator[Token, None, None]:
        """Yields the reply as the runtime writes it; stop iterating to abort the run.
        `temperature` is the one set at load: the 1.2 runtime samples as it was told then."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}.")
        self.load()
        assert self._runtime is not None
        runtime = self._runtime
        start = time.perf_counter()
        system, conversation = split_system(messages)
        self._configure(system, tools)
        held, self._held = self._held, None
        role, prompt = self._prompt(system, conversation, held, max_tokens)
        stats: dict[str, float] = {"prompt_chars": len(prompt)}
        self._stats.calls += 1
        self._stats.last_call_ms = stats
        names = [spec["function"]["name"] for spec in tools]
        undecided = bool(tools)
        """The reply's start is held back while it may still open a tool call."""
        calling = False
        text, pieces, finish = "", 0, "length"
        run = runtime.run(prompt, role=role, lora="parley" if self._lora else None,
                          save_cache=self._save_cache)
        self._save_cache = None
        try:
            for piece in run:
                if pieces == 0:
                    stats["first_token"] = (time.perf_counter() - start) * 1000.0
                pieces += 1
                text += piece
                if undecided:
                    opens = call_start(text, names)
                    calling, undecided = bool(opens), opens is None
                    if not undecided and not calling:
                        yield Token(text=text)
                elif not calling:
                    yield Token(text=piece)
                if pieces >= max_tokens and not calling:
                    break
            else:
                finish = "stop"
        finally:
            run.close()  # aborts the run if it is still going (Stop, barge-in)
            stats["total"] = (time.perf_counter() - start) * 1000.0
            stats.update(_perf_metrics(runtime.perf))
        if undecided and text:
            yield Token(text=text)
        call = _call(text) if calling and may_call else None
        if finish == "stop":
            reply = ChatMessage("assistant", "" if call else text, (call,) if call else ())
            self._held = [*conversation, reply]
        if call is not None:
            finish = "tool"
            yield Token(text="", tool_call=call)
        perf = runtime.perf
        yield Token(text="", done=True, prompt_tokens=perf.prefill_tokens if perf else 0,
                    completion_tokens=perf.generate_tokens if perf else pieces,
                    finish=finish,  # type: ignore[arg-type]
                    stats=_perf_metrics(perf))

    def prefill(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                tools: Sequence[ToolSpec] = ()) -> Generator[int, None, None]:
        """Nothing to do ahead: the runtime reads a prompt only as part of a run (and reads
        it fast, on the NPU)."""
        yield from ()

    def _configure(self, system: str, tools: Sequence[ToolSpec]) -> None:
        """Give the runtime the system prompt, template and tools, when they change; the
        KV cache is then cleared, as it was read with the old ones."""
        assert self._runtime is not None
        key = (system, json.dumps(list(tools), sort_keys=True))
        if key == self._configured:
            return
        runtime, template = self._runtime, self._template
        runtime.clear_kv_cache(keep_system_prompt=False)
        if template is not None:
            runtime.set_chat_template(template.system.format(system=system), template.prefix,
                                      template.postfix)
        if tools or (self._configured and self._configured[1] != "[]"):
            runtime.set_function_tools(system, key[1], _TOOL_RESPONSE)
        self._configured, self._held = key, []
        if self._use_cache:
            self._use_prompt_cache(key)

    def _use_prompt_cache(self, key: tuple[str, str]) -> None:
        """Load the cache saved for this model, runtime and system prompt, or save one with
        the next run."""
        assert self._runtime is not None
        stat = self._ref.path.stat()
        ident = (f"{self._ref.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|"
                 f"{self._runtime.library.version}|{self._setup.max_context_len}|{key}")
        path = cache_folder() / f"rkllm-{hashlib.sha256(ident.encode()).hexdigest()[:24]}.bin"
        if path.is_file() and self._runtime.load_prompt_cache(path):
            _log.info("RKLLM prompt cache loaded from %s", path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._save_cache = path

    def _prompt(self, system: str, conversation: list[ChatMessage],
                held: list[ChatMessage] | None, max_tokens: int) -> tuple[str, str]:
        """The role and text of the next run: the turn after what the cache holds, or the
        whole conversation (its newest turns that fit) after clearing the cache."""
        assert self._runtime is not None
        new = conversation[len(held):] if held is not None and _starts_with(
            conversation, held) and held else None
        if new and all(m.role == "tool" for m in new):
            return "tool", "\n".join(m.content for m in new)
        if new:
            return "user", replay(new, self._template)
        if held != []:
            self._runtime.clear_kv_cache(keep_system_prompt=True)
        budget = (self._setup.max_context_len - max_tokens) * _CHARS_PER_TOKEN - len(system)
        kept = conversation
        while len(kept) > 1 and sum(len(m.content) for m in kept) > budget:
            starts = [i for i in range(1, len(kept)) if kept[i - 1].role != "system"
                      and kept[i].role in ("user", "system")]
            if not starts:
                break
            kept = kept[starts[0]:]
        spoken_system = system if self._template is None and self._configured == (
            system, "[]") else ""
        return "user", replay(kept, self._template, spoken_system)


def _starts_with(conversation: Sequence[ChatMessage], held: Sequence[ChatMessage]) -> bool:
    """Whether the conversation goes on from what the cache holds; a reply is compared by
    its words, as the Agent keeps it re-spaced."""
    if len(conversation) < len(held):
        return False
    return all(a.role == b.role and a.content.split() == b.content.split()
               and a.tool_calls == b.tool_calls for a, b in zip(conversation, held, strict=False))


def _call(text: str) -> ToolCall:
    """The call in a `<tool_call>` block (or the bare JSON object the model wrote)."""
    body = text.split("<tool_call>", 1)[-1].split("</tool_call>", 1)[0]
    start, end = body.find("{"), body.rfind("}")
    return parse_call(body[start:end + 1] if start >= 0 else body.strip())


def _perf_metrics(perf: Perf | None) -> tuple[tuple[str, float], ...]:
    """The runtime's account of the run, under the metric names the turn keeps."""
    if perf is None:
        return ()
    return (("npu_prefill_ms", perf.prefill_ms), ("npu_prefill_tokens", perf.prefill_tokens),
            ("npu_generate_ms", perf.generate_ms),
            ("npu_generate_tokens", perf.generate_tokens), ("npu_memory_mb", perf.memory_mb))
