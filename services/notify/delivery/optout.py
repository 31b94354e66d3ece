"""One-click e-mail unsubscribe (RFC 8058): the signed link turns e-mail alerts off."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.errors import Forbidden
from shared.logging import get_logger

from .domain import unsubscribe_token_valid

log = get_logger("askdoc.notify.delivery")

#: Switches a recipient's channel off; True when it was on.
SwitchOff = Callable[[str, str], Awaitable[bool]]


class BadUnsubscribeLink(Forbidden):
    """An unsubscribe link whose signature does not match its recipient."""

    code = "bad_unsubscribe_link"


class EmailOptOut:
    """Checks unsubscribe links and turns e-mail alerts off for their recipient."""

    def __init__(self, key: bytes, switch_off: SwitchOff) -> None:
        self.key = key
        self.switch_off = switch_off

    def check(self, recipient: str, token: str) -> None:
        """Refuse a link not signed for `recipient`."""
        if not recipient or not unsubscribe_token_valid(self.key, recipient, token):
            raise BadUnsubscribeLink("this unsubscribe link is not valid")

    async def unsubscribe(self, recipient: str, token: str) -> None:
        """Turn e-mail alerts off (idempotent: a second click changes nothing)."""
        self.check(recipient, token)
        changed = await self.switch_off(recipient, "email")
        log.info("email_unsubscribed", recipient_id=recipient, changed=changed)
