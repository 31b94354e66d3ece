"""The signed session cookie: the user's bearer token and a CSRF token, nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.auth import Principal, TokenVerifier
from shared.errors import ApiError

from .settings import WebSettings

COOKIE = "askdoc_session"


@dataclass
class Session:
    """What the cookie holds, and who it signs in (None for a visitor)."""

    csrf: str
    token: str | None = None
    user: Principal | None = None
    changed: bool = field(default=False, compare=False)
    # The cookie held a token that no longer signs anyone in (expired): say so on sign-in.
    ended: bool = field(default=False, compare=False)

    def csrf_ok(self, submitted: str | None) -> bool:
        """Whether a form carried this session's CSRF token."""
        return bool(submitted) and hmac.compare_digest(self.csrf, submitted or "")


class Sessions:
    """Reads, signs and writes session cookies."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        # The services' own verifier: HS256 or the identity provider's RS256, same policy.
        self.verifier = TokenVerifier.from_settings(settings)
        if settings.session_secret is not None:
            key = settings.session_secret.get_secret_value()
        else:
            # A key of its own, derived one-way: a session cookie can never pass for a token.
            jwt_secret = settings.jwt_secret.get_secret_value().encode()
            key = hmac.new(jwt_secret, b"askdoc-web-session", hashlib.sha256).hexdigest()
        self.serializer = URLSafeTimedSerializer(key, salt="askdoc-session")

    async def verify(self, token: str) -> Principal:
        """The token's user (ApiError 401 if bad); a key fetch runs off the event loop."""
        if self.verifier.fetches_keys(token):
            return await asyncio.to_thread(self.verifier.verify, token)
        return self.verifier.verify(token)

    async def read(self, request: Request) -> Session:
        """The request's session; a fresh visitor session if the cookie is absent or bad."""
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self.serializer.loads(raw, max_age=self.settings.session_ttl_s)
            except BadSignature:
                data = None
            if isinstance(data, dict) and isinstance(data.get("c"), str):
                session = Session(csrf=data["c"])
                token = data.get("t")
                if isinstance(token, str):
                    try:
                        session.user = await self.verify(token)
                        session.token = token
                    except ApiError as exc:
                        if exc.status != 401:
                            raise  # the identity provider's keys are unreachable: not a sign-out
                        session.changed = True  # expired or foreign: signed out from now on
                        session.ended = True
                return session
        return Session(csrf=secrets.token_urlsafe(24), changed=True)

    async def sign_in(self, session: Session, token: str) -> Principal:
        """Put a valid bearer token in the session (ApiError 401 otherwise)."""
        user = await self.verify(token)
        session.token, session.user, session.changed = token, user, True
        # A new identity gets a new CSRF token, so a token seen before sign-in is useless.
        session.csrf = secrets.token_urlsafe(24)
        return user

    def sign_out(self, session: Session) -> None:
        """Forget the user (the visitor keeps a fresh CSRF token)."""
        session.token, session.user, session.changed = None, None, True
        session.csrf = secrets.token_urlsafe(24)

    def save(self, session: Session, response: Response) -> None:
        """Write the cookie if the session changed."""
        if not session.changed:
            return
        data = {"c": session.csrf, "t": session.token}
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(data),
            max_age=self.settings.session_ttl_s,
            httponly=True,
            samesite="lax",
            secure=self.settings.secure_cookies,
            path="/",
        )
