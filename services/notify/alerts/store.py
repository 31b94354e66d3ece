"""Redis persistence of the alerts: guards, daily counters, held alerts, projections.

Everything here shares the notification-sent slot with the inboxes, so an alert's
guard, its inbox item, its event, its outbox entry and its counters commit together.
A service describes a change in plain terms (`AlertChange`); this store turns it into
one transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import streams
from shared.atomic import Committer, Txn
from shared.redis import RedisClient

from ..inbox.domain import Notification
from ..inbox.store import InboxStore
from ..scripts import lua

DAY_COUNTER_TTL_S = 2 * 86400 + 3600  # a local day plus any time zone offset


@dataclass
class AlertChange:
    """One all-or-nothing change, in order: guards are checked before anything is written."""

    steps: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    notes: list[Notification] = field(default_factory=list)

    def once(self, marker: str, *guard: str) -> AlertChange:
        """Stop unless this alert (e.g. 'qm', question, doctor) was never sent; mark it."""
        self.steps.append(("once", (marker, guard)))
        return self

    def notify(self, note: Notification) -> AlertChange:
        """Put a notification in its recipient's inbox (with its event and outbox entry)."""
        self.steps.append(("notify", (note,)))
        self.notes.append(note)
        return self

    def count_sent(self, doctor_id: str, day: str, n: int = 1) -> AlertChange:
        """Count n more alerts delivered to the doctor on their local day."""
        self.steps.append(("count", (doctor_id, day, n)))
        return self

    def hold(self, doctor_id: str, release_ms: int, hold: dict[str, Any]) -> AlertChange:
        """Hold an alert for the doctor until `release_ms` (the due index moves earlier only)."""
        self.steps.append(("hold", (doctor_id, release_ms, json.dumps(hold))))
        return self

    def rehold(
        self, doctor_id: str, member: str, release_ms: int, hold: dict[str, Any]
    ) -> AlertChange:
        """Replace a held alert (its stored member) with a new plan."""
        self.steps.append(("unhold", (doctor_id, member)))
        self.steps.append(("rehold", (doctor_id, release_ms, json.dumps(hold))))
        return self

    def unhold(self, doctor_id: str, member: str) -> AlertChange:
        """Drop a held alert (its stored member): it went out."""
        self.steps.append(("unhold", (doctor_id, member)))
        return self

    def tally(
        self, answer_id: str, version: int, fields: dict[str, str | int | float]
    ) -> AlertChange:
        """Record an answer's vote tally, if `version` is newer than the one seen."""
        self.steps.append(("tally", (answer_id, version, fields)))
        return self


@dataclass(frozen=True)
class BatchOutcome:
    """What the batch script did for one question.

    `slow`: its frozen matches differ from this search (a redelivery after the directory
    changed); `deferred`: alerts it left to the full path (held ones, an unknown zone).
    """

    slow: bool
    delivered: int
    duplicates: int
    deferred: int
    zones: list[str]
    recipients: list[str]


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _split(value: str | bytes) -> list[str]:
    text = _str(value)
    return text.split(",") if text else []


@dataclass(frozen=True)
class HeldEntry:
    """A held alert as stored: its member (to remove it), release time and data."""

    member: str
    release_ms: float
    data: dict[str, Any]


