"""A local chat LLM on llama.cpp (llama-cpp-python), for any GGUF with a chat template.

One `Llama` instance lives as long as the engine so llama.cpp keeps its KV cache between
turns: a new turn only evaluates the tokens after the longest prefix it shares with the
previous one (system prompt and earlier turns), which keeps time to first token flat as
the conversation grows.
"""

from __future__ import annotations

import codecs
import json
import logging
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.errors import ModelError, ParleyError
from engines.llama_logs import route_llama_logs
from engines.llama_shift import cut_dropped
from engines.llama_side import SideContext
from engines.model_ref import ModelRef
from engines.models import reinstall_hint
from engines.prompt_cache import PromptCache
from engines.protocols import ChatMessage, EngineStats, Token, ToolCall, ToolSpec
from engines.tool_calls import (
    OPENING,
    call_schema,
    call_start,
    parse_call,
    request_alone,
    template_messages,
)

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar

_log = logging.getLogger(__name__)
_GGUF_MAGIC = b"GGUF"
CALL_CHANCE = 0.1
"""The model's summed probability of opening a tool call above which it calls one. Measured
on Qwen2.5-Coder-1.5B: requests for a tool 0.13-0.82, other questions 0.01 or less. Later in
a conversation its earlier worded replies pull it to answer in words: "Cancel the pasta
timer" after two turns about the timer scored 0.002 ("I've cancelled…", nothing done), the
same request on its own 0.26-0.35; so a request is also judged on its own (`_decided`)."""
SECOND_LOOK = 0.001
"""Below this chance of a call in the conversation, a request is not read on its own:
follow-ups that need the conversation ("When was he born?", "And for silver?") scored
0.0000-0.0002 there and up to 0.33 on their own; requests for a tool 0.0027 or more."""
_PREFILL_BATCH = 16
"""Tokens read between chances to stop a prefill (or let the STT have the cores)."""
_CALL_TOKENS = 256
"""A cap on one constrained tool call, so a runaway string argument cannot hang a turn."""
class LlamaLLM:
    """Streams chat replies token by token; the final Token carries usage and `done=True`.

    Options: `n_ctx` (context window in tokens, default 2048), `n_threads` (threads that
    generate tokens, 2), `n_threads_batch` (threads that read the prompt; default
    `n_threads`), `seed` (fixed sampling seed; default random), `prompt_cache` (keep the
    first prompt's KV cache on disk for the next start; default true), `call_chance` (see
    `CALL_CHANCE`; a catalog entry sets its own). Conversations longer than
    `n_ctx` lose their oldest turns; the system prompt and the last user message are kept,
    and the cache keeps the rest (`cut_dropped`).
    """

    def __init__(self, ref: ModelRef, options: Mapping[str, Any]) -> None:
        self._ref = ref
        self._n_ctx = int(options.get("n_ctx", 2048))
        self._call_chance = float(options.get("call_chance", CALL_CHANCE))
        self._n_threads = int(options.get("n_threads", 2))
        self._n_threads_batch = int(options.get("n_threads_batch", self._n_threads))
        seed = options.get("seed")
        self._seed: int | None = None if seed is None else int(seed)
        self._llm: Llama | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self._grammars: dict[str, LlamaGrammar] = {}
        self._opener_mask: Any = None
        self._end_mask: Any = None
        self._side: SideContext | None = None
        self._cache: PromptCache | None = None
        """The prompt read by the first reply is saved once, so the next process starts
        where this one did (off with the option `prompt_cache = false`)."""
        self._use_cache = bool(options.get("prompt_cache", True))
        self._vocab: Any = None
        self._stats = EngineStats(name="llama.cpp", model=ref.name)

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def load(self) -> None:
        if self._llm is not None:
            return
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = self._ref.path
        hint = reinstall_hint(self._ref)
        if not path.is_file():
            raise ModelError(f"The LLM model file for '{self._ref.name}' is missing: {path}", hint)
        with path.open("rb") as file:
            magic = file.read(len(_GGUF_MAGIC))
        if magic != _GGUF_MAGIC:
            raise ModelError(
                f"The LLM model file for '{self._ref.name}' is corrupt or truncated: {path} "
                "is not a GGUF file.",
                hint,
            )
        route_llama_logs()
        start = time.perf_counter()
        try:
            llm = llama_cpp.Llama(
                str(path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads_batch,
                seed=llama_cpp.LLAMA_DEFAULT_SEED if self._seed is None else self._seed,
                verbose=False,
            )
        except ValueError as exc:  # llama.cpp reports every load failure the same way
            raise ModelError(
                f"The LLM model file for '{self._ref.name}' is corrupt or truncated: llama.cpp "
                f"could not load {path}.",
                hint,
            ) from exc
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            llm.close()
            raise ModelError(
                f"'{self._ref.name}' has no chat template, so it is not a chat model.",
                "Choose an instruct (chat) GGUF, e.g. one whose name ends in -Instruct.",
            )

        def token_text(token: int) -> str:
            text = llm.detokenize([token], special=True) if token >= 0 else b""
            return text.decode("utf-8", "replace")

        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=token_text(llm.token_eos()),
            bos_token=token_text(llm.token_bos()),
        )
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._llm = llm
        if self._use_cache:
            self._cache = PromptCache(path, self._n_ctx)
            restored = self._cache.restore(llm)
            _log.info("prompt cache: %d tokens restored from %s", restored, self._cache.path)
        self._stats.load_seconds = time.perf_counter() - start

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None
        if self._llm is not None:
            self._llm.close()
        self._llm = None
        self._formatter = None
        self._vocab = None

    def _tokenize(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]) -> list[int]:
        """The prompt exactly as the GGUF's chat template renders it, ending with the
        assistant header so the model answers next."""
        assert self._llm is not None and self._formatter is not None
        rendered = template_messages(messages, tools)
        prompt = self._formatter(messages=rendered).prompt  # type: ignore[arg-type]
        # The template writes BOS itself when the model wants one.
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def fit_prompt(
        self, messages: Sequence[ChatMessage], max_tokens: int, tools: Sequence[ToolSpec] = ()
    ) -> tuple[list[int], list[ChatMessage]]:
        """The prompt tokens and the messages they hold, after dropping the oldest turns
        until the prompt plus `max_tokens` fits in the context window.

        The leading system messages and the last turn are never dropped. A turn goes whole,
        with the note before it (a system message), so what is kept is one stretch that
        `cut_dropped` can keep in the cache; it starts on a user turn (after its note), as
        strict chat templates require.
        """
        self.load()
        assert self._llm is not None
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        first, last = (users[0], users[-1]) if users else (len(messages), len(messages))
        first, last = (i - 1 if i >= 2 and messages[i - 1].role == "system" else i
                       for i in (first, last))  # a turn's note goes with it
        starts = [i for i in range(first + 1, last) if (messages[i].role == "user"
                  and messages[i - 1].role != "system") or (messages[i].role == "system"
                  and messages[i + 1].role == "user")]
        dropped = 0
        while True:
            kept = [*messages[:first], *messages[first + dropped:]]
            tokens = self._tokenize(kept, tools)
            if len(tokens) + max_tokens <= self._n_ctx or dropped >= last - first:
                break
            dropped = next(i for i in [*starts, last] if i > first + dropped) - first
        if len(tokens) >= self._n_ctx:
            raise ParleyError(
                f"The message is too long for the model: the system prompt and the last user "
                f"message take {len(tokens)} tokens, the context window holds {self._n_ctx}.",
                "Shorten them, or raise the LLM option n_ctx.",
            )
        return tokens, kept

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float,
        tools: Sequence[ToolSpec] = (), may_call: bool = True,
    ) -> Generator[Token, None, None]:
        """Yields text pieces as they are sampled; stop iterating to stop generating.

        With `tools` it `may_call`, the reply's first characters are held back until it is
        clear whether they open a tool call; a call is then written again under the tools'
        grammar and yielded as one Token, and the stream ends (finish "tool").
        """
        import llama_cpp
        from llama_cpp import Llama

        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}.")
        start = time.perf_counter()
        prompt, kept = self.fit_prompt(messages, max_tokens, tools)
        assert self._llm is not None
        llm = self._llm
        cut_dropped(llm, prompt)
        max_tokens = min(max_tokens, self._n_ctx - len(prompt))
        # llama.cpp reads only what its cache does not hold already (at least one token)
        cached = Llama.longest_token_prefix(llm.input_ids[:llm.n_tokens].tolist(), prompt)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stats: dict[str, float] = {
            "prompt_tokens": len(prompt),
            "dropped_messages": len(messages) - len(kept),
        }
        self._stats.calls += 1
        self._stats.last_call_ms = stats
        completion = 0
        finish: str = "length"
        calls = tools if may_call else ()
        held = "" if calls else None
        """Text not yet yielded while it may still open a tool call (None: released)."""
        names = [spec["function"]["name"] for spec in calls]
        busy = 0.0  # generation time only, not the consumer's time between tokens
        resumed = start
        choice: list[Sequence[ToolSpec]] = []
        """The first-token decision, once made: the tools a call may use (none: talk)."""
        alone = request_alone(kept) if calls else None
        tokens = self._decided(prompt, temperature, stats, calls, choice,
                               self._tokenize(alone, calls) if alone else None)
        try:
            for token in tokens:
                if completion == 0:
                    stats["first_token"] = (time.perf_counter() - start) * 1000.0
                    stats["reused_prompt_tokens"] = min(cached, len(prompt) - 1)
                    if choice and choice[0]:
                        finish = "tool"
                        break
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                completion += 1
                text = decoder.decode(llm.detokenize([token], special=held is not None))
                if held is not None:
                    held += text
                    opens = call_start(held, names)
                    if opens:
                        finish = "tool"
                        break
                    text, held = (held, None) if opens is False else ("", held)
                if text:
                    busy += time.perf_counter() - resumed
                    yield Token(text=text)
                    resumed = time.perf_counter()
                if completion >= max_tokens:
                    break
        finally:
            tokens.close()
            busy += time.perf_counter() - resumed
            stats["total"] = busy * 1000.0
            stats["completion_tokens"] = completion
            if completion > 1:
                decode_seconds = busy - stats["first_token"] / 1000.0
                stats["tokens_per_s"] = (completion - 1) / max(decode_seconds, 1e-6)
        if self._cache is not None:  # the first reply's prompt, for the next start
            self._cache.save(llm)
            self._cache = None
        if finish == "tool":
            call, made = self._constrained_call(prompt, choice[0] if choice and choice[0]
                                                else calls)
            completion += made
            yield Token(text="", tool_call=call)
        else:
            tail = (held or "") + decoder.decode(b"", final=True)
            if tail:
                yield Token(text=tail)
        yield Token(text="", done=True, prompt_tokens=len(prompt), completion_tokens=completion,
                    finish=finish)  # type: ignore[arg-type]

    def prefill(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                tools: Sequence[ToolSpec] = ()) -> Generator[int, None, None]:
        """Reads, `_PREFILL_BATCH` tokens at a time, what two different ways of going on
        from `messages` render alike: up to where a user message would begin, or, when the
        last message is the user's words so far, up to their last whole word. The turns
        `stream` will drop to fit `max_tokens` in are dropped here too."""
        from llama_cpp import Llama

        self.load()
        assert self._llm is not None
        llm = self._llm
        before, said = list(messages), ""
        if before and before[-1].role == "user":
            said = before.pop().content.rstrip() + " "
        try:
            one, kept = self.fit_prompt([*before, ChatMessage("user", said + "a")], max_tokens,
                                        tools)
        except ParleyError:  # too long to answer: `stream` will say so
            return
        other = self._tokenize([*kept[:-1], ChatMessage("user", said + "b")], tools)
        ahead = one[:Llama.longest_token_prefix(one, other)]
        cut_dropped(llm, ahead)
        read = Llama.longest_token_prefix(llm.input_ids[:llm.n_tokens].tolist(), ahead)
        while read < len(ahead):
            llm.n_tokens = read
            batch = ahead[read:read + _PREFILL_BATCH]
            llm.eval(batch)
            read += len(batch)
            yield read

    def _generate(self, prompt: list[int], temperature: float,
                  grammar: LlamaGrammar | None = None,
                  logits_processor: list[Callable[[Any, Any], Any]] | None = None,
                  ) -> Generator[int, Any, None]:
        assert self._llm is not None
        return self._llm.generate(prompt, temp=temperature, top_k=40, top_p=0.95, min_p=0.05,
                                  repeat_penalty=1.0, grammar=grammar,
                                  logits_processor=logits_processor)  # type: ignore[arg-type]

    def _decided(self, prompt: list[int], temperature: float, stats: dict[str, float],
                 tools: Sequence[ToolSpec], choice: list[Sequence[ToolSpec]],
                 alone: list[int] | None) -> Generator[int, Any, None]:
        """The first token is where the model chooses between calling a tool and talking.
        A call can open with any of hundreds of tokens (`{"`, `<tool_call>`, a fence…), so
        their probabilities are summed: at `call_chance` or more it calls, otherwise the
        likeliest word is taken; `choice` gets the tools the call may use (none: talk).
        Without `tools` it talks. Talk opens with a word, never the end of the turn or a
        call written as text: after a tool's result the 0.5B's likeliest first tokens were
        those, and the user heard nothing or JSON. The word is the likeliest: sampled, the
        1.5B opened its answer to "What's 7 times 8?" after the result with "Good job!".

        Later in a conversation, a request the conversation does not rule out
        (`SECOND_LOOK`) is also read on its own (`alone`, in a side context): if it calls
        there, the tool it names there is called, with arguments written from the whole
        conversation ("add 56 to that"). The rest is sampled as usual (the second generator
        reuses the KV cache: this costs one token's decode)."""
        openers = self._openers()

        def chance(scores: Any) -> float:
            chances = np.exp(scores - scores.max())
            return float(chances[openers].sum() / chances.sum())

        def decide(_ids: Any, scores: Any) -> Any:
            here = chance(scores) if tools else 0.0
            chosen = tools if here >= self._call_chance else ()
            if not chosen and alone is not None and here >= SECOND_LOOK:
                started = time.perf_counter()
                side = self._side_context()
                if chance(side.logits(alone)) >= self._call_chance:
                    chosen = self._likeliest_tools(side, alone, tools)
                stats["second_look"] = (time.perf_counter() - started) * 1000.0
            choice.append(chosen)
            return np.where(openers if chosen else ~openers & ~self._ends(), scores, -np.inf)

        greedy = self._generate(prompt, 0.0, logits_processor=[decide])
        try:
            first = next(greedy)
        except StopIteration:
            return
        finally:
            greedy.close()
        yield first
        yield from self._generate([*prompt, first], temperature)

    def _likeliest_tools(self, side: SideContext, alone: list[int],
                         tools: Sequence[ToolSpec]) -> Sequence[ToolSpec]:
        """The tools whose name the model, reading `alone` in `side`, is likeliest to
        write after the call tag (those whose names start with the same token)."""
        assert self._llm is not None
        heads = [self._llm.tokenize(f'{OPENING}{{"name": "{spec["function"]["name"]}'.encode(),
                                    add_bos=False, special=True) for spec in tools]
        shared = 0  # the tokens every head starts with: the tag and `{"name": "`
        while all(len(h) > shared + 1 and h[shared] == heads[0][shared] for h in heads):
            shared += 1
        scores = side.logits([*alone, *heads[0][:shared]])
        best = max(scores[h[shared]] for h in heads)
        return [spec for spec, h in zip(tools, heads, strict=True) if scores[h[shared]] == best]

    def _side_context(self) -> SideContext:
        if self._side is None:
            assert self._llm is not None
            self._side = SideContext(self._llm)
        return self._side

    def _ends(self) -> Any:
        """A mask of the vocabulary: the tokens that end the model's turn."""
        if self._end_mask is None:
            import llama_cpp

            assert self._llm is not None
            self._end_mask = np.array([bool(llama_cpp.llama_vocab_is_eog(self._vocab, t))
                                       for t in range(self._llm.n_vocab())])
        return self._end_mask

    def _openers(self) -> Any:
        """A mask of the vocabulary: the tokens a tool call can start with."""
        if self._opener_mask is None:
            assert self._llm is not None
            llm = self._llm
            self._opener_mask = np.array(
                [llm.detokenize([t], special=True).lstrip()[:1] in (b"{", b"[", b"<", b"`")
                 for t in range(llm.n_vocab())])
        return self._opener_mask

    def _constrained_call(self, prompt: list[int], tools: Sequence[ToolSpec]
                          ) -> tuple[ToolCall, int]:
        """The call written again from the prompt plus the call tag, under a grammar made
        from the tools' schemas; returns it and the tokens it took. Written greedily: an
        argument is the model's best reading of the request, not a sample (at 0.7 the 1.5B
        set "half past six tomorrow morning" for 18:30 and "6 tomorrow" for 22:00; greedily
        06:30 and 06:00: 9 of 10 alarm times right, against 6 of 10 in two sampled runs)."""
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        assert self._llm is not None
        key = json.dumps(list(tools), sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(
                json.dumps(call_schema(tools)), verbose=False)
        opening = self._llm.tokenize(OPENING.encode(), add_bos=False, special=True)
        out: list[int] = []
        tokens = self._generate(prompt + opening, 0.0, self._grammars[key])
        try:
            for token in tokens:
                if llama_cpp.llama_vocab_is_eog(self._vocab, token) or len(out) >= _CALL_TOKENS:
                    break
                out.append(token)
        finally:
            tokens.close()
        return parse_call(self._llm.detokenize(out).decode("utf-8", "replace")), len(out)
