"""Conversations survive on disk, turn by turn, and say plainly when the file is unusable."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.storage import (
    MIGRATIONS,
    SCHEMA_VERSION,
    UNTITLED,
    Storage,
    default_db_path,
    migrate,
    title_from,
)
from engines.errors import ParleyError

METRICS = {"stt": 182.5, "llm_first_token": 311.0, "end_of_speech_to_first_audio": 845.25,
           "audio_seconds": 2.4}
TOKENS = {"prompt": 41, "completion": 12}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "parley.db"


def test_a_conversation_is_saved_turn_by_turn_and_read_back_after_reopening(
        db_path: Path) -> None:
    with Storage(db_path) as store:
        cid = store.new_conversation("You are a patient tutor.")
        asked = time.time() + 1
        store.add_turn(cid, "user", "What is the capital of France?", created_at=asked)
        store.add_turn(cid, "assistant", "Paris.", METRICS, TOKENS, created_at=asked + 1.5)

    with Storage(db_path) as store:
        [summary] = store.conversations()
        turns = store.turns(cid)
        assert store.system_prompt(cid) == "You are a patient tutor."
    assert (summary.id, summary.turns, summary.updated_at) == (cid, 2, asked + 1.5)
    assert [(t.role, t.text, t.created_at) for t in turns] == [
        ("user", "What is the capital of France?", asked), ("assistant", "Paris.", asked + 1.5)]
    assert turns[0].metrics is None and turns[0].tokens is None
    assert turns[1].metrics == METRICS and turns[1].tokens == TOKENS


def test_each_turn_is_on_disk_as_soon_as_it_is_added(db_path: Path) -> None:
    """Another connection (as after a crash) sees the turn without any close or flush."""
    store = Storage(db_path)
    cid = store.new_conversation("")
    store.add_turn(cid, "user", "Are you there?")
    other = sqlite3.connect(db_path)
    assert other.execute("SELECT text FROM turns").fetchall() == [("Are you there?",)]
    other.close()
    store.close()


def test_the_most_recently_active_conversation_comes_first(db_path: Path) -> None:
    with Storage(db_path) as store:
        older = store.new_conversation("")
        newer = store.new_conversation("")
        assert [c.id for c in store.conversations()] == [newer, older]
        store.add_turn(older, "user", "Back to this one.", created_at=4e9)
        assert [c.id for c in store.conversations()] == [older, newer]


def test_the_title_comes_from_the_first_question(db_path: Path) -> None:
    with Storage(db_path) as store:
        cid = store.new_conversation("")
        assert store.conversations()[0].title == ""
        store.add_turn(cid, "assistant", "Hello! How can I help?")
        store.add_turn(cid, "user", "Why  is the sky blue when the sun is yellow and space black?")
        store.add_turn(cid, "user", "And sunsets?")
        assert store.conversations()[0].title == "Why is the sky blue when the sun is…"

        named = store.new_conversation("", title="Trip planning")
        store.add_turn(named, "user", "Where should I go?")
        store.rename(cid, "Sky colours")
        assert {c.title for c in store.conversations()} == {"Trip planning", "Sky colours"}


def test_titles_are_cut_at_a_word_and_short_questions_kept_whole() -> None:
    assert title_from("Hi there") == "Hi there"
    assert title_from("a" * 50) == "a" * 40 + "…"
    title = title_from("Tell me, in great detail, about photosynthesis in plants please")
    assert title == "Tell me, in great detail, about…"
    assert len(title) <= 41


def test_the_persona_can_be_changed(db_path: Path) -> None:
    with Storage(db_path) as store:
        cid = store.new_conversation("You are terse.")
        store.set_system_prompt(cid, "You are a pirate.")
        assert store.system_prompt(cid) == "You are a pirate."


def test_markdown_export_reads_like_a_transcript_with_every_turn_and_metric(
        db_path: Path) -> None:
    with Storage(db_path) as store:
        cid = store.new_conversation("You are a patient tutor.")
        store.add_turn(cid, "user", "What is the capital of France?")
        store.add_turn(cid, "assistant", "Paris.", METRICS, TOKENS)
        store.add_turn(cid, "user", "And of Italy?")
        store.add_turn(cid, "assistant", "Rome.", {"end_of_speech_to_first_audio": 700.0})
        text = store.export_markdown(cid)

    lines = text.splitlines()
    assert lines[0] == "# What is the capital of France?"
    assert "**Persona:** You are a patient tutor." in lines
    spoken = [line for line in lines if line.startswith("**You**") or line.startswith("**Par")]
    assert [line.split("): ", 1)[1].split(" _(")[0] for line in spoken] == [
        "What is the capital of France?", "Paris.", "And of Italy?", "Rome."]
    assert spoken[1].endswith("_(first audio 845 ms · transcription 182 ms · first token 311 ms"
                              " · speech 2.4 s)_")
    assert spoken[3].endswith("_(first audio 700 ms)_")


def test_an_untitled_conversation_exports_under_a_placeholder(db_path: Path) -> None:
    with Storage(db_path) as store:
        text = store.export_markdown(store.new_conversation(""))
    assert text.startswith(f"# {UNTITLED}\n")
    assert "Persona" not in text


def test_json_export_holds_the_conversation_and_every_turn_with_metrics_and_tokens(
        db_path: Path) -> None:
    with Storage(db_path) as store:
        cid = store.new_conversation("You are a patient tutor.", title="Capitals")
        asked = time.time() + 1
        store.add_turn(cid, "user", "What is the capital of France?", created_at=asked)
        store.add_turn(cid, "assistant", "Paris.", METRICS, TOKENS, created_at=asked + 1)
        document = json.loads(store.export_json(cid))

    assert document["title"] == "Capitals"
    assert document["system_prompt"] == "You are a patient tutor."
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["updated_at"] == asked + 1
    assert document["turns"] == [
        {"id": 1, "role": "user", "text": "What is the capital of France?",
         "created_at": asked, "metrics": None, "tokens": None},
        {"id": 2, "role": "assistant", "text": "Paris.", "created_at": asked + 1,
         "metrics": METRICS, "tokens": TOKENS}]


def test_deleting_a_conversation_removes_its_turns(db_path: Path) -> None:
    with Storage(db_path) as store:
        gone = store.new_conversation("")
        kept = store.new_conversation("")
        store.add_turn(gone, "user", "Forget this.")
        store.add_turn(kept, "user", "Keep this.")
        store.delete(gone)
        assert [c.id for c in store.conversations()] == [kept]
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT conversation_id, text FROM turns").fetchall() == [
        (kept, "Keep this.")]
    db.close()


@pytest.mark.parametrize("action", [
    lambda s: s.turns(42), lambda s: s.add_turn(42, "user", "Hi"), lambda s: s.rename(42, "x"),
    lambda s: s.delete(42), lambda s: s.system_prompt(42), lambda s: s.export_markdown(42),
    lambda s: s.export_json(42), lambda s: s.set_system_prompt(42, "x")])
def test_an_unknown_conversation_is_named_in_plain_words(
        db_path: Path, action: Callable[[Storage], object]) -> None:
    with Storage(db_path) as store, pytest.raises(ParleyError) as caught:
        action(store)
    assert caught.value.message == "There is no conversation number 42."
    assert "deleted" in caught.value.hint


def test_a_file_that_is_not_a_database_is_reported_with_a_way_out(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(os.urandom(8192))
    with pytest.raises(ParleyError) as caught:
        Storage(db_path)
    assert str(db_path) in caught.value.message
    assert "not a Parley conversation history" in caught.value.message
    assert "Move it aside" in caught.value.hint
    assert "sqlite" not in str(caught.value).lower()


def test_a_folder_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ParleyError) as caught:
        Storage(tmp_path / "a-file" / "parley.db")
    assert "cannot be created or written" in caught.value.message
    assert "PARLEY_DATA_DIR" in caught.value.hint


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions that apply to this user")
def test_a_read_only_folder_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ParleyError) as caught:
            Storage(folder / "parley.db")
    finally:
        folder.chmod(0o700)
    assert "cannot be opened for writing" in caught.value.message


def test_the_journal_is_write_ahead_and_foreign_keys_are_enforced(db_path: Path) -> None:
    with Storage(db_path):
        pass
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # persists in the file
    db.close()
    with Storage(db_path) as store:
        assert store._conn().execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_a_new_file_gets_the_current_schema_version(db_path: Path) -> None:
    with Storage(db_path):
        pass
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


def test_an_old_file_is_upgraded_step_by_step_and_keeps_its_data(db_path: Path) -> None:
    with Storage(db_path) as store:
        cid = store.new_conversation("Old persona")
        store.add_turn(cid, "user", "Written by an older Parley")

    def add_pinned(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")

    db = sqlite3.connect(db_path, isolation_level=None)
    migrate(db, (*MIGRATIONS, add_pinned))
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
    assert db.execute("SELECT title, pinned FROM conversations").fetchall() == [
        ("Written by an older Parley", 0)]
    migrate(db, (*MIGRATIONS, add_pinned))  # already up to date: nothing runs twice
    db.close()


def test_a_file_from_a_newer_parley_is_refused_untouched(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(ParleyError) as caught:
        Storage(db_path)
    assert "newer version of Parley" in caught.value.message
    assert "Update Parley" in caught.value.hint


def test_the_history_lives_in_parley_data_dir_when_set(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    assert default_db_path() == tmp_path / "parley.db"
    monkeypatch.delenv("PARLEY_DATA_DIR")
    assert default_db_path().name == "parley.db"
    assert "parley" in str(default_db_path().parent).lower()
