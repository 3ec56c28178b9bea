"""Cut a token stream into speakable pieces, so speech starts before the LLM finishes.

The first piece may end at a comma once it is long enough (RealtimeTTS's 10-character
minimum idea), or after a few words when no punctuation comes: the user hears something
sooner. Later pieces are whole sentences, which Piper phrases better.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<!\b[A-Z])(?<!\b(?:Mr|Ms|Dr|St|vs))[.!?…]+[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"[,;:—]\s+")
_NEWLINES = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\S+\s+")


class SentenceSplitter:
    def __init__(self, first_min_chars: int = 10, first_max_words: int = 6) -> None:
        self.first_min_chars = first_min_chars
        self.first_max_words = first_max_words
        self._buffer = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the pieces that are now complete."""
        self._buffer += text
        pieces: list[str] = []
        while (piece := self._next_piece()) is not None:
            pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        """The rest of the text, at the end of the stream."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if _speakable(rest) else []

    def _next_piece(self) -> str | None:
        ends = [m.end() for m in (_SENTENCE_END.search(self._buffer),
                                  _NEWLINES.search(self._buffer)) if m]
        if self._emitted == 0:
            clause = _CLAUSE_END.search(self._buffer, self.first_min_chars)
            if clause:
                ends.append(clause.end())
            words = list(_WORD.finditer(self._buffer))
            if len(words) >= self.first_max_words:
                ends.append(words[self.first_max_words - 1].end())
        for end in sorted(ends):
            piece = self._buffer[:end].strip()
            if _speakable(piece):
                self._buffer = self._buffer[end:]
                self._emitted += 1
                return piece
        return None


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)
