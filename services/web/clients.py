"""One small typed client per backing service, over its public HTTP API only."""

from __future__ import annotations

import re
import time
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from json import loads as json_loads
from typing import Any

import aiohttp
import httpx
from pydantic import BaseModel, ConfigDict, Field

from shared.logging import current_correlation_id

# The visitor's address chain for the backends' per-address read limit: the request's own
# X-Forwarded-For with the web's peer appended, as any proxy appends its own.
_forwarded_for: ContextVar[str | None] = ContextVar("askdoc_web_forwarded_for", default=None)


class ForwardedForMiddleware:
    """Remembers who is asking, so every backend call carries X-Forwarded-For (pure ASGI).

    The backends trust the web (`ASKDOC_TRUSTED_PROXIES`) and count an anonymous read for
    the right-most address in the chain that is not itself a trusted proxy: each visitor
    has their own budget instead of all sharing the web's address.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chain = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        peer = scope.get("client")
        if peer:
            chain.append(str(peer[0]))
        token = _forwarded_for.set(", ".join(chain)[:512] or None)
        try:
            await self.app(scope, receive, send)
        finally:
            _forwarded_for.reset(token)


class ApiProblem(Exception):
    """A service answered with an error: its status, code, message and per-field messages."""

    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}

    @property
    def for_the_form(self) -> bool:
        """A refusal the person can mend on the form they sent (shown beside it), not a
        401 (sign in again), a 404 or a failure on the service's side (the error pages)."""
        return self.status not in (401, 404) and self.status < 500


class BackendUnavailable(ApiProblem):
    """A service could not be reached, or failed on its side."""


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DoctorCard(_Shape):
    """The doctor's card shown beside an answer."""

    id: str
    name: str
    credentials: str = ""
    specialty: str | None = None
    city: str | None = None
    state: str | None = None
    rating: float | None = None
    review_count: int = 0
    verified: bool = False


class Answer(_Shape):
    """An answer as the question page shows it."""

    id: str
    question_id: str
    headline: str | None = None
    body: str
    created_at: str = ""
    doctor: DoctorCard
    helpful: int = 0
    unhelpful: int = 0
    accepted: bool = False
    edited_at: str | None = None


class Place(_Shape):
    """A coarse place: city, state, ZIP."""

    city: str | None = None
    state: str | None = None
    zip: str | None = None


class Asker(_Shape):
    """A named asker (anonymous askers have none)."""

    id: str
    name: str | None = None


class Question(_Shape):
    """A question as listed."""

    id: str
    title: str
    body: str
    topics: list[str] = Field(default_factory=list)
    specialties: list[str] = Field(default_factory=list)
    location: Place | None = None
    status: str = "open"
    created_at: str = ""
    asker: Asker | None = None
    urgent: bool = False
    emergency_notice: str | None = None
    edited_at: str | None = None
    #: In a listing: how many answers its page shows (None from a questions service
    #: older than the field).
    answer_count: int | None = None


class QuestionPage(Question):
    """The question page: answers ranked best first, their count, the disclaimer."""

    answers: list[Answer] = Field(default_factory=list)
    answer_count: int | None = 0
    disclaimer: str = ""
    follower_count: int = 0
    following: bool = False
    yours: bool = False


class QuestionList(_Shape):
    """A page of questions, newest first."""

    items: list[Question]
    next_cursor: str | None = None


class Related(_Shape):
    """A related question."""

    id: str
    title: str


class Specialty(_Shape):
    """A specialty of the controlled vocabulary."""

    slug: str
    name: str
    nucc_code: str | None = None


class Topic(_Shape):
    """A question topic."""

    slug: str
    name: str


class Taxonomy(_Shape):
    """Specialties and topics."""

    specialties: list[Specialty]
    topics: list[Topic]

    def specialty_name(self, slug: str | None) -> str:
        """The display name of a specialty slug (the slug itself if unknown)."""
        return next((s.name for s in self.specialties if s.slug == slug), slug or "")


class Tally(_Shape):
    """An answer's helpful and unhelpful counts, and the caller's own vote."""

    answer_id: str
    helpful: int
    unhelpful: int
    your_vote: int | None = None


