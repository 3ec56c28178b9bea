"""A second llama.cpp context on the weights the chat model already loaded.

It reads a prompt that is not the conversation (the last request on its own) without
disturbing the main context's KV cache, which holds the conversation so the next turn reads
only its new tokens. It costs one more KV cache of the same size (the 1.5B default: 28 KB a
token) and shares everything else with the main context.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.errors import ParleyError

if TYPE_CHECKING:
    from llama_cpp import Llama


class SideContext:
    def __init__(self, llm: Llama) -> None:
        import llama_cpp

        # The main context's own parameters (cache types, threads, size): its saved state
        # then loads here as it is.
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if ctx is None:
            raise ParleyError("llama.cpp could not make a second context for the model.",
                              "Free some memory, or lower the LLM option n_ctx.")
        self._llm = llm
        self._ctx = ctx
        self._tokens: list[int] = []
        """What this context's KV cache holds."""

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_free(self._ctx)

    def logits(self, prompt: Sequence[int]) -> Any:
        """The model's scores for the token after `prompt`.

        Only what follows the longest prefix already held is read: the first time, that
        prefix (the system prompt and tools) is copied from the main context, not read.
        """
        import llama_cpp

        prompt = list(prompt)
        held = self._llm.longest_token_prefix(self._tokens, prompt)
        main = list(self._llm.input_ids[:self._llm.n_tokens])
        if self._llm.longest_token_prefix(main, prompt) > held:
            self._copy_main(main)
            held = self._llm.longest_token_prefix(self._tokens, prompt)
        held = min(held, len(prompt) - 1)  # the last token is read again for its scores
        memory = llama_cpp.llama_get_memory(self._ctx)
        llama_cpp.llama_memory_seq_rm(memory, 0, held, -1)
        self._tokens = self._tokens[:held]
        batch_size = self._llm.n_batch
        for start in range(held, len(prompt), batch_size):
            piece = prompt[start:start + batch_size]
            array = (llama_cpp.llama_token * len(piece))(*piece)
            if llama_cpp.llama_decode(self._ctx, llama_cpp.llama_batch_get_one(array,
                                                                               len(piece))):
                self._tokens = []
                llama_cpp.llama_memory_clear(memory, True)
                raise ParleyError("llama.cpp could not read the prompt a second time.",
                                  "Lower the LLM option n_ctx, or restart Parley.")
            self._tokens += piece
        scores = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(scores, shape=(self._llm.n_vocab(),)).copy()

    def _copy_main(self, main: list[int]) -> None:
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(self._llm.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._llm.ctx, buffer, size, 0)
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        if llama_cpp.llama_state_seq_set_data(self._ctx, buffer, written, 0):
            self._tokens = main
        else:
            self._tokens = []
