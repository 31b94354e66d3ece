"""The pages: each route reads its session, calls the services' clients and renders."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Form, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from shared.auth import Principal, issue_token
from shared.errors import ApiError
from shared.logging import get_logger
from shared.sse import EventStream

from .clients import ApiProblem, InboxItem, Place, QuestionPage, Related, Tally, Taxonomy
from .context import CsrfRefused, SignInRequired, Web
from .live import relay
from .pagecache import SharedPage
from .session import Session

log = get_logger("askdoc.web.routes")
router = APIRouter()

T = TypeVar("T")
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ZIP = re.compile(r"^\d{5}(-\d{4})?$")
# How long a write waits for the question page (a read model fed by events) to show it,
# so the page the browser lands on shows what the person just did.
READ_YOUR_WRITE_S = 3.0
#: The reason categories of a flag, as the report forms and the moderation page name them.
REASONS = {
    "spam": "Spam",
    "unsafe-medical-advice": "Unsafe medical advice",
    "harassment": "Harassment",
    "other": "Other",
}


async def _web(request: Request) -> Web:
    # async: FastAPI runs a plain `def` dependency in its thread pool, on every request.
    web: Web = request.app.state.web
    return web


WebDep = Annotated[Web, Depends(_web)]


async def _session(request: Request, web: WebDep) -> Session:
    return await web.sessions.read(request)


SessionDep = Annotated[Session, Depends(_session)]


async def _form_session(
    session: SessionDep, csrf_token: Annotated[str, Form(max_length=100)] = ""
) -> Session:
    """The session of a form POST that carries the session's CSRF token (403 otherwise)."""
    if not session.csrf_ok(csrf_token):
        raise CsrfRefused()
    return session


FormSession = Annotated[Session, Depends(_form_session)]


def _signed_in(session: Session, request: Request, *roles: str) -> str:
    """The session's bearer token; sign in first if there is none (or the role differs)."""
    if session.token is None or session.user is None:
        raise SignInRequired(request.url.path)
    if roles and session.user.role not in roles:
        raise ApiProblem(403, "forbidden", f"this page is for {' or '.join(roles)} accounts")
    return session.token


def _unsent(web: Web, session: Session, back: str, texts: list[tuple[str, str]]) -> Response | None:
    """When the session ended while a form was open, a page that gives back what was typed
    (a redirect to sign in would lose it); None while signed in or when nothing was typed."""
    if session.token is not None and session.user is not None:
        return None
    kept = [(label, text) for label, text in texts if text.strip()]
    if not kept:
        return None
    return web.render("unsent.html", session, 401, back=back, texts=kept)


async def _quietly(call: Awaitable[T], default: T) -> T:
    """A best-effort extra (a count, a tally): the page still renders without it."""
    try:
        return await call
    except ApiProblem:
        return default


