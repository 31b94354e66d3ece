"""The web service's own plumbing, without a browser: settings, sessions, the SSE relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.requests import Request

from services.web.app import create_app
from services.web.clients import plain
from services.web.live import (
    _relay,
    parse_events,
    restored_items,
    sse,
    withdrawn_event,
    withdrawn_ids,
)
from services.web.routes import _location
from services.web.session import COOKIE, Session, Sessions
from services.web.settings import WebSettings
from services.web.wording import alert_reason, delivery_words
from tests.support import JWT_SECRET, token


def _settings(**values: object) -> WebSettings:
    return WebSettings(jwt_secret=JWT_SECRET, **values)  # type: ignore[arg-type]


def _request(cookie: str | None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_development_sign_in_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="refused"):
        _settings(web_dev_login=True, environment="production")
    assert _settings(environment="production").web_dev_login is False
    assert _settings(web_dev_login=True).web_dev_login is True


def _cookie(sessions: Sessions, session: Session) -> str:
    response = Response()
    sessions.save(session, response)
    header = response.headers["set-cookie"]
    assert "httponly" in header.lower() and "samesite=lax" in header.lower()
    return header.split(";", 1)[0].split("=", 1)[1]


async def test_a_session_cookie_carries_the_user_and_a_csrf_token() -> None:
    sessions = Sessions(_settings())
    visitor = await sessions.read(_request(None))
    assert visitor.user is None and visitor.changed and len(visitor.csrf) > 20
    before = visitor.csrf
    await sessions.sign_in(visitor, token("dr-jason-emer", "doctor", "Jason Emer"))
    assert visitor.csrf != before, "a new identity gets a new CSRF token"
    again = await sessions.read(_request(_cookie(sessions, visitor)))
    assert again.user is not None and again.user.sub == "dr-jason-emer"
    assert again.csrf == visitor.csrf and not again.changed
    assert again.csrf_ok(visitor.csrf) and not again.csrf_ok("") and not again.csrf_ok("x")


async def test_a_tampered_or_foreign_cookie_is_a_fresh_visitor() -> None:
    sessions = Sessions(_settings())
    session = await sessions.read(_request(None))
    await sessions.sign_in(session, token("patient-1"))
    cookie = _cookie(sessions, session)
    tampered = await sessions.read(_request(cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")))
    assert tampered.user is None and tampered.csrf != session.csrf
    other = Sessions(_settings(session_secret="another-session-secret-0123456789abcdef"))
    assert (await other.read(_request(cookie))).user is None


@pytest.mark.parametrize("secure", [True, False])
def test_the_cookie_is_secure_when_the_setting_says_so(secure: bool) -> None:
    response = Response()
    Sessions(_settings(secure_cookies=secure)).save(Session(csrf="c", changed=True), response)
    assert ("secure" in response.headers["set-cookie"].lower()) is secure


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_the_relay_reads_notify_events_and_heartbeats() -> None:
    body = _lines(
        "retry: 3000",
        ": connected",
        "",
        "id: n1",
        "event: notification",
        'data: {"id": "n1",',
        'data:  "kind": "digest"}',
        "",
        ": heartbeat",
        "",
    )
    events = [e async for e in parse_events(body)]
    assert events == [None, ("notification", '{"id": "n1",\n "kind": "digest"}'), None]


def test_an_event_with_many_lines_keeps_each_as_a_data_line() -> None:
    assert sse("notification", "<li>\n  x\n</li>", "n1") == (
        "id: n1\nevent: notification\ndata: <li>\ndata:   x\ndata: </li>\n\n"
    )


@pytest.mark.parametrize(
    ("text", "place", "error"),
    [
        ("", None, False),
        ("90012", {"zip": "90012"}, False),
        ("Los Angeles, CA", {"city": "Los Angeles", "state": "CA"}, False),
        ("Winston-Salem , NC ", {"city": "Winston-Salem", "state": "NC"}, False),
        ("Nowhere", None, True),
        (", CA", None, True),
    ],
)
def test_a_typed_location_becomes_the_apis_location(
    text: str, place: dict[str, str] | None, error: bool
) -> None:
    got, message = _location(text)
    assert got == place and bool(message) is error


class _HeldOpen(httpx.AsyncByteStream):
    """notify's side of a live stream: a heartbeat, one notification, then held open."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"retry: 3000\n: connected\n\n"
        yield b'id: n1\nevent: notification\ndata: {"id": "n1", "kind": "digest"}\n\n'
        await asyncio.Event().wait()
        yield b""  # never reached

    async def aclose(self) -> None:
        self.closed.set()


