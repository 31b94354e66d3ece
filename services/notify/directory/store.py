"""Redis persistence of the doctor directory: profiles and the indexes that find doctors.

The directory shares the hash slot of ``askdoc.doctor-profile-changed``, so a profile
change, its index moves and its event commit in one script.

`match_batch.lua` keeps each doctor's matching row packed (doubles: nothing to parse) under
``mrow:<id>`` once it has read the profile's fields, and `text_rows.lua` (the batch search
ranked in the replica, `matching.batch`) keeps it as one string under ``trow:<id>`` (the
fields joined: Python parses them); every write of those fields drops both in the same
commit, so neither is ever older than the fields.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared import streams
from shared.atomic import CommitResult, Committer, Txn
from shared.events import DoctorProfileChanged
from shared.redis import RedisClient

from ..matching import batch
from ..scripts import lua
from .domain import DoctorRow, is_verified, rating_score
from .sealing import SecretBox, open_profile

DIRECTORY_TAG = streams.slot_tag(streams.DOCTOR_PROFILE_CHANGED)
_ROW_FIELDS = ("lat", "lon", "radius_km", "rating", "review_count", "tz")


class DirectoryStore:
    """Doctor profiles and the per-specialty GEO and rating indexes."""

    def __init__(
        self, redis: RedisClient, committer: Committer, maxlen: int, box: SecretBox | None = None
    ) -> None:
        self.redis = redis
        self.committer = committer
        self.maxlen = maxlen
        # Webhook secrets are sealed at rest; without a key none can be read or stored.
        self.box = box
        self._tag = DIRECTORY_TAG
        self._match_rows = redis.register_script(lua(__package__, "match_rows.lua"))
        self._match_batch = redis.register_script(lua(__package__, "match_batch.lua"))
        self._near_batch = redis.register_script(lua(__package__, "near_batch.lua"))
        self._text_rows = redis.register_script(lua(__package__, "text_rows.lua"))

    def _doc_key(self, doctor_id: str) -> str:
        return f"{self._tag}:doc:{doctor_id}"

    def _packed_row_key(self, doctor_id: str) -> str:
        # written by match_batch.lua from the fields below; dropped wherever they change
        return f"{self._tag}:mrow:{doctor_id}"

    def _text_row_key(self, doctor_id: str) -> str:
        # written by text_rows.lua from the fields below; dropped wherever they change
        return f"{self._tag}:trow:{doctor_id}"

    def _geo_key(self, specialty: str) -> str:
        return f"{self._tag}:geo:{specialty}"

    def _rated_key(self, specialty: str) -> str:
        return f"{self._tag}:rated:{specialty}"

    def _pending_key(self) -> str:
        # ZSET of the doctors waiting for verification, by when they first waited (ms)
        return f"{self._tag}:pending"

    def _version_key(self, doctor_id: str, version: int) -> str:
        return f"{self._tag}:docver:{doctor_id}:{version}"

    async def get(self, doctor_id: str) -> tuple[dict[str, Any], int] | None:
        """A stored profile (private fields included) and its version, or None."""
        raw, version = await self.redis.hmget(self._doc_key(doctor_id), "profile", "version")
        if not raw:
            return None
        profile = json.loads(raw)
        opened = self.box.open(profile) if self.box else open_profile(profile, None)
        return opened, int(version or 0)

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
        # Only a verified doctor is in the indexes matching searches: a pending or
        # suspended one is never a candidate, without a check per candidate.
        specialties = list(profile["specialties"]) if is_verified(profile) else []
        txn = Txn().absent(
            "version", self._version_key(doctor_id, event.profile_version), ttl_s=86400
        )
        # What matching reads of every candidate (in one script call for all of them) is
        # kept in plain fields; tz is the zone of the doctor's local day (caps, digests).
        if self.box is not None:
            profile = self.box.seal(profile)
        elif profile.get("webhook_secret"):
            raise ValueError("a webhook secret cannot be stored without ASKDOC_WEBHOOK_SECRET_KEY")
        txn.call(
            "HSET",
            self._doc_key(doctor_id),
            *_row_fields(profile, prefs, event.profile_version),
        )
        txn.call("DEL", self._packed_row_key(doctor_id), self._text_row_key(doctor_id))
        # Leave every index the doctor is no longer in (known vocabulary and the old
        # profile's slugs), so a changed specialty or place moves them.
        stale = dict.fromkeys([*previous_specialties, *all_specialties])
        for slug in specialties:
            stale.pop(slug, None)
        for slug in stale:
            txn.call("ZREM", self._geo_key(slug), doctor_id)
            txn.call("ZREM", self._rated_key(slug), doctor_id)
        if _waiting(profile):
            waiting_since = int(event.occurred_at.timestamp() * 1000)
            txn.call("ZADD", self._pending_key(), "NX", waiting_since, doctor_id)
        else:
            txn.call("ZREM", self._pending_key(), doctor_id)
        score = rating_score(profile.get("rating"), profile.get("review_count") or 0)
        for slug in specialties:
            txn.call("GEOADD", self._geo_key(slug), loc["lon"], loc["lat"], doctor_id)
            txn.call("ZADD", self._rated_key(slug), score, doctor_id)
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def pending(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The doctors waiting longest for verification (at most `limit`), and how many wait."""
        ids = [_str(i) for i in await self.redis.zrange(self._pending_key(), 0, limit - 1)]
        total = int(await self.redis.zcard(self._pending_key()))
        found = await asyncio.gather(*(self.get(doctor_id) for doctor_id in ids))
        # A profile is the truth: one the list still names is left out once verified (the
        # start-up backfill below could add a doctor just as an admin verified them).
        return [s[0] for s in found if s is not None and _waiting(s[0])], total

    async def index_old_pending(self, batch: int = 500) -> int:
        """List the doctors saved before the waiting list existed who still wait (once: a
        marker records it); how many were listed."""
        done = f"{self._tag}:migrated:pending"
        if await self.redis.exists(done):
            return 0
        listed = 0
        keys: list[str] = []
        async for key in self.redis.scan_iter(match=f"{self._tag}:doc:*", count=batch):
            keys.append(_str(key))
            if len(keys) >= batch:
                listed, keys = listed + await self._list_waiting(keys), []
        listed += await self._list_waiting(keys)
        await self.redis.set(done, "1")
        return listed

    async def _list_waiting(self, keys: list[str]) -> int:
        if not keys:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, "profile")
        profiles = await pipe.execute()
        waiting: dict[str, float] = {}
        prefix = len(f"{self._tag}:doc:")
        for key, raw in zip(keys, profiles, strict=True):
            profile = json.loads(raw) if raw else None
            if profile is not None and _waiting(profile):
                since = (
                    datetime.fromisoformat(profile["updated_at"])
                    if profile.get("updated_at")
                    else datetime.now(UTC)
                )
                waiting[key[prefix:]] = int(since.timestamp() * 1000)
        if waiting:
            await self.redis.zadd(self._pending_key(), waiting, nx=True)
        return len(waiting)

    def bulk_index_commands(self, row: DoctorRow, specialty: str) -> list[list[str]]:
        """The writes that put a bare matching row in the indexes (bench bulk loads only)."""
        return [
            [
                "HSET",
                self._doc_key(row.doctor_id),
                "lat",
                repr(row.lat),
                "lon",
                repr(row.lon),
                "radius_km",
                repr(row.radius_km),
                "rating",
                repr(row.rating),
                "review_count",
                str(row.review_count),
                "prefs",
                "{}",
            ],
            ["DEL", self._packed_row_key(row.doctor_id), self._text_row_key(row.doctor_id)],
            ["GEOADD", self._geo_key(specialty), repr(row.lon), repr(row.lat), row.doctor_id],
        ]

    async def near(
        self, specialties: Sequence[str], lat: float, lon: float, radius_km: float, count: int
    ) -> tuple[dict[str, list[str]], bool]:
        """Per doctor, the specialties under which they practise within `radius_km` (the
        `count` nearest per specialty); and whether any specialty had more than that."""
        pipe = self.redis.pipeline(transaction=False)
        for slug in specialties:
            pipe.geosearch(
                self._geo_key(slug),
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
            pipe.zrange(self._rated_key(slug), 0, count - 1, desc=True)
        found: dict[str, list[str]] = {}
        for slug, ids in zip(specialties, await pipe.execute(), strict=True):
            for doctor_id in ids:
                found.setdefault(doctor_id, []).append(slug)
        return found

    async def rows(self, doctor_ids: Sequence[str]) -> dict[str, DoctorRow]:
        """Matching data of many doctors in one round trip (missing ones left out)."""
        if not doctor_ids:
            return {}
        reply = await self._match_rows(
            keys=[self._doc_key(d) for d in doctor_ids],
            args=[json.dumps({"fields": _ROW_FIELDS})],
        )
        rows: dict[str, DoctorRow] = {}
        for doctor_id, row in zip(doctor_ids, json.loads(reply), strict=True):
            if not row.get("lat") or not row.get("lon"):
                continue  # removed between the index read and now
            rows[doctor_id] = DoctorRow(
                doctor_id=doctor_id,
                lat=float(row["lat"]),
                lon=float(row["lon"]),
                radius_km=float(row.get("radius_km") or 0),
                rating=float(row.get("rating") or 0),
                review_count=int(row.get("review_count") or 0),
                tz=row.get("tz") or None,
            )
        return rows

    async def match_batch(
        self, questions: Sequence[dict[str, Any]], policy: dict[str, Any], rings: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """Match a batch of questions in one script call (`match_batch.lua`): per question
        its matches as JSON and the matched doctors' {tz, prefs} as JSON, both left encoded.
        (`matching.batch` does the same with the ranking in the replica.)"""
        if not questions:
            return []
        slugs = dict.fromkeys(slug for q in questions for slug in q["sp"])
        # The first key names the slot even when no question names a specialty.
        keys = [self._doc_key(""), *(self._geo_key(s) for s in slugs)]
        keys += [self._rated_key(s) for s in slugs]
        spec = {"prefix": self._tag, "policy": policy, "rings": rings, "questions": questions}
        reply = await self._match_batch(keys=keys, args=[json.dumps(spec)])
        return [(_str(reply[i]), _str(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def near_batch(
        self, searches: Sequence[tuple[Sequence[str], float, float, float, int]]
    ) -> list[list[list[str]]]:
        """Per (specialties, lat, lon, radius_km, count), per specialty: the `count` nearest
        doctors of that specialty within the radius, nearest first; in one script call."""
        if not searches:
            return []
        keys: list[str] = []
        where: dict[str, int] = {}
        spec = []
        for slugs, lat, lon, radius_km, count in searches:
            indexes = []
            for slug in slugs:
                if slug not in where:
                    keys.append(self._geo_key(slug))
                    where[slug] = len(keys)
                indexes.append(where[slug])
            spec.append([lon, lat, radius_km, count, indexes])
        # JSON writes each double as its shortest repr, read back by Lua as the same double
        reply = await self._near_batch(keys=keys or [self._doc_key("")], args=[json.dumps(spec)])
        out: list[list[list[str]]] = []
        start = 0
        for slugs, *_ in searches:
            out.append([[_str(d) for d in ids] for ids in reply[start : start + len(slugs)]])
            start += len(slugs)
        return out

    async def text_rows(self, doctor_ids: Sequence[str]) -> dict[str, batch.Row | None]:
        """The matching rows of many doctors (None for one gone), in script calls of at
        most 1,000 (`text_rows.lua`)."""
        rows: dict[str, batch.Row | None] = {}
        for at in range(0, len(doctor_ids), 1000):
            chunk = list(doctor_ids[at : at + 1000])
            reply = await self._text_rows(
                keys=[self._doc_key("")], args=[self._tag, json.dumps(chunk)]
            )
            for doctor_id, text in zip(chunk, reply, strict=True):
                rows[doctor_id] = batch.parse_row(_str(text)) if text else None
        return rows

    async def prefs(self, doctor_id: str) -> dict[str, Any]:
        """A doctor's alert preferences and channels ({} for someone not in the directory)."""
        raw = await self.redis.hget(self._doc_key(doctor_id), "prefs")
        return json.loads(raw) if raw else {}

    async def prefs_many(self, doctor_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The alert preferences of several doctors in one round trip."""
        if not doctor_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for doctor_id in doctor_ids:
            pipe.hget(self._doc_key(doctor_id), "prefs")
        return [json.loads(raw) if raw else {} for raw in await pipe.execute()]


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _row_fields(profile: dict[str, Any], prefs: dict[str, Any], version: int) -> list[Any]:
    loc = profile["location"]
    fields: dict[str, Any] = {
        "profile": json.dumps(profile),
        "version": version,
        "lat": repr(float(loc["lat"])),
        "lon": repr(float(loc["lon"])),
        "radius_km": repr(float(profile["radius_km"])),
        "rating": repr(float(profile.get("rating") or 0.0)),
        "review_count": int(profile.get("review_count") or 0),
        "tz": (prefs.get("quiet_hours") or {}).get("tz") or "",
        "prefs": json.dumps(prefs),
    }
    return [part for item in fields.items() for part in item]


def _waiting(profile: dict[str, Any]) -> bool:
    """Whether a doctor waits for an admin to verify them (a profile without a status does)."""
    return (profile.get("status") or "pending") == "pending"
