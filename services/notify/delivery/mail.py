"""E-mail channel: one message per notification over SMTP, with a stable Message-ID."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from ..settings import NotifySettings
from .attempts import Attempt, GiveUp, Retry


def email_attempt(
    settings: NotifySettings, address: str, nid: str, item: dict[str, Any]
) -> Attempt:
    """One SMTP send of the notification to `address` (the message is fixed across retries)."""
    s = settings
    sender_domain = s.smtp_from.rpartition("@")[2] or "askdoc.example"
    message = EmailMessage()
    message["From"] = s.smtp_from
    message["To"] = address
    message["Subject"] = subject(item)
    message["Message-ID"] = f"<{nid}@{sender_domain}>"
    message["Date"] = formatdate(localtime=False)
    message["X-Askdoc-Notification-Id"] = nid
    message.set_content(text(item))

    async def attempt() -> None:
        try:
            await aiosmtplib.send(
                message, hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_s
            )
        except aiosmtplib.SMTPRecipientsRefused:
            raise GiveUp("recipient refused") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise Retry(type(exc).__name__) from None

    return attempt


def subject(item: dict[str, Any]) -> str:
    """The subject line: what happened, never the question's body."""
    kind = item["kind"]
    prefix = "[URGENT] " if item.get("urgent") else ""
    if kind == "question-match":
        return f"{prefix}New question for you ({item.get('reason_text', '')})"
    if kind == "digest":
        return str(item.get("title") or "Your askdoc digest")
    if kind == "new-answer":
        return "A doctor answered your question"
    return f"askdoc: {item.get('reason_text', '')}"


def text(item: dict[str, Any]) -> str:
    """The plain-text body: the reason, the title, and where to read more."""
    lines = [str(item.get("reason_text") or "")]
    if item.get("title"):
        lines.append(f"Question: {item['title']}")
    for entry in item.get("items") or []:
        lines.append(f"- {entry.get('title')} ({entry.get('reason_text')})")
    lines += ["", f"Notification {item['id']}: see your askdoc inbox."]
    return "\n".join(lines)
