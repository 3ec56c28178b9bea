"""Cut turns dropped from a conversation out of llama.cpp's cache, instead of reading it again.

When a conversation outgrows the context window its oldest turns are dropped, so the prompt
no longer starts as the cached one does past the system prompt: llama.cpp would read the
whole conversation again (~1,500 tokens, over a minute at ~20 tokens/s on two cores), turn
after turn. Instead the dropped tokens are removed from the cache and the rest moved up
(llama.cpp's context shift: the keys are re-rotated to their new positions), as
llama.cpp's server does when its context fills.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_cpp import Llama

_WORTH_IT = 32
"""Fewer tokens than this kept after the cut are cheaper to read again than to shift."""


def cut_dropped(llm: Llama, prompt: list[int]) -> int:
    """Make the cache hold as much of `prompt` as it can by cutting one stretch out of it;
    returns how many tokens were cut (0: nothing worth cutting, or the model cannot shift)."""
    import llama_cpp
    from llama_cpp import Llama

    n = llm.n_tokens
    cached = llm.input_ids[:n].tolist()
    start = Llama.longest_token_prefix(cached, prompt)
    if start >= min(n, len(prompt)) or llm._ctx.memory is None \
            or not llama_cpp.llama_memory_can_shift(llm._ctx.memory):
        return 0
    best, cut = 0, 0
    for end in range(start + 1, n):
        if cached[end] == prompt[start]:
            kept = Llama.longest_token_prefix(cached[end:], prompt[start:])
            if kept > best:
                best, cut = kept, end
    if best < _WORTH_IT:
        return 0
    gone: int = cut - start
    llm._ctx.kv_cache_seq_rm(0, start, cut)
    llm._ctx.kv_cache_seq_shift(0, cut, n, -gone)
    llm.input_ids[start:n - gone] = llm.input_ids[cut:n]
    llm.n_tokens = n - gone
    return gone
