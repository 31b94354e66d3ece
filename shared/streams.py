"""Stream names (the contract) and the consumer groups that read them."""

from __future__ import annotations

QUESTION_POSTED = "askdoc.question-posted"
ANSWER_POSTED = "askdoc.answer-posted"
VOTE_CAST = "askdoc.vote-cast"
DOCTOR_PROFILE_CHANGED = "askdoc.doctor-profile-changed"
NOTIFICATION_SENT = "askdoc.notification-sent"
DEAD_LETTER = "askdoc.dead-letter"
QUESTION_EDITED = "askdoc.question-edited"
ANSWER_EDITED = "askdoc.answer-edited"
ANSWER_ACCEPTED = "askdoc.answer-accepted"
QUESTION_FOLLOWED = "askdoc.question-followed"
QUESTION_UNFOLLOWED = "askdoc.question-unfollowed"
ITEM_FLAGGED = "askdoc.item-flagged"
MODERATION_DECIDED = "askdoc.moderation-decided"

ALL = (
    QUESTION_POSTED,
    ANSWER_POSTED,
    VOTE_CAST,
    DOCTOR_PROFILE_CHANGED,
    NOTIFICATION_SENT,
    DEAD_LETTER,
    QUESTION_EDITED,
    ANSWER_EDITED,
    ANSWER_ACCEPTED,
    QUESTION_FOLLOWED,
    QUESTION_UNFOLLOWED,
    ITEM_FLAGGED,
    MODERATION_DECIDED,
)

# Which service's group reads which stream; used by `askdoc lag` and the deploy files.
CONSUMERS: dict[str, tuple[str, ...]] = {
    "questions": (ANSWER_POSTED, VOTE_CAST, ANSWER_EDITED, ITEM_FLAGGED, MODERATION_DECIDED),
    "answers": (QUESTION_POSTED, DOCTOR_PROFILE_CHANGED, MODERATION_DECIDED),
    "votes": (ANSWER_POSTED,),
    "notify": (
        QUESTION_POSTED,
        ANSWER_POSTED,
        VOTE_CAST,
        ANSWER_ACCEPTED,
        QUESTION_FOLLOWED,
        QUESTION_UNFOLLOWED,
        MODERATION_DECIDED,
    ),
}

# The stream each service publishes to; its keys share that stream's hash slot, so a
# state change and its event commit in one script on Redis Cluster too.
HOME_STREAM: dict[str, str] = {
    "questions": QUESTION_POSTED,
    "answers": ANSWER_POSTED,
    "votes": VOTE_CAST,
    "notify": NOTIFICATION_SENT,
}

# Every stream a service writes to (the dead-letter stream is written by any consumer).
PUBLISHES: dict[str, tuple[str, ...]] = {
    "questions": (
        QUESTION_POSTED,
        QUESTION_EDITED,
        ANSWER_ACCEPTED,
        QUESTION_FOLLOWED,
        QUESTION_UNFOLLOWED,
        ITEM_FLAGGED,
        MODERATION_DECIDED,
    ),
    "answers": (ANSWER_POSTED, ANSWER_EDITED),
    "votes": (VOTE_CAST,),
    "notify": (DOCTOR_PROFILE_CHANGED, NOTIFICATION_SENT),
}


def slot_tag(stream: str) -> str:
    """The hash tag that puts a key in the same Redis Cluster slot as `stream`."""
    return "{" + stream + "}"
