"""Hand-written in-memory stores that keep the ports of the service layers.

Each fake keeps the contract of its Redis store: the same guards in the same order,
nothing written when a guard refuses, and every published event kept in `events`.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

from services.answers.store import QUESTION_GUARD, REVISION_GUARD, UNIQUE_GUARD
from services.questions.store import CachedPage, decode_cursor
from services.votes.domain import apply_vote
from services.votes.store import AnswerRef, VoteOutcome
from shared import idempotency, ratelimit
from shared.atomic import CommitResult
from shared.events import (
    AnswerAccepted,
    AnswerEdited,
    AnswerPosted,
    Event,
    ItemKind,
    QuestionEdited,
    QuestionFollowed,
    QuestionPosted,
    QuestionUnfollowed,
    VoteCast,
)
from shared.idempotency import ReplyRecord
from shared.ratelimit import ReadCount, WriteLimit


class _Guards:
    """The guards every fake commit shares: the write limit, then the Idempotency-Key."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.replies: dict[str, str] = {}

    def limit(self, write_limit: WriteLimit, user_id: str, role: str) -> CommitResult | None:
        if not write_limit.applies_to(role):
            return None
        key = write_limit.key(user_id)
        self.counts[key] += 1
        if self.counts[key] > write_limit.writes:
            return CommitResult(False, ratelimit.GUARD, str(write_limit.window_s))
        return None

    def replay(self, reply: ReplyRecord | None) -> CommitResult | None:
        if reply is not None and reply.key in self.replies:
            return CommitResult(False, idempotency.GUARD, self.replies[reply.key])
        return None

    def remember(self, reply: ReplyRecord | None) -> None:
        if reply is not None:
            self.replies[reply.key] = reply.value


