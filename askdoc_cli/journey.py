"""`askdoc trace QUESTION_ID`: a question's journey through the streams and to the doctors.

Read with plain redis-py, outside every consumer group: the question-posted event gives
the correlation id; answer-posted, vote-cast and notification-sent events of the same
question (or correlation id) follow; each alert's delivery status per channel and any
held alert come from notify's inbox and hold records; dead letters are matched by the
question id or correlation id inside the failed entry. `--doctor` explains one doctor.
"""

from __future__ import annotations

import json
import math
from typing import Any

from shared import streams
from shared.events import WIRE_FIELD
from shared.redis import RedisClient

PAGE = 1000
_FOLLOWING = (streams.ANSWER_POSTED, streams.VOTE_CAST, streams.NOTIFICATION_SENT)
# notify's own keys (services/notify/inbox/store.py, alerts/store.py), read-only here.
_NOTIFY_TAG = streams.slot_tag(streams.HOME_STREAM["notify"])
_CHANNELS = ("webhook", "email", "stream", "inbox")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def _entries(redis: RedisClient, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Every readable event of `stream`, oldest first (unreadable entries are skipped)."""
    found: list[tuple[str, dict[str, Any]]] = []
    start = "-"
    while True:
        batch = await redis.xrange(stream, start, "+", count=PAGE)
        for entry_id, fields in batch:
            data = {_text(k): _text(v) for k, v in fields.items()}
            try:
                event = json.loads(data.get(WIRE_FIELD, ""))
            except ValueError:
                event = None
            found.append((_text(entry_id), event if isinstance(event, dict) else {"_raw": data}))
        if len(batch) < PAGE:
            return found
        start = "(" + _text(batch[-1][0])


def _concerns(event: dict[str, Any], question_id: str, cid: str | None) -> bool:
    return event.get("question_id") == question_id or (
        cid is not None and event.get("correlation_id") == cid
    )


def _row(stream: str, entry_id: str, event: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "event_type",
        "occurred_at",
        "correlation_id",
        "producer",
        "traceparent",
        "answer_id",
        "notification_id",
        "recipient_id",
        "kind",
        "channels",
        "reason",
        "value",
    )
    row = {k: event[k] for k in keep if k in event}
    if "doctor" in event:
        row["doctor_id"] = event["doctor"].get("id")
    return {"stream": stream, "entry_id": entry_id, **row}


async def collect(
    redis: RedisClient, question_id: str, doctor_id: str | None = None
) -> dict[str, Any]:
    """The question's journey as a JSON-able report."""
    question: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    for entry_id, event in await _entries(redis, streams.QUESTION_POSTED):
        if event.get("question_id") == question_id:
            question = event
            events.append(_row(streams.QUESTION_POSTED, entry_id, event))
            break
    cid = question.get("correlation_id") if question else None
    for stream in _FOLLOWING:
        for entry_id, event in await _entries(redis, stream):
            if stream == streams.NOTIFICATION_SENT:
                # An alert's own correlation id is its cause's; only its question counts.
                if event.get("question_id") == question_id:
                    events.append(_row(stream, entry_id, event))
            elif _concerns(event, question_id, cid):
                events.append(_row(stream, entry_id, event))
    alerts = [await _alert(redis, e) for e in events if e["stream"] == streams.NOTIFICATION_SENT]
    letters = []
    for entry_id, letter in await _entries(redis, streams.DEAD_LETTER):
        failed = _failed_event(letter)
        if _concerns(failed, question_id, cid) or _concerns(letter, question_id, cid):
            letters.append(
                {
                    "entry_id": entry_id,
                    "source_stream": letter.get("source_stream"),
                    "group": letter.get("group"),
                    "error": letter.get("error"),
                    "delivery_count": letter.get("delivery_count"),
                }
            )
    report: dict[str, Any] = {
        "question_id": question_id,
        "found": question is not None,
        "correlation_id": cid,
        "specialties": question.get("specialties") if question else None,
        "urgent": question.get("urgent") if question else None,
        "events": sorted(events, key=lambda e: _id_key(e["entry_id"])),
        "alerts": alerts,
        "dead_letters": letters,
    }
    if doctor_id is not None:
        report["doctor"] = await _why(redis, question, question_id, doctor_id, alerts, letters)
    return report


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _failed_event(letter: dict[str, Any]) -> dict[str, Any]:
    fields = letter.get("fields") or {}
    if "nid" in fields:  # an outbox entry of notify's deliveries
        return {"notification_id": fields["nid"], "recipient_id": fields.get("recipient")}
    try:
        event = json.loads(fields.get(WIRE_FIELD, ""))
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


async def _alert(redis: RedisClient, row: dict[str, Any]) -> dict[str, Any]:
    nid = row.get("notification_id", "")
    note = await redis.hgetall(f"{_NOTIFY_TAG}:n:{nid}")
    stored = {_text(k): _text(v) for k, v in note.items()}
    delivery = {}
    for channel in row.get("channels") or []:
        if channel in ("inbox", "stream"):
            delivery[channel] = "in inbox" if stored else "expired from inbox"
        else:
            delivery[channel] = stored.get(f"d:{channel}", "unknown" if not stored else "queued")
    return {
        "notification_id": nid,
        "recipient_id": row.get("recipient_id"),
        "kind": row.get("kind"),
        "reason": row.get("reason") or {},
        "delivery": delivery,
        "read": stored.get("read") == "1",
    }


async def _profile(redis: RedisClient, doctor_id: str) -> dict[str, Any] | None:
    """The doctor's newest public profile on askdoc.doctor-profile-changed."""
    newest: dict[str, Any] | None = None
    for _, event in await _entries(redis, streams.DOCTOR_PROFILE_CHANGED):
        if event.get("doctor_id") == doctor_id and (
            newest is None or event.get("profile_version", 0) >= newest.get("profile_version", 0)
        ):
            newest = event
    return newest


async def _held(redis: RedisClient, doctor_id: str, question_id: str) -> dict[str, Any] | None:
    for member in await redis.zrange(f"{_NOTIFY_TAG}:held:{doctor_id}", 0, -1):
        try:
            hold = json.loads(_text(member))
        except ValueError:
            continue
        if isinstance(hold, dict) and hold.get("question_id") == question_id:
            return hold
    return None


def km_between(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Great-circle distance in km between two {lat, lon} places."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a["lat"], a["lon"], b["lat"], b["lon"]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


async def _why(
    redis: RedisClient,
    question: dict[str, Any] | None,
    question_id: str,
    doctor_id: str,
    alerts: list[dict[str, Any]],
    letters: list[dict[str, Any]],
) -> dict[str, Any]:
    """Why the doctor did or did not hear of the question, as far as the data tells."""
    verdict: dict[str, Any] = {"doctor_id": doctor_id}
    if question is None:
        return {
            **verdict,
            "verdict": "unknown",
            "why": "the question-posted event is not on the stream (trimmed or never posted)",
        }
    mine = [a for a in alerts if a["recipient_id"] == doctor_id and a["kind"] == "question-match"]
    if mine:
        alert = mine[0]
        failed = {c: s for c, s in alert["delivery"].items() if s in ("failed", "refused")}
        if failed:
            channels = ", ".join(f"{c} {s}" for c, s in failed.items())
            return {
                **verdict,
                "verdict": "delivery failed",
                "why": f"alerted ({alert['notification_id']}) but {channels}",
                "alert": alert,
            }
        return {
            **verdict,
            "verdict": "alerted",
            "why": "alerted: " + reason_text(alert["reason"]),
            "alert": alert,
        }
    hold = await _held(redis, doctor_id, question_id)
    if hold is not None:
        why = {"quiet_hours": "quiet hours", "daily_cap": "daily cap reached"}.get(
            str(hold.get("reason")), str(hold.get("reason"))
        )
        verdict_name = "capped" if hold.get("reason") == "daily_cap" else "held"
        return {**verdict, "verdict": verdict_name, "why": f"alert held: {why}", "hold": hold}
    for letter in letters:
        if (
            letter.get("source_stream") == streams.QUESTION_POSTED
            and letter.get("group") == "notify"
        ):
            return {
                **verdict,
                "verdict": "dead-lettered",
                "why": f"notify gave up on the question: {letter.get('error')}",
            }
    profile = await _profile(redis, doctor_id)
    if profile is None:
        return {
            **verdict,
            "verdict": "not matched",
            "why": "no profile of this doctor on askdoc.doctor-profile-changed",
        }
    wanted = set(question.get("specialties") or [])
    theirs = set(profile.get("specialties") or [])
    if wanted and not wanted & theirs:
        return {
            **verdict,
            "verdict": "not matched",
            "why": f"specialties {sorted(theirs)} share none with the question's {sorted(wanted)}",
        }
    place, practice = question.get("location"), profile.get("location")
    if place and practice:
        km = km_between(place, practice)
        radius = float(profile.get("radius_km") or 0)
        verdict["distance_km"] = round(km, 1)
        if km > radius:
            return {
                **verdict,
                "verdict": "out of radius",
                "why": f"{km:.1f} km from the asker, alert radius {radius:g} km",
            }
    chosen = sum(1 for a in alerts if a["kind"] == "question-match")
    return {
        **verdict,
        "verdict": "capped",
        "why": f"matched by specialty and distance but not among the {chosen} chosen "
        "(nearer or better-rated doctors filled the per-question cap)",
    }


def reason_text(reason: dict[str, Any]) -> str:
    """Why an alert went to its doctor, in a few words."""
    parts = [f"specialty {reason.get('specialty')}"]
    if reason.get("distance_km") is not None:
        parts.append(f"{reason['distance_km']} km")
    if reason.get("rank") is not None:
        parts.append(f"rank {reason['rank']}")
    return ", ".join(parts)
