"""The one error type routes raise; rendered as JSON with a clear message."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error with a stable code and a human message."""

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
