"""Settings of the notify service (ASKDOC_* environment variables, on top of the shared ones)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import Settings


class NotifySettings(Settings):
    """The notifier's own knobs: matching, channels, inbox bounds."""

    match_cap: int = Field(10, ge=0, le=10_000, description="most doctors alerted per question")
    match_min: int = Field(3, ge=0, description="fewer matches than this widens the search")
    max_radius_km: float = Field(
        500, gt=0, le=5000, description="how far the directory is searched around the asker"
    )
    first_search_km: float = Field(
        10, gt=0, description="first ring of the outward search (a whole distance band)"
    )
    match_in_replica: bool = Field(
        False,
        description="rank a batch's matches in the replica (Redis runs only the GEOSEARCHes and "
        "row reads): less Redis CPU per question, more replica CPU (docs/operations.md)",
    )
    geo_search_max: int = Field(
        800, ge=1, le=10_000, description="most doctors fetched per specialty in one ring"
    )
    geo_search_count: int = Field(
        40, ge=1, le=10_000, description="nearest doctors fetched per specialty per ring"
    )

    webhook_allow_private: bool = Field(
        False,
        description="allow webhooks to private/loopback addresses and plain http (tests, on-prem)",
    )
    webhook_secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s), comma-separated, newest first, that encrypt webhook "
        "secrets at rest; required before any doctor can set a webhook",
    )
    webhook_secret_rotation_s: float = Field(
        86400, ge=0, description="after a new secret, deliveries are signed with both this long"
    )
    webhook_timeout_s: float = Field(
        10, gt=0, le=60, description="total deadline of one webhook attempt (connect to body)"
    )
    webhook_body_cap_bytes: int = Field(
        4096, ge=0, le=65536, description="most of a receiver's response body ever read"
    )
    webhook_host_slots: int = Field(
        2, ge=1, le=16, description="delivery slots one receiving host may use at once"
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=20, description="attempts per channel (Standard Webhooks: 8)"
    )
    retry_base_s: float = Field(
        5.0,
        ge=0,
        description="first retry delay; later ones follow the Standard Webhooks schedule "
        "(5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) scaled by retry_base_s / 5",
    )
    retry_max_s: float = Field(36000.0, ge=0, description="longest retry delay (Retry-After too)")
    delivery_backlog: int = Field(
        1000, ge=1, le=100_000, description="notifications one replica holds (waiting included)"
    )
    public_url: str = Field(
        "https://askdoc.example",
        description="the web's public base URL: links in e-mails (settings, one-click unsubscribe)",
    )

    smtp_host: str | None = Field(None, description="SMTP relay; unset turns e-mail off")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = Field("alerts@askdoc.example", description="sender of alert e-mails")
    smtp_timeout_s: float = Field(10, gt=0, le=120)

    follow_alert_batch: int = Field(
        100,
        ge=1,
        le=1000,
        description="followers alerted per commit of a new answer (one Lua call per batch, "
        "so a popular question never makes one giant call)",
    )

    inbox_max_items: int = Field(500, ge=1, description="per recipient; oldest read go first")
    inbox_ttl_days: int = Field(90, ge=1, description="notifications expire after this")

    redis_concurrency: int = Field(
        24,
        ge=1,
        le=80,
        description="event handlers, and alert commits, in flight per replica (redis-py's "
        "connection pool holds 100 connections)",
    )
    delivery_concurrency: int = Field(32, ge=1, le=1000, description="deliveries in flight")
    delivery_claim_idle_s: float = Field(
        180, ge=1, description="a delivery idle this long (its worker died) is taken over"
    )
    escalate_after_s: float = Field(
        86400,
        gt=0,
        description="a question with no answer this long alerts the next ring of doctors "
        "(and again after as long, up to escalate_rounds)",
    )
    escalate_rounds: int = Field(
        2, ge=0, le=10, description="most escalation rounds per question; 0 turns it off"
    )
    escalate_interval_s: float = Field(1.0, gt=0, description="how often escalations are due")
    held_release_interval_s: float = Field(1.0, gt=0, description="how often held alerts are due")
    urgent_per_asker_per_day: int = Field(
        3,
        ge=0,
        description="urgent questions of one asker per UTC day alerted as urgent; later ones "
        "alert as routine (the page's emergency notice always shows)",
    )
    urgent_per_doctor_per_quiet_hour: int = Field(
        3,
        ge=1,
        description="urgent alerts that page a doctor in one hour of their quiet hours; "
        "later ones wait for the window's end and go out together",
    )
    sse_heartbeat_s: float = Field(15.0, gt=0, description="comment line keeping SSE alive")
    sse_max_streams_per_user: int = Field(
        5, ge=1, le=100, description="live streams one user may hold open (more: 429)"
    )
    delivery_in_process: bool = Field(
        True,
        description="drain the delivery outbox (webhook, e-mail) in this process; set false "
        "when `python -m services.notify.delivery` runs as its own deployable",
    )
