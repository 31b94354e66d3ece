"""What one delivery attempt can end in (shared by the channels and the worker)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: One try at sending; raises Retry or GiveUp when it did not go through.
Attempt = Callable[[], Awaitable[None]]


class Retry(Exception):
    """A failed attempt worth repeating (not before `after_s`, when the receiver said so)."""

    def __init__(self, reason: str, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.after_s = after_s


class GiveUp(Exception):
    """A failed attempt that no repeat can fix."""


class Gone(GiveUp):
    """The receiver answered 410 Gone: the endpoint is switched off."""
