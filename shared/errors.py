"""Errors: domain exceptions the service layers raise, and the HTTP error routes raise.

A service layer speaks in domain exceptions (subclasses of `DomainError`) and never
knows a status code; each service's `api.py` names the status of each exception type
in one table, which `shared.http` applies (the nearest class in the MRO wins).
"""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """A request the service layer refuses; `code` is stable, `message` is for people."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class Invalid(DomainError):
    """The request is well-formed but breaks a rule (422)."""

    code = "invalid_request"


class NotFound(DomainError):
    """The thing asked for does not exist, or is not the caller's to see (404)."""

    code = "not_found"


class Forbidden(DomainError):
    """The caller may not do this (403)."""

    code = "forbidden"


class Conflict(DomainError):
    """The request conflicts with the current state (409)."""

    code = "conflict"


class RateLimited(DomainError):
    """Too many requests; retry after `retry_after_s` (429)."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after_s: int, code: str | None = None, **details: object
    ) -> None:
        super().__init__(message, code=code, **details)
        self.retry_after_s = max(1, int(retry_after_s))


#: The statuses every service shares; a service's api.py extends this with its own types.
BASE_STATUS: Mapping[type[DomainError], int] = {
    Invalid: 422,
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    RateLimited: 429,
}


def status_for(exc: DomainError, table: Mapping[type[DomainError], int]) -> int:
    """The HTTP status of a domain exception: the nearest class named in `table`."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]  # type: ignore[index]
        if cls in BASE_STATUS:
            return BASE_STATUS[cls]  # type: ignore[index]
    return 400


class ApiError(Exception):
    """An HTTP error with a stable code and a human message (HTTP layer only)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **details: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details
