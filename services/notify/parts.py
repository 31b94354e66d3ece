"""How notify's parts are put together on one Redis client (the app and tests use this)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.atomic import Committer
from shared.outage import RedisOutage
from shared.redis import RedisClient

from .alerts.escalation import Escalations
from .alerts.escalation_store import EscalationStore
from .alerts.release import HeldAlerts
from .alerts.service import AlertService
from .alerts.store import AlertStore
from .delivery.mail import unsubscribe_key
from .delivery.optout import EmailOptOut
from .delivery.store import OutboxStore
from .delivery.worker import DeliveryWorker
from .directory.sealing import SecretBox
from .directory.service import DirectoryService, WebhookPolicy
from .directory.store import DirectoryStore
from .inbox.service import InboxService
from .inbox.store import InboxStore
from .matching.service import Matcher
from .matching.store import MatchStore
from .settings import NotifySettings


@dataclass(frozen=True)
class Stores:
    """The notifier's stores on one Redis client."""

    directory: DirectoryStore
    inbox: InboxStore
    outbox: OutboxStore
    alerts: AlertStore
    matches: MatchStore
    escalations: EscalationStore


def build_stores(
    redis: RedisClient, committer: Committer, tag: str, settings: NotifySettings
) -> Stores:
    """Every store; `tag` is the notification-sent slot (the runtime tag)."""
    outbox = OutboxStore(redis, tag, settings.stream_maxlen, committer, settings.dedupe_ttl_s)
    ttl_s = settings.inbox_ttl_days * 86400
    key = sealing_key(settings)
    box = SecretBox(key) if key else None
    inbox = InboxStore(redis, committer, tag, settings.stream_maxlen, ttl_s, outbox)
    return Stores(
        directory=DirectoryStore(redis, committer, settings.stream_maxlen, box),
        inbox=inbox,
        outbox=outbox,
        alerts=AlertStore(
            redis, committer, tag, inbox, settings.dedupe_ttl_s, settings.redis_concurrency
        ),
        matches=MatchStore(redis, tag),
        escalations=EscalationStore(
            redis,
            tag,
            int(settings.escalate_after_s * (settings.escalate_rounds + 1)) + 7 * 86400,
        ),
    )


@dataclass(frozen=True)
class NotifyParts:
    """The use cases of the notifier, wired to each other by plain calls."""

    stores: Stores
    directory: DirectoryService
    matcher: Matcher
    inbox: InboxService
    alerts: AlertService
    held: HeldAlerts
    opt_out: EmailOptOut
    escalations: Escalations


def build_parts(
    redis: RedisClient, committer: Committer, tag: str, settings: NotifySettings
) -> NotifyParts:
    """The directory, matching, inbox and alert use cases on one Redis client."""
    stores = build_stores(redis, committer, tag, settings)
    inbox = InboxService(stores.inbox, settings)
    matcher = Matcher(stores.directory, stores.matches, settings)
    alerts = AlertService(stores.alerts, matcher, stores.directory, inbox, settings)
    held = HeldAlerts(stores.alerts, stores.directory, inbox, settings)
    # A saved profile may change quiet hours or the cap: held alerts are re-planned.
    directory = DirectoryService(stores.directory, held.nudge, webhook_policy(settings))
    opt_out = EmailOptOut(unsubscribe_key(settings), directory.switch_off)
    escalations = Escalations(stores.escalations, matcher, alerts, settings)
    return NotifyParts(stores, directory, matcher, inbox, alerts, held, opt_out, escalations)


def sealing_key(settings: NotifySettings) -> str:
    """The Fernet key(s) that seal webhook secrets ('' when unset or empty)."""
    key = settings.webhook_secret_key
    return key.get_secret_value().strip() if key is not None else ""


def webhook_policy(settings: NotifySettings) -> WebhookPolicy:
    """How doctors may set webhooks on this server."""
    return WebhookPolicy(
        sealing=bool(sealing_key(settings)),
        allow_http=settings.webhook_allow_private,
        rotation_s=settings.webhook_secret_rotation_s,
    )


def build_delivery(
    redis: RedisClient,
    committer: Committer,
    tag: str,
    settings: NotifySettings,
    outage: RedisOutage | None = None,
) -> DeliveryWorker:
    """The outbox worker (webhook, e-mail) on its own Redis client; it logs a Redis
    outage through `outage` (the service's consumers' own, so once per process)."""
    stores = build_stores(redis, committer, tag, settings)
    directory = DirectoryService(stores.directory, webhooks=webhook_policy(settings))
    inbox = InboxService(stores.inbox, settings)

    async def on_gone(recipient: str, channel: str, nid: str) -> None:
        # The doctor's next PUT with a new URL or secret switches it on again.
        if await directory.switch_off(recipient, channel):
            await inbox.channel_off(recipient, channel, nid)

    return DeliveryWorker(stores.outbox, stores.inbox, stores.directory, settings, on_gone, outage)
