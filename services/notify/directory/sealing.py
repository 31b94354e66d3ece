"""Webhook secrets at rest: sealed with Fernet keys from the environment.

`ASKDOC_WEBHOOK_SECRET_KEY` holds one or more Fernet keys, comma-separated, newest
first: the first seals, any of them opens, so a key is rotated by putting the new one
in front and, once every profile has been saved again, dropping the old one.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SEALED_PREFIX = "fernet:"
#: The profile fields that hold secrets.
SECRET_FIELDS = ("webhook_secret", "webhook_secret_previous")


class SecretBox:
    """Seals and opens the secret fields of a profile."""

    def __init__(self, keys: str) -> None:
        fernets = [Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()]
        if not fernets:
            raise ValueError("ASKDOC_WEBHOOK_SECRET_KEY holds no Fernet key")
        self._fernet = MultiFernet(fernets)

    def seal(self, profile: dict[str, Any]) -> dict[str, Any]:
        """A copy of the profile with its secrets encrypted."""
        sealed = dict(profile)
        for field in SECRET_FIELDS:
            value = profile.get(field)
            if value and not str(value).startswith(SEALED_PREFIX):
                token = self._fernet.encrypt(str(value).encode()).decode()
                sealed[field] = SEALED_PREFIX + token
        return sealed

    def open(self, profile: dict[str, Any]) -> dict[str, Any]:
        """The profile with its secrets readable (None where no key opens them)."""
        return open_profile(profile, self._fernet)


def open_profile(profile: dict[str, Any], fernet: MultiFernet | None) -> dict[str, Any]:
    """Decrypt a stored profile's secrets; without a key (or the right one) they read as None."""
    for field in SECRET_FIELDS:
        value = profile.get(field)
        if not value:
            continue
        if not str(value).startswith(SEALED_PREFIX):
            continue  # stored before sealing: sealed on the profile's next save
        try:
            token = str(value)[len(SEALED_PREFIX) :].encode()
            profile[field] = fernet.decrypt(token).decode() if fernet else None
        except InvalidToken:
            profile[field] = None
    return profile
