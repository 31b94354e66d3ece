"""End to end: the four services as processes reproduce the seed page over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import redis

from demo.scenario import VOTE_PLAN
from shared import events, streams
from tests.e2e.scenario import SEED, alerted, play_seed
from tests.support import ROOT, RedisServer, ServiceProcess, auth, running_services, wait_for

SNAPSHOTS = ROOT / "tests" / "contract" / "snapshots"


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[RedisServer, dict[str, ServiceProcess]]]:
    server = RedisServer(appendonly=True).start()
    try:
        with running_services(server.url) as procs:
            yield server, procs
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def seed_page(system: tuple[RedisServer, dict[str, ServiceProcess]]) -> dict[str, Any]:
    """Play the seed page: doctors register, the patient asks, doctors answer, readers vote."""
    _, procs = system
    return play_seed({name: p.url for name, p in procs.items()})


#: Streams the seed scenario has no reason to write to.
NOT_IN_THE_SEED = {
    streams.QUESTION_EDITED,
    streams.ANSWER_EDITED,
    streams.ANSWER_ACCEPTED,
    streams.QUESTION_FOLLOWED,
    streams.QUESTION_UNFOLLOWED,
    # flags and moderation: tests/e2e/test_moderation.py reads them against their schemas
    streams.ITEM_FLAGGED,
    streams.MODERATION_DECIDED,
}


def test_the_page_shows_six_answers_ranked_as_the_seed(seed_page: dict[str, Any]) -> None:
    page = seed_page["page"]
    assert page["answer_count"] == 6
    assert [x["doctor"]["name"] for x in page["answers"]] == [
        x["doctor"]["name"] for x in SEED["answers"]
    ]
    assert page["disclaimer"] == SEED["disclaimer"]
    # The demo verifies the seed doctors: every answer's card carries the verified mark.
    assert [x["doctor"]["verified"] for x in page["answers"]] == [True] * 6
    first = page["answers"][0]
    assert first["doctor"]["city"] == "Bakersfield" and first["doctor"]["rating"] == 5.0
    perlman = page["answers"][1]["doctor"]
    assert perlman["credentials"].startswith("MD, FACS")
    assert perlman["specialty"] == "plastic-surgery" and perlman["review_count"] == 33


def test_ranking_uses_confidence_not_raw_counts(seed_page: dict[str, Any]) -> None:
    answers = seed_page["page"]["answers"]
    forty_of_45 = next(x for x in answers if x["helpful"] == 40)
    one_of_one = next(x for x in answers if x["helpful"] == 1)
    assert answers.index(forty_of_45) < answers.index(one_of_one)


def test_an_anonymous_askers_id_never_appears(
    seed_page: dict[str, Any], system: tuple[RedisServer, dict[str, ServiceProcess]]
) -> None:
    _, procs = system
    page_text = httpx.get(f"{procs['questions'].url}/questions/{seed_page['qid']}").text
    listing = httpx.get(f"{procs['questions'].url}/questions").text
    assert "patient-la" not in page_text and "patient-la" not in listing
    assert seed_page["page"]["asker"] is None


def test_the_asker_hears_of_each_answer(
    seed_page: dict[str, Any], system: tuple[RedisServer, dict[str, ServiceProcess]]
) -> None:
    _, procs = system

    def new_answers() -> int:
        inbox = httpx.get(
            f"{procs['notify'].url}/inbox?limit=50", headers=seed_page["asker_headers"]
        ).json()
        return len(
            [
                i
                for i in inbox["items"]
                if i["kind"] == "new-answer" and i["question_id"] == seed_page["qid"]
            ]
        )

    wait_for(lambda: new_answers() == 6, what="six new-answer alerts")


def test_nearby_matching_doctors_were_alerted_with_reasons(
    seed_page: dict[str, Any], system: tuple[RedisServer, dict[str, ServiceProcess]]
) -> None:
    _, procs = system
    found = alerted({n: p.url for n, p in procs.items()}, seed_page["doctors"], seed_page["qid"])
    assert "dr-jason-emer" in found and "dr-jon-a-perlman" in found
    assert "dr-melvin-elson" not in found, "Nashville is far beyond any widening"
    for reason in found.values():
        assert {"specialty", "distance_km", "rank"} <= set(reason)


def test_every_stream_reads_as_plain_json_valid_against_its_schema(
    seed_page: dict[str, Any], system: tuple[RedisServer, dict[str, ServiceProcess]]
) -> None:
    server, _ = system
    client = redis.Redis(port=server.port, decode_responses=True)
    client.xadd(streams.ANSWER_POSTED, {"__data__": "poison for the dead-letter stream"})
    wait_for(lambda: client.xlen(streams.DEAD_LETTER) > 0, what="a dead letter")
    checker = jsonschema.FormatChecker()
    for stream in streams.ALL:
        schema = json.loads((SNAPSHOTS / f"{stream}.schema.json").read_text())
        entries = client.xrange(stream)
        # The seed posts, answers and votes; nothing in it is edited.
        assert entries or stream in NOT_IN_THE_SEED, f"{stream} is empty"
        for _, fields in entries:
            if stream == streams.ANSWER_POSTED and fields.get("__data__", "").startswith("poison"):
                continue
            assert set(fields) == {"__data__"}
            jsonschema.validate(json.loads(fields["__data__"]), schema, format_checker=checker)
    assert client.xlen(streams.QUESTION_POSTED) == 1
    assert client.xlen(streams.ANSWER_POSTED) == 7


def test_nothing_stays_pending(
    seed_page: dict[str, Any], system: tuple[RedisServer, dict[str, ServiceProcess]]
) -> None:
    server, _ = system
    client = redis.Redis(port=server.port, decode_responses=True)

    def all_acked() -> bool:
        return all(
            group["pending"] == 0
            for stream in streams.ALL
            if client.exists(stream)
            for group in client.xinfo_groups(stream)
        )

    wait_for(all_acked, timeout=20, what="every group to ack everything")


def test_correlation_id_flows_from_the_request_into_events_and_logs(
    system: tuple[RedisServer, dict[str, ServiceProcess]],
) -> None:
    server, procs = system
    response = httpx.post(
        f"{procs['questions'].url}/questions",
        headers={**auth("patient-corr"), "X-Request-ID": "trace-me-42"},
        json={
            "title": "Does botox help a crooked smile?",
            "body": "Asking for myself.",
            "topics": ["botox"],
        },
    )
    assert response.status_code == 201 and response.headers["x-request-id"] == "trace-me-42"
    client = redis.Redis(port=server.port, decode_responses=True)
    last = json.loads(client.xrevrange(streams.QUESTION_POSTED, count=1)[0][1]["__data__"])
    assert last["correlation_id"] == "trace-me-42"
    wait_for(
        lambda: "trace-me-42" in procs["notify"].logs(), what="notify to log the correlation id"
    )
    assert "trace-me-42" in procs["questions"].logs()


def test_make_demo_plays_the_seed_page() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Doctor Answers 6" in result.stdout
    assert "seed page reproduced" in result.stdout
    # The web's pages: the seed question page and a seed doctor's inbox.
    assert re.search(r"http://127\.0\.0\.1:\d+/questions/q\w+", result.stdout)
    assert re.search(r"http://127\.0\.0\.1:\d+/signin\?next=/inbox", result.stdout)


def test_events_validate_as_models_too(
    system: tuple[RedisServer, dict[str, ServiceProcess]], seed_page: dict[str, Any]
) -> None:
    server, _ = system
    client = redis.Redis(port=server.port, decode_responses=True)
    entries = client.xrange(streams.VOTE_CAST)
    assert len(entries) == sum(h + u for h, u in VOTE_PLAN)
    versions = {}
    for _, fields in entries:
        vote = events.VoteCast.model_validate_json(fields["__data__"])
        assert vote.tally_version > versions.get(vote.answer_id, 0), "tally versions increase"
        versions[vote.answer_id] = vote.tally_version


def test_a_repeat_view_of_a_page_is_a_304_until_a_vote_changes_it(
    seed_page: dict[str, Any], system: tuple[RedisServer, dict[str, ServiceProcess]]
) -> None:
    _, procs = system
    qid = seed_page["qid"]
    api = f"{procs['questions'].url}/questions/{qid}"
    page = f"{procs['web'].url}/questions/{qid}"
    with httpx.Client() as browser:  # keeps the visitor's session cookie, as a browser does
        first = browser.get(page)
        assert first.status_code == 200 and first.headers["cache-control"] == "private, no-cache"
        etag = first.headers["etag"]
        repeat = browser.get(page, headers={"If-None-Match": etag})
        assert repeat.status_code == 304 and repeat.content == b""
        other_visitor = httpx.get(page)  # another session, another CSRF token: another tag
        assert other_visitor.headers["etag"] != etag
        json_etag = httpx.get(api).headers["etag"]
        aid = seed_page["page"]["answers"][-1]["id"]
        vote_url = f"{procs['votes'].url}/answers/{aid}/vote"
        voted = httpx.put(vote_url, json={"value": 1}, headers=auth("etag-voter"))
        assert voted.status_code == 200
        wait_for(lambda: httpx.get(api).headers["etag"] != json_etag, what="the page to change")
        assert httpx.get(api, headers={"If-None-Match": json_etag}).status_code == 200

        # A vote cast outside the web reaches its shared page cache once the page's
        # freshness window (ASKDOC_WEB_PAGE_FRESH_S, 1 s by default) has passed.
        def web_page_changed() -> httpx.Response | None:
            reply = browser.get(page, headers={"If-None-Match": etag})
            return reply if reply.status_code == 200 else None

        changed = wait_for(web_page_changed, timeout=5, what="the web's page to change")
        assert changed.headers["etag"] != etag
        assert (
            browser.get(page, headers={"If-None-Match": changed.headers["etag"]}).status_code == 304
        )
