"""The questions service's pure rules: slugs, routing to specialties, ranking, relatedness."""

from __future__ import annotations

import math

import pytest

from services.questions import domain
from services.questions.domain import UnknownSlugs
from shared import taxonomy
from shared.errors import Invalid


def answer(aid: str, created_at: str = "2026-01-01T00:00:00+00:00") -> dict[str, str]:
    return {"id": aid, "created_at": created_at}


def test_check_slugs_normalises_names_and_drops_repeats_in_order() -> None:
    slugs = domain.check_slugs("topics", ["Botox", "Facial Asymmetry", "botox"], taxonomy.is_topic)
    assert slugs == ["botox", "facial-asymmetry"]


def test_check_slugs_names_every_unknown_value_as_given() -> None:
    with pytest.raises(UnknownSlugs) as caught:
        domain.check_slugs(
            "specialties", ["Astrology", "dermatology", "Wizardry"], taxonomy.is_specialty
        )
    assert isinstance(caught.value, Invalid)
    assert caught.value.code == "unknown_specialties"
    assert caught.value.message == ("unknown specialties: Astrology, Wizardry (see GET /taxonomy)")


def test_specialties_for_puts_named_first_and_deduplicates() -> None:
    result = domain.specialties_for(["botox", "fillers"], named=["neurology", "dermatology"])
    assert result[:2] == ("neurology", "dermatology")
    assert len(set(result)) == len(result)
    expected = {"neurology", *taxonomy.get_topic("botox").specialties}
    expected |= set(taxonomy.get_topic("fillers").specialties)
    assert set(result) == expected


def test_specialties_for_follows_topic_order() -> None:
    assert domain.specialties_for(["tummy-tuck"]) == ("plastic-surgery",)
    result = domain.specialties_for(["bells-palsy", "tummy-tuck"])
    assert result == taxonomy.get_topic("bells-palsy").specialties


def test_specialties_for_skips_unknown_slugs() -> None:
    assert domain.specialties_for(["astrology"], named=["wizardry"]) == ()
    assert domain.specialties_for(["acne", "astrology"]) == taxonomy.get_topic("acne").specialties


def test_wilson_lower_bound_is_zero_without_votes() -> None:
    assert domain.wilson_lower_bound(0, 0) == 0.0


def test_wilson_lower_bound_matches_the_formula() -> None:
    # 8 of 10 helpful at z = 1.96: the textbook value is about 0.4902.
    assert math.isclose(domain.wilson_lower_bound(8, 2), 0.4902, abs_tol=1e-4)


def test_wilson_lower_bound_stays_within_zero_and_one() -> None:
    for helpful in range(0, 30, 7):
        for unhelpful in range(0, 30, 7):
            score = domain.wilson_lower_bound(helpful, unhelpful)
            assert 0.0 <= score <= 1.0


def test_many_votes_beat_a_single_perfect_one() -> None:
    assert domain.wilson_lower_bound(40, 5) > domain.wilson_lower_bound(1, 0)


def test_rank_answers_best_first_with_vote_counts() -> None:
    answers = [answer("a1"), answer("a2"), answer("a3")]
    tallies = {"a1": (1, 0), "a2": (40, 5), "a3": (0, 3)}
    ranked = domain.rank_answers(answers, tallies)
    assert [r.answer["id"] for r in ranked] == ["a2", "a1", "a3"]
    assert (ranked[0].helpful, ranked[0].unhelpful) == (40, 5)
    assert ranked[0].score == domain.wilson_lower_bound(40, 5)


def test_rank_answers_without_votes_keeps_the_earlier_answer_first() -> None:
    answers = [
        answer("late", "2026-01-02T00:00:00+00:00"),
        answer("early", "2026-01-01T00:00:00+00:00"),
    ]
    ranked = domain.rank_answers(answers, {})
    assert [r.answer["id"] for r in ranked] == ["early", "late"]
    assert all(r.score == 0.0 and r.helpful == 0 for r in ranked)


def test_rank_answers_breaks_ties_by_time_then_id() -> None:
    answers = [
        answer("b", "2026-01-01T00:00:00+00:00"),
        answer("late", "2026-01-03T00:00:00+00:00"),
        answer("a", "2026-01-01T00:00:00+00:00"),
    ]
    tallies = {"a": (3, 1), "b": (3, 1), "late": (3, 1)}
    ranked = domain.rank_answers(answers, tallies)
    assert [r.answer["id"] for r in ranked] == ["a", "b", "late"]


def test_words_keeps_content_words_only() -> None:
    assert domain.words("Is there a treatment for my FACE, and the cheek?") == {
        "treatment",
        "face",
        "cheek",
    }


def test_relatedness_counts_topics_first_and_title_words_half() -> None:
    same_topics = domain.relatedness({"botox"}, set(), {"botox"}, set())
    assert same_topics == 1.0
    same_words = domain.relatedness({"botox"}, {"cheek"}, {"acne"}, {"cheek"})
    assert same_words == 0.5
    assert domain.relatedness({"a", "b"}, {"x"}, {"b", "c"}, {"x", "y"}) == pytest.approx(
        1 / 3 + 0.5 * 1 / 2
    )


def test_relatedness_of_unrelated_or_empty_questions_is_zero() -> None:
    assert domain.relatedness({"botox"}, {"cheek"}, {"acne"}, {"scar"}) == 0.0
    assert domain.relatedness(set(), set(), set(), set()) == 0.0


def test_the_same_topics_outrank_the_same_title_words() -> None:
    topic_match = domain.relatedness({"botox"}, {"x"}, {"botox"}, {"y"})
    word_match = domain.relatedness({"botox"}, {"a", "b"}, {"acne"}, {"a", "b"})
    assert topic_match > word_match


def test_public_question_hides_an_anonymous_asker() -> None:
    doc = {
        "id": "q1",
        "anonymous": True,
        "asker_id": "p1",
        "asker_name": "Pat",
        "asker_role": "patient",
    }
    public = domain.public_question(doc)
    assert public["asker"] is None
    assert "p1" not in str(public) and "Pat" not in str(public)


def test_public_question_names_a_signed_asker() -> None:
    doc = {
        "id": "q1",
        "anonymous": False,
        "asker_id": "p1",
        "asker_name": "Pat",
        "asker_role": "patient",
    }
    assert domain.public_question(doc)["asker"] == {"id": "p1", "name": "Pat"}
    assert "asker_role" not in domain.public_question(doc)
