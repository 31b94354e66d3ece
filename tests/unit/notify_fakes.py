"""Hand-written fakes of notify's stores, for unit tests of its service layers.

Each fake keeps plain dicts and follows the port (the Protocol the service layer names)
that its real store implements against Redis.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from services.notify.alerts.ports import AlertPort, AlertPrefs
from services.notify.alerts.store import AlertChange, BatchOutcome, HeldEntry
from services.notify.directory.domain import DoctorRow
from services.notify.directory.service import ProfileStore
from services.notify.inbox.domain import Notification
from services.notify.inbox.service import InboxPort
from services.notify.inbox.store import ModerationStep
from services.notify.matching.batch import Row
from services.notify.matching.service import DoctorIndex, FrozenMatches
from shared import geo
from shared.atomic import CommitResult
from shared.events import DoctorProfileChanged

#: The batch path (`on_questions_posted`) is two Lua scripts inside Redis, held to the
#: per-question path these fakes serve by tests/integration/test_notify_batch.py.
BATCH_PATH = "the batch path runs in Redis: see tests/integration/test_notify_batch.py"
MODERATION = "hiding runs in Redis: see tests/integration/test_inbox_moderation.py"


class FakeProfileStore:
    """Profiles by doctor id, with the version guard of the real store."""

    def __init__(self) -> None:
        self.profiles: dict[str, tuple[dict[str, Any], int]] = {}
        self.prefs: dict[str, dict[str, Any]] = {}
        self.events: list[DoctorProfileChanged] = []
        # Writes by someone else that land between a read and a save (a race).
        self.interleaved_writes = 0

    async def get(self, doctor_id: str) -> tuple[dict[str, Any], int] | None:
        stored = self.profiles.get(doctor_id)
        return copy.deepcopy(stored) if stored else None

    async def save(
        self,
        profile: dict[str, Any],
        previous_specialties: list[str],
        all_specialties: list[str],
        prefs: dict[str, Any],
        event: DoctorProfileChanged,
    ) -> CommitResult:
        doctor_id = event.doctor_id
        if self.interleaved_writes:
            self.interleaved_writes -= 1
            old, version = self.profiles.get(doctor_id, ({**profile}, 0))
            self.profiles[doctor_id] = (old, version + 1)
        _, current = self.profiles.get(doctor_id, ({}, 0))
        if event.profile_version <= current:
            return CommitResult(False, failed_guard="version", found="1")
        self.profiles[doctor_id] = (copy.deepcopy(profile), event.profile_version)
        self.prefs[doctor_id] = prefs
        self.events.append(event)
        return CommitResult(True)

    async def pending(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        waiting = [
            copy.deepcopy(p)
            for p, _ in self.profiles.values()
            if (p.get("status") or "pending") == "pending"
        ]
        return waiting[:limit], len(waiting)

    async def index_old_pending(self) -> int:
        return 0  # the fake lists from the profiles themselves


class FakeInbox:
    """Notifications by id and by recipient, with the real store's bounds."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.ids: dict[str, set[str]] = {}
        self.once: set[str] = set()
        self.hidden_subjects: set[tuple[str, str]] = set()

    def put(self, recipient: str, item: dict[str, Any], read: bool = False) -> None:
        self.hashes[item["id"]] = {
            "item": json.dumps(item),
            "recipient": recipient,
            "read": "1" if read else "0",
            "d:inbox": "delivered",
        }
        self.ids.setdefault(recipient, set()).add(item["id"])

    def _mine(self, recipient: str, unread_only: bool) -> list[str]:
        ids = sorted(self.ids.get(recipient, ()))
        if unread_only:
            ids = [i for i in ids if self.hashes[i]["read"] != "1"]
        return ids

    async def page(
        self, recipient: str, unread_only: bool, before: str | None, count: int
    ) -> list[str]:
        ids = [i for i in reversed(self._mine(recipient, unread_only)) if not before or i < before]
        return ids[:count]

    async def newer(self, recipient: str, after: str, count: int) -> list[str]:
        return [i for i in self._mine(recipient, False) if i > after][:count]

    async def notes(self, nids: Sequence[str]) -> list[dict[str, str]]:
        return [dict(self.hashes.get(n, {})) for n in nids]

    async def unread_count(self, recipient: str) -> int:
        return len(self._mine(recipient, True))

    async def hidden(self, subjects: Sequence[tuple[str, str]]) -> list[bool]:
        return [subject in self.hidden_subjects for subject in subjects]

    async def index_old_digests(self) -> tuple[int, int]:
        return 0, 0  # every digest here was indexed when it was added

    async def about(
        self, subject: tuple[str, str], after: str | None, count: int
    ) -> tuple[list[tuple[str, str, str]], str | None]:
        raise NotImplementedError(MODERATION)

    async def moderate(
        self,
        subject: tuple[str, str],
        version: int,
        hidden: bool,
        after: str | None,
        count: int,
        ttl_s: int,
    ) -> ModerationStep:
        raise NotImplementedError(MODERATION)

    async def add_once(self, note: Notification, once: str) -> bool:
        if once in self.once:
            return False
        self.once.add(once)
        self.put(note.recipient, note.item)
        return True

    async def mark_read(
        self, recipient: str, nid: str, about: Sequence[tuple[str, str]] = ()
    ) -> bool:
        if nid not in self.hashes:
            return False
        self.hashes[nid]["read"] = "1"
        return True

    async def trim(self, recipients: Sequence[str], max_items: int, floor_id: str) -> int:
        return sum([self._trim_one(r, max_items, floor_id) for r in recipients])

    def _trim_one(self, recipient: str, max_items: int, floor_id: str) -> int:
        expired = [i for i in self._mine(recipient, False) if i < floor_id]
        mine = [i for i in self._mine(recipient, False) if i >= floor_id]
        over = max(len(mine) - max_items, 0)
        read = [i for i in mine if self.hashes[i]["read"] == "1"]
        unread = [i for i in mine if self.hashes[i]["read"] != "1"]
        surplus = (read + unread)[:over]
        for nid in expired + surplus:
            self.ids[recipient].discard(nid)
            del self.hashes[nid]
        return len(expired) + len(surplus)


