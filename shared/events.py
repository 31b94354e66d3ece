"""Integration events: the wire contract between askdoc services and internal teams.

Every stream entry is one field, ``__data__``, holding the event as plain JSON, so any
Redis client can read it (``XRANGE askdoc.question-posted - +``). Events only grow by
optional fields; a breaking change is a new ``schema_version``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared import streams

WIRE_FIELD = "__data__"


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class Location(BaseModel):
    """A geocoded place: a US ZIP code, a city and state, and coordinates."""

    model_config = ConfigDict(frozen=True)

    city: str | None = Field(None, description="City name")
    state: str | None = Field(None, description="Two-letter US state code")
    zip: str | None = Field(None, description="Five-digit US ZIP code")
    lat: float = Field(description="Latitude, degrees", ge=-90, le=90)
    lon: float = Field(description="Longitude, degrees", ge=-180, le=180)


class DoctorCard(BaseModel):
    """A doctor's public card as shown beside an answer (no contact data)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Directory id of the doctor (the JWT `sub`)")
    name: str = Field(description="Display name, e.g. 'Jon A. Perlman'")
    credentials: str = Field("", description="e.g. 'MD, FACS'")
    specialty: str | None = Field(None, description="Primary specialty slug")
    city: str | None = Field(None, description="Practice city")
    state: str | None = Field(None, description="Practice state")
    rating: float | None = Field(None, description="Star rating, 0-5")
    review_count: int = Field(0, description="Number of reviews behind the rating")
    verified: bool = Field(
        False, description="An admin verified the doctor's NPI and licence (absent: not verified)"
    )


class Event(BaseModel):
    """Envelope fields every integration event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    stream: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique id of the event")
    event_type: str = Field(description="The event's name, e.g. 'question-posted'")
    schema_version: Literal[1] = Field(1, description="Wire version; a breaking change bumps it")
    occurred_at: AwareDatetime = Field(default_factory=utcnow, description="When it happened (UTC)")
    correlation_id: str = Field(description="Id of the request or event that caused this one")
    producer: str = Field(description="The service that published it")
    traceparent: str | None = Field(
        None,
        description="W3C trace context (https://www.w3.org/TR/trace-context/) of the span "
        "that published it, when the producer traces; absent otherwise",
    )

    def to_wire(self) -> dict[str, str]:
        """The stream entry fields for this event."""
        # Without a trace the entry stays as it was before the field existed.
        exclude = {"traceparent"} if self.traceparent is None else None
        return {WIRE_FIELD: self.model_dump_json(exclude=exclude)}


class QuestionPosted(Event):
    """A patient posted a question."""

    stream: ClassVar[str] = streams.QUESTION_POSTED

    event_type: Literal["question-posted"] = Field(
        "question-posted", description="The event's name"
    )
    question_id: str = Field(description="Id of the new question")
    title: str = Field(description="Question title")
    body: str = Field(description="Question text")
    topics: list[str] = Field(description="Topic slugs from the taxonomy")
    specialties: list[str] = Field(
        description="Specialty slugs the question calls for (named ones and those of its topics)"
    )
    location: Location | None = Field(None, description="Where the asker is, geocoded")
    asker_id: str = Field(
        description="Internal id of the asker, for their own notifications; never shown publicly"
    )
    anonymous: bool = Field(False, description="The asker chose not to be shown")
    urgent: bool = Field(False, description="Red-flag triage found signs of an emergency")
    red_flags: list[str] = Field(default_factory=list, description="Names of the triage rules hit")


class AnswerPosted(Event):
    """A doctor answered a question."""

    stream: ClassVar[str] = streams.ANSWER_POSTED

    event_type: Literal["answer-posted"] = Field("answer-posted", description="The event's name")
    answer_id: str = Field(description="Id of the new answer")
    question_id: str = Field(description="The question answered")
    headline: str | None = Field(None, description="Optional short headline of the answer")
    body: str = Field(description="Answer text (plain text; markup is not interpreted)")
    doctor: DoctorCard = Field(description="The answering doctor's public card")
    created_at: AwareDatetime = Field(description="When the answer was posted")


class VoteCast(Event):
    """A reader voted an answer helpful or unhelpful, changed or retracted a vote."""

    stream: ClassVar[str] = streams.VOTE_CAST

    event_type: Literal["vote-cast"] = Field("vote-cast", description="The event's name")
    answer_id: str = Field(description="The answer voted on")
    question_id: str = Field(description="The answer's question")
    doctor_id: str = Field(description="The answer's author")
    voter_id: str = Field(description="Who voted (internal id)")
    value: Literal[1, 0, -1] = Field(description="1 helpful, -1 unhelpful, 0 retracted")
    previous_value: Literal[1, 0, -1] = Field(0, description="The voter's vote before this one")
    helpful: int = Field(ge=0, description="Helpful votes on the answer after this vote")
    unhelpful: int = Field(ge=0, description="Unhelpful votes on the answer after this vote")
    tally_version: int = Field(
        ge=1, description="Increases with every change of the answer's tally; newest wins"
    )


DoctorStatus = Literal["pending", "verified", "suspended"]


class DoctorProfileChanged(Event):
    """A doctor's directory profile was created or changed (public fields only)."""

    stream: ClassVar[str] = streams.DOCTOR_PROFILE_CHANGED

    event_type: Literal["doctor-profile-changed"] = Field(
        "doctor-profile-changed", description="The event's name"
    )
    doctor_id: str = Field(description="Directory id of the doctor")
    name: str = Field(description="Display name")
    credentials: str = Field("", description="e.g. 'MD, FACS'")
    specialties: list[str] = Field(description="Specialty slugs")
    location: Location = Field(description="Practice location")
    radius_km: float = Field(description="Alert radius")
    rating: float | None = Field(None, description="Star rating, 0-5")
    review_count: int = Field(0, description="Number of reviews")
    status: DoctorStatus | None = Field(
        None,
        description="Verification status: only a verified doctor is alerted and may answer; "
        "absent (from producers before verification existed) reads as pending",
    )
    profile_version: int = Field(ge=1, description="Increases with every change; newest wins")


