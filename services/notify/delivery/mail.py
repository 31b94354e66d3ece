"""E-mail channel: one message per notification over SMTP, as inboxes expect it.

A stable Message-ID (from the notification id), a plain-text and an HTML part (the
HTML escapes every value), a link to the web's settings page, and one-click
unsubscribe (RFC 8058): `List-Unsubscribe` with an https link signed for the
recipient and a mailto, plus `List-Unsubscribe-Post`.
"""

from __future__ import annotations

import hashlib
import hmac
from email.message import EmailMessage
from email.utils import formatdate
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

import aiosmtplib

from ..settings import NotifySettings
from .attempts import Attempt, GiveUp, Retry
from .domain import unsubscribe_token

UNSUBSCRIBE_PATH = "/unsubscribe/email"


def unsubscribe_key(settings: NotifySettings) -> bytes:
    """The key that signs unsubscribe links (derived from the JWT secret, for one use)."""
    secret = settings.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, b"askdoc e-mail unsubscribe", hashlib.sha256).digest()


def unsubscribe_url(settings: NotifySettings, recipient: str) -> str:
    """The signed one-click link that turns e-mail alerts off for `recipient`."""
    token = unsubscribe_token(unsubscribe_key(settings), recipient)
    query = urlencode({"r": recipient, "t": token})
    return f"{settings.public_url.rstrip('/')}{UNSUBSCRIBE_PATH}?{query}"


def settings_url(settings: NotifySettings) -> str:
    """Where a recipient changes their alerts on the web."""
    return f"{settings.public_url.rstrip('/')}/settings"


def message_for(
    settings: NotifySettings, address: str, nid: str, recipient: str, item: dict[str, Any]
) -> EmailMessage:
    """The whole message of one notification (the same on every retry)."""
    s = settings
    sender_domain = s.smtp_from.rpartition("@")[2] or "askdoc.example"
    unsubscribe = unsubscribe_url(s, recipient)
    token = unsubscribe_token(unsubscribe_key(s), recipient)
    mailto = f"mailto:unsubscribe@{sender_domain}?subject=" + quote(f"unsubscribe {token}")
    message = EmailMessage()
    message["From"] = s.smtp_from
    message["To"] = address
    message["Subject"] = subject(item)
    message["Message-ID"] = f"<{nid}@{sender_domain}>"
    message["Date"] = formatdate(localtime=False)
    message["X-Askdoc-Notification-Id"] = nid
    message["List-Unsubscribe"] = f"<{unsubscribe}>, <{mailto}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    links = Links(settings=settings_url(s), unsubscribe=unsubscribe)
    message.set_content(text(item, links))
    message.add_alternative(html(item, links), subtype="html")
    return message


def email_attempt(
    settings: NotifySettings, address: str, nid: str, recipient: str, item: dict[str, Any]
) -> Attempt:
    """One SMTP send of the notification to `address` (the message is fixed across retries)."""
    s = settings
    message = message_for(settings, address, nid, recipient, item)

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


class Links:
    """The links every alert e-mail carries."""

    def __init__(self, settings: str, unsubscribe: str) -> None:
        self.settings = settings
        self.unsubscribe = unsubscribe


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
    if kind == "answer-accepted":
        return "The asker marked your answer most helpful"
    if kind == "item-hidden":
        return "A moderator hid your post"
    if kind == "item-restored":
        return "A moderator restored your post"
    return f"askdoc: {item.get('reason_text', '')}"


def _lines(item: dict[str, Any]) -> list[str]:
    lines = [str(item.get("reason_text") or "")]
    if item.get("title"):
        lines.append(f"Question: {item['title']}")
    for entry in item.get("items") or []:
        lines.append(f"- {entry.get('title')} ({entry.get('reason_text')})")
    return lines


def text(item: dict[str, Any], links: Links) -> str:
    """The plain-text body: the reason, the title, and where to read more or opt out."""
    return "\n".join(
        [
            *_lines(item),
            "",
            f"Notification {item['id']}: see your askdoc inbox.",
            f"Change your alerts: {links.settings}",
            f"Stop these e-mails: {links.unsubscribe}",
        ]
    )


def html(item: dict[str, Any], links: Links) -> str:
    """The HTML body: the same content, every value escaped."""
    paragraphs = "".join(f"<p>{escape(line)}</p>" for line in _lines(item) if line)
    return (
        '<!doctype html><html><body style="font-family:sans-serif">'
        f"{paragraphs}"
        f"<p>Notification {escape(str(item['id']))}: see your askdoc inbox.</p>"
        f'<p><a href="{escape(links.settings)}">Change your alerts</a> · '
        f'<a href="{escape(links.unsubscribe)}">Stop these e-mails</a></p>'
        "</body></html>"
    )
