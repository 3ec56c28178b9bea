"""Which words of a reply the user heard, from how much of its audio was played."""

from __future__ import annotations


class Spoken:
    """Which text each stretch of a reply's audio voices, to tell which words were heard."""

    def __init__(self) -> None:
        self.pieces: list[tuple[float, float, str]] = []
        """(start, end, text) in seconds of the reply's audio."""
        self.seconds = 0.0

    def begin(self, text: str) -> None:
        """The audio added from now on voices `text`."""
        self.pieces.append((self.seconds, self.seconds, text))

    def add(self, seconds: float) -> None:
        start, _, text = self.pieces[-1]
        self.seconds += seconds
        self.pieces[-1] = (start, self.seconds, text)

    def text(self) -> str:
        """Everything voiced so far."""
        return " ".join(text for start, end, text in self.pieces if end > start)

    def heard(self, seconds: float) -> str:
        """The words within the first `seconds`: whole pieces, then the share of the
        current piece's words that its played share of audio carries."""
        words: list[str] = []
        for start, end, text in self.pieces:
            if end == start:  # no audio for it yet
                continue
            if seconds >= end:
                words += text.split()
            elif seconds > start:
                piece = text.split()
                words += piece[:int(len(piece) * (seconds - start) / (end - start))]
        return " ".join(words)
