"""The controlled vocabulary: specialties (with NUCC provider taxonomy codes) and topics."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
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
    aliases: tuple[str, ...] = ()


_SPECIALTIES: tuple[Specialty, ...] = (
    Specialty("plastic-surgery", "Plastic Surgery", "208200000X"),
    Specialty(
        "plastic-surgery-head-and-neck", "Plastic Surgery Within the Head and Neck", "2082S0099X"
    ),
    Specialty("facial-plastic-surgery", "Facial Plastic Surgery", "207YS0123X"),
    Specialty("dermatology", "Dermatology", "207N00000X"),
    Specialty("procedural-dermatology", "Procedural Dermatology", "207NS0135X"),
    Specialty("mohs-surgery", "Mohs Micrographic Surgery", "207ND0101X"),
    Specialty("dermatopathology", "Dermatopathology", "207ND0900X"),
    Specialty("pediatric-dermatology", "Pediatric Dermatology", "207NP0225X"),
    Specialty("otolaryngology", "Otolaryngology", "207Y00000X"),
    Specialty("oral-and-maxillofacial-surgery", "Oral and Maxillofacial Surgery", "1223S0112X"),
    Specialty("orthodontics", "Orthodontics and Dentofacial Orthopedics", "1223X0400X"),
    Specialty("ophthalmology", "Ophthalmology", "207W00000X"),
    Specialty(
        "oculoplastic-surgery", "Ophthalmic Plastic and Reconstructive Surgery", "207WX0200X"
    ),
    Specialty("neurology", "Neurology", "2084N0400X"),
    Specialty("family-medicine", "Family Medicine", "207Q00000X"),
    Specialty("internal-medicine", "Internal Medicine", "207R00000X"),
    # NUCC has no code for "physician" as such; General Practice is the closest,
    # and seed doctors listed only as "physician" land here.
    Specialty("physician", "Physician (General Practice)", "208D00000X"),
)

# Specialty groups reused across topics; order within a group is relevance.
_FACE_SURGERY = ("facial-plastic-surgery", "plastic-surgery", "plastic-surgery-head-and-neck")
_INJECTORS = (
    "dermatology",
    "procedural-dermatology",
    "plastic-surgery",
    "facial-plastic-surgery",
    # General physicians commonly inject too (the seed's Bakersfield physician does).
    "physician",
)
_SKIN_AESTHETIC = (
    "dermatology",
    "procedural-dermatology",
    "plastic-surgery",
    "facial-plastic-surgery",
)

_TOPICS: tuple[Topic, ...] = (
    # The seed question's topics.
    Topic(
        "facial-asymmetry",
        "Facial asymmetry",
        (
            "plastic-surgery",
            "facial-plastic-surgery",
            "plastic-surgery-head-and-neck",
            "dermatology",
            "procedural-dermatology",
            "oral-and-maxillofacial-surgery",
        ),
        (
            "asymmetrical face",
            "asymmetric face",
            "assymetrical face",
            "asymetrical face",
            "face asymmetry",
            "face is asymmetrical",
            "face is asymmetric",
            "face is assymetrical",
            "face is asymetrical",
            "uneven face",
            "lopsided face",
        ),
    ),
    Topic(
        "botox",
        "Botox",
        (*_INJECTORS, "oculoplastic-surgery"),
        (
            "botulinum toxin",
            "botulinum",
            "neurotoxin",
            "neuromodulator",
            "dysport",
            "xeomin",
            "jeuveau",
            "daxxify",
        ),
    ),
    Topic(
        "fillers",
        "Dermal fillers",
        (*_INJECTORS, "oculoplastic-surgery"),
        (
            "filler",
            "dermal filler",
            "hyaluronic acid",
            "juvederm",
            "restylane",
            "radiesse",
            "voluma",
        ),
    ),
    Topic(
        "injections",
        "Cosmetic injections",
        _INJECTORS,
        ("injection", "injectable", "injectables", "cosmetic injection"),
    ),
    Topic(
        "sculptra",
        "Sculptra",
        _INJECTORS,
        ("poly-l-lactic acid", "plla"),
    ),
    Topic(
        "fat-transfer",
        "Fat transfer",
        (*_FACE_SURGERY, "procedural-dermatology"),
        ("fat grafting", "fat graft", "fat injection", "autologous fat"),
    ),
    Topic(
        "implants",
        "Implants",
        (*_FACE_SURGERY, "oral-and-maxillofacial-surgery"),
        ("implant", "cheek implant", "facial implant", "jaw implant"),
    ),
    Topic(
        "pdo-threads",
        "PDO threads",
        _INJECTORS,
        ("pdo thread", "thread lift", "polydioxanone"),
    ),
    Topic(
        "orthognathic-surgery",
        "Orthognathic surgery",
        (
            "oral-and-maxillofacial-surgery",
            "plastic-surgery-head-and-neck",
            "plastic-surgery",
            "orthodontics",
        ),
        ("orthognathic", "corrective jaw surgery", "double jaw surgery", "bimaxillary surgery"),
    ),
    Topic(
        "muscle-imbalance",
        "Facial muscle imbalance",
        ("facial-plastic-surgery", "plastic-surgery", "dermatology", "neurology"),
        ("muscle imbalance", "facial muscle imbalance", "facial muscle weakness"),
    ),
    # Common skin conditions.
    Topic(
        "acne",
        "Acne",
        ("dermatology", "pediatric-dermatology", "family-medicine"),
        ("pimple", "breakout", "cystic acne", "accutane", "isotretinoin"),
    ),
    Topic(
        "acne-scars",
        "Acne scars",
        _SKIN_AESTHETIC,
        ("acne scar", "acne scarring", "ice pick scar", "boxcar scar", "rolling scar"),
    ),
    Topic(
        "rosacea",
        "Rosacea",
        ("dermatology", "procedural-dermatology"),
        ("facial redness",),
    ),
    Topic(
        "eczema",
        "Eczema",
        ("dermatology", "pediatric-dermatology", "family-medicine"),
        ("atopic dermatitis", "dermatitis"),
    ),
    Topic(
        "psoriasis",
        "Psoriasis",
        ("dermatology", "pediatric-dermatology", "internal-medicine"),
        ("psoriatic",),
    ),
    Topic(
        "melasma",
        "Melasma and hyperpigmentation",
        ("dermatology", "procedural-dermatology"),
        ("hyperpigmentation", "dark spot", "sun spot", "age spot", "brown spot"),
    ),
    Topic(
        "hair-loss",
        "Hair loss",
        ("dermatology", "plastic-surgery", "family-medicine"),
        ("alopecia", "balding", "thinning hair", "hair transplant", "receding hairline"),
    ),
    Topic(
        "skin-cancer",
        "Skin cancer",
        ("dermatology", "mohs-surgery", "dermatopathology", "procedural-dermatology"),
        (
            "melanoma",
            "basal cell carcinoma",
            "squamous cell carcinoma",
            "mohs",
            "actinic keratosis",
        ),
    ),
    Topic(
        "moles",
        "Moles and skin growths",
        ("dermatology", "dermatopathology", "procedural-dermatology", "plastic-surgery"),
        ("mole", "nevus", "nevi", "skin tag", "mole removal"),
    ),
    Topic(
        "birthmarks",
        "Birthmarks",
        ("pediatric-dermatology", "dermatology", "procedural-dermatology", "plastic-surgery"),
        ("birthmark", "port wine stain", "hemangioma"),
    ),
    Topic(
        "rash",
        "Rashes and hives",
        ("dermatology", "family-medicine", "internal-medicine", "physician"),
        ("hives", "urticaria", "itchy skin"),
    ),
    Topic(
        "warts",
        "Warts",
        ("dermatology", "pediatric-dermatology", "family-medicine"),
        ("wart", "verruca"),
    ),
    Topic(
        "hyperhidrosis",
        "Excessive sweating",
        ("dermatology", "procedural-dermatology"),
        ("excessive sweating", "sweating"),
    ),
    Topic(
        "vitiligo",
        "Vitiligo",
        ("dermatology", "pediatric-dermatology"),
    ),
    # Aesthetic procedures.
    Topic(
        "wrinkles",
        "Wrinkles",
        _SKIN_AESTHETIC,
        (
            "wrinkle",
            "fine lines",
            "crow's feet",
            "crows feet",
            "frown lines",
            "forehead lines",
            "laugh lines",
            "nasolabial folds",
        ),
    ),
    Topic(
        "chemical-peel",
        "Chemical peel",
        _SKIN_AESTHETIC,
        ("tca peel", "glycolic peel", "phenol peel"),
    ),
    Topic(
        "laser-resurfacing",
        "Laser resurfacing",
        ("procedural-dermatology", "dermatology", "plastic-surgery", "facial-plastic-surgery"),
        ("fraxel", "co2 laser", "fractional laser", "erbium laser"),
    ),
    Topic(
        "microneedling",
        "Microneedling",
        _INJECTORS,
        ("micro needling", "collagen induction therapy", "morpheus8"),
    ),
    Topic(
        "skin-tightening",
        "Skin tightening",
        _SKIN_AESTHETIC,
        ("ultherapy", "thermage", "loose skin", "sagging skin"),
    ),
    Topic(
        "laser-hair-removal",
        "Laser hair removal",
        ("dermatology", "procedural-dermatology"),
        ("unwanted hair",),
    ),
    Topic(
        "lip-augmentation",
        "Lip augmentation",
        _INJECTORS,
        ("lip filler", "lip injection", "lip flip", "lip lift", "lip implant"),
    ),
    Topic(
        "dark-circles",
        "Under-eye dark circles",
        ("oculoplastic-surgery", "dermatology", "facial-plastic-surgery"),
        ("dark circle", "tear trough", "under eye hollows"),
    ),
    Topic(
        "scar-revision",
        "Scar revision",
        (*_SKIN_AESTHETIC, "plastic-surgery-head-and-neck"),
        ("scar", "keloid", "hypertrophic scar"),
    ),
    # Surgery.
    Topic(
        "rhinoplasty",
        "Rhinoplasty",
        (*_FACE_SURGERY, "otolaryngology"),
        ("nose job", "septorhinoplasty", "nose surgery"),
    ),
    Topic(
        "facelift",
        "Facelift",
        _FACE_SURGERY,
        ("face lift", "mini facelift", "rhytidectomy"),
    ),
    Topic(
        "blepharoplasty",
        "Blepharoplasty (eyelid surgery)",
        ("oculoplastic-surgery", "facial-plastic-surgery", "plastic-surgery", "ophthalmology"),
        (
            "eyelid surgery",
            "eyelid lift",
            "droopy eyelid",
            "drooping eyelid",
            "eye bags",
            "under eye bags",
            "ptosis",
        ),
    ),
    Topic(
        "brow-lift",
        "Brow lift",
        ("facial-plastic-surgery", "plastic-surgery", "oculoplastic-surgery"),
        ("browlift", "forehead lift", "eyebrow lift"),
    ),
    Topic(
        "neck-lift",
        "Neck lift",
        _FACE_SURGERY,
        ("necklift", "turkey neck", "platysmaplasty"),
    ),
    Topic(
        "chin-implant",
        "Chin implant",
        (*_FACE_SURGERY, "oral-and-maxillofacial-surgery"),
        ("chin augmentation", "genioplasty", "mentoplasty"),
    ),
    Topic(
        "otoplasty",
        "Otoplasty (ear surgery)",
        (*_FACE_SURGERY, "otolaryngology"),
        ("ear pinning", "ear surgery", "prominent ears"),
    ),
    Topic(
        "jaw-surgery",
        "Jaw surgery",
        (
            "oral-and-maxillofacial-surgery",
            "plastic-surgery-head-and-neck",
            "facial-plastic-surgery",
            "plastic-surgery",
        ),
        ("jaw reduction", "jawline contouring", "jaw contouring"),
    ),
    Topic(
        "liposuction",
        "Liposuction",
        ("plastic-surgery", "procedural-dermatology", "facial-plastic-surgery"),
        ("lipo", "lipoplasty", "vaser", "submental fat", "double chin"),
    ),
    Topic(
        "tummy-tuck",
        "Tummy tuck",
        ("plastic-surgery",),
        ("abdominoplasty", "mommy makeover"),
    ),
    Topic(
        "breast-augmentation",
        "Breast augmentation",
        ("plastic-surgery",),
        ("breast implant", "boob job", "breast enlargement", "augmentation mammaplasty"),
    ),
    # Nerves, joints and general medicine.
    Topic(
        "bells-palsy",
        "Bell's palsy",
        (
            "neurology",
            "facial-plastic-surgery",
            "plastic-surgery",
            "plastic-surgery-head-and-neck",
            "otolaryngology",
        ),
        (
            "bell's palsy",
            "bells palsy",
            "bell palsy",
            "facial palsy",
            "facial paralysis",
            "facial nerve palsy",
            "facial nerve paralysis",
        ),
    ),
    Topic(
        "tmj",
        "TMJ disorders",
        ("oral-and-maxillofacial-surgery", "otolaryngology", "orthodontics", "neurology"),
        ("tmd", "temporomandibular", "jaw pain", "jaw clicking", "teeth grinding", "bruxism"),
    ),
    Topic(
        "migraine",
        "Migraine and headache",
        ("neurology", "family-medicine", "internal-medicine", "physician"),
        ("headache",),
    ),
)


def specialties() -> tuple[Specialty, ...]:
    """All specialties, in vocabulary order."""
    return _SPECIALTIES


def topics() -> tuple[Topic, ...]:
    """All topics, in vocabulary order."""
    return _TOPICS


@cache
def _specialties_by_slug() -> dict[str, Specialty]:
    return {s.slug: s for s in _SPECIALTIES}


@cache
def _topics_by_slug() -> dict[str, Topic]:
    return {t.slug: t for t in _TOPICS}


def get_specialty(slug: str) -> Specialty:
    """The specialty with this exact slug; KeyError if there is none."""
    try:
        return _specialties_by_slug()[slug]
    except KeyError:
        raise KeyError(f"unknown specialty {slug!r}") from None


def get_topic(slug: str) -> Topic:
    """The topic with this exact slug; KeyError if there is none."""
    try:
        return _topics_by_slug()[slug]
    except KeyError:
        raise KeyError(f"unknown topic {slug!r}") from None


def is_specialty(slug: str) -> bool:
    """Whether slug names a specialty."""
    return slug in _specialties_by_slug()


def is_topic(slug: str) -> bool:
    """Whether slug names a topic."""
    return slug in _topics_by_slug()


def specialties_for(topics: Iterable[str], named: Iterable[str] = ()) -> tuple[str, ...]:
    """Specialty slugs for a question: the named ones first, then each topic's, deduplicated."""
    # Unknown slugs are skipped rather than raised: events written under an older
    # vocabulary must still match. Validate user input with is_topic/is_specialty.
    by_topic = _topics_by_slug()
    known = _specialties_by_slug()
    found: dict[str, None] = {}
    for slug in named:
        if slug in known:
            found.setdefault(slug)
    for topic_slug in topics:
        topic = by_topic.get(topic_slug)
        if topic is not None:
            for slug in topic.specialties:
                found.setdefault(slug)
    return tuple(found)


