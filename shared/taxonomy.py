"""The controlled vocabulary: specialties (with NUCC provider taxonomy codes) and topics.

The vocabulary itself is data, `taxonomy.toml` beside this module; this is its loader.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any


@dataclass(frozen=True, slots=True)
class Specialty:
    """A doctor's specialty, keyed by slug, with its NUCC provider taxonomy code."""

    slug: str
    name: str
    nucc_code: str


@dataclass(frozen=True, slots=True)
class Topic:
    """A question topic and the specialties that answer it, most relevant first."""

    slug: str
    name: str
    specialties: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Specialties and topics, in file order, and both indexed by slug."""

    specialties: tuple[Specialty, ...]
    topics: tuple[Topic, ...]
    specialty_by_slug: dict[str, Specialty]
    topic_by_slug: dict[str, Topic]


def parse(text: str) -> Vocabulary:
    """The vocabulary in a TOML text; ValueError if it is not consistent."""
    data = tomllib.loads(text)
    specialties = tuple(
        Specialty(s["slug"], s["name"], s["nucc_code"]) for s in data["specialties"]
    )
    topics = tuple(Topic(t["slug"], t["name"], tuple(t["specialties"])) for t in data["topics"])
    specialty_by_slug = {s.slug: s for s in specialties}
    topic_by_slug = {t.slug: t for t in topics}
    if len(specialty_by_slug) != len(specialties) or len(topic_by_slug) != len(topics):
        raise ValueError("taxonomy: a slug is listed twice")
    for topic in topics:
        unknown = [s for s in topic.specialties if s not in specialty_by_slug]
        if unknown:
            raise ValueError(f"taxonomy: topic {topic.slug} names unknown specialties {unknown}")
    return Vocabulary(specialties, topics, specialty_by_slug, topic_by_slug)


@cache
def vocabulary() -> Vocabulary:
    """The vocabulary shipped with askdoc (read once)."""
    return parse(files("shared").joinpath("taxonomy.toml").read_text(encoding="utf-8"))


def specialties() -> tuple[Specialty, ...]:
    """All specialties, in vocabulary order."""
    return vocabulary().specialties


def topics() -> tuple[Topic, ...]:
    """All topics, in vocabulary order."""
    return vocabulary().topics


def get_specialty(slug: str) -> Specialty:
    """The specialty with this exact slug; KeyError if there is none."""
    try:
        return vocabulary().specialty_by_slug[slug]
    except KeyError:
        raise KeyError(f"unknown specialty {slug!r}") from None


def get_topic(slug: str) -> Topic:
    """The topic with this exact slug; KeyError if there is none."""
    try:
        return vocabulary().topic_by_slug[slug]
    except KeyError:
        raise KeyError(f"unknown topic {slug!r}") from None


def is_specialty(slug: str) -> bool:
    """Whether slug names a specialty."""
    return slug in vocabulary().specialty_by_slug


def is_topic(slug: str) -> bool:
    """Whether slug names a topic."""
    return slug in vocabulary().topic_by_slug


def normalize_slug(text: str) -> str:
    """Turn a display name into a slug: "Facial Asymmetry" -> "facial-asymmetry"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    # Apostrophes vanish ("Bell's" -> "bells") and "&" reads as "and" so that
    # display names and slugs agree.
    ascii_text = ascii_text.replace("'", "").replace("&", " and ")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.casefold()).strip("-")


def as_dict() -> dict[str, list[dict[str, Any]]]:
    """The vocabulary as served by GET /taxonomy."""
    return {
        "specialties": [
            {"slug": s.slug, "name": s.name, "nucc_code": s.nucc_code} for s in specialties()
        ],
        "topics": [
            {"slug": t.slug, "name": t.name, "specialties": list(t.specialties)} for t in topics()
        ],
    }