class InboxItem(_Shape):
    """One alert in an inbox."""

    id: str
    kind: str
    question_id: str | None = None
    answer_id: str | None = None
    created_at: str = ""
    urgent: bool = False
    reason: dict[str, Any] = Field(default_factory=dict)
    reason_text: str = ""
    title: str | None = None
    read: bool = False
    delivery: dict[str, str] = Field(default_factory=dict)


class Inbox(_Shape):
    """A page of alerts, newest first."""

    items: list[InboxItem]
    next_cursor: str | None = None
    unread_count: int = 0


class ModerationItem(_Shape):
    """A flagged or hidden item in the moderation queue, with its counts per reason."""

    item_kind: str
    item_id: str
    question_id: str
    title: str = ""
    excerpt: str = ""
    counts: dict[str, int] = Field(default_factory=dict)
    flag_count: int = 0
    first_flagged_at: str | None = None
    status: str = "open"
    reason: str | None = None
    decided_at: str | None = None
    dismissed_flags: int = 0
    notes: list[str] = Field(default_factory=list)


class ModerationQueue(_Shape):
    """A page of the moderation queue: open (flagged) or hidden items."""

    status: str
    items: list[ModerationItem]
    next_cursor: str | None = None


class QuietHours(_Shape):
    """A daily do-not-disturb window."""

    start: str
    end: str
    tz: str


class DoctorProfile(DoctorCard):
    """A doctor's own profile with alert settings (private fields for its owner)."""

    specialties: list[str] = Field(default_factory=list)
    location: Place | None = None
    radius_km: float = 50
    email: str | None = None
    webhook_url: str | None = None
    has_webhook_secret: bool = False
    quiet_hours: QuietHours | None = None
    daily_cap: int | None = None
    status: str | None = None  # pending, verified or suspended: told to the doctor and admins
    npi: str | None = None


class PendingDoctors(_Shape):
    """The doctors waiting for an admin to verify them, the longest waiting first."""

    items: list[DoctorProfile] = Field(default_factory=list)
    total: int = 0


@dataclass(frozen=True)
class Reply:
    """A service's answer, read whole: status, the headers a client reads, body."""

    status: int
    etag: str | None
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json_loads(self.body)


class Upstream:
    """The pooled HTTP client of the page calls (aiohttp: picks a pooled connection in
    constant time; httpx's pool scans every connection on each request).

    The session is made on first use, inside the running event loop.
    """

    def __init__(self, timeout_s: float, max_connections: int = 200) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The shared session (one connection pool for the four services)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0),
                # The services' own ETags and headers, untouched; no cookies kept.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Reply:
        """One call, its body read whole; aiohttp's errors (and timeouts) as OSError."""
        try:
            async with self.session().request(
                method, url, headers=headers, json=json, params=params
            ) as response:
                body = await response.read()
                return Reply(response.status, response.headers.get("ETag"), body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()


class _Client:
    """Calls one service: bearer token, request id, idempotency key; errors as ApiProblem."""

    def __init__(self, http: Upstream, base_url: str, service: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.service = service

    def _headers(self, token: str | None, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"X-Request-ID": current_correlation_id()}
        forwarded_for = _forwarded_for.get()
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """The decoded JSON reply; ApiProblem for 4xx, BackendUnavailable otherwise."""
        reply = await self._send(
            method,
            path,
            self._headers(token, idempotency_key),
            json=json,
            params={k: v for k, v in (params or {}).items() if v is not None} or None,
        )
        if reply.status >= 400:
            raise _problem(self.service, reply)
        return reply.json()

    async def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Reply:
        try:
            return await self.http.request(
                method, self.base_url + path, headers, json=json, params=params
            )
        except OSError as exc:
            raise BackendUnavailable(
                503, "unavailable", f"the {self.service} service cannot be reached ({exc})"
            ) from None


#: The services' field messages are pydantic's ("String should have at least 10 characters"):
#: said again in words a patient or doctor reads beside the field.
_PLAIN: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^String should have at least 1 character"), lambda m: "This cannot be empty."),
    (
        re.compile(r"^String should have at least (\d+) characters"),
        lambda m: f"Write at least {m[1]} characters.",
    ),
    (
        re.compile(r"^String should have at most (\d+) characters"),
        lambda m: f"Keep it to {m[1]} characters at most.",
    ),
    (re.compile(r"^List should have at least 1 item"), lambda m: "Choose at least one."),
    (re.compile(r"^List should have at least (\d+) items"), lambda m: f"Choose at least {m[1]}."),
    (re.compile(r"^List should have at most (\d+) items"), lambda m: f"Choose at most {m[1]}."),
    (re.compile(r"^Field required$"), lambda m: "This is required."),
    (re.compile(r"^Input should be a valid (number|integer)"), lambda m: "Enter a number."),
]


def plain(message: str) -> str:
    """A field message in plain words (unchanged when it is one already)."""
    for pattern, words in _PLAIN:
        if found := pattern.match(message):
            return str(words(found))
    return message


def _problem(service: str, reply: Reply) -> ApiProblem:
    try:
        error = reply.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("code") or "error")
    message = str(error.get("message") or f"the {service} service answered {reply.status}")
    fields: dict[str, str] = {}
    for detail in error.get("details") or []:
        field = str(detail.get("field", "")).split(".")[0]
        fields.setdefault(field, plain(str(detail.get("message", "invalid"))))
    if reply.status >= 500:
        return BackendUnavailable(reply.status, code, message, fields)
    return ApiProblem(reply.status, code, message, fields)


