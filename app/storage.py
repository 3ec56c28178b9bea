"""Conversation history on disk: one SQLite file holding conversations, turns and metrics.

Every turn is committed as soon as it is added (WAL journal, full sync), so a crash or a power
cut loses at most the turn in flight. The file carries its schema version in
`PRAGMA user_version`; `migrate` brings a file written by an older Parley up to date, one
step per version, each step in its own transaction. This module has no Qt import: the GUI,
the CLI and the tests share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from platformdirs import user_data_dir

from app.conversation.metrics import (
    AUDIO_SECONDS,
    END_OF_SPEECH_TO_FIRST_AUDIO,
    LLM_FIRST_PIECE,
    LLM_FIRST_TOKEN,
    STT,
    TTS_FIRST_AUDIO,
)
from engines.errors import ParleyError

ROLES = ("user", "assistant", "system")
UNTITLED = "New conversation"
"""What a conversation is called until its first question gives it a title."""

TITLE_CHARS = 40


def default_db_path() -> Path:
    """$PARLEY_DATA_DIR wins, so tests and kiosks can keep their own history."""
    env = os.environ.get("PARLEY_DATA_DIR")
    folder = Path(env).expanduser() if env else Path(user_data_dir("parley"))
    return folder / "parley.db"


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    created_at: float
    updated_at: float
    turns: int


@dataclass(frozen=True)
class StoredTurn:
    id: int
    role: str
    text: str
    created_at: float
    metrics: dict[str, float] | None
    tokens: dict[str, int] | None


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
        with _transaction(db):
            step(db)
            db.execute(f"PRAGMA user_version = {target:d}")


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """All or nothing; the connection is in autocommit mode, so nothing else opens one."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Storage:
    """The conversation history. Use it from one thread (the GUI's main thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        with self._guard("open the conversation history"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.execute("PRAGMA foreign_keys = ON")
                migrate(self._db)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def new_conversation(self, system_prompt: str, title: str = "") -> int:
        now = time.time()
        with self._guard("start a new conversation"), self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO conversations (title, system_prompt, created_at, updated_at)"
                " VALUES (?, ?, ?, ?)", (title.strip(), system_prompt, now, now))
            return _row_id(cursor)

    def add_turn(self, conversation_id: int, role: str, text: str,
                 metrics: dict[str, float] | None = None, tokens: dict[str, int] | None = None,
                 created_at: float | None = None) -> int:
        """Save one turn now. The first question names a conversation that has no title."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        at = time.time() if created_at is None else created_at
        with self._guard("save the turn"), self._transaction() as db:
            title = self._summary(conversation_id).title
            if not title and role == "user":
                title = title_from(text)
            cursor = db.execute(
                "INSERT INTO turns (conversation_id, role, text, created_at, metrics, tokens)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, role, text, at, _to_json(metrics), _to_json(tokens)))
            db.execute("UPDATE conversations SET title = ?, updated_at = MAX(updated_at, ?)"
                       " WHERE id = ?", (title, at, conversation_id))
            return _row_id(cursor)

    def conversations(self) -> list[ConversationSummary]:
        """Most recently active first."""
        with self._guard("read the list of conversations"):
            rows = self._conn().execute(_SUMMARY_SQL + " ORDER BY c.updated_at DESC, c.id DESC")
            return [ConversationSummary(*row) for row in rows]

    def turns(self, conversation_id: int) -> list[StoredTurn]:
        with self._guard("read the conversation"):
            self._summary(conversation_id)
            rows = self._conn().execute(
                "SELECT id, role, text, created_at, metrics, tokens FROM turns"
                " WHERE conversation_id = ? ORDER BY id", (conversation_id,))
            return [StoredTurn(id, role, text, at, _metrics(metrics), _tokens(tokens))
                    for id, role, text, at, metrics, tokens in rows]

    def system_prompt(self, conversation_id: int) -> str:
        with self._guard("read the conversation"):
            row = self._conn().execute("SELECT system_prompt FROM conversations WHERE id = ?",
                                       (conversation_id,)).fetchone()
            if row is None:
                raise _unknown(conversation_id)
            prompt: str = row[0]
            return prompt

    def set_system_prompt(self, conversation_id: int, text: str) -> None:
        self._update(conversation_id, "system_prompt", text, "change the persona")

    def rename(self, conversation_id: int, title: str) -> None:
        """Renaming leaves `updated_at` alone, so the list does not jump around."""
        self._update(conversation_id, "title", title.strip(), "rename the conversation")

    def delete(self, conversation_id: int) -> None:
        """The conversation and all its turns (by cascade)."""
        with self._guard("delete the conversation"), self._transaction() as db:
            if db.execute("DELETE FROM conversations WHERE id = ?",
                          (conversation_id,)).rowcount == 0:
                raise _unknown(conversation_id)

    def export_markdown(self, conversation_id: int) -> str:
        """A transcript for people: who said what and when, and how fast each answer came."""
        summary = self._checked_summary(conversation_id)
        lines = [f"# {summary.title or UNTITLED}", "",
                 f"*{_date(summary.created_at)}*", ""]
        prompt = self.system_prompt(conversation_id)
        if prompt:
            lines += [f"**Persona:** {prompt}", ""]
        for turn in self.turns(conversation_id):
            speaker = {"user": "You", "assistant": "Parley"}.get(turn.role, "System")
            line = f"**{speaker}** ({_clock(turn.created_at)}): {turn.text}"
            if turn.metrics:
                line += f" _({_latency(turn.metrics)})_"
            lines += [line, ""]
        return "\n".join(lines)

    def export_json(self, conversation_id: int) -> str:
        """Everything stored, for other programs: times are Unix seconds, metrics milliseconds
        (except `*_seconds`)."""
        summary = self._checked_summary(conversation_id)
        document = {
            "format": "parley-conversation",
            "schema_version": SCHEMA_VERSION,
            "id": summary.id,
            "title": summary.title,
            "system_prompt": self.system_prompt(conversation_id),
            "created_at": summary.created_at,
            "updated_at": summary.updated_at,
            "turns": [{"id": t.id, "role": t.role, "text": t.text, "created_at": t.created_at,
                       "metrics": t.metrics, "tokens": t.tokens}
                      for t in self.turns(conversation_id)],
        }
        return json.dumps(document, indent=2, ensure_ascii=False)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ParleyError("The conversation history is closed.",
                              "This is a bug in Parley; please report it.")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        with _transaction(db):
            yield db

    def _summary(self, conversation_id: int) -> ConversationSummary:
        row = self._conn().execute(_SUMMARY_SQL + " WHERE c.id = ?",
                                   (conversation_id,)).fetchone()
        if row is None:
            raise _unknown(conversation_id)
        return ConversationSummary(*row)

    def _checked_summary(self, conversation_id: int) -> ConversationSummary:
        with self._guard("read the conversation"):
            return self._summary(conversation_id)

    def _update(self, conversation_id: int, column: str, value: str, action: str) -> None:
        with self._guard(action), self._transaction() as db:
            if db.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?",
                          (value, conversation_id)).rowcount == 0:
                raise _unknown(conversation_id)

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn SQLite and file-system failures into words a user can act on."""
        try:
            yield
        except sqlite3.Error as err:
            raise _explain(err, action, self.path) from err
        except OSError as err:
            raise ParleyError(
                f"Could not {action}: the folder {self.path.parent} cannot be created or "
                f"written ({err.strerror or err}).",
                "Check the folder's permissions, or set PARLEY_DATA_DIR to a folder you own."
            ) from err


_SUMMARY_SQL = """
    SELECT c.id, c.title, c.created_at, c.updated_at,
           (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id)
    FROM conversations c"""


def title_from(text: str, limit: int = TITLE_CHARS) -> str:
    """The start of the first question, cut at a word so the list stays readable."""
    words = " ".join(text.split())
    if len(words) <= limit:
        return words
    head = words[:limit + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else words[:limit]
    return cut.rstrip(" ,;:-") + "…"


def _explain(err: sqlite3.Error, action: str, path: Path) -> ParleyError:
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return ParleyError(
            f"Could not {action}: {path} is not a Parley conversation history, or it is "
            f"damaged.",
            "Move it aside (rename or delete it); Parley will start a new one.")
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return ParleyError(
            f"Could not {action}: {path} cannot be opened for writing.",
            "Check the permissions of the file and its folder, or set PARLEY_DATA_DIR to a "
            "folder you own.")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return ParleyError(f"Could not {action}: another program is using {path}.",
                           "Close the other Parley window and try again.")
    if code == sqlite3.SQLITE_FULL:
        return ParleyError(f"Could not {action}: the disk is full.",
                           "Free some disk space and try again.")
    return ParleyError(f"Could not {action}: {err}.",
                       f"If this keeps happening, move {path} aside; Parley will start a "
                       f"new one.")


def _unknown(conversation_id: int) -> ParleyError:
    return ParleyError(f"There is no conversation number {conversation_id}.",
                       "It may have been deleted; pick one from the list of conversations.")


def _row_id(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:
        raise ParleyError("SQLite did not report the new row.",
                          "This is a bug in Parley; please report it.")
    return cursor.lastrowid


def _to_json(values: dict[str, float] | dict[str, int] | None) -> str | None:
    return None if values is None else json.dumps(values)


def _metrics(stored: str | None) -> dict[str, float] | None:
    return None if stored is None else {k: float(v) for k, v in json.loads(stored).items()}


def _tokens(stored: str | None) -> dict[str, int] | None:
    return None if stored is None else {k: int(v) for k, v in json.loads(stored).items()}


_METRIC_NAMES = {
    END_OF_SPEECH_TO_FIRST_AUDIO: "first audio",
    STT: "transcription",
    LLM_FIRST_TOKEN: "first token",
    LLM_FIRST_PIECE: "first sentence",
    TTS_FIRST_AUDIO: "voice",
    AUDIO_SECONDS: "speech",
}
"""The export's words for the pipeline's own metrics; any other metric is shown by its key."""


def _latency(metrics: dict[str, float]) -> str:
    """Headline latency first (what the user waited for), then each stage."""
    order = sorted(metrics, key=lambda k: k != END_OF_SPEECH_TO_FIRST_AUDIO)
    return " · ".join(
        f"{_METRIC_NAMES.get(k, k)} {metrics[k]:.1f} s" if k.endswith("_seconds")
        else f"{_METRIC_NAMES.get(k, k)} {metrics[k]:.0f} ms"
        for k in order)


def _date(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))

