"""Notes the user asks Parley to keep ("remember that the spare key is under the pot"),
in tools.db, so they outlive the conversation and the mode they were said in."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.tools.clock import spoken_date
from app.tools.store import matching, transaction

RECALL_LIMIT = 10
"""Notes read back at most: each one costs the model prompt time."""


class Notes:
    def __init__(self, db_path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = db_path
        self.clock = clock

    def remember(self, note: str) -> dict[str, Any]:
        if not note.strip():
            raise ValueError("the note is empty")
        with transaction(self.path) as db:
            row = db.execute("INSERT INTO notes (text, created_at) VALUES (?, ?)",
                             (note.strip(), self.clock())).lastrowid
        return {"id": row, "remembered": note.strip()}

    def recall(self, query: str = "") -> dict[str, Any]:
        """Notes with every word of `query`, newest first; all of them when there is no
        query or nothing matches it."""
        notes = self._all()
        rows = [(row, text) for row, text, _ in notes]
        # Matching words is crude ("leave my bike" misses "I locked my bike behind the
        # library"; "What notes do you have?" comes as the query "notes"): when it finds
        # nothing, the model reads every note and judges for itself.
        found = set(matching(query, rows)) if query.strip() else set()
        hits = [{"id": row, "note": text,
                 "date": spoken_date(datetime.datetime.fromtimestamp(at))}
                for row, text, at in notes if row in found or not found]
        result: dict[str, Any] = {"notes": hits[:RECALL_LIMIT]}
        if len(hits) > RECALL_LIMIT:
            result["more"] = len(hits) - RECALL_LIMIT
        return result

    def summary(self) -> str:
        """The newest notes, for the model's context, so recalling one needs no call."""
        notes = self._all()
        if not notes:
            return "No notes are saved."
        shown = "; ".join(f"{text} (note {row})" for row, text, _ in notes[:RECALL_LIMIT])
        more = (f" and {len(notes) - RECALL_LIMIT} older ones (recall finds them)"
                if len(notes) > RECALL_LIMIT else "")
        return f"Saved notes: {shown}{more}."

    def forget(self, which: int | str) -> dict[str, Any]:
        """One note, by id or by words of it; several matches are listed, not deleted."""
        notes = {row: text for row, text, _ in self._all()}
        found = matching(which, list(notes.items()))
        if len(found) != 1:
            listed = "; ".join(f"{row}: {notes[row]}" for row in found)
            raise ValueError(f"{len(found)} notes match {which!r}" +
                             (f"; say which by id ({listed})" if found else ""))
        with transaction(self.path) as db:
            db.execute("DELETE FROM notes WHERE id = ?", found)
        return {"forgot": notes[found[0]]}

    def _all(self) -> list[tuple[int, str, float]]:
        """(id, text, created_at), newest first."""
        with transaction(self.path) as db:
            rows: list[tuple[int, str, float]] = db.execute(
                "SELECT id, text, created_at FROM notes ORDER BY created_at DESC, id DESC"
            ).fetchall()
        return rows