class FakeQuestionStore:
    """Questions, their page parts and the topic/specialty indexes, in memory."""

    def __init__(self, tag: str = "{fake}") -> None:
        self.tag = tag
        self.guards = _Guards()
        self.questions: dict[str, dict[str, Any]] = {}
        self.indexes: dict[str, set[str]] = {}
        self.answers: dict[str, dict[str, dict[str, Any]]] = {}
        self.tallies: dict[str, tuple[int, int, int]] = {}
        self.hidden_items: set[tuple[str, str]] = set()
        self.revision_log: dict[str, list[dict[str, Any]]] = {}
        self.revision_markers: set[str] = set()
        # question -> user -> followed at (ms); question -> user -> follow version
        self.follower_sets: dict[str, dict[str, int]] = {}
        self.follow_versions: dict[str, dict[str, int]] = {}
        self.follow_markers: set[str] = set()
        self.events: list[Event] = []
        # The built pages and the page versions every page write bumps.
        self.page_versions: dict[str, int] = {}
        self.built_pages: dict[str, tuple[str, str, bytes]] = {}
        self.reads: dict[str, int] = {}
        # doctor -> (profile version, verified now)
        self.doctors: dict[str, tuple[int, bool]] = {}

    def _changed(self, qid: str) -> None:
        self.page_versions[qid] = self.page_versions.get(qid, 0) + 1

    async def post(
        self,
        doc: dict[str, Any],
        event: QuestionPosted,
        reply: ReplyRecord | None,
        write_limit: WriteLimit,
    ) -> CommitResult:
        refusal = self.guards.limit(write_limit, doc["asker_id"], doc["asker_role"])
        refusal = refusal or self.guards.replay(reply)
        if refusal is not None:
            return refusal
        self.guards.remember(reply)
        member = f"{doc['created_ms']:016d}:{doc['id']}"
        self.questions[doc["id"]] = json.loads(json.dumps(doc))
        keys = ["all", *(f"topic:{t}" for t in doc["topics"])]
        keys += [f"specialty:{s}" for s in doc["specialties"]]
        for key in keys:
            self.indexes.setdefault(key, set()).add(member)
        self.follower_sets[doc["id"]] = {doc["asker_id"]: doc["created_ms"]}
        self.follow_versions[doc["id"]] = {doc["asker_id"]: 1}
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    async def get(self, qid: str) -> dict[str, Any] | None:
        return self.questions.get(qid)

    async def hidden(self, kind: str, item_id: str) -> bool:
        return (kind, item_id) in self.hidden_items

    async def get_many(self, qids: list[str]) -> list[dict[str, Any]]:
        return [self.questions[q] for q in qids if q in self.questions]

    async def page_parts(
        self, qid: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, tuple[int, int]]]:
        doc = self.questions.get(qid)
        if doc is None:
            return None, [], {}
        answers = [
            {**a, "doctor": {**a["doctor"], "verified": self.doctors[a["doctor"]["id"]][1]}}
            if a["doctor"]["id"] in self.doctors
            else a
            for a in self.answers.get(qid, {}).values()
        ]
        tallies = {a["id"]: self.tallies[a["id"]][:2] for a in answers if a["id"] in self.tallies}
        return doc, answers, tallies

    async def answer_counts(self, qids: list[str]) -> list[int]:
        return [
            sum(1 for aid in self.answers.get(q, {}) if ("answer", aid) not in self.hidden_items)
            for q in qids
        ]

    async def set_doctor_verified(self, doctor_id: str, version: int, verified: bool) -> None:
        if version > self.doctors.get(doctor_id, (0, False))[0]:
            self.doctors[doctor_id] = (version, verified)
        for qid, answers in self.answers.items():
            if any(a["doctor"]["id"] == doctor_id for a in answers.values()):
                self._changed(qid)

    async def list_ids(
        self, kind: str, slug: str, after: str | None, count: int
    ) -> tuple[list[str], str | None]:
        key = f"{kind}:{slug}" if slug else kind
        members = sorted(self.indexes.get(key, set()), reverse=True)
        if after is not None:
            members = [m for m in members if m < after]
        page = members[:count]
        next_cursor = None
        if len(page) == count:
            next_cursor = base64.urlsafe_b64encode(page[-1].encode()).decode().rstrip("=")
            decode_cursor(next_cursor)  # the fake's cursors are the store's cursors
        return [m.split(":", 1)[1] for m in page], next_cursor

    async def recent_ids(self, kind: str, slug: str, count: int) -> list[str]:
        ids, _ = await self.list_ids(kind, slug, None, count)
        return ids

    async def cached_page(self, qid: str, read: ReadCount | None) -> CachedPage:
        if read is not None:
            self.reads[read.key] = self.reads.get(read.key, 0) + 1
            if self.reads[read.key] > read.reads:
                return CachedPage("", limited_for_s=read.window_s)
        version = str(self.page_versions.get(qid, 0))
        built = self.built_pages.get(qid)
        if built is None or built[0] != version:
            return CachedPage(version)
        return CachedPage("", built[1], built[2])

    async def keep_page(self, qid: str, version: str, etag: str, body: bytes) -> None:
        self.built_pages[qid] = (version, etag, body)

    async def add_answer(self, event: AnswerPosted) -> None:
        self._changed(event.question_id)
        self.answers.setdefault(event.question_id, {})[event.answer_id] = {
            "id": event.answer_id,
            "question_id": event.question_id,
            "headline": event.headline,
            "body": event.body,
            "created_at": event.created_at.isoformat(),
            "doctor": event.doctor.model_dump(),
        }

    async def edit_answer(self, event: AnswerEdited) -> None:
        answer = self.answers.get(event.question_id, {}).get(event.answer_id)
        if answer is None:
            raise LookupError(f"answer {event.answer_id} not on its page yet")
        self._changed(event.question_id)
        if int(answer.get("revision", 1)) < event.revision:
            answer.update(
                headline=event.headline,
                body=event.body,
                revision=event.revision,
                edited_at=event.edited_at.isoformat(),
            )

    async def edit(
        self, doc: dict[str, Any], revisions: list[dict[str, Any]], event: QuestionEdited
    ) -> CommitResult:
        marker = f"{doc['id']}:{doc['revision']}"
        if marker in self.revision_markers:
            return CommitResult(False, "revision", "1")
        self.revision_markers.add(marker)
        self._changed(doc["id"])
        self.questions[doc["id"]] = json.loads(json.dumps(doc))
        self.revision_log.setdefault(doc["id"], []).extend(revisions)
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    async def revisions(self, qid: str) -> list[dict[str, Any]]:
        return list(self.revision_log.get(qid, []))

    async def has_answers(self, qid: str) -> bool:
        return bool(self.answers.get(qid))

    async def page_answer(self, qid: str, aid: str) -> dict[str, Any] | None:
        return self.answers.get(qid, {}).get(aid)

    async def accept(self, doc: dict[str, Any], event: AnswerAccepted) -> CommitResult:
        self._changed(doc["id"])
        self.questions[doc["id"]] = json.loads(json.dumps(doc))
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    async def set_tally(self, event: VoteCast) -> None:
        self._changed(event.question_id)
        current = self.tallies.get(event.answer_id)
        if current is None or event.tally_version > current[2]:
            self.tallies[event.answer_id] = (event.helpful, event.unhelpful, event.tally_version)

    async def follow_state(self, qid: str, user_id: str, asker_id: str) -> tuple[bool, int]:
        if user_id == asker_id and user_id not in self.follow_versions.get(qid, {}):
            return True, 1  # asked before following existed: as if recorded at the post
        following = user_id in self.follower_sets.get(qid, {})
        return following, self.follow_versions.get(qid, {}).get(user_id, 0)

    async def set_following(
        self,
        qid: str,
        user_id: str,
        at_ms: int,
        event: QuestionFollowed | QuestionUnfollowed,
    ) -> CommitResult:
        if qid not in self.questions:
            return CommitResult(False, "question", "")
        marker = f"{qid}:{user_id}:{event.follow_version}"
        if marker in self.follow_markers:
            return CommitResult(False, "follow", "1")
        self.follow_markers.add(marker)
        followers = self.follower_sets.setdefault(qid, {})
        if isinstance(event, QuestionFollowed):
            followers[user_id] = at_ms
        else:
            followers.pop(user_id, None)
        self.follow_versions.setdefault(qid, {})[user_id] = event.follow_version
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    async def follow_info(self, qid: str, user_id: str | None) -> tuple[int, bool]:
        followers = set(self.follower_sets.get(qid, {}))
        doc = self.questions.get(qid)
        if doc is not None and doc["asker_id"] not in self.follow_versions.get(qid, {}):
            followers.add(doc["asker_id"])  # asked before following existed
        return len(followers), user_id is not None and user_id in followers


