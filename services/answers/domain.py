"""The answers service's pure rules: cleaning an answer, a doctor's card from a profile."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from shared.errors import Invalid
from shared.text import clean_text

MIN_BODY = 20
MAX_BODY = 10_000
MAX_HEADLINE = 200


class InvalidAnswer(Invalid):
    """An answer that is blank, too short or too long once cleaned."""


def clean_answer(headline: str | None, body: str) -> tuple[str | None, str]:
    """The cleaned (headline, body); InvalidAnswer says what is wrong with them.

    Lengths are checked after cleaning, since stripped control characters and NFC
    composition can shorten a text that passed the request's raw length limits.
    """
    clean_body = clean_text(body)
    if not clean_body:
        raise InvalidAnswer("body must not be blank")
    if len(clean_body) < MIN_BODY:
        raise InvalidAnswer(f"body must have at least {MIN_BODY} characters")
    if len(clean_body) > MAX_BODY:
        raise InvalidAnswer(f"body must have at most {MAX_BODY} characters")
    clean_headline = clean_text(headline) if headline is not None else ""
    if len(clean_headline) > MAX_HEADLINE:
        raise InvalidAnswer(f"headline must have at most {MAX_HEADLINE} characters")
    return clean_headline or None, clean_body


def new_answer_id(now_ms: int | None = None) -> str:
    """A short, roughly time-ordered, unguessable answer id."""
    ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return f"a{ms:x}{secrets.token_hex(5)}"


def doctor_card(doctor_id: str, profile: Mapping[str, Any]) -> dict[str, Any]:
    """The public card shown beside an answer, from a directory profile (no contact data).

    The card's specialty is the doctor's first (primary) specialty; city and state come
    from the practice location.
    """
    specialties = profile.get("specialties") or []
    location = profile.get("location") or {}
    return {
        "id": doctor_id,
        "name": profile["name"],
        "credentials": profile.get("credentials") or "",
        "specialty": specialties[0] if specialties else None,
        "city": location.get("city"),
        "state": location.get("state"),
        "rating": profile.get("rating"),
        "review_count": int(profile.get("review_count") or 0),
        # Profiles announced before verification existed carry no status: not verified.
        "verified": profile.get("status") == "verified",
    }


def new_answer(
    answer_id: str,
    question_id: str,
    headline: str | None,
    body: str,
    card: Mapping[str, Any],
    created_at: str,
) -> dict[str, Any]:
    """An answer as stored and shown."""
    return {
        "id": answer_id,
        "question_id": question_id,
        "headline": headline,
        "body": body,
        "created_at": created_at,
        "doctor": dict(card),
    }
