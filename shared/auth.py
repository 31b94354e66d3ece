"""Bearer JWT (HS256) authentication and role checks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import jwt
from fastapi import Depends, Request

from shared.errors import ApiError

Role = Literal["patient", "doctor", "admin"]
ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True)
class Principal:
    """The signed-in user a request acts for."""

    sub: str
    role: Role
    name: str


def issue_token(secret: str, sub: str, role: str, name: str = "", ttl_s: int = 3600) -> str:
    """A signed HS256 token (for development, tests and the CLI)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    claims = {"sub": sub, "role": role, "name": name or sub, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_token(secret: str, token: str) -> Principal:
    """The principal of a valid token; ApiError 401 for any bad token."""
    cached = _verified.get((secret, token))
    if cached is not None:
        principal, exp = cached
        if exp > time.time():
            return principal
        raise ApiError(401, "token_expired", "the bearer token has expired")
    principal, exp = _verify(secret, token)
    if len(_verified) >= _CACHE_SIZE:
        _verified.pop(next(iter(_verified)))
    _verified[(secret, token)] = (principal, exp)
    return principal


# A verified token stays valid until it expires, so its signature is checked once: HMAC
# and JSON decoding were a tenth of a write request's CPU.
_CACHE_SIZE = 4096
_verified: dict[tuple[str, str], tuple[Principal, float]] = {}


def _verify(secret: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", "the bearer token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "invalid_token", f"the bearer token is not valid: {exc}") from None
    role = claims.get("role")
    sub = claims.get("sub")
    if role not in ROLES or not isinstance(sub, str) or not sub:
        raise ApiError(401, "invalid_token", "the bearer token has no valid sub and role")
    return Principal(sub=sub, role=role, name=str(claims.get("name") or sub)), float(claims["exp"])


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "invalid_token", "use 'Authorization: Bearer <token>'")
    return token.strip()


async def optional_user(request: Request) -> Principal | None:
    """The signed-in user, or None for an anonymous request."""
    token = _bearer(request)
    if token is None:
        return None
    return decode_token(request.app.state.settings.jwt_secret.get_secret_value(), token)


async def require_user(request: Request) -> Principal:
    """The signed-in user; 401 without a token."""
    user = await optional_user(request)
    if user is None:
        raise ApiError(401, "unauthenticated", "sign in: a bearer token is required")
    return user


async def require_stream_user(request: Request) -> Principal:
    """The signed-in user of a streaming route: bearer header, or `access_token` in the
    query for a browser's EventSource, which cannot send headers."""
    if request.headers.get("authorization"):
        return await require_user(request)
    token = request.query_params.get("access_token")
    if not token:
        raise ApiError(401, "unauthenticated", "sign in: a bearer token is required")
    return decode_token(request.app.state.settings.jwt_secret.get_secret_value(), token)


def require_role(*roles: Role) -> object:
    """A dependency that admits only the given roles (403 otherwise)."""

    # Dependencies are async on purpose: FastAPI runs sync ones in a thread pool.
    async def check(user: Annotated[Principal, Depends(require_user)]) -> Principal:
        if user.role not in roles:
            raise ApiError(403, "forbidden", f"this needs the role {' or '.join(roles)}")
        return user

    return Depends(check)


User = Annotated[Principal, Depends(require_user)]
StreamUser = Annotated[Principal, Depends(require_stream_user)]
MaybeUser = Annotated[Principal | None, Depends(optional_user)]
Patient = Annotated[Principal, require_role("patient", "admin")]
Doctor = Annotated[Principal, require_role("doctor")]
DoctorOrAdmin = Annotated[Principal, require_role("doctor", "admin")]
