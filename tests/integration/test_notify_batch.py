"""The batch scripts against their Python oracles, on random directories (hypothesis).

The batch search, `match_batch.lua` or (ASKDOC_MATCH_IN_REPLICA) `matching/batch.py` (every
ring of a batch's questions in one call of `near_batch.lua`, rows by `text_rows.lua`, ranked in
Python), must choose, for every question, exactly the matches of `Matcher.search` (the ring
search and `matching.domain`), and both must write them alike; `alert_batch.lua` with the full
path for what it defers must leave Redis as the full path alone does, question after
question (`AlertService.on_question_posted`): the same inbox items, held alerts, day
counts, guards, events and outbox entries.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.notify.directory.domain import rating_score
from services.notify.directory.service import SaveDoctorProfile
from services.notify.directory.store import DIRECTORY_TAG
from services.notify.matching.batch import json_text, matches_text
from services.notify.matching.domain import Match
from services.notify.parts import NotifyParts, build_parts
from services.notify.settings import NotifySettings
from shared import streams
from shared.atomic import Committer
from shared.events import Location, QuestionPosted
from shared.geo import PlaceQuery
from shared.logging import bind_correlation_id
from shared.redis import make_redis
from tests.support import JWT_SECRET

SLUGS = ("dermatology", "plastic-surgery", "otolaryngology")
CENTRES = ((34.05, -118.24), (34.9, -118.2), (36.1, -115.1))
ZONES = ("", "America/Los_Angeles", "Asia/Kolkata")
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def notify_settings(url: str, **extra: Any) -> NotifySettings:
    fields: dict[str, Any] = {
        "match_cap": 3,
        "match_min": 2,
        "first_search_km": 5,
        "max_radius_km": 300,
        "geo_search_count": 2,
        "geo_search_max": 8,
    }
    return NotifySettings(  # type: ignore[call-arg]
        redis_url=url, jwt_secret=JWT_SECRET, **{**fields, **extra}
    )


def quiet_hours(data: st.DataObject, zone: str) -> dict[str, str] | None:
    """None, or a window that holds now or clearly does not (never within minutes of an end)."""
    kind = data.draw(st.sampled_from(["none", "now", "not_now", "never"]))
    if kind == "none":
        return None
    local = datetime.now(UTC).astimezone(ZoneInfo(zone or "UTC"))
    if kind == "never":
        start = end = local
    elif kind == "now":
        start = local - timedelta(minutes=data.draw(st.integers(20, 600)))
        end = local + timedelta(minutes=data.draw(st.integers(20, 600)))
    else:
        start = local + timedelta(minutes=data.draw(st.integers(20, 600)))
        end = start + timedelta(minutes=data.draw(st.integers(20, 600)))
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "tz": zone or "UTC"}


def doctor_rows(data: st.DataObject, with_prefs: bool) -> list[dict[str, Any]]:
    rows = []
    for n in range(data.draw(st.integers(0, 14))):
        lat, lon = data.draw(st.sampled_from(CENTRES))
        zone = data.draw(st.sampled_from(ZONES)) if with_prefs else ""
        qh = quiet_hours(data, zone) if with_prefs else None
        prefs = {
            "quiet_hours": qh,
            "daily_cap": data.draw(st.none() | st.integers(0, 2)) if with_prefs else None,
            "channels": data.draw(st.sampled_from([[], ["webhook"], ["email", "webhook"]])),
            "verified": True,
        }
        rows.append(
            {
                "id": f"d{n}",
                "lat": lat + data.draw(st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.2])),
                "lon": lon + data.draw(st.sampled_from([0.0, 0.02, 0.4])),
                "radius_km": float(data.draw(st.sampled_from([3, 20, 60, 150]))),
                "rating": data.draw(st.sampled_from([3.0, 4.5, 5.0])),
                "reviews": data.draw(st.integers(0, 2)),
                "specialties": data.draw(st.lists(st.sampled_from(SLUGS), min_size=1, max_size=3)),
                "tz": (qh or {}).get("tz", ""),
                "prefs": prefs,
            }
        )
    return rows


def load(client: redis.Redis, rows: list[dict[str, Any]]) -> None:
    pipe = client.pipeline(transaction=False)
    for r in rows:
        pipe.hset(
            f"{DIRECTORY_TAG}:doc:{r['id']}",
            mapping={
                "lat": repr(r["lat"]),
                "lon": repr(r["lon"]),
                "radius_km": repr(r["radius_km"]),
                "rating": repr(r["rating"]),
                "review_count": r["reviews"],
                "tz": r["tz"],
                "prefs": json.dumps(r["prefs"]),
            },
        )
        for slug in dict.fromkeys(r["specialties"]):
            pipe.geoadd(f"{DIRECTORY_TAG}:geo:{slug}", (r["lon"], r["lat"], r["id"]))
            pipe.zadd(
                f"{DIRECTORY_TAG}:rated:{slug}",
                {r["id"]: rating_score(r["rating"], r["reviews"])},
            )
    pipe.execute()


def dermatology_question(at: Location) -> QuestionPosted:
    """Question q1 by p1, for a dermatologist, asked at `at`."""
    return QuestionPosted(
        correlation_id="c",
        producer="test",
        question_id="q1",
        title="t",
        body="b",
        topics=[],
        specialties=["dermatology"],
        location=at,
        asker_id="p1",
    )


def questions(data: st.DataObject, urgent: bool) -> list[QuestionPosted]:
    out = []
    for n in range(data.draw(st.integers(1, 4))):
        located = data.draw(st.booleans() | st.just(True))
        lat, lon = data.draw(st.sampled_from(CENTRES))
        out.append(
            QuestionPosted(
                correlation_id=f"c{n}",
                producer="test",
                question_id=f"q{n}",
                title=f'Question "{n}" / {data.draw(st.sampled_from(["a", "é", "x%y"]))}',
                body="b",
                topics=[],
                specialties=data.draw(st.lists(st.sampled_from(SLUGS), max_size=3)),
                location=Location(lat=lat + 0.02, lon=lon) if located else None,
                asker_id=data.draw(st.sampled_from(["p1", "d0", "d1"])),
                urgent=urgent and data.draw(st.booleans()),
                red_flags=["chest-pain"] if data.draw(st.booleans()) else [],
            )
        )
    return out


def parts_on(url: str, **extra: Any) -> NotifyParts:
    s = notify_settings(url, **extra)
    client = make_redis(s)
    return build_parts(client, Committer(client), "{askdoc.notification-sent}", s)


@settings(max_examples=60, deadline=None, suppress_health_check=HEALTH)
@given(data=st.data())
def test_batch_matching_chooses_what_the_ring_search_chooses(
    redis_url: str, data: st.DataObject
) -> None:
    """Both batch searches choose the oracle's matches and write them byte for byte alike."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    load(client, doctor_rows(data, with_prefs=False))
    events = questions(data, urgent=False)
    # the cap against the fewest matches before widening, either way round (the script
    # ranks a ring only when its completeness depends on it)
    policy = {
        "match_cap": data.draw(st.integers(0, 4)),
        "match_min": data.draw(st.integers(0, 5)),
    }

    async def both() -> tuple[list[list[list[Match]]], list[list[Match]], list[list[str]]]:
        runs, texts = [], []
        for in_replica in (False, True):
            parts = parts_on(redis_url, match_in_replica=in_replica, **policy)
            try:
                # The first call reads the profiles' fields and keeps the rows it read; the
                # second reads those kept rows: both must choose what the oracle chooses.
                for _ in range(2):
                    batch = await parts.matcher.match_batch(events)
                    runs.append([[Match(**m) for m in json.loads(raw)] for raw, _ in batch])
                    texts.append([raw + doctors for raw, doctors in batch])
                oracle = [(await parts.matcher.search(e))[0] for e in events]
            finally:
                await parts.stores.directory.redis.aclose()
        return runs, oracle, texts

    runs, oracle, texts = asyncio.run(both())
    assert all(run == oracle for run in runs)
    # what the Lua writes is what the replica writes (a redelivery compares the text)
    assert all(text == texts[0] for text in texts)