NotificationKind = Literal[
    "question-match",
    "new-answer",
    "answer-voted",
    "digest",
    "channel-off",
    "answer-accepted",
    "item-hidden",
    "item-restored",
]


class NotificationSent(Event):
    """A notification was put in a recipient's inbox (and handed to their channels)."""

    stream: ClassVar[str] = streams.NOTIFICATION_SENT

    event_type: Literal["notification-sent"] = Field(
        "notification-sent", description="The event's name"
    )
    notification_id: str = Field(description="Id of the notification; the idempotency key")
    recipient_id: str = Field(description="Who it is for")
    kind: NotificationKind = Field(description="What it is about")
    question_id: str | None = Field(None, description="The question it concerns")
    answer_id: str | None = Field(None, description="The answer it concerns, if any")
    channels: list[str] = Field(description="Channels it goes to: inbox, stream, webhook, email")
    reason: dict[str, Any] = Field(
        default_factory=dict, description="Why: matched specialty, distance_km, rank, ..."
    )
    urgent: bool = Field(False, description="Bypassed quiet hours as an emergency")


class DeadLetter(Event):
    """A stream entry a consumer gave up on, with why."""

    stream: ClassVar[str] = streams.DEAD_LETTER

    event_type: Literal["dead-letter"] = Field("dead-letter", description="The event's name")
    source_stream: str = Field(description="The stream the entry came from")
    entry_id: str = Field(description="The entry's id in that stream")
    group: str = Field(description="The consumer group that failed it")
    consumer: str = Field(description="The consumer that dead-lettered it")
    fields: dict[str, str] = Field(description="The entry's fields as received (truncated)")
    error: str = Field(description="Why it failed")
    delivery_count: int = Field(description="How many times it was delivered")


class QuestionEdited(Event):
    """The asker edited their question (allowed until it has an answer); no one is re-alerted."""

    stream: ClassVar[str] = streams.QUESTION_EDITED

    event_type: Literal["question-edited"] = Field(
        "question-edited", description="The event's name"
    )
    question_id: str = Field(description="The question edited")
    title: str = Field(description="Question title after the edit")
    body: str = Field(description="Question text after the edit")
    revision: int = Field(ge=2, description="Revision number after the edit (1 is the original)")
    edited_at: AwareDatetime = Field(description="When the edit was made")


class AnswerEdited(Event):
    """A doctor edited their answer; the page shows the new text, no one is re-alerted."""

    stream: ClassVar[str] = streams.ANSWER_EDITED

    event_type: Literal["answer-edited"] = Field("answer-edited", description="The event's name")
    answer_id: str = Field(description="The answer edited")
    question_id: str = Field(description="The answer's question")
    doctor_id: str = Field(description="The answer's author, who edited it")
    headline: str | None = Field(None, description="Headline after the edit, if any")
    body: str = Field(description="Answer text after the edit (plain text)")
    revision: int = Field(ge=2, description="Revision number after the edit (1 is the original)")
    edited_at: AwareDatetime = Field(description="When the edit was made")


