"""How much of a reply item the speaker played: counted on the speaker's own clock, from
where the item's first sample went, and never more than the audio received."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.cloud.audio import ReplyPlayer, decode_pcm16, encode_pcm16


class DeviceClock:
    """A speaker whose device takes `consume(n)` samples when the test says so."""

    rate = 48000
    output_latency = 0.0

    def __init__(self) -> None:
        self.played_samples = 0
        self.queued_samples = 0

    def write(self, samples: npt.ArrayLike, sample_rate: int) -> None:
        assert sample_rate == self.rate
        self.queued_samples += np.asarray(samples).size

    def flush(self) -> None:
        self.queued_samples = 0

    def consume(self, n: int) -> None:
        n = min(n, self.queued_samples)
        self.played_samples += n
        self.queued_samples -= n


def _delta(seconds: float) -> str:
    t = np.arange(int(seconds * 24000)) / 24000
    return encode_pcm16((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))


def test_pcm16_round_trip_keeps_the_signal() -> None:
    audio = np.linspace(-0.9, 0.9, 2400, dtype=np.float32)
    assert np.max(np.abs(decode_pcm16(encode_pcm16(audio)) - audio)) < 1e-4


def test_the_cut_counts_only_this_items_samples_after_what_was_queued_before() -> None:
    speaker = DeviceClock()
    player = ReplyPlayer(speaker)
    player.play("item_a", _delta(1.0))
    player.finish("item_a")
    speaker.consume(24000)  # half a second of item_a played
    player.play("item_b", _delta(2.0))  # queued behind the rest of item_a
    speaker.consume(24000 + 48000)  # the rest of item_a, then 1 s of item_b
    cut = player.stop()
    assert cut is not None and cut.item_id == "item_b"
    assert abs(cut.played_ms - 1000) <= 5
    assert cut.received_ms == 2000
    assert speaker.queued_samples == 0 and not player.sounding


def test_the_cut_never_claims_more_than_was_received() -> None:
    speaker = DeviceClock()
    player = ReplyPlayer(speaker)
    player.play("item_a", _delta(0.5))
    speaker.queued_samples += 48000  # something else queued after it (a notification)
    speaker.consume(60000)  # 1.25 s on the device, with some still queued
    cut = player.stop()
    assert cut is not None and cut.played_ms == cut.received_ms == 500


def test_nothing_is_cut_once_the_item_has_played_out() -> None:
    speaker = DeviceClock()
    player = ReplyPlayer(speaker)
    player.play("item_a", _delta(0.5))
    player.finish("item_a")
    speaker.consume(10**6)
    assert not player.sounding
    assert player.stop() is None