def test_a_ring_whose_best_match_was_widened_to_is_searched_on(redis_url: str) -> None:
    """With a cap below the fewest matches, a ring with enough doctors in their own radius
    for the cap can still be incomplete: the best ranked one was widened to. The batch
    script must then search the next ring, as the oracle does, and find a better doctor."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    lat, lon = 34.05, -118.24
    base = {"reviews": 0, "specialties": ["dermatology"], "tz": "", "prefs": {}}
    load(
        client,
        [
            # 4 km north, in their own radius; 2 km north, reached by widening their radius
            # 1.5 times (and better rated); 8 km north, beyond the first ring, best rated
            {**base, "id": "d1", "lat": lat + 0.036, "lon": lon, "radius_km": 10.0, "rating": 3.0},
            {**base, "id": "d2", "lat": lat + 0.018, "lon": lon, "radius_km": 1.5, "rating": 4.5},
            {**base, "id": "d3", "lat": lat + 0.072, "lon": lon, "radius_km": 20.0, "rating": 5.0},
        ],
    )
    question = dermatology_question(Location(lat=lat, lon=lon))

    async def run(in_replica: bool) -> tuple[list[Match], list[Match]]:
        parts = parts_on(
            redis_url, match_cap=1, match_min=3, geo_search_count=10, match_in_replica=in_replica
        )
        try:
            ((raw, _),) = await parts.matcher.match_batch([question])
            return [Match(**m) for m in json.loads(raw)], (await parts.matcher.search(question))[0]
        finally:
            await parts.stores.directory.redis.aclose()

    for in_replica in (False, True):
        batch, oracle = asyncio.run(run(in_replica))
        assert [(m.doctor_id, m.widened) for m in oracle] == [("d3", False)]
        assert batch == oracle


def test_a_saved_profile_change_reaches_the_batch_matching(redis_url: str) -> None:
    """A packed row never outlives the profile it was read from: a move, a new radius or
    new preferences saved after a batch matched the doctor count in the next batch."""
    redis.Redis.from_url(redis_url).flushdb()
    # The doctor's office is about 15 km east of the asker, then in another state.
    here, near, there = (
        Location(lat=34.05, lon=-118.24),
        Location(lat=34.05, lon=-118.08),
        Location(lat=36.1, lon=-115.1),
    )
    question = dermatology_question(here)

    def profile(at: Location, radius_km: float, daily_cap: int | None) -> SaveDoctorProfile:
        return SaveDoctorProfile(
            doctor_id="d1",
            actor_id="admin",
            actor_is_admin=True,
            name="Dr One",
            credentials="MD",
            specialties=("dermatology",),
            location=PlaceQuery(lat=at.lat, lon=at.lon),
            radius_km=radius_km,
            daily_cap=daily_cap,
            npi="1234567893",
            status="verified",
        )

    async def run(in_replica: bool) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
        parts = parts_on(redis_url, match_in_replica=in_replica)
        seen = []
        try:
            for at, radius_km, cap in ((near, 5, None), (near, 50, 2), (there, 50, 2)):
                await parts.directory.save_profile(profile(at, radius_km, cap))
                ((matches, doctors),) = await parts.matcher.match_batch([question])
                oracle = (await parts.matcher.search(question))[0]
                assert [Match(**m) for m in json.loads(matches)] == oracle
                seen.append(([asdict(m) for m in oracle], json.loads(doctors)))
            return seen
        finally:
            await parts.stores.directory.redis.aclose()

    for in_replica in (False, True):
        redis.Redis.from_url(redis_url).flushdb()
        check(*asyncio.run(run(in_replica)))


def check(
    small: tuple[list[dict[str, Any]], dict[str, Any]],
    wide: tuple[list[dict[str, Any]], dict[str, Any]],
    moved: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    assert [(m["doctor_id"], m["widened"]) for m in small[0]] == [("d1", True)]
    assert small[1]["d1"]["prefs"]["daily_cap"] is None
    assert [(m["doctor_id"], m["widened"]) for m in wide[0]] == [("d1", False)]
    assert wide[1]["d1"]["prefs"]["daily_cap"] == 2
    assert moved[0] == [] and moved[1] == {}


def norm(value: Any) -> Any:
    """JSON numbers as numbers: 75 and 75.0 are one distance (Lua writes the first)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    return value


