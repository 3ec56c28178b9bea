"""The OpenAI API key for cloud mode: the environment first, then the OS keyring.

The key lives only in the process environment or the OS keyring (service "parley"), never
in the settings file, the logs or the conversation database, so sharing any of those never
leaks it.
"""

from __future__ import annotations

import os

import keyring
from keyring.errors import KeyringError, PasswordDeleteError

from engines.errors import ParleyError

SERVICE = "parley"
ACCOUNT = "openai-api-key"
ENV_VAR = "OPENAI_API_KEY"
_HOW_TO_ADD = (f"Run `parley cloud set-key` to keep a key in your system keyring, or set "
               f"{ENV_VAR} in the environment. Keys are made at "
               "https://platform.openai.com/api-keys.")


class MissingKeyError(ParleyError):
    """Cloud mode was asked for with no key anywhere."""


def load_key() -> str:
    """The key to use: OPENAI_API_KEY wins (CI, kiosks), else the keyring's."""
    key = os.environ.get(ENV_VAR, "").strip()
    if key:
        return key
    try:
        key = (keyring.get_password(SERVICE, ACCOUNT) or "").strip()
    except KeyringError:  # no backend on a headless box: same as no key stored
        key = ""
    if not key:
        raise MissingKeyError("Cloud mode needs an OpenAI API key, and none is set up.",
                              _HOW_TO_ADD)
    return key


def store_key(key: str) -> None:
    key = key.strip()
    if not key:
        raise ParleyError("The API key is empty.", "Paste the whole key, starting with sk-.")
    try:
        keyring.set_password(SERVICE, ACCOUNT, key)
    except KeyringError as err:
        raise ParleyError(f"The system keyring cannot store the key: {err}",
                          f"Set {ENV_VAR} in the environment instead.") from err


def forget_key() -> bool:
    """Remove the stored key; False when there was none."""
    try:
        keyring.delete_password(SERVICE, ACCOUNT)
    except PasswordDeleteError:
        return False
    except KeyringError as err:
        raise ParleyError(f"The system keyring cannot be reached: {err}",
                          f"Unset {ENV_VAR} if you set it there.") from err
    return True
