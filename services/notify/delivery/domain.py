"""Rules of external delivery: Standard Webhooks signatures, retry delays, the SSRF guard.

Standard library only, unit-tested without a network.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Iterable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

#: Delivery states a channel never leaves (so a claimed entry is never sent twice).
DELIVERY_FINAL = frozenset({"delivered", "failed", "refused", "skipped"})


WHSEC = "whsec_"

#: Standard Webhooks' retry schedule after the first attempt (seconds, each after the last).
STANDARD_RETRY_SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)


def new_webhook_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form 'whsec_' + base64 of 32 bytes."""
    return WHSEC + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key inside a 'whsec_' secret; ValueError when it is not in that form."""
    if not secret.startswith(WHSEC):
        raise ValueError("a webhook secret starts with 'whsec_'")
    encoded = secret[len(WHSEC) :]
    try:
        # Receivers' libraries accept unpadded base64, so it is accepted here too.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes (32 recommended)")
    return key


def webhook_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One 'v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">' (Standard Webhooks)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_webhook(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one signature per secret, space-separated (rotation)."""
    return " ".join(webhook_signature(s, msg_id, timestamp, body) for s in secrets_)


def verify_webhook(
    secret: str,
    msg_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    now: int,
    tolerance_s: int = 300,
) -> bool:
    """Whether any v1 signature in the header is valid for `body` and the time is near `now`."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    ts = int(timestamp)
    if abs(now - ts) > tolerance_s:
        return False
    expected = webhook_signature(secret, msg_id, ts, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in signature_header.split(" ")
        if candidate.startswith("v1,")
    )


def webhook_payload(kind: str, created_at: str, data: dict[str, Any]) -> bytes:
    """The body of a delivery: '{type, timestamp, data}' (fixed across retries)."""
    payload = {"type": f"notification.{kind}", "timestamp": created_at, "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def retry_delays(attempts: int, base_s: float = 5.0, max_s: float = 36000.0) -> list[float]:
    """Delays before each retry: Standard Webhooks' schedule scaled so the first is base_s."""
    if attempts < 0 or base_s < 0 or max_s < 0:
        raise ValueError("attempts, base_s and max_s must be >= 0")
    scale = base_s / STANDARD_RETRY_SCHEDULE_S[0]
    last = STANDARD_RETRY_SCHEDULE_S[-1]
    delays = [*STANDARD_RETRY_SCHEDULE_S, *[last] * max(0, attempts - 7)][:attempts]
    return [min(d * scale, max_s) for d in delays]


def retry_after_s(header: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), or None."""
    if not header:
        return None
    value = header.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def unsubscribe_token(key: bytes, recipient: str) -> str:
    """The signed token of a one-click e-mail unsubscribe link for `recipient`."""
    mac = hmac.new(key, b"email-off\x00" + recipient.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def unsubscribe_token_valid(key: bytes, recipient: str, token: str) -> bool:
    """Whether `token` was issued for `recipient` with `key`."""
    return hmac.compare_digest(unsubscribe_token(key, recipient).encode(), token.encode())


def by_family(ips: Iterable[str]) -> list[str]:
    """Distinct addresses, IPv4 first, otherwise in the resolver's order."""
    distinct = list(dict.fromkeys(ip.strip() for ip in ips))
    return sorted(distinct, key=lambda ip: ":" in ip)


# SSRF guard for webhook URLs

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = ipaddress.ip_address("169.254.169.254")


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is globally routable and not a special-purpose one."""
    if (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or not addr.is_global
    ):
        return False
    if isinstance(addr, ipaddress.IPv4Address):
        return addr not in _CGNAT and addr != _METADATA
    if addr.is_site_local:
        return False
    # IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo) are judged by it too.
    embedded = [addr.ipv4_mapped, addr.sixtofour]
    if addr.teredo is not None:
        embedded.extend(addr.teredo)
    return all(_public(v4) for v4 in embedded if v4 is not None)


def is_public_address(ip: str) -> bool:
    """Whether `ip` is a public unicast address a webhook may be sent to."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return _public(addr.ipv4_mapped)
    return _public(addr)


def webhook_url_problem(url: str, allow_http: bool = True) -> str | None:
    """Why a webhook URL is unusable on its face (None when it looks fine), before DNS."""
    if len(url) > 2048:
        return "webhook URL is too long (max 2048 characters)"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "webhook URL must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "webhook URL is malformed"
    if parts.scheme.lower() not in ("http", "https"):
        return "webhook URL must use http or https"
    if parts.scheme.lower() != "https" and not allow_http:
        return "webhook URL must use https"
    if not parts.hostname:
        return "webhook URL must name a host"
    if parts.username is not None or parts.password is not None:
        return "webhook URL must not contain credentials"
    return None


def check_webhook_url(url: str, resolved_ips: Sequence[str], allow_private: bool) -> str | None:
    """Why a webhook URL may not be called (None when it may), given its resolved addresses."""
    problem = webhook_url_problem(url, allow_http=allow_private)
    if problem is not None:
        return problem
    host = urlsplit(url).hostname or ""
    ips = list(resolved_ips)
    with contextlib.suppress(ValueError):  # an IP literal host checks itself
        ips.append(str(ipaddress.ip_address(host)))
    if not ips:
        return "webhook host did not resolve to any address"
    for ip in ips:
        try:
            ipaddress.ip_address(ip.strip())
        except ValueError:
            return f"webhook host resolved to an invalid address: {ip!r}"
        if not allow_private and not is_public_address(ip):
            return f"webhook host resolves to a non-public address: {ip}"
    return None


def jittered(delay_s: float, unit_random: float) -> float:
    """A retry delay spread over [delay/2, delay] so that many retries do not align."""
    return delay_s * (0.5 + 0.5 * min(max(unit_random, 0.0), 1.0))
