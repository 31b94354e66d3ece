"""Visitors' question pages, rendered once and shared until the question page changes.

A visitor's page is everyone's: the same upstream page (by its ETag), related list and
templates make the same HTML. So the web keeps that HTML per question, bounded (least
recently used goes first, by count and by bytes), and

- serves it without asking upstream while it is younger than the freshness window
  (`ASKDOC_WEB_PAGE_FRESH_S`; 0 asks upstream on every read);
- past that, one request revalidates it (a conditional GET answered 304 keeps the HTML)
  while concurrent readers of the same page wait for that one answer (single flight);
- forgets a question's entry at once when a write through the web touches it, so a
  revalidation started before the write never stores what it read.

Signed-in readers never come here: their page says how they voted and what they follow.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

#: Stands where the visitor's CSRF token goes while the shared HTML is rendered; each
#: response puts the visitor's own token back. (A visitor's page shows no form today, so
#: there is usually nothing to put back; the split keeps a form added later correct.)
CSRF_SLOT = "\x00csrf-slot\x00"

LOOKUPS = Counter(
    "askdoc_web_page_cache_lookups_total",
    "Visitors' question page reads by how the shared page cache served them: hit (fresh, "
    "no upstream call), revalidated (upstream said unchanged, HTML reused), rendered "
    "(new or changed: fetched and rendered), coalesced (waited for another read's "
    "revalidation)",
    ["result"],
)
INVALIDATIONS = Counter(
    "askdoc_web_page_cache_invalidations_total",
    "Shared pages forgotten because a write through the web touched their question",
)
EVICTIONS = Counter(
    "askdoc_web_page_cache_evictions_total",
    "Shared pages dropped to stay within the entry or byte bound (least recently used)",
)
ENTRIES = Gauge("askdoc_web_page_cache_entries", "Question pages held in the shared page cache")
BYTES = Gauge("askdoc_web_page_cache_bytes", "Bytes of HTML held in the shared page cache")


@dataclass(frozen=True)
class SharedPage:
    """One question's visitor HTML, split where a CSRF token goes, and what it was made of."""

    sources: tuple[object, ...]
    parts: tuple[bytes, ...]
    digest: str
    size: int

    @classmethod
    def of(cls, html: str, sources: tuple[object, ...]) -> SharedPage:
        """The rendered HTML (CSRF_SLOT where tokens go) and the inputs that made it."""
        parts = tuple(part.encode() for part in html.split(CSRF_SLOT))
        digest = hashlib.blake2b(html.encode(), digest_size=12).hexdigest()
        return cls(sources, parts, digest, sum(len(p) for p in parts))

    def html(self, csrf: str) -> bytes:
        """The page for one visitor: their CSRF token in every slot."""
        if len(self.parts) == 1:
            return self.parts[0]
        return csrf.encode().join(self.parts)

    def etag(self, csrf: str) -> str:
        """The visitor's ETag: the HTML's digest and their session (weak: same meaning)."""
        tag = hashlib.blake2b(f"{self.digest}\n{csrf}".encode(), digest_size=12).hexdigest()
        return f'W/"{tag}"'


#: Builds a question's shared page; gets the entry held before (None if none), and
#: returns that same object when nothing it was made of has changed.
Build = Callable[[SharedPage | None], Awaitable[SharedPage]]


@dataclass
class _Flight:
    """One revalidation under way, which the reads of its question wait for."""

    task: asyncio.Future[SharedPage] | None = None
    #: False once the question was invalidated: its result is still handed to the reads
    #: that waited for it, but never stored.
    storable: bool = True


@dataclass
class PageCache:
    """Shared visitor pages by question id: freshness window, single flight, LRU bounds."""

    fresh_s: float
    max_entries: int
    max_bytes: int
    clock: Callable[[], float] = time.monotonic
    #: Whether a failed revalidation was refused for the reader who started it alone
    #: (e.g. their address is over its read budget): then the page stays, and the readers
    #: who waited for it ask again on their own account.
    personal: Callable[[Exception], bool] = lambda exc: False
    _entries: OrderedDict[str, tuple[float, SharedPage]] = field(default_factory=OrderedDict)
    _flights: dict[str, _Flight] = field(default_factory=dict)
    _bytes: int = 0

    async def get(self, qid: str, build: Build) -> SharedPage:
        """The question's shared page: held if fresh, else revalidated once for all readers."""
        while True:
            held = self._entries.get(qid)
            if held is not None and self.clock() - held[0] < self.fresh_s:
                self._entries.move_to_end(qid)
                LOOKUPS.labels("hit").inc()
                return held[1]
            flight = self._flights.get(qid)
            own = flight is None
            if flight is None:
                flight = self._flights[qid] = _Flight()
                flight.task = asyncio.ensure_future(self._refresh(qid, held, build, flight))
                flight.task.add_done_callback(functools.partial(self._landed, qid, flight))
            else:
                LOOKUPS.labels("coalesced").inc()
            assert flight.task is not None
            try:
                # shield: a reader that goes away does not cancel the others' revalidation.
                return await asyncio.shield(flight.task)
            except Exception as exc:
                if own or not self.personal(exc):
                    raise
                # Refused for the reader who started it (their address's read budget):
                # this reader asks again, on their own account.

    async def _refresh(
        self, qid: str, held: tuple[float, SharedPage] | None, build: Build, flight: _Flight
    ) -> SharedPage:
        started = self.clock()
        previous = held[1] if held is not None else None
        try:
            page = await build(previous)
        except BaseException as exc:
            refused_reader = isinstance(exc, Exception) and self.personal(exc)
            if flight.storable and not refused_reader:
                # Gone, hidden, or not answering: nothing held for it is served again.
                self._drop(qid)
            raise
        LOOKUPS.labels("revalidated" if page is previous else "rendered").inc()
        if flight.storable:
            self._store(qid, started, page)
        return page

    def _landed(self, qid: str, flight: _Flight, _: object) -> None:
        if self._flights.get(qid) is flight:
            del self._flights[qid]
        if flight.task is not None and not flight.task.cancelled():
            flight.task.exception()  # retrieved: the readers got it already

    def invalidate(self, qid: str) -> None:
        """Forget the question's page: the next read fetches and renders it anew."""
        INVALIDATIONS.inc()
        self._drop(qid)
        flight = self._flights.pop(qid, None)
        if flight is not None:
            flight.storable = False

    def clear(self) -> None:
        """Forget every page (a moderation decision can change any page's related list)."""
        INVALIDATIONS.inc()
        for qid in list(self._entries):
            self._drop(qid)
        for flight in self._flights.values():
            flight.storable = False
        self._flights.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes of HTML held."""
        return self._bytes

    def _store(self, qid: str, checked_at: float, page: SharedPage) -> None:
        self._drop(qid)
        if page.size > self.max_bytes or self.max_entries == 0:
            return
        self._entries[qid] = (checked_at, page)
        self._bytes += page.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            EVICTIONS.inc()
        self._gauge()

    def _drop(self, qid: str) -> None:
        held = self._entries.pop(qid, None)
        if held is not None:
            self._bytes -= held[1].size
            self._gauge()

    def _gauge(self) -> None:
        ENTRIES.set(len(self._entries))
        BYTES.set(self._bytes)
