"""The HTTP app factory every service uses: health, metrics, JSON errors, request ids."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from shared import tracing
from shared.auth import Principal, Role, optional_user, require_user
from shared.errors import ApiError, DomainError, RateLimited, status_for
from shared.logging import bind_correlation_id, get_logger
from shared.metrics import HTTP_REQUESTS, HTTP_SECONDS
from shared.ratelimit import ReadCount, ReadLimit, WriteLimit, client_address, networks
from shared.service import ServiceRuntime
from shared.sse import DetachedStreams

log = get_logger("askdoc.http")

#: FastAPI's own OpenTelemetry (in newer FastAPIs) would trace each request a second time
#: and looks up its providers on every request; RequestContextMiddleware traces already.
NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON shape of every error."""
    return {"error": {"code": code, "message": message, **extra}}


class JSONBytes(Response):
    """JSON already encoded: the response `Response(body, status, media_type=
    "application/json")` is, with its two headers built directly (the most written routes'
    reply; Starlette's header set-up was a tenth of the response's cost)."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int = 200) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]


class RequestContextMiddleware:
    """Binds the request id to logs, echoes it, and records metrics (pure ASGI, cheap)."""

    #: Routes whose requests are counted but not logged (probes and scrapes).
    QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service
        # The metric children of each (method, route, status) met so far: `labels()`
        # checks and hashes its arguments under a lock on every call. The keys are
        # bounded: methods the server parses, route templates, statuses.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = parent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128] or None
            elif name == b"traceparent":
                parent = value.decode("latin-1")[:128]
        cid = bind_correlation_id(request_id)
        id_header = (b"x-request-id", cid.encode())
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        method = scope["method"]
        if not tracing.enabled():
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = getattr(scope.get("route"), "path", "unmatched")
                self._record(method, path, status, time.perf_counter() - started)
            return
        with tracing.span(
            method, SpanKind.SERVER, parent, **{"http.request.method": method}
        ) as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = getattr(scope.get("route"), "path", "unmatched")
                _name_server_span(span, method, path, status)
                self._record(method, path, status, time.perf_counter() - started)

    def _record(self, method: str, path: str, status: int, elapsed: float) -> None:
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                HTTP_REQUESTS.labels(self.service, method, path, str(status)),
                HTTP_SECONDS.labels(self.service, method, path),
            )
        children[0].inc()
        children[1].observe(elapsed)
        if status >= 500:
            log.error("http_request", method=method, route=path, status=status)
        elif path not in self.QUIET_ROUTES:
            log.info(
                "http_request",
                method=method,
                route=path,
                status=status,
                ms=round(elapsed * 1000, 2),
            )


def _name_server_span(span: Any, method: str, route: str, status: int) -> None:
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        tracing.failed(span, f"HTTP {status}")


class _BodyTooLarge(Exception):
    """Raised into the app from `receive` once a streamed body passes the limit."""


class BodyLimitMiddleware:
    """413 with a JSON error for a body over `limit` bytes, by Content-Length or as streamed.

    A declared length over the limit is refused before the app runs; a chunked body is
    counted as it arrives, and the app's reading fails at the first byte over, so no
    route ever parses an oversized body.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None:
            declared = int(length) if length.isdigit() else None
            if declared is None:
                await self._reply(send, 400, "invalid_request", "invalid Content-Length")
                return
            if declared > self.limit:
                await self._refuse(send)
                return
        if not chunked:
            # The server frames a body by its declared length (none without one), so no
            # more can arrive than was checked: nothing to count.
            await self.app(scope, receive, send)
            return
        received = 0
        refused = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:  # whatever the app makes of a cut-off body, the client gets the 413
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
        if refused and not response_started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        message = f"request body over {self.limit} bytes"
        await self._reply(send, 413, "payload_too_large", message, limit_bytes=self.limit)

    @staticmethod
    async def _reply(send: Send, status: int, code: str, message: str, **extra: Any) -> None:
        body = json.dumps(error_body(code, message, **extra)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The rest of the body is never read, so this connection cannot carry another.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for err in exc.errors()[:20]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        details.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    return f"{first['field']}: {first['message']}", details


async def _refund_write(request: Request) -> None:
    """A write refused by validation (422) costs no write budget: take back its count.

    Only on that refusal, so a valid write still counts in one round trip.
    """
    key: str | None = getattr(request.state, "counted_write", None)
    if key is None:
        return
    request.state.counted_write = None
    runtime: ServiceRuntime = request.app.state.runtime
    try:
        await WriteLimit.refund(runtime.committer, key)
    except RedisError:
        log.warning("write_refund_failed")  # the 422 still stands; the count stays


def install_error_handlers(
    app: FastAPI, statuses: Mapping[type[DomainError], int] | None = None
) -> None:
    """Render every error as JSON with a clear message, never a stack trace.

    `statuses` is the service's one table from domain exception types to HTTP statuses
    (added to `shared.errors.BASE_STATUS`).
    """
    table = dict(statuses or {})

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        body = error_body(exc.code, exc.message, **exc.details)
        status = status_for(exc, table)
        if status == 422:
            await _refund_write(request)
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = dict(exc.headers)
        if exc.status == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        body = error_body(exc.code, exc.message, **exc.details)
        return JSONResponse(body, exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        await _refund_write(request)
        message, details = _validation_message(exc)
        return JSONResponse(error_body("invalid_request", message, details=details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(RedisError)
    async def storage_unavailable(_: Request, exc: RedisError) -> JSONResponse:
        # A Redis outage is an operational state: tell the client to retry, no traceback.
        log.warning("redis_unavailable", error=f"{type(exc).__name__}: {exc}"[:200])
        return JSONResponse(
            error_body("unavailable", "storage is unavailable; retry shortly"),
            503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return JSONResponse(error_body("internal", "internal error; it has been logged"), 500)


class DetachingFastAPI(FastAPI):
    """FastAPI whose outermost layer pumps detached event streams (shared/sse.py); the
    web service builds its app on it too."""

    def build_middleware_stack(self) -> ASGIApp:
        return DetachedStreams(super().build_middleware_stack())


#: The options of an APIRoute that FastAPI's add_api_route takes back as they are.
_ROUTE_OPTIONS = (
    "response_model",
    "status_code",
    "tags",
    "dependencies",
    "summary",
    "description",
    "response_description",
    "responses",
    "deprecated",
    "methods",
    "operation_id",
    "response_model_include",
    "response_model_exclude",
    "response_model_by_alias",
    "response_model_exclude_unset",
    "response_model_exclude_defaults",
    "response_model_exclude_none",
    "include_in_schema",
    "response_class",
    "name",
    "callbacks",
    "openapi_extra",
    "generate_unique_id_function",
    "strict_content_type",
    "max_body_size",
    "form_limits",
)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """`app.include_router(router)` (no prefix or options), with the routes on the app itself.

    FastAPI includes a router as one layer that matches each request twice (once to pick
    the layer, once inside it) and checks the router's version on the way: a twentieth of
    a POST /questions. Each route is added to the app instead, as FastAPI's include_router
    did before it included lazily: a copy under the app, so the app's dependency overrides
    reach it. A router holding anything but FastAPI routes is included as it is.
    """
    if not all(isinstance(route, APIRoute) for route in router.routes):
        app.include_router(router)
        return
    for route in router.routes:
        assert isinstance(route, APIRoute)
        options = {name: getattr(route, name) for name in _ROUTE_OPTIONS}
        app.router.add_api_route(
            route.path, route.endpoint, route_class_override=type(route), **options
        )


def create_http_app(
    runtime: ServiceRuntime,
    routers: list[APIRouter],
    description: str,
    statuses: Mapping[type[DomainError], int] | None = None,
    streams: bool = False,
) -> FastAPI:
    """A FastAPI app for a service: its routes plus health, readiness and metrics.

    With `streams` (a service answering with `shared.sse.EventStream`), the app's outermost
    layer pumps the streams' bodies once the request stack has unwound (DetachedStreams);
    the other services do without that layer and its copy of every request's scope.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app_class = DetachingFastAPI if streams else FastAPI
    app = app_class(
        title=f"askdoc {runtime.service}",
        version="1.0.0",
        description=description,
        lifespan=lifespan,
        **NO_NATIVE_TELEMETRY,
    )
    app.state.settings = runtime.settings
    app.state.runtime = runtime
    install_error_handlers(app, statuses)

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process serves HTTP")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: Redis reachable, consumers running")
    async def readyz() -> JSONResponse:
        ready = await runtime.is_ready()
        body = {"status": "ready" if ready else "not_ready", "service": runtime.service}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        add_routes(app, router)
    # Added last runs first: the request id and metrics also cover the 413s.
    app.add_middleware(BodyLimitMiddleware, limit=runtime.settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=runtime.service)
    return app


# --- Idempotency-Key and the write limit ----------------------------------------------


#: The longest Idempotency-Key taken.
IDEMPOTENCY_KEY_MAX = 128

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Repeat a POST with the same key to get the first reply, not a second effect",
    ),
]


def writer(*roles: Role, limit_in_commit: bool = False) -> Any:
    """A dependency for write routes: signed in, one of `roles` (any if none), rate limited.

    With `limit_in_commit` the route's own commit carries the limit
    (`shared.ratelimit.WriteLimit.add_to`), so the limit costs no extra round trip.
    """
    return Depends(writer_check(*roles, limit_in_commit=limit_in_commit))


WriterCheck = Callable[[Request, Principal], Awaitable[Principal]]


def writer_check(*roles: Role, limit_in_commit: bool = False) -> WriterCheck:
    """`writer`'s check itself, for a lean route to call with the signed-in user."""

    async def check(
        request: Request, user: Annotated[Principal, Depends(require_user)]
    ) -> Principal:
        if roles and user.role not in roles:
            raise ApiError(403, "forbidden", f"this needs the role {' or '.join(roles)}")
        if not limit_in_commit:
            runtime: ServiceRuntime = request.app.state.runtime
            limit = WriteLimit.of(runtime.tag, runtime.settings)
            # FastAPI runs this before it validates the route's path, query and body, so
            # the count is taken back if the request then fails validation (_refund_write)
            request.state.counted_write = await limit.count(runtime.committer, user.sub, user.role)
        return user

    return check


# --- anonymous reads ------------------------------------------------------------------


def _anonymous_read(request: Request) -> ReadCount | None:
    """The anonymous read to count for this request's client (None: exempt, or no limit).

    Behind a proxy in `trusted_proxies` (the web service), X-Forwarded-For names the client.
    """
    state = request.app.state
    limit: ReadLimit | None = getattr(state, "read_limit", None)
    if limit is None:
        runtime: ServiceRuntime = state.runtime
        limit = state.read_limit = ReadLimit.of(runtime.tag, runtime.settings)
        state.trusted_proxies = networks(runtime.settings.trusted_proxies)
    peer = request.client.host if request.client else "unknown"
    address = client_address(peer, request.headers.get("x-forwarded-for"), state.trusted_proxies)
    return limit.counter(address)


async def public_reader(request: Request) -> Principal | None:
    """The signed-in reader, or None; an anonymous read counts against its address's limit.

    Signed-in reads are not counted (their token is verified from a cache).
    """
    user = await optional_user(request)
    if user is not None:
        return user
    read = _anonymous_read(request)
    if read is not None:
        runtime: ServiceRuntime = request.app.state.runtime
        await ReadLimit.count_one(runtime.committer, read)
    return None


async def read_to_count(request: Request) -> ReadCount | None:
    """The anonymous read a route counts in its own round trip; None when signed in.

    For a route that reads Redis anyway: one round trip instead of two (the question page).
    """
    if await optional_user(request) is not None:
        return None
    return _anonymous_read(request)


#: A public read route's caller: signed in, or anonymous within the per-address limit.
AnyReader = Annotated[Principal | None, Depends(public_reader)]


# --- lean routes ----------------------------------------------------------------------

#: A lean route's endpoint arguments, taken straight from a request that passes the
#: route's checks; None leaves the request to FastAPI's own handler.
FastArgs = Callable[[Request], Awaitable[dict[str, Any] | None]]


def lean_route(
    router: APIRouter, method: str, path: str, fast_args: FastArgs, **options: Any
) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
    """Add the decorated endpoint as `method path` (FastAPI's `options`) on a lean route."""

    def add(endpoint: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        route_class = _lean_route_class(fast_args)
        router.add_api_route(
            path, endpoint, methods=[method], route_class_override=route_class, **options
        )
        return endpoint

    return add


def _lean_route_class(fast_args: FastArgs) -> type[APIRoute]:
    """An APIRoute class whose endpoint is called with `fast_args(request)` when given.

    For the few routes that carry most of the load: FastAPI's dependency solving and
    parameter validation cost them more than their own work (issue 14). `fast_args` makes
    the same checks by hand for the common request and returns None for anything else (a
    malformed id, another content type, a body that does not validate), which FastAPI's
    handler then validates and answers exactly as on every other route. Dependencies that
    `fast_args` calls itself (auth, the write limit) raise the same errors either way. The
    endpoint's signature still makes the route's OpenAPI entry; it returns a Response.
    """

    class LeanRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            full = super().get_route_handler()
            endpoint = self.endpoint

            async def handle(request: Request) -> Response:
                args = await fast_args(request)
                if args is None:
                    return await full(request)
                response: Response = await endpoint(**args)
                return response

            return handle

    return LeanRoute


M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request, model: type[M]) -> M | None:
    """The body as `model` when it is declared JSON and valid; None for FastAPI to judge."""
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    try:
        return model.model_validate_json(await request.body())
    except ValidationError:
        return None
