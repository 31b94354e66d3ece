"""Wiring of the web service: `create_app(settings)` builds everything."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import ApiError
from shared.http import (
    NO_NATIVE_TELEMETRY,
    BodyLimitMiddleware,
    DetachingFastAPI,
    RequestContextMiddleware,
)
from shared.logging import get_logger

from . import routes
from .clients import ApiProblem, BackendUnavailable, ForwardedForMiddleware, Services
from .context import HERE, CsrfRefused, SignInRequired, Web, templates, templates_digest
from .live import LiveRelays
from .pagecache import PageCache
from .session import Session, Sessions
from .settings import WebSettings

log = get_logger("askdoc.web")

SERVICE = "web"
DEFAULT_PORT = 8000

# No inline script or style anywhere: the page's own files only. connect-src covers the
# EventSource of the live inbox (same origin).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]

Message = MutableMapping[str, Any]


class SecurityHeadersMiddleware:
    """Adds the CSP and its companions to every response (pure ASGI: streams stay streams)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def _to_sign_in(request: Request, ended: bool) -> Response:
    """To the sign-in page, and back afterwards to the page the person was on.

    A form post (a session that ended while its page was open) comes back to the page the
    form was on, not to its action: that only takes POSTs, so going there would be a dead end.
    """
    url = request.url
    back = url.path + (f"?{url.query}" if url.query else "")
    if request.method != "GET":
        referer = urlsplit(request.headers.get("referer", ""))
        same_site = referer.netloc == url.netloc and referer.path.startswith("/")
        back = referer.path + (f"?{referer.query}" if referer.query else "") if same_site else "/"
    why = "&ended=1" if ended else ""
    return RedirectResponse(f"/signin?next={quote(back, safe='/')}{why}", status_code=303)


async def _error_page(
    web: Web, request: Request, status: int, title: str, message: str
) -> Response:
    try:
        session = await web.sessions.read(request)
    except ApiError:
        session = Session(csrf="")  # the page shows signed out; no cookie is written
    return web.render("error.html", session, status, title=title, message=message)


def install_error_pages(app: FastAPI, web: Web) -> None:
    """Errors as pages a person can act on, never a stack trace."""

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        return _to_sign_in(request, (await web.sessions.read(request)).ended)

    @app.exception_handler(CsrfRefused)
    async def csrf(request: Request, exc: CsrfRefused) -> Response:
        log.warning("csrf_refused", path=request.url.path)
        return await _error_page(
            web,
            request,
            403,
            "This form was refused",
            "It did not carry this page's security token (it may be old, or come from "
            "another site). Go back, reload the page and send it again.",
        )

    @app.exception_handler(BackendUnavailable)
    async def unavailable(request: Request, exc: BackendUnavailable) -> Response:
        log.warning("backend_unavailable", status=exc.status, code=exc.code)
        return await _error_page(
            web, request, 503, "Something is not available", "Please try again in a moment."
        )

    @app.exception_handler(ApiProblem)
    async def problem(request: Request, exc: ApiProblem) -> Response:
        if exc.status == 401:
            return _to_sign_in(request, ended=True)
        titles = {403: "Not allowed", 404: "Not found", 409: "Already done", 429: "Slow down"}
        title = titles.get(exc.status, "That did not work")
        return await _error_page(web, request, exc.status, title, exc.message)

    @app.exception_handler(ApiError)
    async def sign_in_failed(request: Request, exc: ApiError) -> Response:
        # Only verifying a session's token raises these (e.g. the identity provider's
        # keys cannot be fetched right now).
        return await _error_page(web, request, exc.status, "Signing in failed", exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # Only a hand-made request gets here: the pages' own forms always validate.
        return await _error_page(
            web, request, 422, "That did not work", "The request was incomplete or malformed."
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return await _error_page(web, request, 404, "Not found", "There is no page here.")
        return await _error_page(
            web, request, exc.status_code, "That did not work", str(exc.detail)
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return await _error_page(
            web, request, 500, "Something went wrong", "It has been logged. Please try again."
        )


def create_app(settings: WebSettings) -> FastAPI:
    """The web service: pages, sign-in, the live inbox relay, health and metrics."""
    services = Services(
        settings.questions_url,
        settings.answers_url,
        settings.votes_url,
        settings.notify_url,
        settings.backend_timeout_s,
    )
    dev_users = json.loads((HERE / "dev_users.json").read_text())["users"]
    web = Web(
        settings=settings,
        services=services,
        sessions=Sessions(settings),
        templates=templates(),
        relays=LiveRelays(),
        dev_users=dev_users if settings.web_dev_login else [],
        pages=PageCache(
            fresh_s=settings.web_page_fresh_s,
            max_entries=settings.web_page_cache_entries,
            max_bytes=int(settings.web_page_cache_mb * 1024 * 1024),
            # A 429 is the visitor's own read budget at the questions service.
            personal=lambda exc: isinstance(exc, ApiProblem) and exc.status == 429,
        ),
        templates_digest=templates_digest(),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        web.relays.end_on_signal()
        watch = asyncio.ensure_future(web.follow_visibility())
        log.info("service_ready", dev_login=settings.web_dev_login)
        try:
            yield
        finally:
            web.relays.closing.set()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await services.aclose()
            log.info("service_stopped")

    # DetachingFastAPI: a live inbox relay (an EventStream) keeps only its body and a
    # disconnect watcher once opened, not the whole request stack.
    app = DetachingFastAPI(
        title="askdoc web",
        version="1.0.0",
        description="Server-rendered pages over the questions, answers, votes and notify APIs.",
        lifespan=lifespan,
        # The OpenAPI document, but no Swagger or ReDoc page: those load their assets
        # from a CDN, which the CSP (rightly) refuses.
        docs_url=None,
        redoc_url=None,
        **NO_NATIVE_TELEMETRY,
    )
    app.state.web = web
    app.state.settings = settings
    install_error_pages(app, web)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        # The web holds no state: a backing service that is down shows as a 503 page
        # for what needs it, not as a web replica taken out of rotation.
        return {"status": "ready", "service": SERVICE}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(routes.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(ForwardedForMiddleware)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=SERVICE)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
