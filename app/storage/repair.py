"""A damaged history is found, set aside and salvaged, so Parley starts with a working one.

Finding: `PRAGMA quick_check` at open (about 10 ms for 3,000 turns and 65 ms for 30,000 on
a warm cache: every page's structure, not the index contents that `integrity_check` also
compares) and any SQLITE_CORRUPT or SQLITE_NOTADB later. Setting aside: the file and its
-wal and -shm are renamed together, so the old file stays readable as it was. Salvage: rows
are copied by rowid, stepping over the unreadable stretch one id at a time, since SQLite can
still seek past a damaged leaf page; a turn whose conversation row was lost is kept under a
recovered conversation rather than dropped."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.storage.schema import transaction

RECOVERED = "Recovered conversation"
"""The title of a conversation made up for turns whose own conversation row was lost."""

GIVE_UP_AFTER = 10_000
"""Unreadable ids in a row after which the salvage stops, when the highest id is unknown."""


def is_damage(err: sqlite3.Error) -> bool:
    """Damage, as opposed to a busy, read-only or full disk, which moving the file won't fix."""
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def looks_damaged(db: sqlite3.Connection) -> bool:
    """`quick_check` reports the first problem it finds, or raises on an unreadable page."""
    try:
        found: tuple[str] = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as err:
        if is_damage(err):
            return True
        raise
    return found != ("ok",)


def set_aside(path: Path) -> Path:
    """Rename the file (and its journal files) to `<name>.damaged-<time>`; the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    for suffix in ("-wal", "-shm"):  # SQLite finds them by the database's name
        journal = path.with_name(path.name + suffix)
        if journal.exists():
            journal.rename(aside.with_name(aside.name + suffix))
    path.rename(aside)
    return aside


@dataclass(frozen=True)
class Salvage:
    conversations: int = 0
    turns: int = 0


def salvage(old_path: Path, into: sqlite3.Connection) -> Salvage:
    """Copy what can still be read from the set-aside file into the new history, in one
    transaction. Nothing readable (not a database at all) is an empty salvage, not an error."""
    try:
        old = sqlite3.connect(f"file:{old_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return Salvage()
    try:
        with transaction(into):
            for row in _rows(old, "conversations",
                             "id, title, system_prompt, created_at, updated_at"):
                _copy_conversation(into, row)
            for row in _rows(old, "turns",
                             "id, conversation_id, role, text, created_at, metrics, tokens"):
                _copy_turn(into, row)
        count = into.execute("SELECT (SELECT count(*) FROM conversations),"
                             " (SELECT count(*) FROM turns)").fetchone()
        return Salvage(*count)
    finally:
        old.close()


def _rows(old: sqlite3.Connection, table: str, columns: str) -> Iterator[tuple[Any, ...]]:
    """The table's rows in id order, stepping over those SQLite cannot read."""
    try:
        top: int | None = old.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0
    except sqlite3.Error:
        top = None  # the rightmost page is damaged: probe until GIVE_UP_AFTER misses
    next_id, misses = 1, 0
    while (next_id <= top) if top is not None else (misses < GIVE_UP_AFTER):
        try:
            for row in old.execute(f"SELECT {columns} FROM {table} WHERE id >= ? ORDER BY id",
                                   (next_id,)):
                next_id, misses = int(row[0]) + 1, 0
                yield row
            return
        except sqlite3.Error:
            next_id, misses = next_id + 1, misses + 1


def _copy_conversation(into: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    _, title, prompt, created, updated = row
    if (isinstance(title, str) and isinstance(prompt, str) and _time(created)
            and _time(updated)):
        _insert(into, "INSERT INTO conversations VALUES (?, ?, ?, ?, ?)", row)


def _copy_turn(into: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    turn_id, conversation_id, role, text, at, metrics, tokens = row
    if not (isinstance(text, str) and _time(at)):
        return
    if into.execute("SELECT 1 FROM conversations WHERE id = ?",
                    (conversation_id,)).fetchone() is None and not _insert(
            into, "INSERT INTO conversations VALUES (?, ?, '', ?, ?)",
            (conversation_id, RECOVERED, at, at)):
        return
    if _insert(into, "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)",
               (turn_id, conversation_id, role, text, at, _json(metrics), _json(tokens))):
        into.execute("UPDATE conversations SET updated_at = MAX(updated_at, ?) WHERE id = ?",
                     (at, conversation_id))


def _insert(into: sqlite3.Connection, sql: str, values: tuple[object, ...]) -> bool:
    """A row the schema refuses (a role or type garbled by the damage) is left out."""
    try:
        into.execute(sql, values)
    except sqlite3.IntegrityError:
        return False
    return True


def _time(value: object) -> bool:
    return isinstance(value, int | float)


def _json(value: object) -> str | None:
    """Metrics and token counts are kept only if they are still a JSON object of numbers."""
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        parsed = json.loads(value)
        if isinstance(parsed, dict) and all(isinstance(v, int | float) for v in parsed.values()):
            return value
    return None