class QuestionsClient(_Client):
    """The questions service: questions, the ranked page, related questions, taxonomy."""

    TAXONOMY_TTL_S = 300.0
    #: Related questions shift slowly (new questions on the same topics): kept this long.
    RELATED_TTL_S = 30.0
    #: Pages (and related lists) kept in memory, the most recently fetched.
    KEPT = 2000

    def __init__(self, http: Upstream, base_url: str) -> None:
        super().__init__(http, base_url, "questions")
        self._taxonomy: tuple[float, Taxonomy] | None = None
        self._pages: dict[str, tuple[str, QuestionPage]] = {}
        self._related: dict[tuple[str, int], tuple[float, list[Related]]] = {}

    async def page(self, qid: str, token: str | None = None) -> QuestionPage:
        """The question page (with `following` for the holder of `token`)."""
        return (await self.page_with_etag(qid, token))[1]

    async def page_with_etag(
        self, qid: str, token: str | None = None
    ) -> tuple[str | None, QuestionPage]:
        """The question page and its ETag (None if the service sent none).

        A visitor's page is everyone's: one seen before is asked for by its ETag and
        reused on 304. A signed-in reader's says whether they follow it, so is not kept.
        """
        if token is not None:
            reply = await self.call("GET", f"/questions/{qid}", token)
            return None, QuestionPage.model_validate(reply)
        kept = self._pages.get(qid)
        headers = self._headers(None)
        if kept is not None:
            headers["If-None-Match"] = kept[0]
        reply = await self._send("GET", f"/questions/{qid}", headers)
        if reply.status == 304 and kept is not None:
            return kept
        if reply.status >= 400:
            self._pages.pop(qid, None)
            raise _problem(self.service, reply)
        page = QuestionPage.model_validate_json(reply.body)
        etag = reply.etag
        if etag:
            _keep(self._pages, qid, (etag, page), self.KEPT)
        return etag, page

    async def edit(self, token: str, qid: str, title: str, body: str) -> None:
        """Change the signed-in asker's question (until it has an answer)."""
        await self.call("PATCH", f"/questions/{qid}", token, json={"title": title, "body": body})

    async def accept(self, token: str, qid: str, aid: str) -> None:
        """The signed-in asker's pick: the answer most helpful to them."""
        await self.call("PUT", f"/questions/{qid}/accepted-answer", token, json={"answer_id": aid})

    async def follow(self, token: str, qid: str, following: bool) -> int:
        """Follow or unfollow a question as the signed-in user; how many follow it now."""
        method = "PUT" if following else "DELETE"
        reply = await self.call(method, f"/questions/{qid}/follow", token)
        return int(reply["follower_count"])

    async def recent(
        self, topic: str | None = None, cursor: str | None = None, limit: int = 20
    ) -> QuestionList:
        """Questions newest first, optionally of one topic."""
        params = {"topic": topic, "cursor": cursor, "limit": limit}
        return QuestionList.model_validate(await self.call("GET", "/questions", params=params))

    async def related(self, qid: str, limit: int = 5) -> list[Related]:
        """Questions related to `qid` (kept for RELATED_TTL_S)."""
        now = time.monotonic()
        kept = self._related.get((qid, limit))
        if kept is not None and now - kept[0] < self.RELATED_TTL_S:
            return kept[1]
        reply = await self.call("GET", f"/questions/{qid}/related", params={"limit": limit})
        items = [Related.model_validate(item) for item in reply["items"]]
        _keep(self._related, (qid, limit), (now, items), self.KEPT)
        return items

    def forget_related(self) -> None:
        """Drop every related list kept (a question was hidden or restored)."""
        self._related.clear()

    async def visibility_version(self, after: int | None, wait_s: float) -> int:
        """The questions' visibility version, once it is not `after` or `wait_s` passed."""
        params = {"after": after, "wait_s": wait_s if after is not None else 0}
        reply = await self.call("GET", "/moderation/visibility", params=params)
        return int(reply["version"])

    async def ask(self, token: str, question: dict[str, Any], idempotency_key: str) -> Question:
        """Post a question as the signed-in patient."""
        reply = await self.call(
            "POST", "/questions", token, json=question, idempotency_key=idempotency_key
        )
        return Question.model_validate(reply)

    async def flag(
        self, token: str, qid: str, aid: str | None, reason: str, note: str | None
    ) -> None:
        """Flag a question, or one of its answers, for the moderators (one flag per user)."""
        path = f"/questions/{qid}" + (f"/answers/{aid}" if aid else "") + "/flag"
        body = {"reason": reason, **({"note": note} if note else {})}
        await self.call("PUT", path, token, json=body)

    async def moderation_queue(
        self, token: str, status: str, cursor: str | None = None
    ) -> ModerationQueue:
        """Flagged items, most flagged first (status open), or hidden ones (admins)."""
        params = {"status": status, "cursor": cursor, "limit": 50}
        reply = await self.call("GET", "/moderation/queue", token, params=params)
        return ModerationQueue.model_validate(reply)

    async def decide(
        self, token: str, qid: str, aid: str | None, decision: str, reason: str | None
    ) -> None:
        """Hide, restore or dismiss the flags of a question or one of its answers (admins)."""
        path = f"/moderation/questions/{qid}" + (f"/answers/{aid}" if aid else "")
        body = {"decision": decision, **({"reason": reason} if reason else {})}
        await self.call("PUT", path, token, json=body)

    async def taxonomy(self) -> Taxonomy:
        """The controlled vocabulary (cached for a few minutes: it changes with releases)."""
        now = time.monotonic()
        if self._taxonomy is None or now - self._taxonomy[0] > self.TAXONOMY_TTL_S:
            self._taxonomy = (now, Taxonomy.model_validate(await self.call("GET", "/taxonomy")))
        return self._taxonomy[1]