async def _call(app: Any, cookie: str | None) -> tuple[asyncio.Task[None], list[Any], Any]:
    """GET /inbox/stream as a browser at 203.0.113.7 would: the app's task, what it sent,
    and the event that makes the browser leave."""
    sent: list[Any] = []
    leave = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    headers = [(b"host", b"web.test")]
    if cookie:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/inbox/stream",
        "raw_path": b"/inbox/stream",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.7", 50000),
        "server": ("web.test", 80),
    }
    return asyncio.create_task(app(scope, receive, send)), sent, leave


async def test_the_live_relay_passes_notify_on_and_closes_it_when_the_browser_leaves() -> None:
    app = create_app(_settings())
    web = app.state.web
    upstream = _HeldOpen()
    asked: list[httpx.Request] = []

    async def notify(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=upstream)

    await web.services.stream_http.aclose()
    web.services.notify.stream_http = httpx.AsyncClient(transport=httpx.MockTransport(notify))
    try:
        task, sent, _ = await _call(app, None)
        await asyncio.wait_for(task, 5)
        assert sent[0]["status"] == 401 and not asked, "no session, no stream"

        session = await web.sessions.read(_request(None))
        await web.sessions.sign_in(session, token("dr-live", "doctor"))
        task, sent, leave = await _call(app, _cookie(web.sessions, session))

        def body() -> str:
            return "".join(m.get("body", b"").decode() for m in sent[1:])

        async def until_item() -> None:
            while 'id="n-n1"' not in body():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_item(), 5)
        start = dict(sent[0]["headers"])
        assert sent[0]["status"] == 200
        assert start[b"content-type"].startswith(b"text/event-stream")
        assert start[b"cache-control"] == b"no-cache"
        assert start[b"x-accel-buffering"] == b"no"
        assert body().startswith("retry: 3000\n\n: heartbeat\n\nid: n1\nevent: notification\n")
        # Taken while the request was handled, though notify's stream opens after.
        assert asked[0].headers["authorization"].startswith("Bearer ")
        assert asked[0].headers["x-forwarded-for"] == "203.0.113.7"
        assert asked[0].headers["x-request-id"] == start[b"x-request-id"].decode()
        assert not upstream.closed.is_set()

        leave.set()  # the browser goes away
        await asyncio.wait_for(task, 5)
        assert upstream.closed.is_set(), "notify's stream outlived the browser's"
        await asyncio.sleep(0)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, f"left running: {others}"
    finally:
        await web.services.aclose()


@pytest.mark.parametrize(
    ("failure", "warning"),
    [
        ("refused", "live_upstream_refused"),
        ("unreadable", "live_item_unreadable"),
        ("failed", "live_upstream_failed"),
    ],
)
async def test_the_relays_warnings_carry_the_requests_correlation_id(
    failure: str, warning: str
) -> None:
    # Its body is pumped after the request stack has unwound (shared/sse.py), in the
    # request's task: the correlation id bound for the request is still in its context.
    app = create_app(_settings())
    web = app.state.web

    async def notify(request: httpx.Request) -> httpx.Response:
        if failure == "failed":
            raise httpx.ConnectError("notify is down", request=request)
        if failure == "refused":
            return httpx.Response(503)
        body = b'id: n1\nevent: notification\ndata: {"not": "an item"}\n\n'
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    await web.services.stream_http.aclose()
    web.services.notify.stream_http = httpx.AsyncClient(transport=httpx.MockTransport(notify))
    try:
        session = await web.sessions.read(_request(None))
        await web.sessions.sign_in(session, token("dr-live", "doctor"))
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            task, sent, _ = await _call(app, _cookie(web.sessions, session))
            await asyncio.wait_for(task, 5)
        request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
        warnings = [e for e in logs if e["event"].startswith("live_")]
        assert [e["event"] for e in warnings] == [warning]
        assert warnings[0].get("correlation_id") == request_id
        assert "dr-live" not in repr(warnings)  # no personal data
    finally:
        await web.services.aclose()


