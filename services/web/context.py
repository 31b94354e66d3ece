"""What every route uses: the `Web` context, its templates, and the errors routes raise."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from shared.backoff import Backoff
from shared.logging import get_logger

from .clients import ApiProblem, Services
from .live import LiveRelays
from .pagecache import CSRF_SLOT, PageCache, SharedPage
from .session import Session, Sessions
from .settings import WebSettings
from .wording import alert_reason, delivery_words

HERE = Path(__file__).parent

log = get_logger("askdoc.web")

#: How long one long poll of the questions' visibility version waits (under the
#: backend timeout), and the longest pause before asking again after a failed one.
VISIBILITY_WAIT_S = 4.0
VISIBILITY_RETRY_MAX_S = 5.0


class SignInRequired(Exception):
    """The page needs a signed-in user; go to the sign-in page and come back."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A form came without this session's CSRF token."""


@dataclass
class Web:
    """What every route uses: settings, the four clients, sessions, templates, live relays."""

    settings: WebSettings
    services: Services
    sessions: Sessions
    templates: Environment
    relays: LiveRelays
    dev_users: list[dict[str, str]]
    #: Visitors' question pages, rendered once and shared (signed-in readers never).
    pages: PageCache
    #: A digest of the templates: a page's ETag changes when a release changes them.
    templates_digest: str = ""

    def render(
        self, name: str, session: Session, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page: the template with the session's user and CSRF token."""
        html = self.templates.get_template(name).render(
            user=session.user,
            csrf_token=session.csrf,
            dev_login=self.settings.web_dev_login,
            **context,
        )
        # Pages carry a CSRF token and personal data: never stored by a cache.
        response = HTMLResponse(
            html, status_code=status, headers={"Cache-Control": "private, no-store"}
        )
        self.sessions.save(session, response)
        return response

    def forget_moderated(self) -> None:
        """Drop every kept page and related list: a hide or restore can change any of them."""
        self.services.questions.forget_related()
        self.pages.clear()

    async def follow_visibility(self) -> None:
        """Drop the kept pages and lists whenever a hide or restore lands, wherever made.

        A long poll of the questions' visibility version, so a decision taken elsewhere (the
        CLI, the API, another web replica) empties this replica's caches within one poll
        interval of being applied, not a freshness window later. While questions cannot be
        reached the version is kept: a move made meanwhile is seen on the first answer.
        """
        known: int | None = None
        pauses = Backoff(0.5, VISIBILITY_RETRY_MAX_S)
        # Answered well inside the backend timeout, however short it is set.
        wait_s = min(VISIBILITY_WAIT_S, self.settings.backend_timeout_s * 0.8)
        while True:
            try:
                version = await self.services.questions.visibility_version(known, wait_s)
            except ApiProblem as exc:
                pause = pauses.next()
                log.warning(
                    "visibility_watch_failed", status=exc.status, retry_in_s=round(pause, 2)
                )
                await asyncio.sleep(pause)
                continue
            pauses.reset()
            if known is not None and version != known:
                self.forget_moderated()
                log.info("caches_dropped_on_moderation", visibility_version=version)
            known = version

    def render_shared(self, name: str, **context: Any) -> str:
        """A visitor's page as everyone sees it: CSRF_SLOT where their token goes."""
        return self.templates.get_template(name).render(
            user=None,
            csrf_token=CSRF_SLOT,
            dev_login=self.settings.web_dev_login,
            **context,
        )

    def shared(self, page: SharedPage, session: Session, if_none_match: str | None) -> Response:
        """A shared page for this visitor, or 304 when their browser holds it as it is."""
        etag = page.etag(session.csrf)
        if if_none_match and etag in (t.strip() for t in if_none_match.split(",")):
            return self.not_modified(etag, session)
        response = Response(page.html(session.csrf), media_type="text/html; charset=utf-8")
        self.revalidated(response, etag)
        self.sessions.save(session, response)
        return response

    def revalidated(self, response: Response, etag: str) -> None:
        """Let the visitor's own browser keep a page it must check again before showing.

        Only for a visitor's page: its one personal part is their CSRF token, which their
        browser holds in the cookie anyway. Pages of a signed-in user stay `private, no-store`.
        """
        response.headers["Cache-Control"] = "private, no-cache"
        response.headers["ETag"] = etag

    def not_modified(self, etag: str, session: Session) -> Response:
        """304 for a page the visitor's browser holds as it is."""
        response = Response(status_code=304)
        self.revalidated(response, etag)
        self.sessions.save(session, response)
        return response

    def fragment(self, name: str, **context: Any) -> str:
        """A piece of a page (the live inbox's items), rendered like the page renders it."""
        return self.templates.get_template(name).render(**context)

    def redirect(self, url: str, session: Session) -> RedirectResponse:
        """303 See Other after a form POST, with the session saved."""
        response = RedirectResponse(url, status_code=303)
        self.sessions.save(session, response)
        return response


def _when(value: str | None) -> str:
    """An ISO timestamp as '2026-11-30 21:57 UTC'."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value


def templates_digest() -> str:
    """A digest of every template file, the same on every replica of a release."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted((HERE / "templates").rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def templates() -> Environment:
    """The Jinja environment: autoescape on for every template, undefined names fail."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    env.filters["delivery_words"] = delivery_words
    env.globals["alert_reason"] = alert_reason
    return env
