"""The web's shared page cache against the real services: what a visitor and a reader see.

The web runs with a long freshness window (30 s), so whatever a visitor sees change within
these tests changed because a write through the web invalidated the page, not because
the window ran out; a write made beside the web stays unseen by visitors meanwhile.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.scenario import play_seed
from tests.support import RedisServer, admin_auth, auth, running_services, wait_for

FRESH_S = "30"


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    try:
        with running_services(
            server.url, each={"web": {"ASKDOC_WEB_PAGE_FRESH_S": FRESH_S}}
        ) as procs:
            urls = {name: p.url for name, p in procs.items()}
            yield {"urls": urls, "seed": play_seed(urls)}
    finally:
        server.cleanup()


def _visitor(world: dict[str, Any]) -> httpx.Client:
    """A browser that keeps its session cookie, signed out."""
    return httpx.Client(base_url=world["urls"]["web"], timeout=10)


@contextlib.contextmanager
def _reader(world: dict[str, Any], sub: str) -> Iterator[httpx.Client]:
    """A browser signed in through POST /session."""
    with _visitor(world) as client:
        assert client.post("/session", headers=auth(sub, "patient", sub)).status_code == 200
        yield client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "a signed-in page carries the session's CSRF token"
    return found.group(1)


def _helpful(html: str, aid: str) -> int:
    found = re.search(rf'id="answer-{aid}".*?<span class="helpful">(\d+) helpful', html, re.S)
    assert found, f"answer {aid} on the page"
    return int(found.group(1))


def _followers(html: str) -> int:
    found = re.search(r'<p class="followers">(\d+) following</p>', html)
    assert found
    return int(found.group(1))


def _api_etag(world: dict[str, Any], qid: str) -> str:
    reply = httpx.get(f"{world['urls']['questions']}/questions/{qid}", timeout=10)
    return str(reply.headers["etag"])


def test_visitors_share_the_page_until_a_vote_through_the_web_changes_it(
    world: dict[str, Any],
) -> None:
    qid = world["seed"]["qid"]
    aid = world["seed"]["page"]["answers"][-1]["id"]
    page = f"/questions/{qid}"
    with _visitor(world) as visitor, _reader(world, "cache-reader") as reader:
        first = visitor.get(page)
        assert first.status_code == 200 and first.headers["cache-control"] == "private, no-cache"
        etag, helpful = first.headers["etag"], _helpful(first.text, aid)
        assert visitor.get(page, headers={"If-None-Match": etag}).status_code == 304

        # A vote beside the web: the questions service's page changes at once ...
        before = _api_etag(world, qid)
        voted = httpx.put(
            f"{world['urls']['votes']}/answers/{aid}/vote",
            json={"value": 1},
            headers=auth("cache-api-voter"),
            timeout=10,
        )
        assert voted.status_code == 200
        wait_for(lambda: _api_etag(world, qid) != before, what="the page read model")
        # ... a visitor keeps the shared page for the freshness window ...
        assert visitor.get(page, headers={"If-None-Match": etag}).status_code == 304
        assert _helpful(visitor.get(page).text, aid) == helpful
        # ... while a signed-in reader's page is their own, rendered fresh, never kept.
        own = reader.get(page)
        assert own.headers["cache-control"] == "private, no-store" and "etag" not in own.headers
        assert _helpful(own.text, aid) == helpful + 1

        # The reader votes through the web: visitors see it on their next load.
        form = {"csrf_token": _csrf(own.text), "value": "1", "question_id": qid}
        assert reader.post(f"/answers/{aid}/vote", data=form).status_code == 303
        assert _helpful(reader.get(page).text, aid) == helpful + 2
        changed = visitor.get(page, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert _helpful(changed.text, aid) == helpful + 2
        again = visitor.get(page, headers={"If-None-Match": changed.headers["etag"]})
        assert again.status_code == 304


def test_following_through_the_web_shows_on_the_visitors_page_at_once(
    world: dict[str, Any],
) -> None:
    page = f"/questions/{world['seed']['qid']}"
    with _visitor(world) as visitor, _reader(world, "cache-follower") as reader:
        count = _followers(visitor.get(page).text)
        form = {"csrf_token": _csrf(reader.get(page).text), "follow": "1"}
        assert reader.post(f"{page}/follow", data=form).status_code == 303
        assert _followers(visitor.get(page).text) == count + 1


def _ask(world: dict[str, Any], title: str) -> str:
    asked = httpx.post(
        f"{world['urls']['questions']}/questions",
        json={"title": title, "body": "Asked for the tests.", "topics": ["bells-palsy"]},
        headers=auth("cache-asker"),
        timeout=10,
    )
    assert asked.status_code == 201, asked.text
    return str(asked.json()["id"])


def test_a_question_hidden_from_the_moderation_page_is_gone_for_visitors_at_once(
    world: dict[str, Any],
) -> None:
    qid = _ask(world, "Can a filler even out my cheeks after a facial palsy?")
    neighbour = _ask(world, "Does Bell's palsy leave the smile lopsided for good?")
    related = f"{world['urls']['questions']}/questions/{neighbour}/related"
    wait_for(lambda: qid in httpx.get(related, timeout=10).text, what="related questions")
    page, neighbour_page = f"/questions/{qid}", f"/questions/{neighbour}"
    with _visitor(world) as visitor, _visitor(world) as admin:
        wait_for(lambda: visitor.get(page).status_code == 200, what="the new page")
        assert qid in visitor.get(neighbour_page).text, "listed among related questions"
        assert admin.post("/session", headers=admin_auth()).status_code == 200
        csrf = _csrf(admin.get("/moderation").text)

        def decide(decision: str) -> None:
            form = {"csrf_token": csrf, "question_id": qid, "decision": decision}
            reply = admin.post("/moderation/decide", data={**form, "reason": "spam"})
            assert reply.status_code == 303, reply.text

        decide("hidden")
        assert visitor.get(page).status_code == 404
        # Well inside the freshness window and the related lists' own 30 s.
        wait_for(
            lambda: qid not in visitor.get(neighbour_page).text,
            timeout=3,
            what="the hidden question to leave the related list",
        )
        decide("restored")
        assert visitor.get(page).status_code == 200


def test_a_question_hidden_beside_the_web_leaves_its_kept_pages_and_lists_at_once(
    world: dict[str, Any],
) -> None:
    # Hidden through the questions API (as the CLI or another web replica would), so the
    # web learns of it only from the questions' visibility version, well inside both the
    # pages' 30 s freshness window and the related lists' own 30 s.
    qid = _ask(world, "Will a filler help a cheek that droops after facial palsy?")
    neighbour = _ask(world, "Can Bell's palsy leave one eyelid weak for good?")
    questions = world["urls"]["questions"]
    related = f"{questions}/questions/{neighbour}/related"
    wait_for(lambda: qid in httpx.get(related, timeout=10).text, what="related questions")
    page, neighbour_page = f"/questions/{qid}", f"/questions/{neighbour}"

    def decide(decision: str) -> None:
        reply = httpx.put(
            f"{questions}/moderation/questions/{qid}",
            json={"decision": decision, "reason": "spam"},
            headers=admin_auth(),
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        # Applied at the questions service (its own reads) before the web is asked.
        status = 200 if decision == "restored" else 404
        wait_for(
            lambda: httpx.get(f"{questions}/questions/{qid}", timeout=10).status_code == status,
            what=f"the question {decision} at the questions service",
        )

    with _visitor(world) as visitor:
        wait_for(lambda: visitor.get(page).status_code == 200, what="the new page")
        kept = visitor.get(neighbour_page)
        assert qid in kept.text, "listed among related questions"
        assert visitor.get(page).status_code == 200  # both pages now kept by the web
        decide("hidden")
        wait_for(
            lambda: qid not in visitor.get(neighbour_page).text,
            timeout=2,
            what="the hidden question to leave the kept related list",
        )
        assert visitor.get(page).status_code == 404
        # The browser's copy (by its ETag) is no longer the page: it is sent anew.
        fresh = visitor.get(neighbour_page, headers={"If-None-Match": kept.headers["etag"]})
        assert fresh.status_code == 200 and qid not in fresh.text
        decide("restored")
        wait_for(
            lambda: qid in visitor.get(neighbour_page).text,
            timeout=2,
            what="the restored question to come back to the related list",
        )
        assert visitor.get(page).status_code == 200
    # The long poll takes no wait past what the web's backend timeout allows, nor a bad version.
    for bad in ({"wait_s": "60"}, {"after": "-1"}, {"after": "many"}):
        refused = httpx.get(f"{questions}/moderation/visibility", params=bad, timeout=10)
        assert refused.status_code == 422 and "error" in refused.json(), refused.text


def test_the_cache_reports_its_hits_and_misses(world: dict[str, Any]) -> None:
    page = f"/questions/{world['seed']['qid']}"
    with _visitor(world) as visitor:
        for _ in range(3):
            assert visitor.get(page).status_code == 200
        metrics = visitor.get("/metrics").text
    found = dict(
        re.findall(r'askdoc_web_page_cache_lookups_total\{result="(\w+)"\} (\S+)', metrics)
    )
    assert float(found["hit"]) >= 2 and float(found["rendered"]) >= 1
    assert re.search(r"^askdoc_web_page_cache_entries [1-9]", metrics, re.M)
    assert re.search(r"^askdoc_web_page_cache_bytes [1-9]", metrics, re.M)
