"""Unit: each wrong setting a tester found (issue 18) stops a real `parley` at once with one
clear message and exit 2: no traceback, no worker started, no model wrongly called corrupt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_CASES = [
    # (the settings file, extra flags, words the message must hold)
    (b'[vad]\nhangover_ms = "abc"\n', [], ['[vad] hangover_ms = "abc"', "whole number"]),
    (b"[vad]\npre_roll_ms = -300\n", [], ["pre_roll_ms = -300", "from 0 to 2000"]),
    (b'[llm]\ntemperature = "hot"\n', [], ['temperature = "hot"', "number from 0 to 2"]),
    (b'[duplex]\nmode = "bogus"\n', [],
     ['[duplex] mode = "bogus"', '"aec", "vad-threshold", "half-duplex"']),
    (b'[llm]\nsystem_prompt = """Be brief.\xe9"""\n', [], ["not UTF-8", "line 2"]),
    (b"[llm]\nmax_tokens = 0\n", [], ["max_tokens = 0", "from 1 to 131072"]),
    (b"[llm]\nsystem_prompt = 123\n", [], ["system_prompt = 123", "text in quotes"]),
    (b'[stt]\nlanguage = "xx"\n', [], ['language = "xx"', '"auto"', "Whisper", "zh, yue."]),
    (b"[llm]\nn_ctx = -1\n", [], ["n_ctx = -1", "from 256 to 131072"]),
    (b"[llm]\nn_ctx = 100_000_000\n", [], ["n_ctx = 100000000", "from 256 to 131072"]),
    (b"[tts]\nlength_scale = 0\n", [], ["length_scale = 0", "from 0.1 to 5"]),
    (b"[vad]\nhangover_ms = 600\nhangover_ms = 700\n", [], ["not valid TOML", "line 3"]),
    (b"", ["--language", "xx"], ['[stt] language = "xx"', "command-line flag"]),
]


@pytest.mark.parametrize(("content", "flags", "words"), _CASES)
def test_a_wrong_setting_is_one_clear_message_and_exit_2(
        tmp_path: Path, content: bytes, flags: list[str], words: list[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(content)
    env = {**os.environ, "PARLEY_CONFIG": str(config), "PARLEY_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "app.cli", *flags, "chat"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith("parley: ") and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("parley: ") == 1, done.stderr
    for word in words + ([str(config)] if content else []):
        assert word in done.stderr, done.stderr
