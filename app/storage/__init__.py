"""Conversation history on disk: one SQLite file holding conversations, turns and metrics.

Every turn is committed as soon as it is added (WAL journal, full sync), so a crash or a power
cut loses at most the turn in flight. `schema` brings a file written by an older Parley up
to date at open; `repair` sets a damaged file aside and starts a new one with what could
still be read. No Qt import: the GUI, the CLI and the tests share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from platformdirs import user_data_dir

from app.conversation.metrics import (
    AUDIO_SECONDS,
    END_OF_SPEECH_TO_FIRST_AUDIO,
    LLM_FIRST_PIECE,
    LLM_FIRST_TOKEN,
    STT,
    TTS_FIRST_AUDIO,
)
from app.storage.repair import is_damage, looks_damaged, salvage, set_aside
from app.storage.schema import MIGRATIONS, SCHEMA_VERSION, migrate, transaction
from engines.errors import ParleyError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "UNTITLED", "ConversationSummary", "Storage",
           "StoredTurn", "default_db_path", "migrate", "title_from"]

ROLES = ("user", "assistant", "system")
UNTITLED = "New conversation"
"""What a conversation is called until its first question gives it a title."""

TITLE_CHARS = 40

T = TypeVar("T")


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


class Storage:
    """The conversation history. Use it from one thread (the GUI's main thread).

    A damaged file is set aside and replaced at open, or at the first read or write that
    meets the damage (then that read or write is tried once more on the new file); what
    happened waits in `notices` until a front end takes them with `on_notice`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notices: list[ParleyError] = []
        self._tell: Callable[[ParleyError], None] | None = None
        self._db: sqlite3.Connection | None = None
        self._set_aside = False
        with self._guard("open the conversation history"):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                damaged = self._open(check=True)
            except sqlite3.DatabaseError as err:
                if not is_damage(err):
                    raise
                damaged = True
            if damaged:
                self._replace()

    def on_notice(self, tell: Callable[[ParleyError], None]) -> None:
        """Who tells the user what happened to their history; notices so far are told now."""
        self._tell = tell
        pending, self.notices = self.notices, []
        for notice in pending:
            tell(notice)

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
        return self._write("start a new conversation", lambda db: _row_id(db.execute(
            "INSERT INTO conversations (title, system_prompt, created_at, updated_at)"
            " VALUES (?, ?, ?, ?)", (title.strip(), system_prompt, now, now))))

    def add_turn(self, conversation_id: int, role: str, text: str,
                 metrics: dict[str, float] | None = None, tokens: dict[str, int] | None = None,
                 created_at: float | None = None) -> int:
        """Save one turn now. The first question names a conversation that has no title."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        at = time.time() if created_at is None else created_at

        def add(db: sqlite3.Connection) -> int:
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

        return self._write("save the turn", add)

    def conversations(self) -> list[ConversationSummary]:
        """Most recently active first."""
        return self._read("read the list of conversations", lambda db: [
            ConversationSummary(*row) for row in
            db.execute(_SUMMARY_SQL + " ORDER BY c.updated_at DESC, c.id DESC")])

    def turns(self, conversation_id: int) -> list[StoredTurn]:
        def read(db: sqlite3.Connection) -> list[StoredTurn]:
            self._summary(conversation_id)
            rows = db.execute("SELECT id, role, text, created_at, metrics, tokens FROM turns"
                              " WHERE conversation_id = ? ORDER BY id", (conversation_id,))
            return [StoredTurn(id, role, text, at, _metrics(metrics), _tokens(tokens))
                    for id, role, text, at, metrics, tokens in rows]

        return self._read("read the conversation", read)

    def system_prompt(self, conversation_id: int) -> str:
        def read(db: sqlite3.Connection) -> str:
            row = db.execute("SELECT system_prompt FROM conversations WHERE id = ?",
                             (conversation_id,)).fetchone()
            if row is None:
                raise _unknown(conversation_id)
            prompt: str = row[0]
            return prompt

        return self._read("read the conversation", read)

    def set_system_prompt(self, conversation_id: int, text: str) -> None:
        self._update(conversation_id, "system_prompt", text, "change the persona")

    def rename(self, conversation_id: int, title: str) -> None:
        """Renaming leaves `updated_at` alone, so the list does not jump around."""
        self._update(conversation_id, "title", title.strip(), "rename the conversation")

    def delete(self, conversation_id: int) -> None:
        """The conversation and all its turns (by cascade)."""
        def delete(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM conversations WHERE id = ?",
                          (conversation_id,)).rowcount == 0:
                raise _unknown(conversation_id)

        self._write("delete the conversation", delete)

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

    def _summary(self, conversation_id: int) -> ConversationSummary:
        row = self._conn().execute(_SUMMARY_SQL + " WHERE c.id = ?",
                                   (conversation_id,)).fetchone()
        if row is None:
            raise _unknown(conversation_id)
        return ConversationSummary(*row)

    def _checked_summary(self, conversation_id: int) -> ConversationSummary:
        return self._read("read the conversation", lambda _: self._summary(conversation_id))

    def _update(self, conversation_id: int, column: str, value: str, action: str) -> None:
        def update(db: sqlite3.Connection) -> None:
            if db.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?",
                          (value, conversation_id)).rowcount == 0:
                raise _unknown(conversation_id)

        self._write(action, update)

    def _write(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one transaction: all of it is saved, or none."""
        def in_transaction(db: sqlite3.Connection) -> T:
            with transaction(db):
                return work(db)

        return self._read(action, in_transaction)

    def _read(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the open file; if it meets damage, once more on the file that replaces
        it (a failed transaction has left nothing behind, so trying again is safe)."""
        with self._guard(action):
            try:
                return work(self._conn())
            except sqlite3.DatabaseError as err:
                if not is_damage(err) or self._set_aside:
                    raise
                self._replace()
            return work(self._conn())

    def _open(self, check: bool) -> bool:
        """Connect and bring the schema up to date; `check`: look for damage first, and
        return True (closed again) if there is some."""
        self._db = db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            if check and looks_damaged(db):
                self.close()
                return True
            migrate(db)
        except BaseException:
            self.close()
            raise
        return False

    def _replace(self) -> None:
        """Set the damaged file aside, start a new one with what could be read, and say so.
        Once per run: a new file that is damaged too means a failing disk, not bad luck."""
        self.close()
        self._set_aside = True
        aside = set_aside(self.path)
        self._open(check=False)
        saved = salvage(aside, self._conn())
        notice = ParleyError(
            f"Your conversation history was damaged, so Parley set it aside as {aside} and "
            f"started a new one. {_recovered(saved.turns, saved.conversations)}",
            "Nothing to do. Keep the old file if you want to try a recovery tool on it, or "
            "delete it to free the space.")
        if self._tell is not None:
            self._tell(notice)
        else:
            self.notices.append(notice)

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


def _recovered(turns: int, conversations: int) -> str:
    if not turns and not conversations:
        return "Nothing in it could be read."
    return (f"{turns} turn{'s' * (turns != 1)} in {conversations} "
            f"conversation{'s' * (conversations != 1)} could still be read and are kept.")


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

