"""One error type the user can read: what happened, and what to do about it."""

from __future__ import annotations


class ParleyError(Exception):
    """An expected failure with a message for people and a hint that fixes it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  → {self.hint}" if self.hint else self.message


class ModelError(ParleyError):
    """A model is missing, corrupt, or cannot be handled by any engine."""


class AudioError(ParleyError):
    """An audio file or device cannot be used."""


class WorkerError(ParleyError):
    """The engine worker process died or could not start."""
