"""Unit: which transcripts of speech over a reply count as the user interrupting."""

from __future__ import annotations

import pytest

from app.conversation.interruption import echoes, has_words

MOON = "The moon is far away. It is about three hundred thousand kilometres from us."


@pytest.mark.parametrize("text, words", [
    ("Stop.", True), ("wait", True), ("", False), ("  ", False), ("...", False),
    ("(coughs)", False), ("[BLANK_AUDIO]", False), ("*sigh*", False),
    ("(laughs) okay", True), ("Thank you.", False), ("Thank you, stop now.", True),
])
def test_only_a_transcript_with_words_counts_as_talking(text: str, words: bool) -> None:
    assert has_words(text) is words


@pytest.mark.parametrize("heard, echo", [
    ("is far away", True),
    ("The moon is far away.", True),
    ("three hundred thousand", True),
    ("Tell me about the sun.", False),
    ("How far is the sun from the moon?", False),
    ("Stop!", False),
])
def test_a_run_of_the_replys_own_words_is_its_echo(heard: str, echo: bool) -> None:
    assert echoes(heard, MOON) is echo
