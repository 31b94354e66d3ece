import json
from importlib.resources import files
from pathlib import Path

import pytest

from shared import taxonomy

SEED = Path("/work/shared/seed/seed-page.json")

SEED_TOPICS = (
    "facial-asymmetry",
    "botox",
    "fillers",
    "injections",
    "sculptra",
    "fat-transfer",
    "implants",
    "pdo-threads",
    "orthognathic-surgery",
    "muscle-imbalance",
)


def test_seed_topics_are_in_the_vocabulary() -> None:
    for slug in SEED_TOPICS:
        assert taxonomy.is_topic(slug), slug
        assert taxonomy.get_topic(slug).slug == slug


@pytest.mark.skipif(not SEED.exists(), reason="seed page not available")
def test_seed_page_topic_mentions_normalise_to_topics() -> None:
    mentions = json.loads(SEED.read_text())["question"]["topics_mentioned"]
    assert {taxonomy.normalize_slug(m) for m in mentions} == set(SEED_TOPICS)


@pytest.mark.skipif(not SEED.exists(), reason="seed page not available")
def test_seed_doctors_specialties_and_codes_are_in_the_vocabulary() -> None:
    doctors = [a["doctor"] for a in json.loads(SEED.read_text())["answers_in_page_order"]]
    codes = {s.nucc_code: s.slug for s in taxonomy.specialties()}
    for doctor in doctors:
        if doctor["nucc_code"] is None:
            assert taxonomy.is_specialty("physician")
        else:
            assert doctor["nucc_code"] in codes, doctor["name"]


@pytest.mark.parametrize(
    ("slug", "code"),
    [
        ("plastic-surgery", "208200000X"),
        ("dermatology", "207N00000X"),
        ("facial-plastic-surgery", "207YS0123X"),
        ("procedural-dermatology", "207NS0135X"),
    ],
)
def test_architecture_nucc_codes_are_exact(slug: str, code: str) -> None:
    assert taxonomy.get_specialty(slug).nucc_code == code


def test_nucc_codes_are_well_formed_and_unique() -> None:
    codes = [s.nucc_code for s in taxonomy.specialties()]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert len(code) == 10 and code.endswith("X") and code[:9].isalnum(), code


def test_slugs_are_unique_and_normalised() -> None:
    specialty_slugs = [s.slug for s in taxonomy.specialties()]
    topic_slugs = [t.slug for t in taxonomy.topics()]
    assert len(set(specialty_slugs)) == len(specialty_slugs)
    assert len(set(topic_slugs)) == len(topic_slugs)
    for slug in specialty_slugs + topic_slugs:
        assert taxonomy.normalize_slug(slug) == slug


def test_every_topic_maps_to_known_specialties() -> None:
    for topic in taxonomy.topics():
        assert topic.specialties, topic.slug
        assert len(set(topic.specialties)) == len(topic.specialties), topic.slug
        for slug in topic.specialties:
            assert taxonomy.is_specialty(slug), (topic.slug, slug)


def test_every_specialty_is_reached_by_some_topic() -> None:
    reached = {slug for topic in taxonomy.topics() for slug in topic.specialties}
    assert reached == {s.slug for s in taxonomy.specialties()}


def test_facial_asymmetry_maps_to_face_specialties() -> None:
    specialties = taxonomy.get_topic("facial-asymmetry").specialties
    for slug in (
        "plastic-surgery",
        "facial-plastic-surgery",
        "dermatology",
        "procedural-dermatology",
        "oral-and-maxillofacial-surgery",
    ):
        assert slug in specialties


def test_bells_palsy_includes_neurology() -> None:
    assert "neurology" in taxonomy.get_topic("bells-palsy").specialties


def test_unknown_slugs_raise_key_error() -> None:
    assert not taxonomy.is_topic("astrology")
    assert not taxonomy.is_specialty("astrology")
    with pytest.raises(KeyError, match="unknown topic 'astrology'"):
        taxonomy.get_topic("astrology")
    with pytest.raises(KeyError, match="unknown specialty 'astrology'"):
        taxonomy.get_specialty("astrology")


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Facial Asymmetry", "facial-asymmetry"),
        ("PDO threads", "pdo-threads"),
        ("  Sculptra ", "sculptra"),
        ("Bell's palsy", "bells-palsy"),
        ("Oral & Maxillofacial Surgery", "oral-and-maxillofacial-surgery"),
        ("laser--resurfacing!", "laser-resurfacing"),
        ("Rosácea", "rosacea"),
    ],
)
def test_normalize_slug(text: str, slug: str) -> None:
    assert taxonomy.normalize_slug(text) == slug


def test_as_dict_has_the_taxonomy_endpoint_shape() -> None:
    data = taxonomy.as_dict()
    assert set(data) == {"specialties", "topics"}
    assert len(data["specialties"]) == len(taxonomy.specialties())
    assert len(data["topics"]) == len(taxonomy.topics())
    for specialty in data["specialties"]:
        assert set(specialty) == {"slug", "name", "nucc_code"}
    for topic in data["topics"]:
        assert set(topic) == {"slug", "name", "specialties"}
        assert isinstance(topic["specialties"], list)
    assert {"slug": "dermatology", "name": "Dermatology", "nucc_code": "207N00000X"} in data[
        "specialties"
    ]
    json.dumps(data)


def test_the_vocabulary_ships_as_a_data_file() -> None:
    text = files("shared").joinpath("taxonomy.toml").read_text(encoding="utf-8")
    assert taxonomy.parse(text) == taxonomy.vocabulary()


def test_a_topic_naming_an_unknown_specialty_is_refused() -> None:
    text = """
[[specialties]]
slug = "dermatology"
name = "Dermatology"
nucc_code = "207N00000X"

[[topics]]
slug = "acne"
name = "Acne"
specialties = ["dermatology", "wizardry"]
"""
    with pytest.raises(ValueError, match="wizardry"):
        taxonomy.parse(text)


def test_a_slug_listed_twice_is_refused() -> None:
    entry = '[[specialties]]\nslug = "dermatology"\nname = "D"\nnucc_code = "207N00000X"\n'
    with pytest.raises(ValueError, match="twice"):
        taxonomy.parse("topics = []\n" + entry + entry)
