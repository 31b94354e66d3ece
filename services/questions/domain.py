"""The questions service's pure rules: posting, ranking answers, related questions."""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared import taxonomy

DISCLAIMER = (
    "These answers are for educational purposes and should not be relied upon as a "
    "substitute for medical advice you may receive from your physician. If you have a "
    "medical emergency, please call 911. These answers do not constitute or initiate a "
    "patient/doctor relationship."
)

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "for",
        "from",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "my",
        "of",
        "on",
        "or",
        "that",
        "the",
        "there",
        "this",
        "to",
        "was",
        "what",
        "when",
        "which",
        "will",
        "with",
        "you",
        "your",
        "me",
        "am",
        "any",
    ]
)


def new_question_id(now_ms: int | None = None) -> str:
    """A short, roughly time-ordered, unguessable question id."""
    ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return f"q{ms:x}{secrets.token_hex(5)}"


def specialties_for(topics: Iterable[str], named: Iterable[str] = ()) -> tuple[str, ...]:
    """Specialty slugs for a question: the named ones first, then each topic's, deduplicated."""
    # Unknown slugs are skipped rather than raised: events written under an older
    # vocabulary must still match. User input is checked by taxonomy.check_topics and
    # taxonomy.check_specialties.
    found: dict[str, None] = {}
    for slug in named:
        if taxonomy.is_specialty(slug):
            found.setdefault(slug)
    for topic_slug in topics:
        if taxonomy.is_topic(topic_slug):
            for slug in taxonomy.get_topic(topic_slug).specialties:
                found.setdefault(slug)
    return tuple(found)


def wilson_lower_bound(helpful: int, unhelpful: int, z: float = 1.96) -> float:
    """Lower bound of the 95% Wilson interval of the helpful share (0 with no votes)."""
    n = helpful + unhelpful
    if n == 0:
        return 0.0
    p = helpful / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt((p * (1 - p) + z * z / (4 * n)) / n)
    return (centre - spread) / (1 + z * z / n)


@dataclass(frozen=True)
class RankedAnswer:
    """An answer with its votes, ready for the page."""

    answer: dict[str, Any]
    helpful: int
    unhelpful: int
    score: float


def rank_answers(
    answers: Sequence[dict[str, Any]], tallies: dict[str, tuple[int, int]]
) -> list[RankedAnswer]:
    """Best first: Wilson lower bound, then more helpful votes, then the earlier answer."""
    ranked = []
    for answer in answers:
        helpful, unhelpful = tallies.get(answer["id"], (0, 0))
        ranked.append(
            RankedAnswer(answer, helpful, unhelpful, wilson_lower_bound(helpful, unhelpful))
        )
    ranked.sort(key=lambda r: (-r.score, -r.helpful, r.answer["created_at"], r.answer["id"]))
    return ranked


def words(text: str) -> set[str]:
    """Content words of a text, lower-cased."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def relatedness(
    topics: set[str], title_words: set[str], other_topics: set[str], other_title_words: set[str]
) -> float:
    """How related two questions are: topic overlap first, title words as a tie-breaker."""
    topic_union = topics | other_topics
    topic_score = len(topics & other_topics) / len(topic_union) if topic_union else 0.0
    word_union = title_words | other_title_words
    word_score = len(title_words & other_title_words) / len(word_union) if word_union else 0.0
    return topic_score + 0.5 * word_score


def public_question(doc: dict[str, Any]) -> dict[str, Any]:
    """The public view of a stored question: the asker's id never shows when anonymous."""
    public = {k: v for k, v in doc.items() if k not in ("asker_id", "asker_name", "asker_role")}
    public["asker"] = (
        None if doc.get("anonymous") else {"id": doc["asker_id"], "name": doc.get("asker_name")}
    )
    return public


#: Decimals kept of a patient's coordinates: 2 is about 1 km, never a home.
COARSE_DECIMALS = 2


def place_dict(place: Any) -> dict[str, Any]:
    """A geocoded place as stored and shown: city, state, zip, and coarse lat, lon."""
    return {
        "city": place.city,
        "state": place.state,
        "zip": place.zip,
        "lat": round(place.lat, COARSE_DECIMALS),
        "lon": round(place.lon, COARSE_DECIMALS),
    }


def coarse_location(location: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored location as it may leave the service (older documents kept 4 decimals)."""
    if not location:
        return location
    coarse = dict(location)
    for axis in ("lat", "lon"):
        if isinstance(coarse.get(axis), int | float):
            coarse[axis] = round(coarse[axis], COARSE_DECIMALS)
    return coarse
