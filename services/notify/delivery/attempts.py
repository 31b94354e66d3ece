"""What one delivery attempt can end in (shared by the channels and the worker)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: One try at sending; raises Retry or GiveUp when it did not go through.
Attempt = Callable[[], Awaitable[None]]


class Retry(Exception):
    """A failed attempt worth repeating."""


class GiveUp(Exception):
    """A failed attempt that no repeat can fix."""
