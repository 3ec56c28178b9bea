"""The KV cache of a model's last prompt, kept on disk across restarts.

Reading a prompt is slow on a small CPU (the default 1.5B model reads ~20 tokens a second
on two cores), and every conversation starts with the same few hundred tokens: the system
prompt and the tools. llama.cpp can save a context's KV cache with the tokens it holds; a
new process loads it, and generation then reads only the tokens after the longest prefix
the new prompt shares with it. The file is keyed by the model file, the llama.cpp build
and the context size, and it records its tokens, so a stale one can only ever be a shorter
prefix, never a wrong answer.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from platformdirs import user_cache_dir

if TYPE_CHECKING:
    from llama_cpp import Llama

_log = logging.getLogger(__name__)


def cache_folder() -> Path:
    """$PARLEY_CACHE_DIR wins, so tests and kiosks can keep their own."""
    env = os.environ.get("PARLEY_CACHE_DIR")
    return (Path(env).expanduser() if env else Path(user_cache_dir("parley"))) / "prompts"


class PromptCache:
    def __init__(self, model: Path, n_ctx: int) -> None:
        import llama_cpp

        stat = model.stat()
        key = f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{llama_cpp.__version__}|{n_ctx}"
        self.path = cache_folder() / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.kv"
        self.n_ctx = n_ctx

    def restore(self, llm: Llama) -> int:
        """Load the saved KV cache into a fresh context; returns the tokens it holds."""
        import llama_cpp

        if not self.path.is_file() or llm.n_tokens:
            return 0
        tokens = (llama_cpp.llama_token * self.n_ctx)()
        count = ctypes.c_size_t(0)
        if not llama_cpp.llama_state_load_file(llm.ctx, str(self.path).encode(), tokens,
                                               self.n_ctx, ctypes.byref(count)):
            _log.warning("The prompt cache %s does not fit this model; it is removed.",
                         self.path)
            self.path.unlink(missing_ok=True)
            llm.n_tokens = 0
            return 0
        llm.input_ids[:count.value] = tokens[:count.value]
        llm.n_tokens = count.value
        return count.value

    def save(self, llm: Llama) -> None:
        """Keep what the context holds now (written aside, then renamed: never half a file)."""
        import llama_cpp

        if not llm.n_tokens:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.partial")
        tokens = (llama_cpp.llama_token * llm.n_tokens)(*llm.input_ids[:llm.n_tokens])
        try:
            if llama_cpp.llama_state_save_file(llm.ctx, str(partial).encode(), tokens,
                                               llm.n_tokens):
                os.replace(partial, self.path)
        except OSError as err:  # a full or read-only disk costs speed, never the reply
            _log.warning("Could not save the prompt cache %s: %s", self.path, err)
        finally:
            partial.unlink(missing_ok=True)