class FakeAnswerStore:
    """Answers and the answers service's projections of questions and doctors, in memory."""

    def __init__(self, tag: str = "{fake}") -> None:
        self.tag = tag
        self.guards = _Guards()
        self.questions: dict[str, str] = {}
        self.answers: dict[str, dict[str, Any]] = {}
        self.by_doctor: dict[tuple[str, str], str] = {}
        self.doctors: dict[str, tuple[int, dict[str, Any]]] = {}
        self.revision_log: dict[str, list[dict[str, Any]]] = {}
        self.revision_markers: set[str] = set()
        self.events: list[Event] = []
        self.moderation: dict[str, tuple[int, bool]] = {}

    async def post(
        self,
        answer: dict[str, Any],
        created_ms: int,
        event: AnswerPosted,
        reply: ReplyRecord | None,
    ) -> CommitResult:
        refusal = self.guards.replay(reply)
        if refusal is not None:
            return refusal
        qid, doctor_id = answer["question_id"], answer["doctor"]["id"]
        if qid not in self.questions:
            return CommitResult(False, QUESTION_GUARD, "")
        existing = self.by_doctor.get((qid, doctor_id))
        if existing is not None:
            return CommitResult(False, UNIQUE_GUARD, existing)
        self.guards.remember(reply)
        self.by_doctor[(qid, doctor_id)] = answer["id"]
        self.answers[answer["id"]] = {**answer, "_ms": created_ms}
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    async def edit(
        self, answer: dict[str, Any], revisions: list[dict[str, Any]], event: AnswerEdited
    ) -> CommitResult:
        marker = f"{answer['id']}:{answer['revision']}"
        if marker in self.revision_markers:
            return CommitResult(False, REVISION_GUARD, "1")
        self.revision_markers.add(marker)
        ms = self.answers[answer["id"]]["_ms"]
        self.answers[answer["id"]] = {**answer, "_ms": ms}
        self.revision_log.setdefault(answer["id"], []).extend(revisions)
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    async def revisions(self, aid: str) -> list[dict[str, Any]]:
        return list(self.revision_log.get(aid, []))

    def _public(self, stored: dict[str, Any]) -> dict[str, Any]:
        public = {k: v for k, v in stored.items() if k != "_ms"}
        card = self.doctors.get(public["doctor"]["id"])
        if card is not None:  # the doctor's verification now, as the store shows it
            public["doctor"] = {**public["doctor"], "verified": bool(card[1].get("verified"))}
        return public

    async def get(self, aid: str) -> dict[str, Any] | None:
        stored = self.answers.get(aid)
        return self._public(stored) if stored is not None else None

    async def answers_of(self, qid: str) -> list[dict[str, Any]] | None:
        if qid not in self.questions:
            return None
        mine = [
            a
            for a in self.answers.values()
            if a["question_id"] == qid and not self.moderation.get(a["id"], (0, False))[1]
        ]
        return [self._public(a) for a in sorted(mine, key=lambda a: (a["_ms"], a["id"]))]

    async def is_hidden(self, item_id: str, kind: ItemKind = "answer") -> bool:
        return self.moderation.get(f"{kind}:{item_id}", (0, False))[1]

    async def set_hidden(
        self, item_id: str, version: int, hidden: bool, kind: ItemKind = "answer"
    ) -> None:
        if version > self.moderation.get(f"{kind}:{item_id}", (0, False))[0]:
            self.moderation[f"{kind}:{item_id}"] = (version, hidden)

    async def question_known(self, qid: str) -> bool:
        return qid in self.questions

    async def doctor_card(self, doctor_id: str) -> dict[str, Any] | None:
        entry = self.doctors.get(doctor_id)
        return dict(entry[1]) if entry is not None else None

    async def add_question(self, qid: str, asker_id: str) -> None:
        self.questions.setdefault(qid, asker_id)

    async def set_doctor(self, doctor_id: str, version: int, card: dict[str, Any]) -> None:
        current = self.doctors.get(doctor_id)
        if current is None or version > current[0]:
            self.doctors[doctor_id] = (version, card)


