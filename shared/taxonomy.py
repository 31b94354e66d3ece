"""The controlled vocabulary: specialties (with NUCC provider taxonomy codes) and topics.

The vocabulary itself is data, `taxonomy.toml` beside this module; this is its loader.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any

from shared.errors import Invalid


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


#: Names and slugs asked for repeat (the vocabulary is small): their slugs are remembered,
#: a bounded few, so that arbitrary input cannot grow the cache.
SLUG_CACHE = 4096


@lru_cache(maxsize=SLUG_CACHE)
def normalize_slug(text: str) -> str:
    """Turn a display name into a slug: "Facial Asymmetry" -> "facial-asymmetry"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    # Apostrophes vanish ("Bell's" -> "bells") and "&" reads as "and" so that
    # display names and slugs agree.
    ascii_text = ascii_text.replace("'", "").replace("&", " and ")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.casefold()).strip("-")


class UnknownSlugs(Invalid):
    """Topics or specialties outside the controlled vocabulary."""

    def __init__(self, kind: str, unknown: Sequence[str]) -> None:
        message = f"unknown {kind}: {', '.join(unknown)} (see GET /taxonomy)"
        super().__init__(message, code=f"unknown_{kind}")


def check_topics(values: Iterable[str]) -> list[str]:
    """Topic names or slugs as slugs, in order without repeats; UnknownSlugs names the rest."""
    return _check("topics", values, is_topic)


def check_specialties(values: Iterable[str]) -> list[str]:
    """Specialty names or slugs as slugs, in order without repeats; UnknownSlugs names the rest."""
    return _check("specialties", values, is_specialty)


def _check(kind: str, values: Iterable[str], known: Callable[[str], bool]) -> list[str]:
    given = list(values)
    slugs = [normalize_slug(v) for v in given]
    unknown = [v for v, s in zip(given, slugs, strict=True) if not known(s)]
    if unknown:
        raise UnknownSlugs(kind, unknown)
    return list(dict.fromkeys(slugs))


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
