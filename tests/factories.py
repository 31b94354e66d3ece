"""Events as their producers would publish them, for tests that feed a service."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import (
    AnswerPosted,
    DoctorCard,
    DoctorProfileChanged,
    DoctorStatus,
    ItemKind,
    Location,
    ModerationDecided,
    ModerationDecision,
    QuestionPosted,
    VoteCast,
)

ANSWER_BODY = "Botox in the depressor muscles can soften the pull on the stronger side of the face."


def question_posted(qid: str, asker_id: str = "pat") -> QuestionPosted:
    """The seed question, posted by `asker_id`."""
    return QuestionPosted(
        correlation_id="c",
        producer="questions",
        question_id=qid,
        title="Is there an injection that can pull my cheek towards my ear?",
        body="My face is asymmetrical.",
        topics=["facial-asymmetry"],
        specialties=["plastic-surgery"],
        asker_id=asker_id,
    )


def answer_posted(qid: str, aid: str, doctor_id: str = "doc1", minute: int = 0) -> AnswerPosted:
    """An answer to `qid` by `doctor_id`, created `minute` minutes into 2026."""
    return AnswerPosted(
        correlation_id="c",
        producer="answers",
        answer_id=aid,
        question_id=qid,
        headline=None,
        body=ANSWER_BODY,
        doctor=DoctorCard(id=doctor_id, name="Dr A", credentials="MD"),
        created_at=datetime(2026, 1, 1, 0, minute, tzinfo=UTC),
    )


def doctor_profile_changed(
    doctor_id: str,
    version: int = 1,
    name: str = "Jon A. Perlman",
    status: DoctorStatus | None = "verified",
) -> DoctorProfileChanged:
    """A plastic surgeon's profile in Beverly Hills (verified unless `status` says otherwise)."""
    return DoctorProfileChanged(
        correlation_id="c",
        producer="notify",
        doctor_id=doctor_id,
        name=name,
        credentials="MD, FACS",
        specialties=["plastic-surgery", "facial-plastic-surgery"],
        location=Location(city="Beverly Hills", state="CA", zip="90210", lat=34.09, lon=-118.41),
        radius_km=50,
        rating=4.9,
        review_count=187,
        status=status,
        profile_version=version,
    )


def vote_cast(
    qid: str, aid: str, doctor_id: str, helpful: int, unhelpful: int, version: int
) -> VoteCast:
    """The tally of `aid` after a helpful vote, at `version`."""
    return VoteCast(
        correlation_id="c",
        producer="votes",
        answer_id=aid,
        question_id=qid,
        doctor_id=doctor_id,
        voter_id="v",
        value=1,
        previous_value=0,
        helpful=helpful,
        unhelpful=unhelpful,
        tally_version=version,
    )


def moderation_decided(
    item_kind: ItemKind,
    item_id: str,
    decision: ModerationDecision,
    version: int,
    qid: str = "q1",
) -> ModerationDecided:
    """An admin's decision `version` on a question or an answer of `qid`."""
    return ModerationDecided(
        correlation_id="c",
        producer="questions",
        item_kind=item_kind,
        item_id=item_id,
        question_id=qid,
        author_id="p1",
        decision=decision,
        reason="spam",
        decision_version=version,
    )