class FakeVoteStore:
    """Votes, tallies and the projection of answers, in memory."""

    def __init__(self) -> None:
        self.answers: dict[str, AnswerRef] = {}
        self.votes: dict[str, dict[str, int]] = {}
        self.tallies: dict[str, tuple[int, int, int]] = {}
        self.events: list[VoteCast] = []
        #: "kind:id" -> (decision version, hidden)
        self.moderation: dict[str, tuple[int, bool]] = {}
        self.writes: dict[str, int] = {}  # per voter; one window that never ends

    def _hidden(self, aid: str, question_id: str) -> bool:
        return any(
            self.moderation.get(key, (0, False))[1]
            for key in (f"answer:{aid}", f"question:{question_id}")
        )

    async def cast(
        self, template: VoteCast, limit: WriteLimit | None = None, voter_role: str = ""
    ) -> VoteOutcome | None:
        aid, voter = template.answer_id, template.voter_id
        if self._hidden(aid, template.question_id):
            return None
        if limit is not None and limit.applies_to(voter_role):
            self.writes[voter] = self.writes.get(voter, 0) + 1
            if self.writes[voter] > limit.writes:
                return VoteOutcome(False, 0, 0, 0, 0, None, limited_for_s=limit.window_s)
        votes = self.votes.setdefault(aid, {})
        previous = votes.get(voter, 0)
        helpful, unhelpful, version = self.tallies.get(aid, (0, 0, 0))
        helpful, unhelpful, changed = apply_vote(previous, template.value, helpful, unhelpful)
        if not changed:
            return VoteOutcome(False, helpful, unhelpful, previous, version, None)
        version += 1
        if template.value == 0:
            votes.pop(voter, None)
        else:
            votes[voter] = template.value
        self.tallies[aid] = (helpful, unhelpful, version)
        event = template.model_copy(
            update={
                "helpful": helpful,
                "unhelpful": unhelpful,
                "previous_value": previous,
                "tally_version": version,
            }
        )
        self.events.append(event)
        return VoteOutcome(True, helpful, unhelpful, previous, version, f"{len(self.events)}-0")

    async def answer(self, aid: str) -> AnswerRef | None:
        return self.answers.get(aid)

    async def tally(
        self, aid: str, question_id: str, voter_id: str | None
    ) -> tuple[int, int, int | None] | None:
        if self._hidden(aid, question_id):
            return None
        helpful, unhelpful, _ = self.tallies.get(aid, (0, 0, 0))
        mine = self.votes.get(aid, {}).get(voter_id, 0) if voter_id is not None else None
        return helpful, unhelpful, mine

    async def add_answer(self, aid: str, question_id: str, doctor_id: str) -> None:
        self.answers[aid] = AnswerRef(question_id, doctor_id)

    async def set_hidden(self, item_id: str, version: int, hidden: bool, kind: ItemKind) -> None:
        if version > self.moderation.get(f"{kind}:{item_id}", (0, False))[0]:
            self.moderation[f"{kind}:{item_id}"] = (version, hidden)