def state(client: redis.Redis) -> dict[str, Any]:
    """What an alert leaves in Redis, without the random parts (ids, instants)."""
    tag = "{askdoc.notification-sent}"
    items = []
    for key in client.scan_iter(f"{tag}:n:*"):
        note = client.hgetall(key)
        item = json.loads(note[b"item"])
        del item["id"], item["created_at"]
        status = {k.decode(): v.decode() for k, v in note.items() if k.startswith(b"d:")}
        # Hidden (about a question a moderator hid) or in the recipient's indexes.
        recipient = note[b"recipient"]
        hidden = note.get(b"hidden") == b"1"
        indexed = [
            client.zscore(f"{tag}:{index}:".encode() + recipient, key.rsplit(b":", 1)[1])
            is not None
            for index in ("inbox", "unread")
        ]
        items.append(
            json.dumps(norm([recipient.decode(), item, status, hidden, indexed]), sort_keys=True)
        )
    held = []
    for key in client.scan_iter(f"{tag}:held:*"):
        for member in client.zrange(key, 0, -1):
            h = json.loads(member)
            match = json.dumps(norm(h["match"]), sort_keys=True)
            held.append((key.decode(), h["question_id"], h["reason"], match))
    events = []
    for _, fields in client.xrange(streams.NOTIFICATION_SENT):
        e = json.loads(fields[b"__data__"])
        for k in ("event_id", "occurred_at", "notification_id"):
            del e[k]
        events.append(json.dumps(norm(e), sort_keys=True))
    outbox = [(f[b"recipient"], f[b"channels"]) for _, f in client.xrange(f"{tag}:outbox")]
    counters = {k: client.get(k) for k in client.scan_iter(f"{tag}:sent:*")}
    # Every key an alert writes expires, counters and indexes whoever wrote them last.
    lasting = sorted(
        key
        for pattern in ("sent", "inbox", "unread", "n", "once:qm", "about")
        for key in client.scan_iter(f"{tag}:{pattern}:*")
        if client.ttl(key) < 0
    )
    guards = sorted(client.scan_iter(f"{tag}:once:qm:*"))
    projections = {k: client.hgetall(k) for k in client.scan_iter(f"{tag}:q:*")}
    escalations = client.zrange(f"{tag}:esc-due", 0, -1, withscores=True)
    # Which notifications are about which question, so a moderator's decision finds them.
    about = {k: client.zcard(k) for k in client.scan_iter(f"{tag}:about:*")}
    return {
        "about": about,
        "items": Counter(items),
        "held": Counter(held),
        "events": Counter(events),
        "outbox": Counter(outbox),
        "counters": counters,
        "lasting": lasting,
        "guards": guards,
        "projections": projections,
        "escalations": escalations,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=HEALTH)
