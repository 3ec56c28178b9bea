"""One microphone feed under both voice loops: capture → level → echo cancellation, and mute.

The local `VoiceLoop` and the cloud's `CloudVoice` differ only in what they do with the
cleaned blocks (endpointing and the Agent, or streaming to the service); everything before
that is here. Blocks arrive on the PortAudio thread and are queued for the event loop, in
order. No Qt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.conversation.events import AgentEvent, MicLevel
from audio.capture import Capture
from audio.devices import DeviceInfo
from audio.echo import Cancelled, EchoCanceller, FarEnd, make_echo_canceller
from audio.level import LevelMeter
from engines.protocols import Audio

SAMPLE_RATE = 16000


class MicFeed:
    """The microphone's blocks, measured and with the speaker's echo removed.

    `far_end` names what the speaker sends into the room, or None when nothing is to be
    cancelled (no speaker, or echo cancellation is off); it is asked on every block, so a
    new speaker or a changed setting takes effect at once. `linear`: also run the linear
    canceller, whose output keeps the start of a user's words (see `audio.echo`).
    `on_no_canceller` is told once if a far end exists but the canceller cannot load.
    """

    def __init__(self, publish: Callable[[AgentEvent], None],
                 far_end: Callable[[], FarEnd | None], *, linear: bool = True,
                 on_no_canceller: Callable[[], None] | None = None) -> None:
        self.muted = False
        self.echo: EchoCanceller | None = None
        self.echo_missing = False
        """A far end exists but the canceller could not load: the agent would hear itself."""
        self._publish = publish
        self._far_end = far_end
        self._linear = linear
        self._on_no_canceller = on_no_canceller
        self._echo_far: FarEnd | None = None
        self._meter = LevelMeter()
        self._blocks: asyncio.Queue[tuple[Audio, float]] = asyncio.Queue()
        self._echo_thread = ThreadPoolExecutor(1, thread_name_prefix="parley-echo")
        """Echo cancellation runs here, one block after another, off the event loop: a
        backlog of blocks took the window's loop 20-60 ms (the GUI loop benchmark)."""

    def capture(self, mic: DeviceInfo, block_ms: int) -> Capture:
        """The open microphone (a context manager) feeding this, from the running loop."""
        loop = asyncio.get_running_loop()

        def on_audio(block: Audio) -> None:  # PortAudio thread
            loop.call_soon_threadsafe(self.put, block, time.perf_counter())

        return Capture(mic, on_audio, block_ms=block_ms)

    def put(self, block: Audio, arrived: float) -> None:
        """A raw block, as captured at `arrived` (the clock time of its last sample)."""
        self._blocks.put_nowait((block, arrived))

    @property
    def empty(self) -> bool:
        return self._blocks.empty()

    async def next(self) -> tuple[Cancelled, float]:
        """The next block, cleaned, with its arrival time. The level is reported and the
        canceller runs even while muted, so it stays converged."""
        block, arrived = await self._blocks.get()
        db = self._meter.measure(block, arrived, self.muted)
        if db is not None:
            self._publish(MicLevel(db))
        echo = self._canceller_for(self._far_end())
        if echo is None:
            return Cancelled(block, None), arrived
        cleaned = await asyncio.get_running_loop().run_in_executor(
            self._echo_thread, echo.process, block, arrived - len(block) / SAMPLE_RATE)
        return cleaned, arrived

    def _canceller_for(self, far: FarEnd | None) -> EchoCanceller | None:
        """The canceller for `far`, made anew on the first block, a new speaker, or when
        cancelling is switched on or off."""
        if far is not self._echo_far:
            self._echo_far, self.echo = far, None
            if far is not None and not self.echo_missing:
                self.echo = make_echo_canceller(far, linear=self._linear)
                self.echo_missing = self.echo is None
                if self.echo_missing and self._on_no_canceller is not None:
                    self._on_no_canceller()
        return self.echo