async def test_the_relay_passes_withdrawn_ids_on_without_an_event_id_and_drops_bad_ones() -> None:
    good = "n" + "0a" * 12
    upstream = httpx.Response(
        200,
        content=(
            f'event: withdrawn\ndata: {{"ids": ["{good}"]}}\n\n'
            'event: withdrawn\ndata: {"ids": ["<script>"]}\n\n'
            "event: withdrawn\ndata: not json\n\n"
            'event: something-else\ndata: {"ids": []}\n\n'
        ).encode(),
    )

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[httpx.Response]:
        yield upstream

    def render(item: Any) -> str:
        raise AssertionError("no notification to render")

    sent = [chunk async for chunk in _relay(opened(), render, asyncio.Event())]
    assert sent == ["retry: 3000\n\n", f'event: withdrawn\ndata: {{"ids": ["{good}"]}}\n\n']
    assert withdrawn_ids('{"ids": 3}') is None and withdrawn_ids("[]") is None


def test_a_withdrawn_event_keeps_which_of_its_ids_were_unread_and_nothing_else() -> None:
    one, two, other = "n" + "1" * 24, "n" + "2" * 24, "n" + "3" * 24
    data = json.dumps({"ids": [one, two], "unread": [two, other]})
    assert withdrawn_event(data) == {"ids": [one, two], "unread": [two]}
    assert withdrawn_event(json.dumps({"ids": [one], "unread": ["<b>"]})) == {"ids": [one]}
    assert withdrawn_event(json.dumps({"ids": [one]})) == {"ids": [one]}
    assert withdrawn_event('{"ids": 3}') is None


async def test_the_relay_sends_restored_items_rendered_without_an_event_id_and_drops_bad_ones() -> (
    None
):
    one, two = ({"id": "n" + c * 24, "kind": "new-question", "question_id": "q1"} for c in "12")
    upstream = httpx.Response(
        200,
        content=(
            f"event: restored\ndata: {json.dumps({'items': [one, two]})}\n\n"
            'event: restored\ndata: {"items": [{"kind": "no id"}]}\n\n'
            'event: restored\ndata: {"items": []}\n\n'
            "event: restored\ndata: not json\n\n"
        ).encode(),
    )

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[httpx.Response]:
        yield upstream

    def render(item: Any) -> str:
        return f'<li id="n-{item.id}">{item.kind}</li>'

    sent = [chunk async for chunk in _relay(opened(), render, asyncio.Event())]
    # One event, each item rendered on a data line of its own; no id, so the browser's
    # Last-Event-ID stays its newest notification's.
    assert sent == [
        "retry: 3000\n\n",
        f'event: restored\ndata: <li id="n-{one["id"]}">new-question</li>\n'
        f'data: <li id="n-{two["id"]}">new-question</li>\n\n',
    ]
    assert restored_items('{"items": 3}') is None and restored_items("[]") is None


async def test_the_web_drops_kept_pages_and_related_lists_when_the_visibility_version_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.web import context
    from services.web.clients import BackendUnavailable

    monkeypatch.setattr(context, "VISIBILITY_RETRY_MAX_S", 0.01)
    web = create_app(_settings(backend_timeout_s=1.0)).state.web
    # The questions service answers 3, fails once (kept: 3), then 3 again, then 4.
    answers: list[int | Exception] = [3, BackendUnavailable(503, "unavailable", "down"), 3, 4]
    asked: list[tuple[int | None, float]] = []
    dropped: list[int] = []
    done = asyncio.Event()

    async def visibility_version(after: int | None, wait_s: float) -> int:
        asked.append((after, wait_s))
        if not answers:
            done.set()
            await asyncio.Event().wait()  # a long poll that never answers
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(web.services.questions, "visibility_version", visibility_version)
    monkeypatch.setattr(web, "forget_moderated", lambda: dropped.append(len(asked)))
    watch = asyncio.ensure_future(web.follow_visibility())
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await web.services.aclose()
    # Dropped once: when 3 became 4 (the first answer and the failure drop nothing).
    assert dropped == [4]
    # Each poll waits past the version known, inside the 1 s backend timeout.
    assert [after for after, _ in asked] == [None, 3, 3, 3, 4]
    assert all(0 < wait_s < 1.0 for _, wait_s in asked)


