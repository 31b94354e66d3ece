"""Bearer JWT authentication (HS256 with the shared secret, RS256 with an identity
provider's keys) and role checks."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import jwt
from fastapi import Depends, Request
from jwt import PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientConnectionError

from shared.errors import ApiError
from shared.ids import is_resource_id
from shared.settings import Settings

Role = Literal["patient", "doctor", "admin"]
ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True)
class Principal:
    """The signed-in user a request acts for."""

    sub: str
    role: Role
    name: str
    #: When the token it came from expires (Unix time); long-lived streams end then.
    expires_at: float | None = None


def issue_token(
    secret: str,
    sub: str,
    role: str,
    name: str = "",
    ttl_s: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A signed HS256 token (for development, tests and the CLI)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "name": name or sub,
        "iat": now,
        "exp": now + ttl_s,
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass(frozen=True)
class TokenPolicy:
    """What a token must carry beyond a good signature."""

    max_lifetime_s: int = 24 * 3600
    issuer: str | None = None
    audience: str | None = None


class TokenVerifier:
    """Verifies bearer tokens: HS256 with the shared secret, RS256 with the identity
    provider's public keys (a JWKS file, or a URL fetched and cached)."""

    # A verified token stays valid until it expires, so its signature is checked once:
    # HMAC and JSON decoding were a tenth of a write request's CPU.
    CACHE_SIZE = 4096

    def __init__(
        self,
        secret: str,
        policy: TokenPolicy | None = None,
        jwks: PyJWKSet | None = None,
        jwks_url: str | None = None,
    ) -> None:
        self._secret = secret
        self.policy = policy or TokenPolicy()
        self._jwks = jwks
        self._jwks_client = (
            PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5) if jwks_url else None
        )
        self._verified: dict[str, tuple[Principal, float]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The verifier a service's settings describe (reads the JWKS file now)."""
        jwks = None
        if settings.jwt_jwks_file:
            jwks = PyJWKSet.from_json(Path(settings.jwt_jwks_file).read_text())
        policy = TokenPolicy(
            settings.jwt_max_lifetime_s, settings.jwt_issuer, settings.jwt_audience
        )
        return cls(settings.jwt_secret.get_secret_value(), policy, jwks, settings.jwt_jwks_url)

    def fetches_keys(self, token: str) -> bool:
        """Whether verifying `token` may fetch the provider's keys over the network."""
        return self._jwks_client is not None and token not in self._verified

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; ApiError 401 for any bad token."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, exp = cached
            if exp > time.time():
                return principal
            raise ApiError(401, "token_expired", "the bearer token has expired")
        principal, exp = self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (principal, exp)
        return principal

    def _key(self, token: str) -> tuple[Any, str]:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256":
            return self._secret, alg
        if alg != "RS256":
            raise jwt.InvalidAlgorithmError(f"algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if self._jwks is not None:
            keys = [k for k in self._jwks.keys if kid is None or k.key_id == kid]
            if len(keys) != 1:
                raise jwt.InvalidKeyError(f"no single key of the identity provider for kid {kid!r}")
            return keys[0].key, alg
        if self._jwks_client is not None:
            return self._jwks_client.get_signing_key_from_jwt(token).key, alg
        raise jwt.InvalidAlgorithmError("RS256 tokens need ASKDOC_JWT_JWKS_FILE or _URL")

    def _verify(self, token: str) -> tuple[Principal, float]:
        policy = self.policy
        required = ["sub", "role", "exp", "iat"]
        required += ["iss"] if policy.issuer else []
        required += ["aud"] if policy.audience else []
        try:
            key, alg = self._key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=policy.issuer,
                audience=policy.audience,
                options={"require": required, "verify_aud": bool(policy.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token_expired", "the bearer token has expired") from None
        except PyJWKClientConnectionError:
            raise ApiError(
                503, "unavailable", "the identity provider's keys cannot be fetched; retry shortly"
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise ApiError(401, "invalid_token", _refusal(exc)) from None
        if not _is_text(claims):
            # A lone surrogate ("\ud800") is valid JSON but no UTF-8: it would fail later,
            # when a reply, a page or Redis encodes it (a 500 instead of a 401).
            raise ApiError(
                401, "invalid_token", "the bearer token's claims are not valid Unicode text"
            )
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > policy.max_lifetime_s:
            raise ApiError(
                401,
                "invalid_token",
                f"the bearer token lives {lifetime:.0f} s; at most {policy.max_lifetime_s} s "
                "are accepted",
            )
        role = claims.get("role")
        sub = claims.get("sub")
        if role not in ROLES or not isinstance(sub, str) or not sub:
            raise ApiError(401, "invalid_token", "the bearer token has no valid sub and role")
        if not is_resource_id(sub):
            # A sub becomes part of key names (votes, inboxes, follows): same rule as ids.
            raise ApiError(
                401, "invalid_token", "the bearer token's sub is not a valid id (see ID_PATTERN)"
            )
        name = claims.get("name") or sub
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
            # The name is shown on pages and stored with a question: text of a bounded size.
            raise ApiError(
                401,
                "invalid_token",
                f"the bearer token's name must be text of at most {MAX_NAME_LENGTH} characters",
            )
        exp = float(claims["exp"])
        return Principal(sub=sub, role=role, name=name, expires_at=exp), exp


#: The longest `name` claim accepted (a doctor's profile name has the same cap).
MAX_NAME_LENGTH = 120


def _is_text(claims: dict[str, Any]) -> bool:
    """Whether every string in the claims, keys included, encodes as UTF-8."""
    try:
        json.dumps(claims, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _refusal(exc: Exception) -> str:
    """Why a token was refused, safe to send back."""
    if isinstance(exc, jwt.DecodeError) and exc.__cause__ is not None:
        # PyJWT quotes the JSON or base64 decoder here (line, column, char): no help.
        return (
            "the bearer token is malformed: it must be three base64url parts, "
            "the first two JSON objects"
        )
    # PyJWT may quote the token's own text, which need not be valid Unicode.
    message = str(exc).encode("utf-8", "backslashreplace").decode()
    return f"the bearer token is not valid: {message[:200]}"


_by_secret: dict[str, TokenVerifier] = {}


def decode_token(secret: str, token: str) -> Principal:
    """The principal of a valid HS256 token under the default policy; ApiError 401 if bad."""
    verifier = _by_secret.get(secret)
    if verifier is None:
        verifier = _by_secret[secret] = TokenVerifier(secret)
    return verifier.verify(token)


def token_verifier(request: Request) -> TokenVerifier:
    """The app's verifier, built once from its settings."""
    state = request.app.state
    verifier: TokenVerifier | None = getattr(state, "token_verifier", None)
    if verifier is None:
        verifier = state.token_verifier = TokenVerifier.from_settings(state.settings)
    return verifier


async def principal_of(request: Request, token: str) -> Principal:
    """Verify `token` for this app; a key fetch, if needed, runs off the event loop."""
    verifier = token_verifier(request)
    if verifier.fetches_keys(token):
        return await asyncio.to_thread(verifier.verify, token)
    return verifier.verify(token)


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
    return await principal_of(request, token)


async def require_user(request: Request) -> Principal:
    """The signed-in user; 401 without a token."""
    user = await optional_user(request)
    if user is None:
        raise ApiError(401, "unauthenticated", "sign in: a bearer token is required")
    return user


async def require_stream_user(request: Request) -> Principal:
    """The signed-in user of a streaming route, by the Authorization header as everywhere.

    A token in the query (`?access_token=`, as some EventSource clients send it) is
    refused, not ignored: a URL ends up in proxy logs and browser histories. Browsers
    reach the stream through the web, which relays it with the header.
    """
    if "access_token" in request.query_params:
        raise ApiError(
            400,
            "token_in_url",
            "send the token as 'Authorization: Bearer <token>', never in the URL "
            "(proxies and browser histories keep URLs); browsers use the web's /inbox/stream",
        )
    return await require_user(request)


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
