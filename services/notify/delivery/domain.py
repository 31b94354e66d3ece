"""Rules of external delivery: webhook signatures, retry delays, the SSRF guard.

Standard library only, unit-tested without a network.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

#: Delivery states a channel never leaves (so a claimed entry is never sent twice).
DELIVERY_FINAL = frozenset({"delivered", "failed", "refused", "skipped"})


def _signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over '<timestamp>.' + body."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value 't=<ts>,v1=<hex hmac-sha256 of "<ts>." + body>'."""
    return f"t={timestamp},v1={_signature(secret, timestamp, body)}"


def verify_webhook(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """Whether a signature header is valid for `body` and no older (or newer) than tolerance."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance_s:
        return False
    expected = _signature(secret, timestamp, body)
    # Several v1 values are allowed so that a secret can be rotated without downtime.
    return any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures)


def backoff_delays(
    attempts: int, base_s: float = 1.0, factor: float = 2.0, max_s: float = 60.0
) -> list[float]:
    """Exponential retry delays base, base*factor, ... capped at max_s (no jitter)."""
    if attempts < 0 or base_s < 0 or factor < 1 or max_s < 0:
        raise ValueError("attempts, base_s, max_s must be >= 0 and factor >= 1")
    delays: list[float] = []
    delay = base_s
    for _ in range(attempts):
        delays.append(min(delay, max_s))
        delay = min(delay * factor, max_s)  # capped as it grows, so it never overflows
    return delays


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


def webhook_url_problem(url: str) -> str | None:
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
    if not parts.hostname:
        return "webhook URL must name a host"
    if parts.username is not None or parts.password is not None:
        return "webhook URL must not contain credentials"
    return None


def check_webhook_url(url: str, resolved_ips: Sequence[str], allow_private: bool) -> str | None:
    """Why a webhook URL may not be called (None when it may), given its resolved addresses."""
    problem = webhook_url_problem(url)
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