class FakeDoctorIndex:
    """The directory's indexes over a list of doctors, measured with shared.geo."""

    def __init__(self) -> None:
        self.doctors: dict[str, tuple[DoctorRow, tuple[str, ...]]] = {}
        self.searches: list[tuple[float, int]] = []

    def add(
        self,
        doctor_id: str,
        specialties: tuple[str, ...],
        lat: float,
        lon: float,
        radius_km: float = 50.0,
        rating: float = 4.0,
        review_count: int = 10,
    ) -> None:
        row = DoctorRow(doctor_id, lat, lon, radius_km, rating, review_count, None)
        self.doctors[doctor_id] = (row, specialties)

    async def near(
        self, specialties: Sequence[str], lat: float, lon: float, radius_km: float, count: int
    ) -> tuple[dict[str, list[str]], bool]:
        self.searches.append((radius_km, count))
        found: dict[str, list[str]] = {}
        truncated = False
        for slug in specialties:
            inside = sorted(
                (geo.haversine_km(lat, lon, row.lat, row.lon), doctor_id)
                for doctor_id, (row, slugs) in self.doctors.items()
                if slug in slugs
            )
            nearest = [d for km, d in inside if km <= radius_km][:count]
            truncated = truncated or len(nearest) >= count
            for doctor_id in nearest:
                found.setdefault(doctor_id, []).append(slug)
        return found, truncated

    async def best_rated(self, specialties: Sequence[str], count: int) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for slug in specialties:
            ranked = sorted(
                (-row.rating, -row.review_count, d)
                for d, (row, slugs) in self.doctors.items()
                if slug in slugs
            )
            for *_, doctor_id in ranked[:count]:
                found.setdefault(doctor_id, []).append(slug)
        return found

    async def rows(self, doctor_ids: Sequence[str]) -> dict[str, DoctorRow]:
        return {d: self.doctors[d][0] for d in doctor_ids if d in self.doctors}

    async def match_batch(
        self, questions: Sequence[dict[str, Any]], policy: dict[str, Any], rings: dict[str, Any]
    ) -> list[tuple[str, str]]:
        raise NotImplementedError(BATCH_PATH)

    async def near_batch(
        self, searches: Sequence[tuple[Sequence[str], float, float, float, int]]
    ) -> list[list[list[str]]]:
        raise NotImplementedError(BATCH_PATH)

    async def text_rows(self, doctor_ids: Sequence[str]) -> dict[str, Row | None]:
        raise NotImplementedError(BATCH_PATH)


