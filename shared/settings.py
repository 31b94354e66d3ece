"""Settings shared by every service, read from ASKDOC_* environment variables."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_consumer_name() -> str:
    # Unique per process: replicas must be distinct consumers of one group, and a
    # restarted process must not inherit a dead one's pending entries by name.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Settings(BaseSettings):
    """Settings every service understands; services subclass it for their own."""

    model_config = SettingsConfigDict(env_prefix="ASKDOC_", extra="ignore", frozen=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis to use")
    redis_mode: Literal["standalone", "cluster"] = Field("standalone")
    jwt_secret: SecretStr = Field(
        min_length=32, description="HS256 secret for bearer tokens (required, >= 32 chars)"
    )
    jwt_max_lifetime_s: int = Field(
        24 * 3600, ge=60, description="tokens whose exp - iat is longer (or without iat) fail"
    )
    jwt_issuer: str | None = Field(None, description="when set, every token's iss must match")
    jwt_audience: str | None = Field(None, description="when set, every token's aud must hold it")
    jwt_jwks_file: str | None = Field(
        None, description="the identity provider's public keys (JWKS JSON) for RS256 tokens"
    )
    jwt_jwks_url: str | None = Field(
        None, description="where to fetch the identity provider's JWKS for RS256 tokens"
    )
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    http_host: str = "0.0.0.0"
    http_port: int = Field(0, description="0 means the service's own default port")

    # Not lower: a busy host can stall the event loop for seconds (the start-up GC over
    # the gazetteer), and a reply read after the timeout fired is thrown away.
    redis_socket_timeout_s: float = Field(
        30.0, gt=1, description="a Redis reply slower than this drops the connection"
    )
    redis_health_check_s: int = Field(15, ge=1, description="PING an idle connection first")
    redis_max_connections: int = Field(
        100, ge=1, description="connections a process keeps open to Redis (standalone mode)"
    )
    redis_pool_timeout_s: float = Field(
        5.0,
        gt=0,
        description="how long a command waits for a free connection before failing (503)",
    )
    consumer_stall_s: float = Field(
        60.0, gt=0, description="/readyz fails if a consumer loop has not polled for this long"
    )

    stream_maxlen: int = Field(
        100_000, ge=1000, description="entries kept per stream once every group has read them"
    )
    stream_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="hard ceiling per stream: over it, even unread entries are trimmed",
    )
    trim_interval_s: float = Field(30.0, gt=0, description="how often a service trims its streams")
    max_records: int = Field(100, ge=1, le=1000, description="entries per XREADGROUP")
    polling_interval_ms: int = Field(100, ge=10, description="XREADGROUP BLOCK")
    claim_idle_ms: int = Field(30_000, ge=100, description="idle time before XAUTOCLAIM")
    max_deliveries: int = Field(5, ge=1, description="deliveries before dead-lettering")
    consumer_name: str = Field(default_factory=_default_consumer_name)
    dedupe_ttl_s: int = Field(14 * 86400, description="how long processed-event markers live")
    idempotency_ttl_s: int = Field(86400, description="how long Idempotency-Key replies live")
    flag_retention_s: int = Field(
        90 * 86400,
        ge=1,
        description="how long a reporter's flag is remembered (one flag per user per item "
        "within it) and a restored item's entry stays in the moderation queue projection",
    )
    max_entry_bytes: int = Field(256 * 1024, description="larger stream entries are poison")
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="larger request bodies get 413 before any parsing"
    )
    shutdown_grace_s: float = Field(20.0, description="time to finish in-flight work")

    rate_limit_writes: int = Field(60, ge=1, description="writes per user per window")
    rate_limit_window_s: int = Field(60, ge=1)
    anon_read_limit: int = Field(
        300,
        ge=0,
        description="anonymous reads per client address per window (0: no limit); "
        "signed-in reads are not counted",
    )
    anon_read_window_s: int = Field(60, ge=1)
    trusted_proxies: str = Field(
        "",
        description="comma-separated addresses or CIDRs (the web service, a load balancer) "
        "whose X-Forwarded-For names the client a read is counted for",
    )
    read_limit_exempt: str = Field(
        "", description="comma-separated addresses or CIDRs whose anonymous reads never count"
    )

    def port_or(self, default: int) -> int:
        """The configured HTTP port, or the service's default."""
        return self.http_port or default
