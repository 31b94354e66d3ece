"""The web's shared page cache on its own: freshness, single flight, invalidation, bounds."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from services.web.pagecache import CSRF_SLOT, PageCache, SharedPage


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """Builds pages as the web's route does: the held one if the version is unchanged."""

    def __init__(self) -> None:
        self.version = 1
        self.builds = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def build(self, held: SharedPage | None) -> SharedPage:
        self.builds += 1
        version = self.version
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:  # once
            failure, self.fail = self.fail, None
            raise failure
        if held is not None and held.sources == (version,):
            return held
        return SharedPage.of(f"<p>v{version}</p>", (version,))


async def _until_built(upstream: Upstream, builds: int) -> None:
    while upstream.builds < builds:
        await asyncio.sleep(0)


def _count(result: str) -> float:
    value = REGISTRY.get_sample_value("askdoc_web_page_cache_lookups_total", {"result": result})
    return value or 0.0


def _cache(clock: Clock, fresh_s: float = 1.0, entries: int = 10, size: int = 10_000) -> PageCache:
    return PageCache(fresh_s=fresh_s, max_entries=entries, max_bytes=size, clock=clock)


async def test_a_fresh_page_is_served_without_asking_upstream_then_revalidated() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock)
    hits, revalidated = _count("hit"), _count("revalidated")
    first = await cache.get("q1", upstream.build)
    assert first.html("c") == b"<p>v1</p>" and upstream.builds == 1
    clock.now += 0.5
    assert await cache.get("q1", upstream.build) is first and upstream.builds == 1
    assert _count("hit") == hits + 1
    clock.now += 0.6  # past the window: asked again, unchanged, the same HTML kept
    assert await cache.get("q1", upstream.build) is first and upstream.builds == 2
    assert _count("revalidated") == revalidated + 1
    upstream.version = 2
    clock.now += 1.1
    assert (await cache.get("q1", upstream.build)).html("c") == b"<p>v2</p>"


async def test_a_zero_window_asks_upstream_on_every_read() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock, fresh_s=0)
    for _ in range(3):
        await cache.get("q1", upstream.build)
    assert upstream.builds == 3


async def test_concurrent_reads_of_a_stale_page_share_one_revalidation() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock)
    upstream.gate = asyncio.Event()
    coalesced = _count("coalesced")
    reads = [asyncio.ensure_future(cache.get("q1", upstream.build)) for _ in range(20)]
    await _until_built(upstream, 1)
    upstream.gate.set()
    pages = await asyncio.gather(*reads)
    assert upstream.builds == 1 and all(p is pages[0] for p in pages)
    assert _count("coalesced") == coalesced + 19


async def test_a_reader_that_goes_away_does_not_cancel_the_others() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock)
    upstream.gate = asyncio.Event()
    leaving = asyncio.ensure_future(cache.get("q1", upstream.build))
    staying = asyncio.ensure_future(cache.get("q1", upstream.build))
    await _until_built(upstream, 1)
    leaving.cancel()
    upstream.gate.set()
    assert (await staying).html("c") == b"<p>v1</p>"
    assert len(cache) == 1


async def test_an_invalidation_during_a_revalidation_keeps_its_result_out() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock, fresh_s=30)
    upstream.gate = asyncio.Event()
    before_write = asyncio.ensure_future(cache.get("q1", upstream.build))
    await _until_built(upstream, 1)
    cache.invalidate("q1")  # a write through the web, while the old page is being read
    upstream.version = 2
    upstream.gate.set()
    assert (await before_write).html("c") == b"<p>v1</p>", "its readers still get it"
    assert (await cache.get("q1", upstream.build)).html("c") == b"<p>v2</p>", "not stored"
    assert upstream.builds == 2


async def test_a_read_after_an_invalidation_never_joins_a_flight_from_before() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock, fresh_s=30)
    upstream.gate = asyncio.Event()
    before_write = asyncio.ensure_future(cache.get("q1", upstream.build))
    await _until_built(upstream, 1)
    cache.invalidate("q1")
    upstream.version = 2
    after_write = asyncio.ensure_future(cache.get("q1", upstream.build))
    await _until_built(upstream, 2)
    upstream.gate.set()
    assert (await before_write).html("c") == b"<p>v1</p>"
    assert (await after_write).html("c") == b"<p>v2</p>"


