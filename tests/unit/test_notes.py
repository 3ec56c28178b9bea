"""Notes on a real tools.db: kept across a restart, found by their words, newest first, and
forgotten one at a time."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from app.tools.notes import RECALL_LIMIT, Notes


def _on(day: int) -> float:
    return datetime.datetime(2026, 12, day, 9, 0).timestamp()


def _notes(path: Path, *texts: tuple[int, str]) -> Notes:
    """Notes remembered on the given days of December 2026, in this order."""
    for day, text in texts:
        Notes(path, clock=lambda day=day: _on(day)).remember(text)
    return Notes(path)


def test_remembered_notes_are_recalled_newest_first_with_their_dates(tmp_path: Path) -> None:
    notes = _notes(tmp_path / "tools.db", (4, "The spare key is under the blue pot."),
                   (5, "Call the dentist on Monday."), (6, "The car is on level 3."))
    recalled = notes.recall()["notes"]  # a new Notes on the same file: after a restart
    assert [n["note"] for n in recalled] == ["The car is on level 3.",
                                             "Call the dentist on Monday.",
                                             "The spare key is under the blue pot."]
    assert [n["date"] for n in recalled] == ["Sunday 6 December 2026", "Saturday 5 December 2026",
                                             "Friday 4 December 2026"]


def test_a_query_finds_the_notes_with_all_its_words(tmp_path: Path) -> None:
    notes = _notes(tmp_path / "tools.db", (4, "The spare key is under the blue pot."),
                   (5, "Call the dentist on Monday."), (6, "The car KEYS are in the drawer."))
    assert [n["note"] for n in notes.recall("key")["notes"]] == [
        "The car KEYS are in the drawer.", "The spare key is under the blue pot."]
    assert [n["note"] for n in notes.recall("spare key")["notes"]] == [
        "The spare key is under the blue pot."]
    # "What notes do you have?" reaches the tool as the query "notes": no note has that
    # word, so every note comes back for the model to judge.
    assert len(notes.recall("notes")["notes"]) == 3


def test_only_the_newest_are_read_back_and_the_rest_counted(tmp_path: Path) -> None:
    notes = _notes(tmp_path / "tools.db", *[(1 + i, f"note {i}") for i in range(12)])
    recalled = notes.recall()
    assert len(recalled["notes"]) == RECALL_LIMIT and recalled["more"] == 12 - RECALL_LIMIT
    assert recalled["notes"][0]["note"] == "note 11"


def test_forgetting_one_note_by_id_or_by_words(tmp_path: Path) -> None:
    notes = _notes(tmp_path / "tools.db", (4, "The spare key is under the blue pot."),
                   (5, "Call the dentist on Monday."), (6, "The car keys are in the drawer."))
    dentist = notes.recall("dentist")["notes"][0]["id"]
    assert notes.forget(dentist) == {"forgot": "Call the dentist on Monday."}
    with pytest.raises(ValueError, match="2 notes match 'key'; say which by id") as asked:
        notes.forget("key")
    assert "The spare key is under the blue pot." in str(asked.value)
    assert notes.forget("blue pot") == {"forgot": "The spare key is under the blue pot."}
    # The model names a note as its context does ("… (note 3)"), sometimes without the space.
    assert notes.forget("note3") == {"forgot": "The car keys are in the drawer."}
    with pytest.raises(ValueError, match="0 notes match 'dentist'"):
        notes.forget("dentist")
    assert Notes(tmp_path / "tools.db").recall()["notes"] == []


def test_the_only_note_can_be_named_by_pointing_at_it(tmp_path: Path) -> None:
    notes = _notes(tmp_path / "tools.db", (4, "Buy milk."), (5, "Call the dentist."))
    with pytest.raises(ValueError, match="0 notes match 'the note'"):
        notes.forget("the note")  # two notes: which one?
    notes.forget("dentist")
    assert notes.forget("the note") == {"forgot": "Buy milk."}


def test_an_empty_note_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        Notes(tmp_path / "tools.db").remember("   ")