class AlertStore:
    """Alert guards, counters, held alerts and the question and vote projections."""

    def __init__(
        self,
        redis: RedisClient,
        committer: Committer,
        tag: str,
        inbox: InboxStore,
        dedupe_ttl_s: int,
        concurrency: int,
    ) -> None:
        self.redis = redis
        self.committer = committer
        self.inbox = inbox
        self.dedupe_ttl_s = dedupe_ttl_s
        self._tag = tag
        self._refresh_due = redis.register_script(lua(__package__, "refresh_due.lua"))
        self._follow = redis.register_script(lua(__package__, "follow.lua"))
        self._alert_batch = redis.register_script(lua(__package__, "alert_batch.lua"))
        # A question fans out into many commits; bounded so the pool never runs dry.
        self._commits = asyncio.Semaphore(concurrency)

    def _guard_key(self, guard: Sequence[str]) -> str:
        return ":".join([f"{self._tag}:once:{guard[0]}", *guard[1:]])

    def _sent_key(self, doctor_id: str, day: str) -> str:
        return f"{self._tag}:sent:{doctor_id}:{day}"

    def _held_key(self, doctor_id: str) -> str:
        # scored by release time (epoch ms)
        return f"{self._tag}:held:{doctor_id}"

    @property
    def _due_key(self) -> str:
        # doctors with held alerts, scored by their earliest release time (epoch ms)
        return f"{self._tag}:held-due"

    def _lock_key(self, doctor_id: str) -> str:
        return f"{self._tag}:releasing:{doctor_id}"

    def _question_key(self, question_id: str) -> str:
        return f"{self._tag}:q:{question_id}"

    def _followers_key(self, question_id: str) -> str:
        # who follows (from question-followed/-unfollowed), score 0, ordered by user id
        return f"{self._tag}:followers:{question_id}"

    def _follow_versions_key(self, question_id: str) -> str:
        # user -> newest follow version seen
        return f"{self._tag}:follow-ver:{question_id}"

    def _votes_key(self, answer_id: str) -> str:
        # last seen tally version, helpful count, helpful count last alerted on
        return f"{self._tag}:votes:{answer_id}"

    # --- committing --------------------------------------------------------------------

    def _txn(self, change: AlertChange) -> Txn:
        txn = Txn()
        for kind, args in change.steps:
            if kind == "once":
                marker, guard = args
                txn.absent("alert", self._guard_key(guard), marker, self.dedupe_ttl_s)
            elif kind == "notify":
                self.inbox.add(txn, args[0])
            elif kind == "count":
                doctor_id, day, n = args
                txn.call("INCRBY", self._sent_key(doctor_id, day), n)
                txn.call("EXPIRE", self._sent_key(doctor_id, day), DAY_COUNTER_TTL_S)
            elif kind == "hold":
                doctor_id, release_ms, member = args
                txn.call("ZADD", self._held_key(doctor_id), release_ms, member)
                txn.call("ZADD", self._due_key, "LT", release_ms, doctor_id)
            elif kind == "rehold":
                doctor_id, release_ms, member = args
                txn.call("ZADD", self._held_key(doctor_id), release_ms, member)
            elif kind == "unhold":
                doctor_id, member = args
                txn.call("ZREM", self._held_key(doctor_id), member)
            elif kind == "tally":
                answer_id, version, fields = args
                txn.set_if_newer(self._votes_key(answer_id), "version", version, fields)
            else:
                raise ValueError(f"unknown alert step {kind!r}")
        return txn

    async def commit(self, change: AlertChange) -> bool:
        """Apply the change if every guard holds; whether it was applied."""
        async with self._commits:
            return (await self.committer.commit(self._txn(change))).applied

    async def commit_many(self, changes: Sequence[AlertChange]) -> list[bool]:
        """Several changes in one round trip; each stands or falls on its own guards."""
        async with self._commits:
            results = await self.committer.commit_many([self._txn(c) for c in changes])
        return [r.applied for r in results]

    async def notify_each_once(
        self, alerts: Sequence[tuple[Notification, Sequence[str]]]
    ) -> list[bool]:
        """Notifications about the same things, each once under its guard (what `once`
        then `notify` of a change commit), in one script call; which ones went out.

        Cheaper than the Txns of `commit_many` (inbox/add_each_once.lua: the hidden markers
        are looked at, and the :about: indexes written, once per call), so every alert
        that is only a notification goes this way, even alone.
        """
        entries = [(note, self._guard_key(guard)) for note, guard in alerts]
        async with self._commits:
            return await self.inbox.add_each_once(entries, self.dedupe_ttl_s)

    async def notify_once(self, note: Notification, guard: Sequence[str]) -> bool:
        """One notification, once under its guard (`notify_each_once` of one)."""
        [applied] = await self.notify_each_once([(note, guard)])
        return applied

    async def alert_batch(
        self, header: dict[str, Any], questions: Sequence[tuple[str, str, str]]
    ) -> list[BatchOutcome]:
        """Alert a batch of questions' matched doctors in one script call (`alert_batch.lua`).

        `questions` are (question JSON, matches JSON, doctors JSON); the matches reach
        the script exactly as the directory's script wrote them.
        """
        if not questions:
            return []
        keys = [streams.NOTIFICATION_SENT, self.inbox.outbox.stream, self._esc_due_key]
        header = {
            **header,
            "tag": self._tag,
            "ttl": {
                "dedupe": self.dedupe_ttl_s,
                "inbox": self.inbox.ttl_s,
                "question": header["ttl"]["question"],
                "day": DAY_COUNTER_TTL_S,
                "esc": header["ttl"]["esc"],
            },
        }
        args = [json.dumps(header), *(part for q in questions for part in q)]
        async with self._commits:
            replies = await self._alert_batch(keys=keys, args=args)
        return [
            BatchOutcome(
                slow=_str(r[0]) == "slow",
                delivered=int(r[1]),
                duplicates=int(r[2]),
                deferred=int(r[3]),
                zones=_split(r[4]),
                recipients=_split(r[5]),
            )
            for r in replies
        ]

    @property
    def _esc_due_key(self) -> str:
        # the escalations' due index (escalation_store.py), written when a question comes
        return f"{self._tag}:esc-due"

    # --- counters and projections ------------------------------------------------------

    async def sent_counts(self, doctor_days: Sequence[tuple[str, str]]) -> list[int]:
        """Alerts delivered to each (doctor, local day), in one round trip."""
        if not doctor_days:
            return []
        keys = [self._sent_key(d, day) for d, day in doctor_days]
        return [int(v or 0) for v in await self.redis.mget(keys)]

    async def urgent_rank(self, asker_id: str, day: str, question_id: str) -> int:
        """Count an asker's urgent question for the day (once per question); how many so far."""
        key = f"{self._tag}:urgent-asker:{asker_id}:{day}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(key, question_id)
        pipe.expire(key, DAY_COUNTER_TTL_S)
        pipe.scard(key)
        return int((await pipe.execute())[-1])

    async def urgent_paged(self, doctor_ids: Sequence[str], hour: str) -> list[int]:
        """Urgent alerts each doctor got in this UTC hour, in one round trip."""
        if not doctor_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for doctor_id in doctor_ids:
            pipe.scard(f"{self._tag}:urgent-paged:{doctor_id}:{hour}")
        return [int(n) for n in await pipe.execute()]

    async def note_urgent_paged(self, doctor_id: str, hour: str, question_id: str) -> None:
        """Count an urgent alert a doctor got this hour (once per question)."""
        key = f"{self._tag}:urgent-paged:{doctor_id}:{hour}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(key, question_id)
        pipe.expire(key, 2 * 3600)
        await pipe.execute()

    async def remember_question(
        self, question_id: str, asker_id: str, title: str, ttl_s: int
    ) -> None:
        """Keep who asked a question and its title (for answer and vote alerts)."""
        key = self._question_key(question_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={"asker_id": asker_id, "title": title})
        pipe.expire(key, ttl_s)
        await pipe.execute()

    async def question(self, question_id: str) -> dict[str, str]:
        """The projected question ({} when not seen yet)."""
        data: dict[str, str] = await self.redis.hgetall(self._question_key(question_id))
        return data

    async def apply_follow(
        self, question_id: str, user_id: str, version: int, following: bool, ttl_s: int
    ) -> bool:
        """Record a follow change unless a newer one was seen; whether it was applied."""
        args = {"user": user_id, "version": version, "following": following, "ttl_s": ttl_s}
        keys = [self._follow_versions_key(question_id), self._followers_key(question_id)]
        return bool(await self._follow(keys=keys, args=[json.dumps(args)]))

    async def followers(self, question_id: str, after: str | None, count: int) -> list[str]:
        """A page of a question's followers, by user id, after `after`."""
        start = f"({after}" if after is not None else "-"
        page: list[str] = await self.redis.zrange(
            self._followers_key(question_id), start, "+", bylex=True, offset=0, num=count
        )
        return page

    async def asker_follows(self, question_id: str, asker_id: str) -> bool:
        """Whether the asker still follows (they do unless an unfollow of theirs was seen)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self._follow_versions_key(question_id), asker_id)
        pipe.zscore(self._followers_key(question_id), asker_id)
        version, score = await pipe.execute()
        return version is None or score is not None

    async def vote_state(self, answer_id: str) -> tuple[int, int]:
        """(tally version seen, helpful count last alerted on) of an answer."""
        version, notified = await self.redis.hmget(
            self._votes_key(answer_id), "version", "notified"
        )
        return int(version or 0), int(notified or 0)

    # --- held alerts -------------------------------------------------------------------

    async def due_doctors(self, now_ms: int, count: int) -> list[str]:
        """Doctors whose earliest held alert is due."""
        ids: list[str] = await self.redis.zrange(
            self._due_key, "-inf", now_ms, byscore=True, offset=0, num=count
        )
        return ids

    async def held(self, doctor_id: str) -> list[HeldEntry]:
        """A doctor's held alerts, earliest first."""
        pairs: list[tuple[str, float]] = await self.redis.zrange(
            self._held_key(doctor_id), 0, -1, withscores=True
        )
        return [HeldEntry(member, score, json.loads(member)) for member, score in pairs]

    async def lock_release(self, doctor_id: str, ttl_s: int) -> bool:
        """Take the per-doctor release lock (False when another replica holds it)."""
        return bool(await self.redis.set(self._lock_key(doctor_id), 1, nx=True, ex=ttl_s))

    async def unlock_release(self, doctor_id: str) -> None:
        """Give the release lock back."""
        await self.redis.delete(self._lock_key(doctor_id))

    async def refresh_due(self, doctor_id: str) -> None:
        """Point the due index at the doctor's earliest held alert, or drop the doctor."""
        await self._refresh_due(
            keys=[self._held_key(doctor_id), self._due_key],
            args=[json.dumps({"doctor_id": doctor_id})],
        )

    async def nudge(self, doctor_id: str, now_ms: int) -> None:
        """Have the releaser look at a doctor's held alerts now (their preferences changed)."""
        if await self.redis.exists(self._held_key(doctor_id)):
            await self.redis.zadd(self._due_key, {doctor_id: now_ms})
