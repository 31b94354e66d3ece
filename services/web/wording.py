"""How an alert's reason and delivery read on the inbox page, in words people use.

notify's `reason_text` and delivery statuses are API fields other clients rely on, so
they stay as they are; the web says them again from the structured fields it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: How each external channel is named in a sentence.
CHANNELS = {"inbox": "inbox", "webhook": "webhook", "email": "e-mail"}


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th ... 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _km(value: Any) -> str:
    return f"{float(value):g} km"


def _place(rank: Any, who: str) -> str:
    """'; you were the nearest doctor asked' (rank 1), '; ... the 2nd nearest ...'."""
    if not isinstance(rank, int) or rank < 1:
        return ""
    return (
        f"; you were the {who} asked"
        if rank == 1
        else f"; you were the {ordinal(rank)} {who} asked"
    )


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def alert_reason(
    kind: str, reason: Mapping[str, Any], reason_text: str, specialty_name: Callable[[str], str]
) -> str:
    """Why the alert was sent, as a sentence: a question match names the specialty by
    its display name, the distance and the rank in words; other kinds say notify's text."""
    if kind == "digest" and isinstance(reason.get("count"), int):
        count = reason["count"]
        alerts = "a question alert" if count == 1 else f"{count} question alerts"
        return f"You reached your daily limit, so {alerts} waited for this one message."
    slug = reason.get("specialty")
    if kind != "question-match" or not isinstance(slug, str) or not slug:
        return _sentence(reason_text or "you follow this question")
    name = specialty_name(slug)
    distance = reason.get("distance_km")
    rank = reason.get("rank")
    if reason.get("escalation"):
        waited = reason.get("no_answer_after") or "a while"
        where = (
            f"you are {_km(distance)} from the asker"
            if distance is not None
            else "you are among the best-rated doctors"
        )
        text = (
            f"No doctor had answered after {waited}, so more were asked: it matches your"
            f" specialty, {name}, and {where}."
        )
    elif distance is None:
        text = (
            f"It matches your specialty, {name}. The asker gave no location, so the"
            f" best-rated doctors were asked{_place(rank, 'best-rated doctor')}."
        )
    else:
        text = (
            f"It matches your specialty, {name}, and the asker is {_km(distance)} from you"
            f"{_place(rank, 'nearest doctor')}."
        )
        if reason.get("widened") and reason.get("radius_km"):
            text += (
                " Few doctors practise nearer, so the search went out to"
                f" {_km(reason['radius_km'])}."
            )
    held = reason.get("held")
    if held == "quiet_hours":
        text += " It waited until your quiet hours ended."
    elif held == "daily_cap":
        text += " It waited because you had reached your daily limit."
    return text


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def delivery_words(delivery: Mapping[str, str]) -> str:
    """Where the alert went and how that went, e.g. 'Sent to your inbox and webhook'"""
    by_status: dict[str, list[str]] = {}
    for channel, status in delivery.items():
        by_status.setdefault(status, []).append(CHANNELS.get(channel, channel))
    if not by_status:
        return "Sent to your inbox"
    parts = []
    if sent := by_status.pop("delivered", []):
        parts.append(f"Sent to your {_listed(sent)}")
    if waiting := by_status.pop("pending", []):
        parts.append(f"{_listed(waiting)} on {'its' if len(waiting) == 1 else 'their'} way")
    if again := by_status.pop("retrying", []):
        parts.append(f"{_listed(again)} not through yet, trying again")
    if failed := by_status.pop("failed", []):
        parts.append(f"could not reach your {_listed(failed)}")
    if refused := by_status.pop("refused", []):
        parts.append(f"your {_listed(refused)} refused it")
    if skipped := by_status.pop("skipped", []):
        parts.append(f"not sent to your {_listed(skipped)}")
    for status, channels in by_status.items():
        parts.append(f"{_listed(channels)}: {status}")
    text = "; ".join(parts)
    # A part of the meta line ('... UTC · Sent to your inbox · Unread'): no full stop.
    return text[0].upper() + text[1:]