def _keep(kept: dict[Any, Any], key: Any, value: Any, most: int) -> None:
    """Remember `value` under `key`; past `most` entries the oldest goes."""
    kept.pop(key, None)
    if len(kept) >= most:
        kept.pop(next(iter(kept)))
    kept[key] = value


class AnswersClient(_Client):
    """The answers service."""

    def __init__(self, http: Upstream, base_url: str) -> None:
        super().__init__(http, base_url, "answers")

    async def answer_count(self, qid: str) -> int:
        """How many answers a question has."""
        reply = await self.call("GET", f"/questions/{qid}/answers")
        return int(reply.get("answer_count", len(reply.get("items", []))))

    async def post(
        self, token: str, qid: str, headline: str | None, body: str, idempotency_key: str
    ) -> str:
        """Post the signed-in doctor's answer; its id."""
        payload = {"headline": headline or None, "body": body}
        reply = await self.call(
            "POST",
            f"/questions/{qid}/answers",
            token,
            json=payload,
            idempotency_key=idempotency_key,
        )
        return str(reply["id"])

    async def edit(self, token: str, aid: str, headline: str, body: str) -> None:
        """Change the signed-in doctor's answer (an empty headline removes it)."""
        payload = {"headline": headline or None, "body": body}
        await self.call("PATCH", f"/answers/{aid}", token, json=payload)