def test_field_messages_reach_people_in_plain_words() -> None:
    assert plain("String should have at least 10 characters") == "Write at least 10 characters."
    assert plain("String should have at least 1 character") == "This cannot be empty."
    assert plain("String should have at most 300 characters") == (
        "Keep it to 300 characters at most."
    )
    assert plain("List should have at least 1 item after validation, not 0") == (
        "Choose at least one."
    )
    assert plain("Field required") == "This is required."
    assert plain("Enter a ZIP code (90012).") == "Enter a ZIP code (90012)."


def test_an_alerts_reason_names_the_specialty_and_says_distance_and_rank_in_words() -> None:
    names = {"procedural-dermatology": "Procedural Dermatology"}.__getitem__
    reason = {"specialty": "procedural-dermatology", "distance_km": 12.3, "rank": 2}
    text = alert_reason("question-match", reason, "procedural-dermatology · 12.3 km", names)
    assert text == (
        "It matches your specialty, Procedural Dermatology, and the asker is 12.3 km from you;"
        " you were the 2nd nearest doctor asked."
    )
    widened = {**reason, "rank": 1, "widened": True, "radius_km": 80.0, "held": "quiet_hours"}
    assert alert_reason("question-match", widened, "", names).endswith(
        "you were the nearest doctor asked. Few doctors practise nearer, so the search went"
        " out to 80 km. It waited until your quiet hours ended."
    )
    nowhere = {"specialty": "procedural-dermatology", "distance_km": None, "rank": 3}
    assert "The asker gave no location" in alert_reason("question-match", nowhere, "", names)
    # Other kinds say notify's own text, as a sentence.
    assert alert_reason("new-answer", {}, "Dr A answered your question", names) == (
        "Dr A answered your question."
    )


def test_the_delivery_line_says_where_the_alert_went_in_words() -> None:
    assert delivery_words({"inbox": "delivered"}) == "Sent to your inbox"
    assert delivery_words({"inbox": "delivered", "webhook": "delivered", "email": "pending"}) == (
        "Sent to your inbox and webhook; e-mail on its way"
    )
    assert delivery_words({"inbox": "delivered", "email": "failed"}) == (
        "Sent to your inbox; could not reach your e-mail"
    )
    assert delivery_words({}) == "Sent to your inbox"


async def test_the_home_page_asks_the_answers_service_only_for_a_listing_item_without_a_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.web.clients import Question, QuestionList, Taxonomy

    app = create_app(_settings())
    web = app.state.web
    listing = QuestionList(
        items=[
            Question(id="q1", title="Counted by the listing", body="b", answer_count=3),
            Question(id="q2", title="From an older questions service", body="b"),
        ]
    )
    asked: list[str] = []

    async def recent(topic: str | None = None, cursor: str | None = None) -> QuestionList:
        return listing

    async def taxonomy() -> Taxonomy:
        return Taxonomy(specialties=[], topics=[])

    async def answer_count(qid: str) -> int:
        asked.append(qid)
        return 1

    monkeypatch.setattr(web.services.questions, "recent", recent)
    monkeypatch.setattr(web.services.questions, "taxonomy", taxonomy)
    monkeypatch.setattr(web.services.answers, "answer_count", answer_count)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            page = await client.get("/")
    finally:
        await web.services.aclose()
    assert page.status_code == 200
    assert asked == ["q2"]
    assert "3 doctor answers" in page.text and "1 doctor answer<" in page.text