@given(data=st.data())
def test_batch_alerts_leave_what_the_full_path_leaves(
    redis_server: Any, data: st.DataObject
) -> None:
    urls = [redis_server.url.rsplit("/", 1)[0] + f"/{db}" for db in (1, 2)]
    clients = [redis.Redis.from_url(u) for u in urls]
    rows = doctor_rows(data, with_prefs=True)
    events = questions(data, urgent=True)
    # Some alerts went out before (a redelivery finds their guards) and some were counted.
    sent_before = {r["id"]: data.draw(st.integers(0, 2)) for r in rows}
    seen = data.draw(st.sets(st.sampled_from([r["id"] for r in rows]))) if rows else set()
    for client in clients:
        client.flushdb()
        load(client, rows)
    email = data.draw(st.sampled_from([{}, {"smtp_host": "mail.test"}]))
    learned = data.draw(st.booleans())
    # A moderator hid some questions before notify saw them (a backlog): alerted in hiding.
    hidden = data.draw(st.sets(st.sampled_from([e.question_id for e in events])))

    # the batch's matches ranked by match_batch.lua or in the replica
    in_replica = data.draw(st.booleans())

    async def run(url: str, batch: bool) -> None:
        parts = parts_on(url, match_in_replica=in_replica, **email)
        tag = "{askdoc.notification-sent}"
        redis_ = parts.stores.alerts.redis
        try:
            for r in rows:
                zone = r["tz"] or "UTC"
                local_day = datetime.now(UTC).astimezone(ZoneInfo(zone)).date().isoformat()
                await redis_.set(f"{tag}:sent:{r['id']}:{local_day}", sent_before[r["id"]])
                if r["id"] in seen and events:
                    await redis_.set(f"{tag}:once:qm:{events[0].question_id}:{r['id']}", "n-old")
            for qid in hidden:
                await redis_.set(f"{tag}:hidden:q:{qid}", 1)
            if batch:
                # Half the time the script has every clock; else it meets zones as it goes.
                if learned:
                    parts.alerts.learn_zones(["UTC", *ZONES])
                rest = await parts.alerts.on_questions_posted(events, parts.escalations.watch)
                for event in rest:
                    bind_correlation_id(event.correlation_id)  # as the consumer does
                    await parts.alerts.on_question_posted(event)
                    await parts.escalations.on_question_posted(event)
            else:
                # One question at a time in the stream's order: what the batch must equal.
                for event in events:
                    bind_correlation_id(event.correlation_id)
                    await parts.alerts.on_question_posted(event)
                    await parts.escalations.on_question_posted(event)
        finally:
            await redis_.aclose()
            await parts.stores.directory.redis.aclose()

    asyncio.run(run(urls[0], batch=True))
    asyncio.run(run(urls[1], batch=False))
    batch_state, full_state = state(clients[0]), state(clients[1])
    for key in full_state:
        assert batch_state[key] == full_state[key], key