async def _wait_for(check: Callable[[], Awaitable[bool]], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


def _location(text: str) -> tuple[dict[str, str] | None, str | None]:
    """'90012' or 'Los Angeles, CA' as the API's location (or a message for the field)."""
    text = text.strip()
    if not text:
        return None, None
    if ZIP.match(text):
        return {"zip": text}, None
    city, comma, state = text.rpartition(",")
    if not comma or not city.strip() or not state.strip():
        return None, "Enter a ZIP code (90012) or a city and state (Los Angeles, CA)."
    return {"city": city.strip(), "state": state.strip()}, None


def _place_text(place: Place | None) -> str:
    if place is None:
        return ""
    if place.city and place.state:
        return f"{place.city}, {place.state}"
    return str(place.zip or "")


# --- home ----------------------------------------------------------------------------------


@router.get("/", summary="Recent questions")
async def home(
    web: WebDep,
    session: SessionDep,
    topic: Annotated[str | None, Query(max_length=80)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Recent questions, filterable by topic, with answer counts."""
    taxonomy = await web.services.questions.taxonomy()
    if topic and all(t.slug != topic for t in taxonomy.topics):
        # An old or mistyped link: not an empty topic inviting the first question about it.
        raise ApiProblem(404, "unknown_topic", f"There is no topic {topic!r}.")
    listing = await web.services.questions.recent(topic or None, cursor or None)
    # The listing carries each question's count as its page shows it; only an item from a
    # questions service older than that field costs a call to the answers service.
    uncounted = [q.id for q in listing.items if q.answer_count is None]
    fetched = await asyncio.gather(
        *(_quietly(web.services.answers.answer_count(qid), 0) for qid in uncounted)
    )
    asked = dict(zip(uncounted, fetched, strict=True))
    counts = [q.answer_count if q.answer_count is not None else asked[q.id] for q in listing.items]
    return web.render(
        "home.html",
        session,
        questions=list(zip(listing.items, counts, strict=True)),
        next_cursor=listing.next_cursor,
        topics=taxonomy.topics,
        topic=topic or "",
        topic_name=next((t.name for t in taxonomy.topics if t.slug == topic), topic or ""),
    )


# --- the question page ---------------------------------------------------------------------


async def _question_page(
    web: Web,
    session: Session,
    qid: str,
    status: int = 200,
    error: str | None = None,
    answer_form: dict[str, str] | None = None,
    answer_errors: dict[str, str] | None = None,
    notice: str | None = None,
    if_none_match: str | None = None,
    question_form: dict[str, str] | None = None,
    question_errors: dict[str, str] | None = None,
    answer_edit: dict[str, str] | None = None,
    answer_edit_errors: dict[str, str] | None = None,
) -> Response:
    user = session.user
    if user is None and status == 200 and not (error or answer_form or notice):
        # A visitor's page is everyone's: from the shared page cache, 304 when the
        # visitor's browser holds it already.
        shared = await web.pages.get(qid, lambda held: _shared_page(web, qid, held))
        return web.shared(shared, session, if_none_match)
    questions = web.services.questions
    (_, page), related, taxonomy = await asyncio.gather(
        questions.page_with_etag(qid, session.token),
        _quietly(questions.related(qid), []),
        questions.taxonomy(),
    )
    tallies: list[Tally | None] = [None] * len(page.answers)
    can_answer = False
    # Why a doctor who has not answered sees no answer form: no profile yet, or not verified.
    cannot_answer: str | None = None
    if user is not None and session.token is not None:
        token = session.token
        tallies = list(
            await asyncio.gather(
                *(_quietly(web.services.votes.tally(a.id, token), None) for a in page.answers)
            )
        )
        if user.role == "doctor" and all(a.doctor.id != user.sub for a in page.answers):
            # Only a verified doctor of the directory can answer.
            mine = await _quietly(web.services.notify.doctor(user.sub, token), None)
            can_answer = mine is not None and mine.verified
            if not can_answer:
                cannot_answer = "no-profile" if mine is None else (mine.status or "pending")
    return web.render(
        "question.html",
        session,
        status,
        **_page_context(page, related, taxonomy, tallies, user),
        can_answer=can_answer,
        cannot_answer=cannot_answer,
        error=error,
        answer_form=answer_form or {"headline": "", "body": "", "key": uuid.uuid4().hex},
        answer_errors=answer_errors or {},
        notice=notice,
        question_form=question_form or {"title": page.title, "body": page.body},
        question_errors=question_errors or {},
        answer_edit=answer_edit or {},
        answer_edit_errors=answer_edit_errors or {},
    )


async def _shared_page(web: Web, qid: str, held: SharedPage | None) -> SharedPage:
    """The visitors' page of a question: the one held if nothing it shows has changed.

    The page is asked for by the held ETag (a 304 costs the questions service little);
    related questions and the taxonomy come from the client's own short-lived copies.
    """
    questions = web.services.questions
    (page_etag, page), related, taxonomy = await asyncio.gather(
        questions.page_with_etag(qid),
        _quietly(questions.related(qid), []),
        questions.taxonomy(),
    )
    sources = (page_etag, tuple(related), taxonomy)
    if held is not None and page_etag is not None and held.sources == sources:
        return held
    html = web.render_shared(
        "question.html",
        **_page_context(page, related, taxonomy, [None] * len(page.answers), None),
        can_answer=False,
        cannot_answer=None,
        error=None,
        answer_form={"headline": "", "body": "", "key": ""},
        answer_errors={},
        notice=None,
        question_form={"title": "", "body": ""},
        question_errors={},
        answer_edit={},
        answer_edit_errors={},
    )
    return SharedPage.of(html, sources)


def _page_context(
    page: QuestionPage,
    related: list[Related],
    taxonomy: Taxonomy,
    tallies: list[Tally | None],
    user: Principal | None,
) -> dict[str, Any]:
    """What question.html shows of the page, for a reader (None: a visitor)."""
    answers = [
        {
            "answer": a,
            "specialty": taxonomy.specialty_name(a.doctor.specialty),
            # The votes service's own tally is fresher than the page's copy of it.
            "helpful": t.helpful if t else a.helpful,
            "unhelpful": t.unhelpful if t else a.unhelpful,
            "your_vote": t.your_vote if t else None,
            "own": user is not None and a.doctor.id == user.sub,
        }
        for a, t in zip(page.answers, tallies, strict=True)
    ]
    return {
        "q": page,
        "place": _place_text(page.location),
        "topics": [t for t in taxonomy.topics if t.slug in page.topics],
        "answers": answers,
        "related": related,
        "report_reasons": REASONS,
    }


@router.get("/questions/{qid}", summary="A question page")
async def question(
    qid: Id,
    web: WebDep,
    session: SessionDep,
    reported: Annotated[str | None, Query(pattern=r"^(question|answer)$")] = None,
    edited: Annotated[str | None, Query(pattern=r"^(question|answer)$")] = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """The question, its ranked answers with doctor cards, votes, related questions.

    A visitor's page comes from the shared page cache and carries an ETag; a signed-in
    reader's is rendered for them and never stored."""
    notice = f"Thank you: a moderator will look at this {reported}." if reported else None
    if edited:
        notice = f"Your {edited} is saved."
    return await _question_page(web, session, qid, notice=notice, if_none_match=if_none_match)


async def _report(
    request: Request, web: Web, session: Session, qid: str, aid: str | None, reason: str, note: str
) -> Response:
    token = _signed_in(session, request)
    try:
        await web.services.questions.flag(token, qid, aid, reason, note.strip() or None)
    except ApiProblem as exc:
        if not exc.for_the_form:
            raise
        return await _question_page(web, session, qid, exc.status, error=exc.message)
    web.pages.invalidate(qid)
    where = f"answer#answer-{aid}" if aid else "question"
    return web.redirect(f"/questions/{qid}?reported={where}", session)


_REASON = Annotated[str, Form(pattern=r"^(spam|unsafe-medical-advice|harassment|other)$")]
_NOTE = Annotated[str, Form(max_length=300)]


@router.post("/questions/{qid}/flag", summary="Report a question to the moderators")
async def report_question(
    qid: Id, request: Request, web: WebDep, session: FormSession, reason: _REASON, note: _NOTE = ""
) -> Response:
    """Flag the question once (a repeat is no second flag) and say thank you."""
    return await _report(request, web, session, qid, None, reason, note)


@router.post("/questions/{qid}/answers/{aid}/flag", summary="Report an answer to the moderators")
async def report_answer(
    qid: Id,
    aid: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    reason: _REASON,
    note: _NOTE = "",
) -> Response:
    """Flag the answer once (a repeat is no second flag) and say thank you."""
    return await _report(request, web, session, qid, aid, reason, note)


@router.post("/questions/{qid}/answers", summary="Answer a question (doctors)")
async def post_answer(
    qid: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    body: Annotated[str, Form(max_length=20_000)] = "",
    headline: Annotated[str, Form(max_length=400)] = "",
    idempotency_key: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Post the doctor's answer, then show the page with it."""
    texts = [("Headline", headline), ("Your answer", body)]
    if (unsent := _unsent(web, session, f"/questions/{qid}", texts)) is not None:
        return unsent
    token = _signed_in(session, request, "doctor")
    form = {"headline": headline, "body": body, "key": idempotency_key or uuid.uuid4().hex}
    try:
        aid = await web.services.answers.post(token, qid, headline, body, form["key"])
    except ApiProblem as exc:
        if not exc.for_the_form:
            raise
        fields = exc.fields or {"form": exc.message}
        return await _question_page(
            web, session, qid, exc.status, answer_form=form, answer_errors=fields
        )

    async def shown() -> bool:
        page = await web.services.questions.page(qid)
        return any(a.id == aid for a in page.answers)

    await _wait_for(shown, READ_YOUR_WRITE_S)
    web.pages.invalidate(qid)
    return web.redirect(f"/questions/{qid}#answer-{aid}", session)


@router.post("/answers/{aid}/vote", summary="Vote an answer helpful or not, or retract")
async def vote(
    aid: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    value: Annotated[int, Form(ge=-1, le=1)],
    question_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
) -> Response:
    """One vote per reader: 1 helpful, -1 not helpful, 0 retracts."""
    token = _signed_in(session, request)
    try:
        tally = await web.services.votes.vote(token, aid, value)
    except ApiProblem as exc:
        if not exc.for_the_form:
            raise
        return await _question_page(web, session, question_id, exc.status, error=exc.message)

    async def counted() -> bool:
        page: QuestionPage = await web.services.questions.page(question_id)
        return any(
            a.id == aid and (a.helpful, a.unhelpful) == (tally.helpful, tally.unhelpful)
            for a in page.answers
        )

    # Others may vote meanwhile; after a short wait the page shows whatever it has.
    await _wait_for(counted, READ_YOUR_WRITE_S)
    web.pages.invalidate(question_id)
    return web.redirect(f"/questions/{question_id}#answer-{aid}", session)


@router.post("/questions/{qid}/edit", summary="Edit one's question (until it has an answer)")
async def edit_question(
    qid: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    title: Annotated[str, Form(max_length=1000)] = "",
    body: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """The asker changes the title and body; on an error the page keeps what they typed."""
    texts = [("Your question", title), ("Details", body)]
    if (unsent := _unsent(web, session, f"/questions/{qid}", texts)) is not None:
        return unsent
    token = _signed_in(session, request)
    try:
        await web.services.questions.edit(token, qid, title, body)
    except ApiProblem as exc:
        if not exc.for_the_form:
            raise
        return await _question_page(
            web,
            session,
            qid,
            exc.status,
            question_form={"title": title, "body": body},
            question_errors=dict(exc.fields) or {"form": exc.message},
        )
    # The questions service owns the question: the page read right after shows the edit.
    web.pages.invalidate(qid)
    return web.redirect(f"/questions/{qid}?edited=question", session)


@router.post("/questions/{qid}/accepted-answer", summary="The asker picks the most helpful answer")
async def accept_answer(
    qid: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    answer_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
) -> Response:
    """Mark the answer most helpful to the asker (a new pick replaces the old one)."""
    token = _signed_in(session, request)
    try:
        await web.services.questions.accept(token, qid, answer_id)
    except ApiProblem as exc:
        if not exc.for_the_form:
            raise
        return await _question_page(web, session, qid, exc.status, error=exc.message)
    web.pages.invalidate(qid)
    return web.redirect(f"/questions/{qid}#answer-{answer_id}", session)


@router.post("/answers/{aid}/edit", summary="Edit one's answer (doctors)")
async def edit_answer(
    aid: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    question_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
    headline: Annotated[str, Form(max_length=400)] = "",
    body: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """The doctor changes their answer; the page they land on shows the new text."""
    texts = [("Headline", headline), ("Your answer", body)]
    if (unsent := _unsent(web, session, f"/questions/{question_id}", texts)) is not None:
        return unsent
    token = _signed_in(session, request, "doctor")
    try:
        await web.services.answers.edit(token, aid, headline, body)
    except ApiProblem as exc:
        if not exc.for_the_form:
            raise
        return await _question_page(
            web,
            session,
            question_id,
            exc.status,
            answer_edit={"id": aid, "headline": headline, "body": body},
            answer_edit_errors=dict(exc.fields) or {"form": exc.message},
        )

    async def shown() -> bool:
        page = await web.services.questions.page(question_id)
        return any(a.id == aid and a.body.strip() == body.strip() for a in page.answers)

    await _wait_for(shown, READ_YOUR_WRITE_S)
    web.pages.invalidate(question_id)
    return web.redirect(f"/questions/{question_id}?edited=answer#answer-{aid}", session)


@router.post("/questions/{qid}/follow", summary="Follow or unfollow a question")
async def follow(
    qid: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    follow: Annotated[int, Form(ge=0, le=1)],
) -> Response:
    """1 follows (new answers reach one's inbox), 0 unfollows; back to the question."""
    token = _signed_in(session, request)
    await web.services.questions.follow(token, qid, bool(follow))
    web.pages.invalidate(qid)
    # The questions service owns follows: the page read right after already shows it.
    return web.redirect(f"/questions/{qid}#follow", session)


# --- asking --------------------------------------------------------------------------------


async def _ask_page(
    web: Web,
    session: Session,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    taxonomy = await web.services.questions.taxonomy()
    return web.render(
        "ask.html",
        session,
        status,
        topics=taxonomy.topics,
        form=form
        or {
            "title": "",
            "body": "",
            "topics": [],
            "location": "",
            "anonymous": False,
            "key": uuid.uuid4().hex,
        },
        errors=errors or {},
    )


@router.get("/ask", summary="Ask a question")
async def ask_form(request: Request, web: WebDep, session: SessionDep) -> Response:
    """The question form (a new Idempotency-Key per rendered form)."""
    _signed_in(session, request, "patient", "admin")
    return await _ask_page(web, session)


# Which field an API error belongs beside, when it names none.
_ASK_ERROR_FIELDS = {"unknown_topics": "topics", "unknown_place": "location"}


@router.post("/ask", summary="Post a question")
async def ask(
    request: Request,
    web: WebDep,
    session: FormSession,
    title: Annotated[str, Form(max_length=1000)] = "",
    body: Annotated[str, Form(max_length=20_000)] = "",
    topics: Annotated[list[str] | None, Form(max_length=20)] = None,
    location: Annotated[str, Form(max_length=200)] = "",
    anonymous: Annotated[str, Form(max_length=10)] = "",
    idempotency_key: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Post the question; on success go to its page, else show the errors by their fields."""
    texts = [("Your question", title), ("Details", body)]
    if (unsent := _unsent(web, session, "/ask", texts)) is not None:
        return unsent
    token = _signed_in(session, request, "patient", "admin")
    key = idempotency_key or uuid.uuid4().hex
    form = {
        "title": title,
        "body": body,
        "topics": topics or [],
        "location": location,
        "anonymous": bool(anonymous),
        "key": key,
    }
    place, place_error = _location(location)
    if place_error:
        return await _ask_page(web, session, form, {"location": place_error}, 422)
    payload: dict[str, Any] = {
        "title": title,
        "body": body,
        "topics": form["topics"],
        "anonymous": form["anonymous"],
    }
    if place:
        payload["location"] = place
    try:
        posted = await web.services.questions.ask(token, payload, key)
    except ApiProblem as exc:
        if exc.status == 401 or exc.status >= 500:
            raise
        errors = dict(exc.fields)
        if not errors:
            errors[_ASK_ERROR_FIELDS.get(exc.code, "form")] = exc.message
        return await _ask_page(web, session, form, errors, exc.status)
    log.info("question_asked", question_id=posted.id)
    return web.redirect(f"/questions/{posted.id}", session)


# --- the inbox -----------------------------------------------------------------------------


@router.get("/inbox", summary="Your alerts")
async def inbox(
    request: Request,
    web: WebDep,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Alerts newest first, with why each was sent; new ones arrive live."""
    token = _signed_in(session, request)
    box, specialty_name = await asyncio.gather(
        web.services.notify.inbox(token, cursor, web.settings.web_inbox_page_size),
        _specialty_names(web),
    )
    return web.render(
        "inbox.html",
        session,
        inbox=box,
        newest=box.items[0].id if box.items and not cursor else "",
        first_page=not cursor,
        specialty_name=specialty_name,
    )


async def _specialty_names(web: Web) -> Callable[[str], str]:
    """A specialty's display name by its slug, for the alerts' reasons (from the taxonomy
    the questions service serves; the slug in words while that cannot be reached)."""
    taxonomy = await _quietly(web.services.questions.taxonomy(), None)
    if taxonomy is None:
        return lambda slug: slug.replace("-", " ")
    return taxonomy.specialty_name


@router.post("/inbox/{nid}/read", summary="Mark an alert read")
async def mark_read(nid: Id, request: Request, web: WebDep, session: FormSession) -> Response:
    """Mark one alert read and go back to the inbox."""
    token = _signed_in(session, request)
    await web.services.notify.mark_read(token, nid)
    return web.redirect(f"/inbox#n-{nid}", session)


@router.get("/inbox/stream", summary="Your alerts as server-sent events (for the inbox page)")
async def inbox_stream(
    web: WebDep,
    session: SessionDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> Response:
    """notify's stream for the session's user; resumes after Last-Event-ID (or `after`)."""
    if session.token is None:
        return JSONResponse({"error": {"code": "unauthenticated", "message": "sign in"}}, 401)

    specialty_name = await _specialty_names(web)

    def render(item: InboxItem) -> str:
        return web.fragment(
            "_inbox_item.html", item=item, csrf_token=session.csrf, specialty_name=specialty_name
        )

    body = relay(
        web.services.notify,
        session.token,
        last_event_id or after,
        render,
        web.relays.closing,
    )
    # Its body is pumped after the request stack has unwound (shared/sse.py): what it
    # needs from the request (the token, X-Forwarded-For, the request id) it took above.
    return EventStream(body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- moderation (admins) ------------------------------------------------------------------

_STATUS = Annotated[str, Query(pattern=r"^(open|hidden)$")]


@router.get("/moderation", summary="The moderation queue (admins)")
async def moderation(
    request: Request,
    web: WebDep,
    session: SessionDep,
    status: _STATUS = "open",
    cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]+$")] = None,
    done: Annotated[str | None, Query(pattern=r"^(hidden|restored|dismissed)$")] = None,
) -> Response:
    """Flagged items with counts per reason (most flagged, oldest first), or hidden ones."""
    token = _signed_in(session, request, "admin")
    page = await web.services.questions.moderation_queue(token, status, cursor)
    return web.render(
        "moderation.html", session, page=page, listing=status, reasons=REASONS, done=done
    )


@router.post("/moderation/decide", summary="Hide, restore or dismiss an item's flags (admins)")
async def moderation_decide(
    request: Request,
    web: WebDep,
    session: FormSession,
    question_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
    decision: Annotated[str, Form(pattern=r"^(hidden|restored|dismissed)$")],
    answer_id: Annotated[str, Form(pattern=r"^([A-Za-z0-9_-]{1,64})?$")] = "",
    reason: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Send the decision, wait briefly for the queue to show it, and go back to the queue."""
    token = _signed_in(session, request, "admin")
    if reason and reason not in REASONS:
        raise ApiProblem(422, "unknown_reason", "pick one of the listed reasons")
    questions = web.services.questions
    await questions.decide(token, question_id, answer_id or None, decision, reason or None)
    item_id = answer_id or question_id
    back = "hidden" if decision == "restored" else "open"

    async def moved() -> bool:
        # The decision reaches the queue (and the pages) through the questions service's
        # own consumer: a hidden item shows up among the hidden ones (newest first); a
        # restored or dismissed one leaves the list it was in. An item hidden without a
        # flag was never open, so "not open" would be true before the hiding is applied.
        if decision == "hidden":
            page = await questions.moderation_queue(token, "hidden")
            return any(i.item_id == item_id for i in page.items)
        page = await questions.moderation_queue(token, back)
        return all(i.item_id != item_id for i in page.items)

    await _wait_for(moved, READ_YOUR_WRITE_S)
    # A hidden (or restored) question changes its own page and the related lists of
    # others: every visitor page is made anew, with related lists asked for again.
    web.forget_moderated()
    return web.redirect(f"/moderation?status={back}&done={decision}", session)


# --- verifying doctors (admins) -----------------------------------------------------------


@router.get("/doctors", summary="Doctors waiting for verification, and a doctor by id (admins)")
async def doctors(
    request: Request,
    web: WebDep,
    session: SessionDep,
    id: Annotated[str, Query(max_length=64)] = "",
    done: Annotated[str | None, Query(pattern=r"^(verified|suspended|pending)$")] = None,
) -> Response:
    """The doctors waiting longest first, each with Verify; any doctor looked up by id."""
    token = _signed_in(session, request, "admin")
    notify = web.services.notify
    wanted = id.strip()
    found: Any = None
    lookup_error = None
    if wanted:
        if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", wanted):
            found = await notify.doctor(wanted, token)
        if found is None:
            lookup_error = f"There is no doctor with the id {wanted!r}."
    pending, taxonomy = await asyncio.gather(
        notify.pending_doctors(token), web.services.questions.taxonomy()
    )
    return web.render(
        "doctors.html",
        session,
        404 if lookup_error else 200,
        pending=pending,
        found=found,
        wanted=wanted,
        lookup_error=lookup_error,
        done=done,
        specialty_name=taxonomy.specialty_name,
    )


@router.post("/doctors/{did}/status", summary="Verify or suspend a doctor (admins)")
async def doctor_status(
    did: Id,
    request: Request,
    web: WebDep,
    session: FormSession,
    status: Annotated[str, Form(pattern=r"^(verified|suspended|pending)$")],
    confirmed: Annotated[str, Form(pattern=r"^(yes)?$")] = "",
) -> Response:
    """Set the doctor's status and go back to the list (or to the doctor looked up).

    Suspending takes a second step: the first post shows what it does and asks again
    (a plain form, so it works without JavaScript); the confirming post carries
    `confirmed=yes`."""
    token = _signed_in(session, request, "admin")
    if status == "suspended" and confirmed != "yes":
        doctor, taxonomy = await asyncio.gather(
            web.services.notify.doctor(did, token), web.services.questions.taxonomy()
        )
        if doctor is None:
            raise ApiProblem(404, "not_found", f"There is no doctor with the id {did!r}.")
        return web.render(
            "suspend.html", session, doctor=doctor, specialty_name=taxonomy.specialty_name
        )
    await web.services.notify.set_doctor_status(token, did, status)
    return web.redirect(f"/doctors?done={status}&id={did}", session)


# --- a doctor's settings -------------------------------------------------------------------


async def _settings_page(
    web: Web,
    session: Session,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
    saved: bool = False,
) -> Response:
    taxonomy = await web.services.questions.taxonomy()
    return web.render(
        "settings.html",
        session,
        status,
        specialties=taxonomy.specialties,
        form=form,
        errors=errors or {},
        saved=saved,
    )


@router.get("/settings", summary="A doctor's profile and alert settings")
async def settings_form(
    request: Request, web: WebDep, session: SessionDep, saved: bool = False
) -> Response:
    """The doctor's card fields and alert preferences, as stored."""
    token = _signed_in(session, request, "doctor")
    assert session.user is not None
    profile = await web.services.notify.doctor(session.user.sub, token)
    quiet = profile.quiet_hours if profile else None
    form = {
        "name": profile.name if profile else session.user.name,
        "credentials": profile.credentials if profile else "",
        "specialties": profile.specialties if profile else [],
        "location": _place_text(profile.location) if profile else "",
        "radius_km": f"{profile.radius_km:g}" if profile else "50",
        "quiet_start": quiet.start if quiet else "",
        "quiet_end": quiet.end if quiet else "",
        "quiet_tz": quiet.tz if quiet else "",
        "daily_cap": str(profile.daily_cap) if profile and profile.daily_cap else "",
        "email": (profile.email or "") if profile else "",
        "webhook_url": (profile.webhook_url or "") if profile else "",
        "has_webhook_secret": bool(profile and profile.has_webhook_secret),
    }
    return await _settings_page(web, session, form, saved=saved)


@router.post("/settings", summary="Save a doctor's profile and alert settings")
async def save_settings(
    request: Request,
    web: WebDep,
    session: FormSession,
    name: Annotated[str, Form(max_length=300)] = "",
    credentials: Annotated[str, Form(max_length=400)] = "",
    specialties: Annotated[list[str] | None, Form(max_length=20)] = None,
    location: Annotated[str, Form(max_length=200)] = "",
    radius_km: Annotated[str, Form(max_length=20)] = "",
    quiet_start: Annotated[str, Form(max_length=10)] = "",
    quiet_end: Annotated[str, Form(max_length=10)] = "",
    quiet_tz: Annotated[str, Form(max_length=80)] = "",
    daily_cap: Annotated[str, Form(max_length=10)] = "",
    email: Annotated[str, Form(max_length=300)] = "",
    webhook_url: Annotated[str, Form(max_length=2100)] = "",
    webhook_secret: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Replace the profile with the form's fields; rating and reviews stay as admins set them."""
    token = _signed_in(session, request, "doctor")
    assert session.user is not None
    current = await web.services.notify.doctor(session.user.sub, token)
    form: dict[str, Any] = {
        "name": name,
        "credentials": credentials,
        "specialties": specialties or [],
        "location": location,
        "radius_km": radius_km,
        "quiet_start": quiet_start,
        "quiet_end": quiet_end,
        "quiet_tz": quiet_tz,
        "daily_cap": daily_cap,
        "email": email,
        "webhook_url": webhook_url,
        "has_webhook_secret": bool(current and current.has_webhook_secret),
    }
    errors: dict[str, str] = {}
    place, place_error = _location(location)
    if place_error or place is None:
        errors["location"] = place_error or "Enter where you practise: a ZIP code or City, ST."
    numbers: dict[str, float | None] = {}
    for field, text in (("radius_km", radius_km), ("daily_cap", daily_cap)):
        try:
            numbers[field] = float(text) if text.strip() else None
        except ValueError:
            errors[field] = "Enter a number."
    if errors:
        return await _settings_page(web, session, form, errors, 422)
    profile: dict[str, Any] = {
        "name": name,
        "credentials": credentials,
        "specialties": form["specialties"],
        "location": place,
        "radius_km": numbers["radius_km"] or 50,
        # No rating or reviews: admins set them, and a doctor's PUT without them keeps them.
        "email": email.strip() or None,
        "webhook_url": webhook_url.strip() or None,
        "daily_cap": int(numbers["daily_cap"]) if numbers["daily_cap"] else None,
    }
    if webhook_secret:
        profile["webhook_secret"] = webhook_secret
    if quiet_start or quiet_end or quiet_tz:
        profile["quiet_hours"] = {"start": quiet_start, "end": quiet_end, "tz": quiet_tz}
    try:
        await web.services.notify.save_doctor(token, session.user.sub, profile)
    except ApiProblem as exc:
        if exc.status == 401 or exc.status >= 500:
            raise
        errors = dict(exc.fields) or {_SETTINGS_ERROR_FIELDS.get(exc.code, "form"): exc.message}
        if "quiet_hours" in errors:
            errors["quiet_start"] = errors.pop("quiet_hours")
        return await _settings_page(web, session, form, errors, exc.status)
    return web.redirect("/settings?saved=true", session)


_SETTINGS_ERROR_FIELDS = {
    "unknown_specialties": "specialties",
    "unknown_place": "location",
    "webhook_secret_required": "webhook_secret",
    "unsafe_webhook_url": "webhook_url",
}


# --- signing in ----------------------------------------------------------------------------


def _local(next_path: str | None) -> str:
    """Only a path on this site is a place to go back to."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//"):
        return next_path
    return "/"


@router.get("/signin", summary="Sign in")
async def signin(
    web: WebDep,
    session: SessionDep,
    next: Annotated[str, Query(max_length=300)] = "/",
    ended: bool = False,
) -> Response:
    """How to sign in; in development, 'sign in as' the demo users."""
    return web.render(
        "signin.html",
        session,
        next=_local(next),
        dev_users=web.dev_users,
        ended=ended and session.user is None,
    )


@router.post("/signin/dev", summary="Development sign-in as a demo user")
async def signin_dev(
    web: WebDep,
    session: FormSession,
    sub: Annotated[str, Form(max_length=64)],
    next: Annotated[str, Form(max_length=300)] = "/",
) -> Response:
    """Only with ASKDOC_WEB_DEV_LOGIN=true (refused in production)."""
    user = None
    for candidate in web.dev_users:
        if candidate["sub"] == sub:
            user = candidate
    if user is None:
        raise ApiProblem(404, "not_found", "there is no such demo user (or dev sign-in is off)")
    settings = web.settings
    token = issue_token(
        settings.jwt_secret.get_secret_value(),
        user["sub"],
        user["role"],
        user["name"],
        min(settings.dev_token_ttl_s, settings.jwt_max_lifetime_s),
        settings.jwt_issuer,
        settings.jwt_audience,
    )
    await web.sessions.sign_in(session, token)
    log.info("signed_in", method="dev", role=user["role"])
    return web.redirect(_local(next), session)


@router.post("/signout", summary="Sign out")
async def signout(web: WebDep, session: FormSession) -> Response:
    """Forget the session's user."""
    web.sessions.sign_out(session)
    return web.redirect("/", session)


@router.post("/session", summary="Sign in with a bearer token (identity provider hand-over)")
async def create_session(
    web: WebDep,
    session: SessionDep,
    authorization: Annotated[str | None, Header(max_length=4096)] = None,
) -> Response:
    """`Authorization: Bearer <token>` in, signed HttpOnly session cookie out.

    No CSRF token is needed: a cross-site form cannot send an Authorization header, and
    a cross-site script cannot either without a CORS grant, which this service never gives.
    """
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return JSONResponse(
            {"error": {"code": "unauthenticated", "message": "send Authorization: Bearer <token>"}},
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        user = await web.sessions.sign_in(session, token.strip())
    except ApiError as exc:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}},
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    log.info("signed_in", method="bearer", role=user.role)
    response = JSONResponse({"signed_in": {"sub": user.sub, "role": user.role, "name": user.name}})
    web.sessions.save(session, response)
    return response