class FakeFrozenMatches:
    """Frozen matches by question id; the first stored wins."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}

    async def frozen(self, question_id: str) -> str | None:
        return self.stored.get(question_id)

    async def freeze(self, question_id: str, matches_json: str, ttl_s: int) -> str:
        return self.stored.setdefault(question_id, matches_json)


class FakeAlertStore:
    """Alert guards, counters, holds and projections; notifications go to a FakeInbox."""

    def __init__(self, inbox: FakeInbox) -> None:
        self.inbox = inbox
        self.guards: dict[tuple[str, ...], str] = {}
        self.sent: dict[tuple[str, str], int] = {}
        self.holds: dict[str, dict[str, float]] = {}  # doctor -> member -> release ms
        self.due: dict[str, float] = {}
        self.questions: dict[str, dict[str, str]] = {}
        self.tallies: dict[str, dict[str, int]] = {}
        self.locked: set[str] = set()
        self.urgent_asked: dict[tuple[str, str], set[str]] = {}
        self.urgent_pages: dict[tuple[str, str], set[str]] = {}
        # question -> user -> (newest follow version seen, following)
        self.follows: dict[str, dict[str, tuple[int, bool]]] = {}

    async def commit(self, change: AlertChange) -> bool:
        guards = [args[1] for kind, args in change.steps if kind == "once"]
        if any(tuple(g) in self.guards for g in guards):
            return False
        for kind, args in change.steps:
            if kind == "once":
                self.guards[tuple(args[1])] = args[0]
            elif kind == "notify":
                self.inbox.put(args[0].recipient, args[0].item)
            elif kind == "count":
                doctor_id, day, n = args
                self.sent[(doctor_id, day)] = self.sent.get((doctor_id, day), 0) + n
            elif kind in ("hold", "rehold"):
                doctor_id, release_ms, member = args
                self.holds.setdefault(doctor_id, {})[member] = release_ms
                if kind == "hold":
                    self.due[doctor_id] = min(self.due.get(doctor_id, release_ms), release_ms)
            elif kind == "unhold":
                self.holds.get(args[0], {}).pop(args[1], None)
            elif kind == "tally":
                answer_id, version, fields = args
                seen = self.tallies.setdefault(answer_id, {"version": 0})
                if version > seen["version"]:
                    seen.update(version=version, **fields)
        return True

    async def commit_many(self, changes: Sequence[AlertChange]) -> list[bool]:
        return [await self.commit(c) for c in changes]

    async def notify_each_once(
        self, alerts: Sequence[tuple[Notification, Sequence[str]]]
    ) -> list[bool]:
        # What the script does for each: `once` (the item id as marker), then `notify`.
        return [await self.commit(AlertChange().once(n.id, *g).notify(n)) for n, g in alerts]

    async def notify_once(self, note: Notification, guard: Sequence[str]) -> bool:
        [applied] = await self.notify_each_once([(note, guard)])
        return applied

    async def alert_batch(
        self, header: dict[str, Any], questions: Sequence[tuple[str, str, str]]
    ) -> list[BatchOutcome]:
        raise NotImplementedError(BATCH_PATH)

    async def sent_counts(self, doctor_days: Sequence[tuple[str, str]]) -> list[int]:
        return [self.sent.get(pair, 0) for pair in doctor_days]

    async def urgent_rank(self, asker_id: str, day: str, question_id: str) -> int:
        asked = self.urgent_asked.setdefault((asker_id, day), set())
        asked.add(question_id)
        return len(asked)

    async def urgent_paged(self, doctor_ids: Sequence[str], hour: str) -> list[int]:
        return [len(self.urgent_pages.get((d, hour), set())) for d in doctor_ids]

    async def note_urgent_paged(self, doctor_id: str, hour: str, question_id: str) -> None:
        self.urgent_pages.setdefault((doctor_id, hour), set()).add(question_id)

    async def remember_question(
        self, question_id: str, asker_id: str, title: str, ttl_s: int
    ) -> None:
        self.questions[question_id] = {"asker_id": asker_id, "title": title}

    async def question(self, question_id: str) -> dict[str, str]:
        return dict(self.questions.get(question_id, {}))

    async def apply_follow(
        self, question_id: str, user_id: str, version: int, following: bool, ttl_s: int
    ) -> bool:
        seen = self.follows.setdefault(question_id, {})
        if version <= seen.get(user_id, (0, False))[0]:
            return False
        seen[user_id] = (version, following)
        return True

    async def followers(self, question_id: str, after: str | None, count: int) -> list[str]:
        users = sorted(u for u, (_, on) in self.follows.get(question_id, {}).items() if on)
        return [u for u in users if after is None or u > after][:count]

    async def asker_follows(self, question_id: str, asker_id: str) -> bool:
        seen = self.follows.get(question_id, {}).get(asker_id)
        return seen is None or seen[1]

    async def vote_state(self, answer_id: str) -> tuple[int, int]:
        seen = self.tallies.get(answer_id, {})
        return seen.get("version", 0), seen.get("notified", 0)

    async def due_doctors(self, now_ms: int, count: int) -> list[str]:
        return sorted(d for d, at in self.due.items() if at <= now_ms)[:count]

    async def held(self, doctor_id: str) -> list[HeldEntry]:
        pairs = sorted(self.holds.get(doctor_id, {}).items(), key=lambda kv: kv[1])
        return [HeldEntry(member, at, json.loads(member)) for member, at in pairs]

    async def lock_release(self, doctor_id: str, ttl_s: int) -> bool:
        if doctor_id in self.locked:
            return False
        self.locked.add(doctor_id)
        return True

    async def unlock_release(self, doctor_id: str) -> None:
        self.locked.discard(doctor_id)

    async def refresh_due(self, doctor_id: str) -> None:
        holds = self.holds.get(doctor_id)
        if holds:
            self.due[doctor_id] = min(holds.values())
        else:
            self.due.pop(doctor_id, None)

    async def nudge(self, doctor_id: str, now_ms: int) -> None:
        if self.holds.get(doctor_id):
            self.due[doctor_id] = now_ms


class FakePrefs:
    """Alert preferences by doctor id."""

    def __init__(self) -> None:
        self.by_doctor: dict[str, dict[str, Any]] = {}

    async def prefs(self, doctor_id: str) -> dict[str, Any]:
        return dict(self.by_doctor.get(doctor_id, {}))

    async def prefs_many(self, doctor_ids: Sequence[str]) -> list[dict[str, Any]]:
        return [dict(self.by_doctor.get(d, {})) for d in doctor_ids]


# The fakes follow the ports the service layers name: `mypy tests/unit/notify_fakes.py`
# checks them against the Protocols here.
_ports: tuple[ProfileStore, InboxPort, DoctorIndex, FrozenMatches, AlertPort, AlertPrefs] = (
    FakeProfileStore(),
    FakeInbox(),
    FakeDoctorIndex(),
    FakeFrozenMatches(),
    FakeAlertStore(FakeInbox()),
    FakePrefs(),
)
