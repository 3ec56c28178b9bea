"""tools.db: what the tools keep (reminders, notes), beside the conversation history.

Like the history (app/storage.py): WAL journal and full sync, so what a tool said it saved
survives a crash; the schema version in `PRAGMA user_version`, one migration step per
version. Each operation opens its own short connection: the tools are called a few times a
conversation, and nothing is left open for a mode that is switched away from.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from app.storage import default_db_path
from engines.errors import ParleyError


def tools_db_path(data_dir: Path | None = None) -> Path:
    """In Parley's data folder (which $PARLEY_DATA_DIR overrides) unless given one."""
    return (data_dir or default_db_path().parent) / "tools.db"


def _create_v1(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE reminders (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('timer', 'alarm')),
            label TEXT NOT NULL DEFAULT '',
            seconds REAL,
            due_at REAL NOT NULL,
            created_at REAL NOT NULL,
            done_at REAL
        )""")
    db.execute("CREATE INDEX reminders_pending ON reminders(due_at) WHERE done_at IS NULL")
    db.execute("""
        CREATE TABLE notes (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            created_at REAL NOT NULL
        )""")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1,)
"""Step i upgrades a file from version i to i + 1. Append new steps; never edit old ones."""


@contextlib.contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One all-or-nothing operation on tools.db (created and migrated on first use)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=5)
    except (OSError, sqlite3.Error) as err:
        raise ParleyError(f"Could not open {path} ({err}).",
                          "Check the folder's permissions, or set PARLEY_DATA_DIR to a "
                          "folder you own.") from err
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            _migrate(db, path)
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ParleyError(
            f"{path} was written by a newer version of Parley (schema {version}; this "
            f"version knows up to {len(MIGRATIONS)}).",
            "Update Parley, or set PARLEY_DATA_DIR to another folder.")
    for step in MIGRATIONS[version:]:
        step(db)
    if version < len(MIGRATIONS):
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS):d}")


_LABELLED_ID = re.compile(r"(?:(?:note|timer|alarm|id|number|no\.?)\s*)?#?\s*(\d+)")
"""An id as the model may write it: "3", "#3", "note 3", "note3" (as the context names it)."""


_POINTERS = {"the", "that", "this", "my", "a", "an", "it", "one", "about", "note", "notes",
             "please"}
"""Words that point at a row without describing it ("that alarm", "the note": the model
passes such words on as they were said)."""


def matching(which: int | str, rows: list[tuple[int, str]]) -> list[int]:
    """The ids of the rows `which` names: an id ("3", "note 3" too), or words that all
    occur in the row's text (a word matches any word it starts: "key" finds "keys"), or
    the only row, named by pointing ("that one", "the note")."""
    if isinstance(which, int):
        return [row_id for row_id, _ in rows if row_id == which]
    if label := _LABELLED_ID.fullmatch(which.strip().lower()):
        return [row_id for row_id, _ in rows if row_id == int(label[1])]
    wanted = [w for w in words(which) if w not in _POINTERS]
    if not wanted:  # "that one", "the note": clear only when there is one
        return [row_id for row_id, _ in rows] if len(rows) == 1 else []
    return [row_id for row_id, text in rows
            if all(any(w.startswith(q) for w in words(text)) for q in wanted)]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())
