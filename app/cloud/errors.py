"""Realtime `error` events in words a user can act on."""

from __future__ import annotations

from app.conversation.events import ErrorOccurred

_LOCAL = "or switch this conversation back to local mode."
_HINTS = {
    "invalid_api_key": "Check your key: `parley cloud set-key`, or set OPENAI_API_KEY.",
    "insufficient_quota": f"Your OpenAI account is out of credit: add some at "
                          f"https://platform.openai.com/account/billing, {_LOCAL}",
    "rate_limit_exceeded": f"Too many requests for now: wait a moment, {_LOCAL}",
    "model_not_found": "Check `model` in the [cloud] section of your settings.",
    "session_expired": "Parley opens a new session and goes on.",
}
_DEFAULT_HINT = f"If it keeps happening, {_LOCAL}"


def describe(message: str, code: str | None) -> ErrorOccurred:
    return ErrorOccurred(f"OpenAI: {message}", _HINTS.get(code or "", _DEFAULT_HINT))
