"""Webhook channel: a Standard Webhooks POST to the doctor's URL, checked against SSRF every time.

No receiver can stall the worker: each attempt has one total deadline (resolve,
connect, send, first byte, body), at most `webhook_body_cap_bytes` of the answer is
read, and one host uses at most `webhook_host_slots` of the shared slots.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared import tracing

from ..settings import NotifySettings
from .attempts import Attempt, GiveUp, Gone, Retry
from .domain import by_family, check_webhook_url, retry_after_s, sign_webhook, webhook_payload
from .slots import DeliverySlots

#: Answers worth repeating; 429 and 503 may say when (Retry-After).
_RETRY_CODES = frozenset({408, 425, 429})
_RETRY_AFTER_CODES = frozenset({429, 503})


def webhook_attempt(
    http: httpx.AsyncClient,
    slots: DeliverySlots,
    settings: NotifySettings,
    url: str,
    secrets: Sequence[str],
    nid: str,
    recipient: str,
    item: dict[str, Any],
) -> Attempt:
    """One signed POST of the notification to `url` (id and body fixed across retries)."""
    body = webhook_payload(
        item["kind"], item["created_at"], {"recipient_id": recipient, "notification": item}
    )
    host = (urlsplit(url).hostname or "").lower()

    async def attempt() -> None:
        async with slots.hold(host):
            try:
                async with asyncio.timeout(settings.webhook_timeout_s):
                    await _send(http, settings, url, secrets, nid, item["kind"], body)
            except TimeoutError:
                raise Retry("deadline exceeded") from None

    return attempt


async def _send(
    http: httpx.AsyncClient,
    settings: NotifySettings,
    url: str,
    secrets: Sequence[str],
    nid: str,
    kind: str,
    body: bytes,
) -> None:
    addresses = await check_target(url, settings.webhook_allow_private)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "askdoc-notify/1.0",
        "webhook-id": nid,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(secrets, nid, timestamp, body),
        "X-Askdoc-Event": kind,
        "Idempotency-Key": nid,
        **tracing.outgoing_headers(),
    }
    # A dead address must leave time for the next one within the attempt's deadline.
    connect_s = settings.webhook_timeout_s / (len(addresses) + 1)
    timeout = httpx.Timeout(settings.webhook_timeout_s, connect=connect_s)
    failure = "no address answered"
    for address in addresses:
        pinned, extensions, host_header = pin(url, address)
        try:
            code, retry_after = await _post(
                http,
                pinned,
                body,
                {**headers, "Host": host_header},
                extensions,
                timeout,
                settings.webhook_body_cap_bytes,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failure = type(exc).__name__
            continue  # this address refuses or is unreachable: try the next one
        except httpx.HTTPError as exc:
            raise Retry(type(exc).__name__) from None
        if 200 <= code < 300:
            return
        if code == 410:
            raise Gone("http 410")
        if code in _RETRY_CODES or code >= 500:
            after = retry_after_s(retry_after, time.time()) if code in _RETRY_AFTER_CODES else None
            raise Retry(f"http {code}", after_s=after)
        raise GiveUp(f"http {code}")
    raise Retry(failure)


async def _post(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    extensions: dict[str, Any],
    limits: httpx.Timeout,
    cap: int,
) -> tuple[int, str | None]:
    """Status and Retry-After of one POST, reading at most `cap` bytes of the answer."""
    request = http.build_request(
        "POST", url, content=body, headers=headers, extensions={**extensions}, timeout=limits
    )
    response = await http.send(request, stream=True)
    try:
        read = 0
        if cap:
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= cap:
                    break  # the rest is never read: the connection is closed, not reused
        return response.status_code, response.headers.get("Retry-After")
    finally:
        await response.aclose()


async def check_target(url: str, allow_private: bool) -> list[str]:
    """Resolve the host now and refuse private targets (checked before every attempt);
    the addresses that passed, IPv4 first, which the request is then sent to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Retry(f"cannot resolve webhook host: {type(exc).__name__}") from None
    ips = by_family(str(info[4][0]) for info in infos)
    problem = check_webhook_url(url, ips, allow_private)
    if problem is not None:
        # The message names the host's address, never the URL (it may carry a token).
        raise GiveUp(f"refused: {problem}")
    return ips


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
