"""Webhook channel: a signed POST to the doctor's URL, checked against SSRF every time."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from .attempts import Attempt, GiveUp, Retry
from .domain import check_webhook_url, sign_webhook


def webhook_attempt(
    http: httpx.AsyncClient,
    allow_private: bool,
    url: str,
    secret: str,
    nid: str,
    recipient: str,
    item: dict[str, Any],
) -> Attempt:
    """One signed POST of the notification to `url` (the body is fixed across retries)."""
    body = json.dumps(
        {"recipient_id": recipient, "notification": item},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()

    async def attempt() -> None:
        address = await check_target(url, allow_private)
        pinned, extensions, host_header = pin(url, address)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "askdoc-notify/1.0",
            "X-Askdoc-Signature": sign_webhook(secret, timestamp, body),
            "X-Askdoc-Event": item["kind"],
            "Idempotency-Key": nid,
            "Host": host_header,
        }
        try:
            response = await http.post(pinned, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            raise Retry(f"{type(exc).__name__}") from None
        code = response.status_code
        if 200 <= code < 300:
            return
        if code in (408, 425, 429) or code >= 500:
            raise Retry(f"http {code}")
        raise GiveUp(f"http {code}")

    return attempt


async def check_target(url: str, allow_private: bool) -> str:
    """Resolve the host now and refuse private targets (checked before every attempt);
    the address that passed, which the request is then sent to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Retry(f"cannot resolve webhook host: {type(exc).__name__}") from None
    ips = sorted({str(info[4][0]) for info in infos})
    problem = check_webhook_url(url, ips, allow_private)
    if problem is not None:
        # The message names the host's address, never the URL (it may carry a token).
        raise GiveUp(f"refused: {problem}")
    return ips[0]


def pin(url: str, address: str) -> tuple[str, dict[str, Any], str]:
    """The URL aimed at the checked address, its TLS server name, and the Host header.

    Connecting to the address that passed the SSRF check (not resolving the name again)
    closes the DNS-rebinding gap; TLS still verifies the certificate for the host name.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc_host = f"[{address}]" if ":" in address else address
    netloc = netloc_host + (f":{parts.port}" if parts.port else "")
    pinned = parts._replace(netloc=netloc).geturl()
    host_header = host + (f":{parts.port}" if parts.port else "")
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, extensions, host_header