class VotesClient(_Client):
    """The votes service."""

    def __init__(self, http: Upstream, base_url: str) -> None:
        super().__init__(http, base_url, "votes")

    async def tally(self, aid: str, token: str | None) -> Tally:
        """An answer's tally with the caller's own vote."""
        return Tally.model_validate(await self.call("GET", f"/answers/{aid}/votes", token))

    async def vote(self, token: str, aid: str, value: int) -> Tally:
        """Vote 1 (helpful), -1 (unhelpful) or 0 (retract)."""
        reply = await self.call("PUT", f"/answers/{aid}/vote", token, json={"value": value})
        return Tally.model_validate(reply)


class NotifyClient(_Client):
    """The notify service: doctor profiles and inboxes."""

    def __init__(self, http: Upstream, base_url: str, stream_http: httpx.AsyncClient) -> None:
        super().__init__(http, base_url, "notify")
        self.stream_http = stream_http

    async def doctor(self, doctor_id: str, token: str | None = None) -> DoctorProfile | None:
        """A doctor's profile (private fields when `token` is theirs), None if unknown."""
        try:
            return DoctorProfile.model_validate(
                await self.call("GET", f"/doctors/{doctor_id}", token)
            )
        except ApiProblem as exc:
            if exc.status == 404:
                return None
            raise

    async def pending_doctors(self, token: str) -> PendingDoctors:
        """The doctors waiting for verification (admins)."""
        reply = await self.call("GET", "/doctors", token, params={"status": "pending"})
        return PendingDoctors.model_validate(reply)

    async def set_doctor_status(self, token: str, doctor_id: str, status: str) -> None:
        """Verify or suspend a doctor (admins)."""
        await self.call("PUT", f"/doctors/{doctor_id}/status", token, json={"status": status})

    async def save_doctor(self, token: str, doctor_id: str, profile: dict[str, Any]) -> None:
        """Replace the doctor's profile."""
        await self.call("PUT", f"/doctors/{doctor_id}", token, json=profile)

    async def inbox(self, token: str, cursor: str | None = None, limit: int = 30) -> Inbox:
        """The signed-in user's alerts, newest first."""
        params = {"cursor": cursor, "limit": limit}
        return Inbox.model_validate(await self.call("GET", "/inbox", token, params=params))

    async def mark_read(self, token: str, nid: str) -> None:
        """Mark one alert read."""
        await self.call("POST", f"/inbox/{nid}/read", token)

    def stream(
        self, token: str, last_event_id: str | None
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """The user's live alerts as server-sent events (held open; heartbeats included).

        Its headers (X-Forwarded-For, X-Request-ID) are taken now, while the request is
        being handled: the stream is opened later, by the detached body of an EventStream.
        """
        headers = self._headers(token)
        headers["Accept"] = "text/event-stream"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        # No read timeout: notify sends a heartbeat comment every few seconds, and a
        # stream is closed when the browser goes away.
        timeout = httpx.Timeout(10.0, read=None)
        return self.stream_http.stream(
            "GET", self.base_url + "/inbox/stream", headers=headers, timeout=timeout
        )


class Services:
    """The four clients over one pooled HTTP client."""

    def __init__(
        self,
        questions_url: str,
        answers_url: str,
        votes_url: str,
        notify_url: str,
        timeout_s: float,
    ) -> None:
        self.http = Upstream(timeout_s)
        # Live streams are held open for as long as a page is: their own pool, unbounded,
        # so open inboxes never starve the page requests of connections.
        self.stream_http = httpx.AsyncClient(
            timeout=timeout_s, limits=httpx.Limits(max_connections=None)
        )
        self.questions = QuestionsClient(self.http, questions_url)
        self.answers = AnswersClient(self.http, answers_url)
        self.votes = VotesClient(self.http, votes_url)
        self.notify = NotifyClient(self.http, notify_url, self.stream_http)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.http.aclose()
        await self.stream_http.aclose()
