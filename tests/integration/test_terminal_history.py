"""A user chats in the terminal: the conversation is kept in the same history the window
shows, unless they asked for none."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def _chat(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "chat", *flags],
                          input="What is two plus two?\n", env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def test_a_typed_conversation_is_kept_turn_by_turn(user_dirs: Path) -> None:
    result = _chat()
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(user_dirs / "data" / "parley.db") as db:
        conversations = db.execute("SELECT id, system_prompt FROM conversations").fetchall()
        turns = db.execute("SELECT role, text FROM turns ORDER BY id").fetchall()
    assert len(conversations) == 1 and conversations[0][1]  # with the persona it had
    assert [role for role, _ in turns] == ["user", "assistant"]
    assert turns[0][1] == "What is two plus two?"
    assert turns[1][1] and turns[1][1] in result.stdout  # the reply the user read


def test_no_history_keeps_nothing(user_dirs: Path) -> None:
    result = _chat("--no-history")
    assert result.returncode == 0, result.stderr
    assert not (user_dirs / "data" / "parley.db").exists()