class AnswerAccepted(Event):
    """The asker marked an answer "most helpful to me" (a new pick replaces the old one)."""

    stream: ClassVar[str] = streams.ANSWER_ACCEPTED

    event_type: Literal["answer-accepted"] = Field(
        "answer-accepted", description="The event's name"
    )
    question_id: str = Field(description="The question")
    answer_id: str = Field(description="The answer the asker picked")
    doctor_id: str = Field(description="The picked answer's author, who is told")
    previous_answer_id: str | None = Field(
        None, description="The answer picked before, if the asker changed their pick"
    )


class QuestionFollowed(Event):
    """A signed-in user follows a question (the asker follows from the start, unannounced)."""

    stream: ClassVar[str] = streams.QUESTION_FOLLOWED

    event_type: Literal["question-followed"] = Field(
        "question-followed", description="The event's name"
    )
    question_id: str = Field(description="The question followed")
    user_id: str = Field(description="Who follows it (the JWT `sub`); they hear of new answers")
    follow_version: int = Field(
        ge=1,
        description="Per (question, user) counter of follow changes: a consumer keeps the "
        "highest, so a late or redelivered event never undoes a newer one",
    )


class QuestionUnfollowed(Event):
    """A user stopped following a question (the asker too: they then hear of no new answer)."""

    stream: ClassVar[str] = streams.QUESTION_UNFOLLOWED

    event_type: Literal["question-unfollowed"] = Field(
        "question-unfollowed", description="The event's name"
    )
    question_id: str = Field(description="The question unfollowed")
    user_id: str = Field(description="Who stopped following it (the JWT `sub`)")
    follow_version: int = Field(
        ge=2,
        description="Per (question, user) counter of follow changes (see question-followed)",
    )


ItemKind = Literal["question", "answer"]
FlagReason = Literal["spam", "unsafe-medical-advice", "harassment", "other"]


class ItemFlagged(Event):
    """A signed-in user flagged a question or an answer for the moderators (never who)."""

    stream: ClassVar[str] = streams.ITEM_FLAGGED

    event_type: Literal["item-flagged"] = Field("item-flagged", description="The event's name")
    item_kind: ItemKind = Field(description="What was flagged")
    item_id: str = Field(description="Id of the question or answer flagged")
    question_id: str = Field(description="The question (itself, or the answer's question)")
    reason: FlagReason = Field(description="The reporter's reason category")
    note: str | None = Field(
        None, description="The reporter's optional short note, for moderators only"
    )
    counts: dict[FlagReason, int] = Field(
        description="Flags on the item per reason after this one (one per reporter)"
    )
    flag_count: int = Field(
        ge=1, description="All flags on the item after this one; increases by one; newest wins"
    )
    first_flagged_at: AwareDatetime = Field(description="When the item was first flagged")


ModerationDecision = Literal["hidden", "restored"]


class ModerationDecided(Event):
    """An admin hid a flagged item from pages and listings, or restored it."""

    stream: ClassVar[str] = streams.MODERATION_DECIDED

    event_type: Literal["moderation-decided"] = Field(
        "moderation-decided", description="The event's name"
    )
    item_kind: ItemKind = Field(description="What was decided on")
    item_id: str = Field(description="Id of the question or answer")
    question_id: str = Field(description="The question (itself, or the answer's question)")
    author_id: str = Field(
        description="The item's author (asker or doctor), who is told; never a reporter"
    )
    decision: ModerationDecision = Field(description="hidden: off pages and listings; restored")
    reason: FlagReason = Field(description="The reason category the decision gives the author")
    decision_version: int = Field(
        ge=1, description="Increases with every decision on the item; newest wins"
    )


AnyEvent = Annotated[
    QuestionPosted
    | AnswerPosted
    | VoteCast
    | DoctorProfileChanged
    | NotificationSent
    | DeadLetter
    | QuestionEdited
    | AnswerEdited
    | AnswerAccepted
    | QuestionFollowed
    | QuestionUnfollowed
    | ItemFlagged
    | ModerationDecided,
    Field(discriminator="event_type"),
]

EVENT_TYPES: tuple[type[Event], ...] = (
    QuestionPosted,
    AnswerPosted,
    VoteCast,
    DoctorProfileChanged,
    NotificationSent,
    DeadLetter,
    QuestionEdited,
    AnswerEdited,
    AnswerAccepted,
    QuestionFollowed,
    QuestionUnfollowed,
    ItemFlagged,
    ModerationDecided,
)
EVENT_BY_STREAM: dict[str, type[Event]] = {cls.stream: cls for cls in EVENT_TYPES}