async def test_an_invalidated_page_is_fetched_again_even_when_fresh() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock, fresh_s=30)
    await cache.get("q1", upstream.build)
    await cache.get("q2", upstream.build)
    upstream.version = 2
    cache.invalidate("q1")
    assert (await cache.get("q1", upstream.build)).html("c") == b"<p>v2</p>"
    assert (await cache.get("q2", upstream.build)).html("c") == b"<p>v1</p>", "q2 kept"
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0
    assert (await cache.get("q2", upstream.build)).html("c") == b"<p>v2</p>"


async def test_a_failed_revalidation_drops_the_page() -> None:
    clock, upstream = Clock(), Upstream()
    cache = _cache(clock)
    await cache.get("q1", upstream.build)
    clock.now += 2
    upstream.fail = LookupError("hidden")
    with pytest.raises(LookupError):
        await cache.get("q1", upstream.build)
    assert len(cache) == 0
    assert (await cache.get("q1", upstream.build)).html("c") == b"<p>v1</p>"


async def test_the_least_recently_used_page_goes_first_by_count_and_by_bytes() -> None:
    clock, upstream = Clock(), Upstream()
    page_size = len(b"<p>v1</p>")
    cache = _cache(clock, fresh_s=30, entries=2, size=10 * page_size)
    for qid in ("q1", "q2"):
        await cache.get(qid, upstream.build)
    await cache.get("q1", upstream.build)  # q1 used last: q2 is the oldest
    await cache.get("q3", upstream.build)
    assert len(cache) == 2 and cache.bytes == 2 * page_size
    builds = upstream.builds
    await cache.get("q1", upstream.build)
    assert upstream.builds == builds, "q1 stayed"
    await cache.get("q2", upstream.build)
    assert upstream.builds == builds + 1, "q2 was evicted"
    small = _cache(clock, fresh_s=30, entries=100, size=2 * page_size)
    for qid in ("q1", "q2", "q3"):
        await small.get(qid, upstream.build)
    assert len(small) == 2 and small.bytes <= 2 * page_size


def test_each_visitor_gets_their_own_csrf_token_and_etag() -> None:
    page = SharedPage.of(f'<input value="{CSRF_SLOT}"><p>same</p>{CSRF_SLOT}', ("v",))
    assert page.html("tok-a") == b'<input value="tok-a"><p>same</p>tok-a'
    assert page.etag("tok-a") != page.etag("tok-b")
    assert page.etag("tok-a") == page.etag("tok-a") and page.etag("tok-a").startswith('W/"')
    other = SharedPage.of('<input value="x"><p>changed</p>', ("w",))
    assert other.etag("tok-a") != page.etag("tok-a"), "another HTML, another ETag"


class OverBudget(Exception):
    """The questions service refused the reader who started a revalidation (429)."""


async def test_a_refusal_of_the_starting_reader_alone_leaves_the_others_their_page() -> None:
    clock, upstream = Clock(), Upstream()
    cache = PageCache(
        fresh_s=1.0,
        max_entries=10,
        max_bytes=10_000,
        clock=clock,
        personal=lambda exc: isinstance(exc, OverBudget),
    )
    await cache.get("q1", upstream.build)
    clock.now += 2
    upstream.gate = asyncio.Event()
    flooder = asyncio.ensure_future(cache.get("q1", upstream.build))
    await _until_built(upstream, 2)
    upstream.fail = OverBudget()
    other = asyncio.ensure_future(cache.get("q1", upstream.build))
    await asyncio.sleep(0)
    upstream.gate.set()
    with pytest.raises(OverBudget):
        await flooder
    assert len(cache) == 1, "the page stays: only that reader was refused"
    # The other reader asks on their own account, within their budget.
    assert (await other).html("c") == b"<p>v1</p>" and upstream.builds == 3
