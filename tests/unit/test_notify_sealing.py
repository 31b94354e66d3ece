"""Webhook secrets at rest: sealed with Fernet, opened with any listed key (rotation)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from services.notify.directory.sealing import SecretBox

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
PROFILE = {"id": "dr-1", "webhook_secret": "whsec_abc", "webhook_secret_previous": None}


def test_secrets_are_sealed_and_opened_again() -> None:
    box = SecretBox(OLD)
    sealed = box.seal(PROFILE)
    assert sealed["webhook_secret"].startswith("fernet:") and "abc" not in str(sealed)
    assert PROFILE["webhook_secret"] == "whsec_abc"  # the caller's profile is left alone
    assert box.open(dict(sealed)) == PROFILE
    assert box.seal(sealed) == sealed  # sealing twice changes nothing


def test_a_key_rotation_opens_old_seals_and_seals_with_the_new_key() -> None:
    old_seal = SecretBox(OLD).seal(PROFILE)
    rotated = SecretBox(f"{NEW}, {OLD}")
    assert rotated.open(dict(old_seal))["webhook_secret"] == "whsec_abc"
    new_seal = rotated.seal(PROFILE)
    assert SecretBox(NEW).open(dict(new_seal))["webhook_secret"] == "whsec_abc"
    # Without the key that sealed it a secret reads as absent, never as garbage.
    assert SecretBox(NEW).open(dict(old_seal))["webhook_secret"] is None


def test_secrets_stored_before_sealing_still_read() -> None:
    assert SecretBox(OLD).open(dict(PROFILE))["webhook_secret"] == "whsec_abc"


@pytest.mark.parametrize("keys", ["", " , ", "not-a-fernet-key"])
def test_a_broken_key_setting_fails_at_start(keys: str) -> None:
    with pytest.raises(ValueError):
        SecretBox(keys)
