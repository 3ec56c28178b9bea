"""The history's tables and the steps that bring an older file up to date.

`PRAGMA user_version` is the number of steps a file has had. Opening runs the ones it lacks,
each in its own transaction with the version bump, so a failed step leaves the file as it
was; a file from a newer Parley is refused untouched rather than half understood."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence

from engines.errors import ParleyError


def _create_v1(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            system_prompt TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE turns (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL
                REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            text TEXT NOT NULL,
            created_at REAL NOT NULL,
            metrics TEXT,
            tokens TEXT
        )""")
    db.execute("CREATE INDEX turns_by_conversation ON turns(conversation_id, id)")


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (_create_v1,)
"""Step i upgrades a file from version i to i + 1. Append new steps; never edit old ones."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, steps: Sequence[Migration] = MIGRATIONS) -> None:
    """Run the steps the file has not had yet. A file from a newer Parley is left untouched,
    since this version would not know what its columns mean."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(steps):
        raise ParleyError(
            f"The conversation history was written by a newer version of Parley "
            f"(schema {version}; this version knows up to {len(steps)}).",
            "Update Parley, or set PARLEY_DATA_DIR to another folder to start a new history.")
    for target, step in enumerate(steps[version:], start=version + 1):
        with transaction(db):
            step(db)
            db.execute(f"PRAGMA user_version = {target:d}")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """All or nothing; the connection is in autocommit mode, so nothing else opens one."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (a corrupt page)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
