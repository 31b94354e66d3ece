"""Redis persistence of the notify service: the doctor directory, inboxes, held alerts, outbox.

The notifier publishes two streams, so its keys live in two hash slots:

* the **directory** (profiles and the per-specialty GEO and rating indexes) shares the
  slot of ``askdoc.doctor-profile-changed``, so a profile change and its event commit in
  one script;
* **inboxes** (notifications, held alerts, dedupe guards, daily counters, the delivery
  outbox, projections) share the slot of ``askdoc.notification-sent`` (the runtime tag),
  so a notification, its event and its pending deliveries commit together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from shared import streams
from shared.atomic import CommitResult, Committer, Txn
from shared.events import DoctorProfileChanged, NotificationSent
from shared.redis import RedisClient

DIRECTORY_TAG = streams.slot_tag(streams.DOCTOR_PROFILE_CHANGED)
OUTBOX_GROUP = "notify"
DAY_COUNTER_TTL_S = 2 * 86400 + 3600  # a local day plus any time zone offset

# Drops expired and surplus notifications from a recipient's three indexes (all keys of
# one recipient share the slot); returns the dropped ids so their hashes can go too.
# KEYS: inbox, unread, readset. ARGV: max items, id floor (older ids expire).
_TRIM = """
local dropped = {}
local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    dropped[#dropped + 1] = id
  end
end
drop(redis.call('ZRANGEBYLEX', KEYS[1], '-', '(' .. ARGV[2]))
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if over > 0 then
  local ids = redis.call('ZRANGE', KEYS[3], 0, over - 1)
  drop(ids)
  if #ids < over then drop(redis.call('ZRANGE', KEYS[2], 0, over - #ids - 1)) end
end
return dropped
"""

# Points the due index at a doctor's earliest held alert (or drops the doctor), from the
# held set as it is now, so a hold added concurrently is never forgotten.
# KEYS: held set of the doctor, due index. ARGV: doctor id.
_REFRESH_DUE = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], first[2], ARGV[1])
end
return 1
"""


# One round trip for the matching data of many doctors (their hashes share the slot).
# KEYS: the doctors' profile hashes.
_MATCH_ROWS = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, 'lat', 'lon', 'radius_km', 'rating', 'review_count', 'tz')
end
return out
"""


@dataclass(frozen=True)
class DoctorRow:
    """What matching needs of a directory entry, fetched for many doctors at once."""

    doctor_id: str
    lat: float
    lon: float
    radius_km: float
    rating: float
    review_count: int
    tz: str | None


def rating_score(rating: float | None, review_count: int) -> float:
    """Sort key of the per-specialty rating index: rating, then review count."""
    return round((rating or 0.0) * 1_000_000 + min(review_count, 999_999), 1)


class DirectoryStore:
    """Doctor profiles and the indexes that find doctors by specialty and place."""

    def __init__(self, redis: RedisClient, committer: Committer, maxlen: int) -> None:
        self.redis = redis
        self.committer = committer
        self.tag = DIRECTORY_TAG
        self.maxlen = maxlen
        self._match_rows = redis.register_script(_MATCH_ROWS)

    def doc_key(self, doctor_id: str) -> str:
        """The hash holding one doctor's profile."""
        return f"{self.tag}:doc:{doctor_id}"

    def geo_key(self, specialty: str) -> str:
        """The GEO set of the doctors of one specialty, by practice location."""
        return f"{self.tag}:geo:{specialty}"

    def rated_key(self, specialty: str) -> str:
        """The doctors of one specialty by rating (for questions without a location)."""
        return f"{self.tag}:rated:{specialty}"

    def _version_key(self, doctor_id: str, version: int) -> str:
        return f"{self.tag}:docver:{doctor_id}:{version}"

    async def get(self, doctor_id: str) -> tuple[dict[str, Any], int] | None:
        """A stored profile (private fields included) and its version, or None."""
        raw, version = await self.redis.hmget(self.doc_key(doctor_id), "profile", "version")
        if not raw:
            return None
        return json.loads(raw), int(version or 0)

    async def save(
        self,
        profile: dict[str, Any],
        previous_specialties: Iterable[str],
        all_specialties: Iterable[str],
        prefs: dict[str, Any],
        event: DoctorProfileChanged,
    ) -> CommitResult:
        """Store a profile version, move the doctor in the indexes and publish, atomically.

        The guard on the version marker makes concurrent writers of one profile
        serialise: the loser's commit changes nothing and it retries on the new version.
        """
        doctor_id = event.doctor_id
        loc = profile["location"]
        specialties = list(profile["specialties"])
        txn = Txn().absent(
            "version", self._version_key(doctor_id, event.profile_version), ttl_s=86400
        )
        # What matching reads of every candidate (in one script call for all of them) is
        # kept in plain fields; tz is the zone of the doctor's local day (caps, digests).
        txn.call(
            "HSET",
            self.doc_key(doctor_id),
            "profile",
            json.dumps(profile),
            "version",
            event.profile_version,
            "lat",
            repr(float(loc["lat"])),
            "lon",
            repr(float(loc["lon"])),
            "radius_km",
            repr(float(profile["radius_km"])),
            "rating",
            repr(float(profile.get("rating") or 0.0)),
            "review_count",
            int(profile.get("review_count") or 0),
            "tz",
            (prefs.get("quiet_hours") or {}).get("tz") or "",
            "prefs",
            json.dumps(prefs),
        )
        # Leave every index the doctor is no longer in (known vocabulary and the old
        # profile's slugs), so a changed specialty or place moves them.
        stale = dict.fromkeys([*previous_specialties, *all_specialties])
        for slug in specialties:
            stale.pop(slug, None)
        for slug in stale:
            txn.call("ZREM", self.geo_key(slug), doctor_id)
            txn.call("ZREM", self.rated_key(slug), doctor_id)
        score = rating_score(profile.get("rating"), profile.get("review_count") or 0)
        for slug in specialties:
            txn.call("GEOADD", self.geo_key(slug), loc["lon"], loc["lat"], doctor_id)
            txn.call("ZADD", self.rated_key(slug), score, doctor_id)
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def near(
        self, specialties: Sequence[str], lat: float, lon: float, radius_km: float, count: int
    ) -> tuple[dict[str, list[str]], bool]:
        """Per doctor, the specialties under which they practise within `radius_km` (the
        `count` nearest per specialty); and whether any specialty had more than that."""
        pipe = self.redis.pipeline(transaction=False)
        for slug in specialties:
            pipe.geosearch(
                self.geo_key(slug),
                longitude=lon,
                latitude=lat,
                radius=radius_km,
                unit="km",
                sort="ASC",
                count=count,
            )
        found: dict[str, list[str]] = {}
        truncated = False
        for slug, ids in zip(specialties, await pipe.execute(), strict=True):
            truncated = truncated or len(ids) >= count
            for doctor_id in ids:
                found.setdefault(doctor_id, []).append(slug)
        return found, truncated

    async def best_rated(self, specialties: Sequence[str], count: int) -> dict[str, list[str]]:
        """Per doctor, the given specialties under which they are among the best rated."""
        pipe = self.redis.pipeline(transaction=False)
        for slug in specialties:
            pipe.zrange(self.rated_key(slug), 0, count - 1, desc=True)
        found: dict[str, list[str]] = {}
        for slug, ids in zip(specialties, await pipe.execute(), strict=True):
            for doctor_id in ids:
                found.setdefault(doctor_id, []).append(slug)
        return found

    async def rows(self, doctor_ids: Sequence[str]) -> dict[str, DoctorRow]:
        """Matching data of many doctors in one round trip (missing ones left out)."""
        if not doctor_ids:
            return {}
        replies = await self._match_rows(keys=[self.doc_key(d) for d in doctor_ids])
        rows: dict[str, DoctorRow] = {}
        for doctor_id, (lat, lon, radius, rating, reviews, tz) in zip(
            doctor_ids, replies, strict=True
        ):
            if lat is None or lon is None:
                continue  # removed between the index read and now
            rows[doctor_id] = DoctorRow(
                doctor_id=doctor_id,
                lat=float(lat),
                lon=float(lon),
                radius_km=float(radius or 0),
                rating=float(rating or 0),
                review_count=int(reviews or 0),
                tz=tz or None,
            )
        return rows

    async def prefs(self, doctor_id: str) -> dict[str, Any]:
        """A doctor's alert preferences and channels ({} for someone not in the directory)."""
        raw = await self.redis.hget(self.doc_key(doctor_id), "prefs")
        return json.loads(raw) if raw else {}

    async def prefs_many(self, doctor_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The alert preferences of several doctors in one round trip."""
        if not doctor_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for doctor_id in doctor_ids:
            pipe.hget(self.doc_key(doctor_id), "prefs")
        return [json.loads(raw) if raw else {} for raw in await pipe.execute()]


class InboxStore:
    """Notifications and everything keyed in the notification-sent slot."""

    def __init__(
        self, redis: RedisClient, committer: Committer, tag: str, maxlen: int, ttl_s: int
    ) -> None:
        self.redis = redis
        self.committer = committer
        self.tag = tag
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._trim = redis.register_script(_TRIM)
        self._refresh_due = redis.register_script(_REFRESH_DUE)

    # --- keys ---------------------------------------------------------------------------

    def note_key(self, nid: str) -> str:
        """The hash of one notification: item JSON, recipient, read flag, delivery status."""
        return f"{self.tag}:n:{nid}"

    def inbox_key(self, recipient: str) -> str:
        """All of a recipient's notification ids (score 0, ids sort by time)."""
        return f"{self.tag}:inbox:{recipient}"

    def unread_key(self, recipient: str) -> str:
        """A recipient's unread notification ids."""
        return f"{self.tag}:unread:{recipient}"

    def readset_key(self, recipient: str) -> str:
        """A recipient's read notification ids (trimmed first)."""
        return f"{self.tag}:readset:{recipient}"

    def alert_guard_key(self, kind: str, *parts: str) -> str:
        """The dedupe guard of one alert, e.g. ('qm', question, doctor)."""
        return ":".join([f"{self.tag}:once:{kind}", *parts])

    def sent_key(self, doctor_id: str, day: str) -> str:
        """A doctor's count of alerts delivered on a local day."""
        return f"{self.tag}:sent:{doctor_id}:{day}"

    def held_key(self, doctor_id: str) -> str:
        """A doctor's held alerts, scored by release time (epoch ms)."""
        return f"{self.tag}:held:{doctor_id}"

    @property
    def due_key(self) -> str:
        """Doctors with held alerts, scored by their earliest release time (epoch ms)."""
        return f"{self.tag}:held-due"

    def release_lock_key(self, doctor_id: str) -> str:
        """Held while one replica releases a doctor's alerts."""
        return f"{self.tag}:releasing:{doctor_id}"

    def question_key(self, question_id: str) -> str:
        """Projection of a question: its asker and title."""
        return f"{self.tag}:q:{question_id}"

    def matches_key(self, question_id: str) -> str:
        """The matches computed for a question the first time (reused on redelivery)."""
        return f"{self.tag}:matches:{question_id}"

    def votes_key(self, answer_id: str) -> str:
        """Last seen tally version, helpful count, and helpful count last alerted on."""
        return f"{self.tag}:votes:{answer_id}"

    @property
    def outbox_key(self) -> str:
        """The delivery outbox: one entry per notification with external channels."""
        return f"{self.tag}:outbox"

    # --- writing notifications ----------------------------------------------------------

    def add_notification(
        self,
        txn: Txn,
        recipient: str,
        item: dict[str, Any],
        external: Sequence[str],
        event: NotificationSent,
    ) -> Txn:
        """Add to `txn`: the inbox item, its event and (if any channel) its outbox entry."""
        nid = item["id"]
        status: list[str] = ["d:inbox", "delivered"]
        for channel in external:
            status += [f"d:{channel}", "pending"]
        key = self.note_key(nid)
        txn.call("HSET", key, "item", json.dumps(item), "recipient", recipient, "read", 0, *status)
        txn.call("EXPIRE", key, self.ttl_s)
        for index in (self.inbox_key(recipient), self.unread_key(recipient)):
            txn.call("ZADD", index, 0, nid)
            txn.call("EXPIRE", index, self.ttl_s)
        txn.publish(event, self.maxlen)
        if external:
            txn.call(
                "XADD",
                self.outbox_key,
                "MAXLEN",
                "~",
                self.maxlen,
                "*",
                "nid",
                nid,
                "recipient",
                recipient,
                "channels",
                ",".join(external),
            )
        return txn

    def count_sent(self, txn: Txn, doctor_id: str, day: str, n: int = 1) -> Txn:
        """Add to `txn`: n more alerts delivered to the doctor on their local day."""
        key = self.sent_key(doctor_id, day)
        txn.call("INCRBY", key, n)
        return txn.call("EXPIRE", key, DAY_COUNTER_TTL_S)

    async def commit(self, txn: Txn) -> CommitResult:
        """Run a transaction built with the helpers above."""
        return await self.committer.commit(txn)

    async def sent_counts(self, keys: Sequence[str]) -> list[int]:
        """Several daily counters in one round trip."""
        if not keys:
            return []
        return [int(v or 0) for v in await self.redis.mget(list(keys))]

    async def trim(self, recipient: str, max_items: int, floor_id: str) -> int:
        """Expire old and drop surplus notifications (oldest read first); how many went."""
        keys = [self.inbox_key(recipient), self.unread_key(recipient), self.readset_key(recipient)]
        dropped = await self._trim(keys=keys, args=[max_items, floor_id])
        if dropped:
            await self.redis.unlink(*[self.note_key(nid) for nid in dropped])
        return len(dropped)

    # --- reading inboxes -----------------------------------------------------------------

    async def page(
        self, recipient: str, unread_only: bool, before: str | None, count: int
    ) -> list[str]:
        """Ids newest first, strictly older than `before` when given."""
        key = self.unread_key(recipient) if unread_only else self.inbox_key(recipient)
        start = f"({before}" if before else "+"
        ids: list[str] = await self.redis.zrange(
            key, start, "-", desc=True, bylex=True, offset=0, num=count
        )
        return ids

    async def newer(self, recipient: str, after: str, count: int) -> list[str]:
        """Ids strictly newer than `after`, oldest first (to replay a missed stream)."""
        ids: list[str] = await self.redis.zrange(
            self.inbox_key(recipient), f"({after}", "+", bylex=True, offset=0, num=count
        )
        return ids

    async def notes(self, nids: Sequence[str]) -> list[dict[str, str]]:
        """The stored hashes of several notifications ({} for an expired one)."""
        if not nids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for nid in nids:
            pipe.hgetall(self.note_key(nid))
        return list(await pipe.execute())

    async def unread_count(self, recipient: str) -> int:
        """How many notifications the recipient has not read."""
        return int(await self.redis.zcard(self.unread_key(recipient)))

    async def mark_read(self, recipient: str, nid: str) -> CommitResult:
        """Mark one notification read (it must still exist)."""
        txn = Txn().present("notification", self.note_key(nid))
        txn.call("HSET", self.note_key(nid), "read", 1)
        txn.call("ZREM", self.unread_key(recipient), nid)
        txn.call("ZADD", self.readset_key(recipient), 0, nid)
        txn.call("EXPIRE", self.readset_key(recipient), self.ttl_s)
        return await self.committer.commit(txn)

    async def set_delivery(self, nid: str, channel: str, status: str) -> None:
        """Record a channel's delivery status on the notification (if it still exists)."""
        txn = Txn().present("notification", self.note_key(nid))
        await self.committer.commit(txn.call("HSET", self.note_key(nid), f"d:{channel}", status))

    # --- held alerts -------------------------------------------------------------------

    async def due_doctors(self, now_ms: int, count: int) -> list[str]:
        """Doctors whose earliest held alert is due."""
        ids: list[str] = await self.redis.zrange(
            self.due_key, "-inf", now_ms, byscore=True, offset=0, num=count
        )
        return ids

    async def held(self, doctor_id: str) -> list[tuple[str, float]]:
        """A doctor's held alerts (member JSON, release ms), earliest first."""
        pairs: list[tuple[str, float]] = await self.redis.zrange(
            self.held_key(doctor_id), 0, -1, withscores=True
        )
        return pairs

    async def lock_release(self, doctor_id: str, ttl_s: int) -> bool:
        """Take the per-doctor release lock (False when another replica holds it)."""
        return bool(await self.redis.set(self.release_lock_key(doctor_id), 1, nx=True, ex=ttl_s))

    async def unlock_release(self, doctor_id: str) -> None:
        """Give the release lock back."""
        await self.redis.delete(self.release_lock_key(doctor_id))

    async def refresh_due(self, doctor_id: str) -> None:
        """Point the due index at the doctor's earliest held alert, or drop the doctor."""
        await self._refresh_due(keys=[self.held_key(doctor_id), self.due_key], args=[doctor_id])

    async def nudge(self, doctor_id: str, now_ms: int) -> None:
        """Have the releaser look at a doctor's held alerts now (their preferences changed)."""
        if await self.redis.exists(self.held_key(doctor_id)):
            await self.redis.zadd(self.due_key, {doctor_id: now_ms})

    # --- projections -------------------------------------------------------------------

    async def remember_question(
        self, question_id: str, asker_id: str, title: str, ttl_s: int
    ) -> str | None:
        """Keep who asked a question and its title; the matches stored on a prior delivery."""
        key = self.question_key(question_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={"asker_id": asker_id, "title": title})
        pipe.expire(key, ttl_s)
        pipe.get(self.matches_key(question_id))
        *_, stored = await pipe.execute()
        return stored if stored is None else str(stored)

    async def question(self, question_id: str) -> dict[str, str]:
        """The projected question ({} when not seen yet)."""
        data: dict[str, str] = await self.redis.hgetall(self.question_key(question_id))
        return data

    async def freeze_matches(self, question_id: str, matches_json: str, ttl_s: int) -> str:
        """The question's matches: those stored first win, so a redelivery reuses them."""
        key = self.matches_key(question_id)
        if await self.redis.set(key, matches_json, nx=True, ex=ttl_s):
            return matches_json
        stored: str | None = await self.redis.get(key)
        return stored if stored is not None else matches_json

    async def vote_state(self, answer_id: str) -> tuple[int, int]:
        """(tally version seen, helpful count last alerted on) of an answer."""
        version, notified = await self.redis.hmget(self.votes_key(answer_id), "version", "notified")
        return int(version or 0), int(notified or 0)

    # --- outbox ------------------------------------------------------------------------

    async def ensure_outbox_group(self) -> None:
        """Create the outbox stream and its consumer group (idempotent)."""
        try:
            await self.redis.xgroup_create(self.outbox_key, OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
