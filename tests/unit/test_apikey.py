"""Where cloud mode finds the API key, and what the user is told when there is none."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.fail import Keyring as NoKeyring
from keyring.errors import PasswordDeleteError

from app.cloud import apikey
from engines.errors import ParleyError


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_a_stored_key_is_used_and_can_be_forgotten(memory: MemoryKeyring) -> None:
    apikey.store_key("  sk-stored\n")
    assert apikey.load_key() == "sk-stored"
    assert memory.store == {("parley", "openai-api-key"): "sk-stored"}
    assert apikey.forget_key() is True
    assert apikey.forget_key() is False
    with pytest.raises(apikey.MissingKeyError):
        apikey.load_key()


def test_the_environment_wins_over_the_keyring(memory: MemoryKeyring,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    apikey.store_key("sk-stored")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert apikey.load_key() == "sk-from-env"


def test_with_no_key_and_no_keyring_the_user_is_told_how_to_add_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        with pytest.raises(apikey.MissingKeyError) as missing:
            apikey.load_key()
        with pytest.raises(ParleyError) as cannot_store:
            apikey.store_key("sk-new")
    finally:
        keyring.set_keyring(previous)
    assert "parley cloud set-key" in missing.value.hint
    assert "OPENAI_API_KEY" in missing.value.hint
    assert "OPENAI_API_KEY" in cannot_store.value.hint


def test_an_empty_key_is_refused(memory: MemoryKeyring) -> None:
    with pytest.raises(ParleyError, match="empty"):
        apikey.store_key("   ")
    assert memory.store == {}
