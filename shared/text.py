"""Normalising user text, the same way in every service (pure, standard library only)."""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """NFC, no control characters, trimmed. Markup stays literal text: never interpreted."""
    return _CONTROL.sub("", unicodedata.normalize("NFC", text)).strip()