def test_matches_are_written_as_cjson_writes_them(redis_url: str) -> None:
    """The batch search writes strings and numbers byte for byte as cjson does, the form
    the alerts' script stores and a redelivery (or a replica of the version before, whose
    Lua wrote them) compares with."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for text in ["d1", "a/b", 'say "hi"', "back\\slash", "é", "\x7f", "\x01\n\t", "x%y", ""]:
        assert json_text(text) == client.eval("return cjson.encode(ARGV[1])", 0, text)
    matches = [
        Match("d/1", "dermatology", 12.3, 1, False, 88.00000000000001),
        Match("d2", "é", 0.0, 2, True, 1e-7),
        Match("d3", "x", 0.0, 3, False, 0.0, located=False),
    ]
    lua = client.eval(
        "local out = {} for i = 1, #ARGV do out[i] = cjson.encode(tonumber(ARGV[i])) end"
        " return out",
        0,
        *(repr(x) for m in matches for x in (m.distance_km, m.radius_used_km)),
    )
    assert matches_text(matches) == (
        f'[{{"doctor_id":"d\\/1","specialty":"dermatology","distance_km":{lua[0]},"rank":1,'
        f'"widened":false,"radius_used_km":{lua[1]}}},'
        f'{{"doctor_id":"d2","specialty":"é","distance_km":{lua[2]},"rank":2,'
        f'"widened":true,"radius_used_km":{lua[3]}}},'
        '{"doctor_id":"d3","specialty":"x","distance_km":0,"rank":3,"widened":false,'
        '"radius_used_km":0,"located":false}]'
    )
