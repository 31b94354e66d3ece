"""Redis persistence of the questions service (all keys share one hash slot tag)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json
from redis.exceptions import ExecAbortError, OutOfMemoryError, RedisError

from shared import idempotency
from shared.atomic import CommitResult, Committer, Txn
from shared.events import (
    AnswerAccepted,
    AnswerEdited,
    AnswerPosted,
    QuestionEdited,
    QuestionFollowed,
    QuestionPosted,
    QuestionUnfollowed,
    VoteCast,
)
from shared.idempotency import ReplyRecord
from shared.logging import get_logger
from shared.lua import script
from shared.ratelimit import ReadCount, WriteLimit
from shared.redis import RedisClient

from .moderation.store import page_version_key, visibility_key

#: Most index entries one listing request reads (in batches of LIST_BATCH): a filter that
#: matches rarely returns what it found and a cursor to go on, not a walk of the index.
LIST_SCAN_LIMIT = 400
LIST_BATCH = 100
#: Most candidate questions `/related` reads, shared among the question's topics.
RELATED_CANDIDATES = 200
REVISION_GUARD = "revision"
#: How long a revision marker guards against a racing edit of the same revision.
REVISION_MARKER_TTL_S = 3600
FOLLOW_GUARD = "follow"
#: How long a built page is kept after it was last built (a page read again is rebuilt).
PAGE_CACHE_TTL_S = 86_400


def index_member(doc: dict[str, Any]) -> str:
    """A question's member in the lexically sorted indexes: newest sorts last."""
    return f"{doc['created_ms']:016d}:{doc['id']}"


def index_entry(kind: str, slug: str, member: str) -> str:
    """A question's entry in the one index: its listing (kind and slug), then its member.

    Every listing (all questions, a topic's, a specialty's) is a prefix of one sorted set,
    read by lexical range: a question's post adds its entries in one ZADD on one key,
    where one key per listing took a ZADD each (12 for a question with two topics).
    """
    return f"{kind}:{slug}:{member}"


