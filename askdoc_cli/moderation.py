"""`askdoc moderation list|hide|restore|dismiss`: the admins' moderation queue on questions.

`list` reads `GET /moderation/queue` (open: flagged items, most flags then oldest first;
hidden: what moderators took down); `hide`, `restore` and `dismiss` (flags judged
harmless: off the open queue, the item stays shown) send a decision with
`PUT /moderation/questions/{id}[/answers/{id}]`. The service judges everything; its error
message is reported as is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from askdoc_cli.doctors import error_message

COLUMNS = ("item", "question", "flags", "reasons", "first flagged", "status", "title")


def _item_path(question_id: str, answer_id: str | None) -> str:
    path = f"/moderation/questions/{quote(question_id, safe='')}"
    return path + (f"/answers/{quote(answer_id, safe='')}" if answer_id else "")


async def _call(
    method: str, url: str, token: str, **kwargs: Any
) -> tuple[int, dict[str, Any] | str]:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.request(method, url, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        return 0, f"cannot reach questions at {url}: {exc}"
    if response.is_success:
        body: dict[str, Any] = response.json()
        return response.status_code, body
    return response.status_code, error_message(response)


async def queue(
    base_url: str, token: str, status: str, limit: int, cursor: str | None
) -> tuple[int, dict[str, Any] | str]:
    """One page of the moderation queue (or of the hidden items)."""
    params: dict[str, Any] = {"status": status, "limit": limit}
    if cursor:
        params["cursor"] = cursor
    return await _call("GET", f"{base_url.rstrip('/')}/moderation/queue", token, params=params)


async def decide(
    base_url: str,
    token: str,
    question_id: str,
    answer_id: str | None,
    decision: str,
    reason: str | None,
) -> tuple[int, dict[str, Any] | str]:
    """Hide, restore or dismiss the flags of a question or an answer; the service's reply."""
    body: dict[str, Any] = {"decision": decision}
    if reason:
        body["reason"] = reason
    url = base_url.rstrip("/") + _item_path(question_id, answer_id)
    return await _call("PUT", url, token, json=body)


def table_rows(page: dict[str, Any]) -> list[list[str]]:
    """The queue as table rows: one per item, reasons with their counts."""
    rows = []
    for item in page["items"]:
        reasons = ", ".join(f"{r} {n}" for r, n in item["counts"].items() if n)
        rows.append(
            [
                f"{item['item_kind']} {item['item_id']}",
                item["question_id"],
                str(item["flag_count"]),
                reasons,
                item.get("first_flagged_at") or "",
                item["status"],
                item.get("title") or "",
            ]
        )
    return rows