def normalize_slug(text: str) -> str:
    """Turn a display name into a slug: "Facial Asymmetry" -> "facial-asymmetry"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    # Apostrophes vanish ("Bell's" -> "bells") and "&" reads as "and" so that
    # display names and slugs agree.
    ascii_text = ascii_text.replace("'", "").replace("&", " and ")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.casefold()).strip("-")


def _words(text: str) -> str:
    # Any run of non-alphanumerics is one space, so hyphens, apostrophes and
    # line breaks in free text match the spaces in aliases.
    return " ".join(normalize_slug(text).split("-"))


@cache
def _topic_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    patterns = []
    for topic in _TOPICS:
        phrases = {_words(p) for p in (topic.slug, topic.name, *topic.aliases)}
        # Longest first so the regex prefers the fullest phrase at a position.
        alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        # An optional plural suffix saves listing "scar"/"scars", "filler"/"fillers".
        pattern = re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?:e?s)?(?![a-z0-9])")
        patterns.append((topic.slug, pattern))
    return tuple(patterns)


def topics_in_text(text: str) -> tuple[str, ...]:
    """Topic slugs whose name or an alias occurs in free text, in order of first mention."""
    words = _words(text)
    hits: list[tuple[int, int, str]] = []
    for order, (slug, pattern) in enumerate(_topic_patterns()):
        match = pattern.search(words)
        if match is not None:
            hits.append((match.start(), order, slug))
    return tuple(slug for _, _, slug in sorted(hits))


def as_dict() -> dict[str, list[dict[str, Any]]]:
    """The vocabulary as served by GET /taxonomy."""
    return {
        "specialties": [
            {"slug": s.slug, "name": s.name, "nucc_code": s.nucc_code} for s in _SPECIALTIES
        ],
        "topics": [
            {"slug": t.slug, "name": t.name, "specialties": list(t.specialties)} for t in _TOPICS
        ],
    }