def encode_cursor(member: str) -> str:
    """The opaque cursor that continues a listing after `member`."""
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The index member a cursor points after; ValueError if it is not ours."""
    padded = cursor + "=" * (-len(cursor) % 4)
    member = base64.urlsafe_b64decode(padded.encode()).decode()
    if ":" not in member or not member.split(":", 1)[0].isdigit():
        raise ValueError("bad cursor")
    return member


log = get_logger("askdoc.questions")

#: After readiness, `migrate_indexes` runs again at these delays (s; ~30 min in all):
#: replicas of the version before the one index post to the former keys until a rolling
#: deploy has replaced them.
MIGRATE_AGAIN_AFTER_S = (30.0, 60.0, 120.0, 240.0, 480.0, 960.0)
#: The value of the migration marker once a pass found nothing left to move.
MIGRATED = "done"


def _glob_escape(text: str) -> str:
    """`text` matched literally by a SCAN pattern (the tag's braces are no glob, but [ is)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True)
class CachedPage:
    """What a page read found: the built page if current, else the version to build."""

    version: str
    etag: str | None = None
    body: bytes | None = None
    #: Set when the anonymous reader is over its limit: seconds until the window ends.
    limited_for_s: int | None = None


def _document(doc: dict[str, Any]) -> str:
    """A question as stored: its JSON by pydantic-core's encoder (a quarter of json.dumps's
    time on a question's post; compact, UTF-8, read back by json.loads as before)."""
    return to_json(doc).decode()


class QuestionStore:
    """Questions, the page read model (answers and tallies) and the topic indexes.

    The page is also kept built (JSON bytes and their ETag) beside the version it was
    built from; every write that changes the page bumps the version in its own
    transaction, so a page built from older parts is never served as current.
    """

    def __init__(self, redis: RedisClient, committer: Committer, tag: str, maxlen: int) -> None:
        self.redis = redis
        self.committer = committer
        self.tag = tag
        self.maxlen = maxlen
        self._read_page = redis.register_script(script("services.questions", "read_page.lua"))
        self._follow_info = redis.register_script(script("services.questions", "follow_info.lua"))
        self._move_index = redis.register_script(script("services.questions", "move_index.lua"))
        self._finish_migration = redis.register_script(
            script("services.questions", "finish_migration.lua")
        )

    def _q(self, qid: str) -> str:
        return f"{self.tag}:q:{qid}"

    def _answers(self, qid: str) -> str:
        return f"{self.tag}:q:{qid}:answers"

    def _revisions(self, qid: str) -> str:
        return f"{self.tag}:q:{qid}:revisions"

    def _followers(self, qid: str) -> str:
        # who follows now, scored by when they (last) followed, epoch ms
        return f"{self.tag}:q:{qid}:followers"

    def _follow_versions(self, qid: str) -> str:
        # user -> how many follow changes they made (the asker starts at 1, following; a
        # question from before following has no entry for its asker: see follow_state)
        return f"{self.tag}:q:{qid}:follow-ver"

    def _page(self, qid: str) -> str:
        return f"{self.tag}:q:{qid}:page"

    def _page_version(self, qid: str) -> str:
        return page_version_key(self.tag, qid)

    def _tally(self, aid: str) -> str:
        return f"{self.tag}:tally:{aid}"

    def _doctor(self, doctor_id: str) -> str:
        # the doctor's verification now (from doctor-profile-changed): `verified`, version
        return f"{self.tag}:doctor:{doctor_id}"

    def _doctor_questions(self, doctor_id: str) -> str:
        # the questions a doctor answered: their pages change when the doctor's status does
        return f"{self.tag}:doctor:{doctor_id}:questions"

    def _index(self) -> str:
        # every listing's entries, by prefix (index_entry)
        return f"{self.tag}:idx"

    def _migration_marker(self) -> str:
        # MIGRATED once a pass found no former key (outside the idx* names on purpose)
        return f"{self.tag}:index-migrated"

    def _former_index(self, kind: str, slug: str = "") -> str:
        # one key per listing, before the one index (migrate_indexes moves them)
        return f"{self.tag}:idx:{kind}:{slug}" if slug else f"{self.tag}:idx:{kind}"

    async def post(
        self,
        doc: dict[str, Any],
        event: QuestionPosted,
        reply: ReplyRecord | None,
        write_limit: WriteLimit,
    ) -> CommitResult:
        """Store a question, index it and publish its event in one atomic step.

        Guards, in order: the asker's write limit, the Idempotency-Key (a repeat replays).
        """
        txn = write_limit.add_to(Txn(), doc["asker_id"], doc["asker_role"])
        if reply is not None:
            txn.absent(idempotency.GUARD, reply.key, reply.value, reply.ttl_s)
        member = index_member(doc)
        txn.call("SET", self._q(doc["id"]), _document(doc))
        entries = [index_entry("all", "", member)]
        entries += [index_entry("topic", topic, member) for topic in doc["topics"]]
        entries += [index_entry("specialty", slug, member) for slug in doc["specialties"]]
        txn.call("ZADD", self._index(), *[part for entry in entries for part in (0, entry)])
        # The asker follows their question from the start (no question-followed event:
        # question-posted names the asker).
        txn.call("ZADD", self._followers(doc["id"]), doc["created_ms"], doc["asker_id"])
        txn.call("HSET", self._follow_versions(doc["id"]), doc["asker_id"], 1)
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def edit(
        self, doc: dict[str, Any], revisions: list[dict[str, Any]], event: QuestionEdited
    ) -> CommitResult:
        """Store an edited question, append its revision(s), publish question-edited atomically.

        The guard is the revision number: of two edits racing for one revision, one lands.
        """
        txn = Txn()
        marker = f"{self._q(doc['id'])}:rev:{doc['revision']}"
        txn.absent(REVISION_GUARD, marker, "1", REVISION_MARKER_TTL_S)
        txn.call("SET", self._q(doc["id"]), _document(doc))
        for revision in revisions:
            txn.call("RPUSH", self._revisions(doc["id"]), json.dumps(revision))
        txn.call("INCR", self._page_version(doc["id"]))
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def revisions(self, qid: str) -> list[dict[str, Any]]:
        """A question's stored revisions, oldest first (empty if never edited)."""
        return [json.loads(r) for r in await self.redis.lrange(self._revisions(qid), 0, -1)]

    async def accept(self, doc: dict[str, Any], event: AnswerAccepted) -> CommitResult:
        """Store the asker's pick on the question and publish answer-accepted atomically."""
        txn = Txn().call("SET", self._q(doc["id"]), _document(doc))
        txn.call("INCR", self._page_version(doc["id"]))
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def follow_state(self, qid: str, user_id: str, asker_id: str) -> tuple[bool, int]:
        """Whether a user follows a question now, and their follow changes so far.

        The asker of a question posted before following existed has no record: they follow
        from the start at version 1, as if the post had recorded it (as it does now), so
        their first change records version 2, as anyone's first unfollow does.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(self._followers(qid), user_id)
        pipe.hget(self._follow_versions(qid), user_id)
        score, version = await pipe.execute()
        if version is None and user_id == asker_id:
            return True, 1
        return score is not None, int(version or 0)

    async def set_following(
        self,
        qid: str,
        user_id: str,
        at_ms: int,
        event: QuestionFollowed | QuestionUnfollowed,
    ) -> CommitResult:
        """Follow or unfollow (as the event says) and publish the event, atomically.

        The guard is the follow version: of two changes racing from one state, one lands.
        """
        version = event.follow_version
        marker = f"{self._q(qid)}:follow:{user_id}:{version}"
        txn = Txn().present("question", self._q(qid))
        txn.absent(FOLLOW_GUARD, marker, "1", REVISION_MARKER_TTL_S)
        if isinstance(event, QuestionFollowed):
            txn.call("ZADD", self._followers(qid), at_ms, user_id)
        else:
            txn.call("ZREM", self._followers(qid), user_id)
        txn.call("HSET", self._follow_versions(qid), user_id, version)
        txn.call("INCR", self._page_version(qid))  # the page shows follower_count
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def follow_info(self, qid: str, user_id: str | None) -> tuple[int, bool]:
        """How many follow a question, and whether `user_id` (if any) is one of them.

        One read-only script, so the asker of a question posted before following existed
        is counted as following (follow_info.lua) without a second round trip.
        """
        keys = [self._q(qid), self._followers(qid), self._follow_versions(qid)]
        count, following = await self._follow_info(keys=keys, args=[user_id or ""])
        return int(count), bool(int(following))

    async def page_answer(self, qid: str, aid: str) -> dict[str, Any] | None:
        """One answer as its question's page shows it, or None if not there."""
        raw = await self.redis.hget(self._answers(qid), aid)
        return json.loads(raw) if raw else None

    async def has_answers(self, qid: str) -> bool:
        """Whether any answer has reached the question's page."""
        return bool(await self.redis.hlen(self._answers(qid)))

    async def hidden(self, kind: str, item_id: str) -> bool:
        """Whether moderators hid the question or answer."""
        return bool(await self.redis.hexists(visibility_key(self.tag, kind), item_id))

    async def get(self, qid: str) -> dict[str, Any] | None:
        """A stored question (hidden or not), or None."""
        raw = await self.redis.get(self._q(qid))
        return json.loads(raw) if raw else None

    async def get_many(self, qids: list[str]) -> list[dict[str, Any]]:
        """Stored questions in the given order, skipping missing and hidden ones."""
        if not qids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget([self._q(q) for q in qids])
        pipe.hmget(visibility_key(self.tag, "question"), qids)
        raws, hidden = await pipe.execute()
        return [json.loads(r) for r, h in zip(raws, hidden, strict=True) if r and not h]

    async def answer_counts(self, qids: list[str]) -> list[int]:
        """How many answers each question's page shows (hidden ones left out), in order.

        Two round trips for the whole listing: the answer ids of every page, then which
        of them moderators hid (the page itself leaves those out, so its count does).
        """
        if not qids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for qid in qids:
            pipe.hkeys(self._answers(qid))
        per_question: list[list[str]] = await pipe.execute()
        every = [aid for aids in per_question for aid in aids]
        if not every:
            return [0] * len(qids)
        hidden = await self.redis.hmget(visibility_key(self.tag, "answer"), every)
        gone = {aid for aid, h in zip(every, hidden, strict=True) if h}
        return [sum(1 for aid in aids if aid not in gone) for aids in per_question]

    async def page_parts(
        self, qid: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, tuple[int, int]]]:
        """A question, its answers and their tallies, in two round trips.

        A hidden question reads as missing, and hidden answers are left out.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._q(qid))
        pipe.hvals(self._answers(qid))
        pipe.hget(visibility_key(self.tag, "question"), qid)
        raw, answer_raws, hidden = await pipe.execute()
        if not raw or hidden:
            return None, [], {}
        answers = [json.loads(a) for a in answer_raws]
        tallies: dict[str, tuple[int, int]] = {}
        if answers:
            doctors = list(dict.fromkeys(a["doctor"]["id"] for a in answers))
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(visibility_key(self.tag, "answer"), [a["id"] for a in answers])
            for doctor_id in doctors:
                pipe.hget(self._doctor(doctor_id), "verified")
            for answer in answers:
                pipe.hmget(self._tally(answer["id"]), "helpful", "unhelpful")
            hidden_answers, *rest = await pipe.execute()
            verified_now = dict(zip(doctors, rest[: len(doctors)], strict=True))
            counts = rest[len(doctors) :]
            shown = []
            for answer, gone, (helpful, unhelpful) in zip(
                answers, hidden_answers, counts, strict=True
            ):
                if not gone:
                    # The card shows the doctor's verification now, not when they answered:
                    # a suspended doctor's answers lose the mark (none known: as answered).
                    now = verified_now[answer["doctor"]["id"]]
                    if now is not None:
                        answer["doctor"]["verified"] = now == "1"
                    shown.append(answer)
                    tallies[answer["id"]] = (int(helpful or 0), int(unhelpful or 0))
            answers = shown
        return json.loads(raw), answers, tallies

    async def list_ids(
        self, kind: str, slug: str, after: str | None, count: int
    ) -> tuple[list[str], str | None]:
        """Ids newest first from one listing, after a cursor member; and the next cursor."""
        prefix = index_entry(kind, slug, "")
        # The listing's entries are those from `prefix` (inclusive) to the prefix with its
        # last ':' raised to ';' (exclusive): exactly the strings that start with it.
        top = f"({prefix}{after}" if after else f"({prefix[:-1]};"
        entries = await self.redis.zrange(
            self._index(), top, f"[{prefix}", desc=True, bylex=True, offset=0, num=count
        )
        members = [entry[len(prefix) :] for entry in entries]
        next_cursor = encode_cursor(members[-1]) if len(members) == count else None
        return [m.split(":", 1)[1] for m in members], next_cursor

    async def migrate_indexes(self, batch: int = 1000) -> int:
        """Move the entries of the former per-listing index keys into the one index.

        Run at start, before readiness, and again a few times after (`keep_migrating`):
        idempotent, and each batch leaves its former key in the same atomic step it
        enters the index (move_index.lua), so a replica of the former version still
        posting during a rolling deploy loses nothing. Returns how many entries it moved.

        A pass SCANs the keyspace; a finished move is found in one round trip instead:
        the marker says a pass found nothing left, and the former "all" key is absent (a
        replica of the former version adds every question it posts to that key, in the
        same commit as to its other listings, so any post of theirs since shows there).
        The marker is only set by a pass during which no entry moved and no other pass
        began (finish_migration.lua; move_index.lua deletes it): a pass that moved the
        "all" key may have missed another key created meanwhile.
        """
        marker = self._migration_marker()
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(marker)
        pipe.exists(self._former_index("all"))
        state, former_all = await pipe.execute()
        if state == MIGRATED and not former_all:
            return 0
        token = f"pass:{uuid.uuid4().hex}"
        await self.redis.set(marker, token)
        moved = 0
        base = self._former_index("")
        async for key in self.redis.scan_iter(match=f"{_glob_escape(base)}*", count=batch):
            rest = key[len(base) :]
            kind, _, slug = rest.partition(":")
            if kind not in ("all", "topic", "specialty") or (kind == "all") != (not slug):
                continue
            if await self.redis.type(key) != "zset":
                continue
            prefix = index_entry(kind, slug, "")
            keys = [key, self._index(), marker]
            while n := int(await self._move_index(keys=keys, args=[prefix, batch])):
                moved += n
        if not moved:
            await self._finish_migration(keys=[marker], args=[token, MIGRATED])
        return moved

    async def keep_migrating(self, after_s: tuple[float, ...] = MIGRATE_AGAIN_AFTER_S) -> None:
        """Run `migrate_indexes` again at these delays after readiness: the entries that
        replicas of the former version add while a rolling deploy replaces them."""
        for delay in after_s:
            await asyncio.sleep(delay)
            try:
                moved = await self.migrate_indexes()
            except RedisError as exc:
                log.warning("index_migration_failed", error=f"{type(exc).__name__}: {exc}"[:200])
                continue
            if moved:
                log.info("index_entries_moved", entries=moved)

    async def recent_ids(self, kind: str, slug: str, count: int) -> list[str]:
        """The newest ids of an index."""
        ids, _ = await self.list_ids(kind, slug, None, count)
        return ids

    async def add_answer(self, event: AnswerPosted) -> None:
        """Put an answer on its question's page (idempotent: keyed by answer id)."""
        answer = {
            "id": event.answer_id,
            "question_id": event.question_id,
            "headline": event.headline,
            "body": event.body,
            "created_at": event.created_at.isoformat(),
            "doctor": event.doctor.model_dump(),
        }
        await self._page_write(event.question_id, event.answer_id, answer, event.doctor.id)

    async def set_doctor_verified(self, doctor_id: str, version: int, verified: bool) -> None:
        """Record whether a doctor is verified now (newest profile version wins), and bump
        the pages of the questions they answered so those are built again with it."""
        qids = await self.redis.smembers(self._doctor_questions(doctor_id))
        txn = Txn().set_if_newer(
            self._doctor(doctor_id), "profile_version", version, {"verified": int(verified)}
        )
        # A bump the version check made needless only costs a rebuild of the page.
        for qid in sorted(qids):
            txn.call("INCR", self._page_version(qid))
        await self.committer.commit(txn)

    async def edit_answer(self, event: AnswerEdited) -> None:
        """Show an answer's edited text on its page; an older revision never wins.

        Idempotent: a redelivered or late (older) edit leaves a newer one in place.
        """
        key = self._answers(event.question_id)
        raw = await self.redis.hget(key, event.answer_id)
        if not raw:
            # The answer itself has not reached the page yet; answer-posted will follow
            # and the edit is then lost, so fail and let the claimer retry later.
            raise LookupError(f"answer {event.answer_id} not on its page yet")
        answer = json.loads(raw)
        if int(answer.get("revision", 1)) >= event.revision:
            return
        answer.update(
            headline=event.headline,
            body=event.body,
            revision=event.revision,
            edited_at=event.edited_at.isoformat(),
        )
        await self._page_write(event.question_id, event.answer_id, answer)

    async def _page_write(
        self, qid: str, aid: str, answer: dict[str, Any], doctor_id: str | None = None
    ) -> None:
        """Store one answer of a page and bump the page's version, in one transaction;
        with `doctor_id`, remember the question among that doctor's answered ones."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._answers(qid), aid, json.dumps(answer))
        if doctor_id is not None:
            pipe.sadd(self._doctor_questions(doctor_id), qid)
        pipe.incr(self._page_version(qid))
        await pipe.execute()

    async def set_tally(self, event: VoteCast) -> None:
        """Record an answer's tally; an older tally never overwrites a newer one."""
        txn = Txn().set_if_newer(
            self._tally(event.answer_id),
            "version",
            event.tally_version,
            {"helpful": event.helpful, "unhelpful": event.unhelpful},
        )
        # An older tally changes nothing, but the bump only costs a rebuild of the page.
        txn.call("INCR", self._page_version(event.question_id))
        await self.committer.commit(txn)

    async def cached_page(self, qid: str, read: ReadCount | None) -> CachedPage:
        """The built page if it is current (else the version to build), in one round trip.

        `read`, an anonymous reader's, is counted in the same call. A full Redis refuses
        the counter's write: the page is read without it (reads need no memory).
        """
        keys = [self._page(qid), self._page_version(qid)]
        args: list[str | int] = []
        if read is not None:
            keys.append(read.key)
            args = [read.reads, read.window_s]
        try:
            reply = await self._read_page(keys=keys, args=args)
        except OutOfMemoryError:
            if read is None:
                raise
            reply = await self._read_page(keys=keys[:2], args=[])
        status = reply[0]  # replies are decoded: the client has decode_responses
        if status == "page":
            return CachedPage("", reply[1], reply[2].encode())
        if status == "limited":
            return CachedPage("", limited_for_s=int(reply[1]))
        return CachedPage(reply[1])

    async def keep_page(self, qid: str, version: str, etag: str, body: bytes) -> None:
        """Keep a page built from the parts of `version` (a newer version makes it stale)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._page(qid), mapping={"version": version, "etag": etag, "body": body})
        pipe.expire(self._page(qid), PAGE_CACHE_TTL_S)
        try:
            await pipe.execute()
        except (OutOfMemoryError, ExecAbortError):
            # A full Redis refuses the copy (MULTI aborts on OOM): the page is still served,
            # built from its parts, until memory is freed.
            return
