"""The engine worker process: hosts STT, LLM and TTS so the window never stutters.

One thread per stage (speech-to-speech's handler-per-stage), each with its own queue, so a
long LLM reply never delays synthesis of the sentence before it. A dispatcher thread reads
requests and routes them; `Cancel` raises the generation floor that every stage checks
before and during its work.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from engines.errors import ParleyError
from engines.messages import (
    Cancel,
    Event,
    Failure,
    Generate,
    Load,
    Prefill,
    Ready,
    Reply,
    Request,
    Shutdown,
    StageRequest,
    Synthesize,
    Transcribe,
    stage_of,
)
from engines.model_ref import Kind
from engines.protocols import Engine, LLMEngine, STTEngine, TTSEngine
from engines.registry import Registry

_NICENESS = 5
_SHUTDOWN_GRACE_S = 1.0


class _Stage(threading.Thread):
    """Runs one engine kind's requests in order, dropping any that were cancelled."""

    def __init__(self, kind: Kind, worker: _Worker) -> None:
        super().__init__(name=f"parley-{kind}", daemon=True)
        self.kind = kind
        self.worker = worker
        self.inbox: queue.Queue[StageRequest | None] = queue.Queue()
        self.engine: Engine | None = None

    def run(self) -> None:
        while (req := self.inbox.get()) is not None:
            try:
                self._handle(req)
            except ParleyError as err:
                self.worker.send(Failure(req.id, err.message, err.hint))
            except Exception as err:  # an engine bug must not kill the worker
                traceback.print_exc()
                self.worker.send(Failure(req.id, f"{self.kind.upper()} engine failed: {err}",
                                         "See the log for details; try another model."))
        if self.engine is not None:
            self.engine.close()

    def _handle(self, req: StageRequest) -> None:
        if isinstance(req, Load):
            self._load(req)
            return
        if self.worker.stale(req.generation):
            self.worker.send(Reply(req.id, None, final=True))
            return
        if self.engine is None:
            raise ParleyError(f"No {self.kind.upper()} model is loaded.",
                              "Load a model first (see `parley models list`).")
        busy = {"tts": self.worker.tts_idle, "stt": self.worker.stt_idle}.get(self.kind)
        if busy is not None:
            busy.clear()
        try:
            for value in self._run(req):
                if self.worker.stale(req.generation):
                    break
                self.worker.send(Reply(req.id, value, final=False))
                if self.kind == "llm":
                    self.worker.tts_idle.wait()
        finally:
            if busy is not None:
                busy.set()
        self.worker.send(Reply(req.id, None, final=True, stats=self.engine.stats))

    def _load(self, req: Load) -> None:
        """Load the new engine before dropping the old one, so a bad model changes nothing."""
        engine = self.worker.registry.create(req.ref, req.options)
        engine.load()
        old, self.engine = self.engine, engine
        if old is not None:
            old.close()
        self.worker.send(Reply(req.id, engine.stats, final=True, stats=engine.stats))

    def _run(self, req: Transcribe | Generate | Prefill | Synthesize) -> Iterator[Any]:
        engine = self.engine
        if isinstance(req, Transcribe) and isinstance(engine, STTEngine):
            yield engine.transcribe(req.audio)
        elif isinstance(req, Generate) and isinstance(engine, LLMEngine):
            tokens = engine.stream(req.messages, max_tokens=req.max_tokens,
                                   temperature=req.temperature, tools=req.tools,
                                   may_call=req.may_call)
            with contextlib.closing(tokens):
                yield from tokens
        elif isinstance(req, Prefill) and isinstance(engine, LLMEngine):
            read = engine.prefill(req.messages, max_tokens=req.max_tokens, tools=req.tools)
            with contextlib.closing(read):
                for _ in read:  # the user's words come first: transcription gets the cores
                    self.worker.stt_idle.wait()
                    if self.worker.stale(req.generation):
                        break
        elif isinstance(req, Synthesize) and isinstance(engine, TTSEngine):
            chunks = engine.synthesize(req.text)
            with contextlib.closing(chunks):
                yield from chunks
        else:
            raise ParleyError(f"The loaded {self.kind.upper()} engine cannot do this request.")


class _Worker:
    def __init__(self, requests: mp.Queue[Request], events: mp.Queue[Event],
                 registry: Registry) -> None:
        self.requests = requests
        self.events = events
        self.registry = registry
        self.floor = 0
        self.tts_idle = threading.Event()
        """Cleared while the TTS stage synthesizes: the LLM then pauses between tokens, so on
        a small CPU the sentence the user is waiting to hear gets every core. Generation is
        many times faster than speech, so the pause never starves playback."""
        self.tts_idle.set()
        self.stt_idle = threading.Event()
        """Cleared while the STT stage transcribes: a prefill waits between batches."""
        self.stt_idle.set()
        self.stages: dict[Kind, _Stage] = {
            kind: _Stage(kind, self) for kind in ("stt", "llm", "tts")
        }

    def stale(self, generation: int) -> bool:
        return generation < self.floor

    def send(self, event: Event) -> None:
        self.events.put(event)

    def serve(self) -> None:
        for stage in self.stages.values():
            stage.start()
        self.send(Ready(os.getpid()))
        while True:
            req = self.requests.get()
            if isinstance(req, Shutdown):
                self.floor = sys.maxsize  # every stream in flight stops at its next piece
                break
            if isinstance(req, Cancel):
                self.floor = max(self.floor, req.generation)
            else:
                self.stages[stage_of(req)].inbox.put(req)
        for stage in self.stages.values():
            stage.inbox.put(None)
        # A stage inside one long native call (llama.cpp reading a long prompt) cannot see
        # the floor: it is left behind after a second, as the user asked Parley to stop.
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        for stage in self.stages.values():
            stage.join(timeout=max(0.0, deadline - time.monotonic()))


def _exit_with(parent: Any) -> None:
    """A window that was killed cannot send Shutdown: don't outlive it holding the models."""
    mp.connection.wait([parent.sentinel])
    os._exit(0)


def main(requests: mp.Queue[Request], events: mp.Queue[Event]) -> None:
    """Entry point of the spawned process."""
    from engines.builtin import default_registry

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (client._spawn)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    # The window must win the CPU whenever it wants it (a 2-core machine has no spare):
    # inference runs a little behind it.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(_NICENESS)
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()

    _Worker(requests, events, default_registry()).serve()
