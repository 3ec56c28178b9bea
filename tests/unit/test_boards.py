"""Parley knows the board it runs on from its device tree, and starts the LLM settings from
that board's profile; the user's settings file still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import load_settings
from engines.rkllm import boards
from tests.rkllm.fake import DEVICE_TREES


@pytest.mark.parametrize("sample, soc, n_ctx, threads, mask, batch, flash, max_tokens", [
    ("rock-5b-rk3588", "RK3588", 4096, 4, 0xF0, 1, False, None),
    ("orangepi-5-rk3588s-vendor", "RK3588", 4096, 4, 0xF0, 1, False, None),
    ("orangepi-5-rk3588s-mainline", "RK3588S", 4096, 4, 0xF0, 1, False, None),
    ("rk3576-evb1", "RK3576", 2048, 4, 0xF0, 1, True, None),
    ("rock-4d-rk3576", "RK3576", 2048, 4, 0xF0, 1, True, None),
    ("rk3562-evb1", "RK3562", 1024, 2, 0x03, 1, True, 128),
])
def test_each_board_gets_its_profile(sample: str, soc: str, n_ctx: int, threads: int,
                                     mask: int, batch: int, flash: bool,
                                     max_tokens: int | None) -> None:
    profile = boards.detect(DEVICE_TREES / sample)
    assert profile is not None
    assert (profile.soc, profile.n_ctx, profile.n_threads, profile.cpu_mask, profile.n_batch,
            profile.embed_flash, profile.max_tokens) == (soc, n_ctx, threads, mask, batch,
                                                         flash, max_tokens)


@pytest.mark.parametrize("sample", ["quartz64-rk3566", "raspberry-pi-4"])
def test_other_boards_get_no_profile(sample: str) -> None:
    assert boards.compatible(DEVICE_TREES / sample)  # it is a device tree…
    assert boards.detect(DEVICE_TREES / sample) is None  # …of a board RKLLM does not run on


def test_a_machine_without_a_device_tree_gets_no_profile(tmp_path: Path) -> None:
    assert boards.compatible(tmp_path) == []
    assert boards.detect(tmp_path) is None


def _driver(root: Path, version: str) -> Path:
    (root / "module" / "rknpu").mkdir(parents=True)
    (root / "module" / "rknpu" / "version").write_text(version + "\n")
    return root


def test_the_npu_driver_is_judged_by_its_version(tmp_path: Path) -> None:
    assert boards.driver_problem(_driver(tmp_path / "new", "0.9.8")) is None
    assert boards.driver_problem(_driver(tmp_path / "newer", "0.10.1")) is None
    old = boards.driver_problem(_driver(tmp_path / "old", "0.9.6"))
    assert old is not None and "0.9.6, older than the 0.9.8" in old
    missing = boards.driver_problem(tmp_path / "none")
    assert missing is not None and "rknpu kernel driver is not loaded" in missing


def test_on_a_board_the_llm_settings_start_from_its_profile(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    monkeypatch.setenv("PARLEY_CONFIG", str(config))
    monkeypatch.setattr(boards, "DEVICE_TREES", (DEVICE_TREES / "rk3562-evb1",))
    llm = load_settings().llm
    assert (llm.n_ctx, llm.n_threads, llm.cpu_mask, llm.n_batch, llm.embed_flash,
            llm.max_tokens) == (1024, 2, 0x03, 1, True, 128)
    config.write_text("[llm]\nn_ctx = 2048\ncpu_mask = 0x0F\n")
    llm = load_settings().llm
    assert (llm.n_ctx, llm.cpu_mask, llm.n_threads) == (2048, 0x0F, 2)  # the user's file wins
    options = load_settings().engine_options("llm")
    assert options["cpu_mask"] == 0x0F and "max_tokens" not in options


def test_off_a_board_the_settings_are_the_desktops(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("PARLEY_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setattr(boards, "DEVICE_TREES", (DEVICE_TREES / "raspberry-pi-4",))
    llm = load_settings().llm
    assert (llm.n_ctx, llm.n_threads, llm.cpu_mask, llm.n_batch) == (2048, 2, None, None)
