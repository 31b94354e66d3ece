"""The seed scenario, and edits, picks and follows, on a local three-node Redis Cluster
(ASKDOC_REDIS_MODE=cluster)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from redis.cluster import RedisCluster
from typer.testing import CliRunner

from askdoc_cli.main import app as cli
from services.questions.moderation.store import visibility_signal_key
from shared import streams
from shared.relay import GROUP, outbox_key
from tests.e2e.scenario import SEED, alerted, play_seed
from tests.e2e.test_community import answer, ask, events_of, new_answers, register
from tests.support import RedisClusterProcesses, ServiceProcess, auth, running_services, wait_for


def polled_past(url: str, after: int) -> int:
    """Hold the long poll as a web replica does until the version is past `after`."""
    for _ in range(15):
        version: int = httpx.get(url, params={"after": after, "wait_s": 4}, timeout=10).json()[
            "version"
        ]
        if version != after:
            return version
    raise AssertionError(f"the visibility version stayed {after}")


@pytest.fixture(scope="module")
def cluster_system() -> Iterator[tuple[RedisClusterProcesses, dict[str, ServiceProcess]]]:
    cluster = RedisClusterProcesses().start()
    try:
        with running_services(cluster.url, ASKDOC_REDIS_MODE="cluster") as procs:
            yield cluster, procs
    finally:
        cluster.cleanup()


def test_seed_page_reproduced_on_a_redis_cluster(
    cluster_system: tuple[RedisClusterProcesses, dict[str, ServiceProcess]],
) -> None:
    cluster, procs = cluster_system
    urls = {name: p.url for name, p in procs.items()}
    played = play_seed(urls)
    page = played["page"]
    assert page["answer_count"] == 6
    assert [a["doctor"]["name"] for a in page["answers"]] == [
        a["doctor"]["name"] for a in SEED["answers"]
    ]
    found = alerted(urls, played["doctors"], played["qid"])
    assert "dr-jason-emer" in found

    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    # The streams live on different shards: load spreads by stream.
    slots = {client.keyslot(s) for s in streams.ALL}
    assert len(slots) > 1
    nodes = {client.get_node_from_key(s).port for s in streams.ALL}
    assert len(nodes) > 1, "all streams on one shard"
    for stream in (streams.QUESTION_POSTED, streams.ANSWER_POSTED, streams.VOTE_CAST):
        for _, fields in client.xrange(stream):
            assert json.loads(fields["__data__"])["schema_version"] == 1

    def drained() -> bool:
        return all(
            group["pending"] == 0
            for stream in streams.ALL
            if client.exists(stream)
            for group in client.xinfo_groups(stream)
        )

    wait_for(drained, timeout=20, what="every group to ack everything on the cluster")


def test_edits_picks_and_follows_commit_on_a_redis_cluster(
    cluster_system: tuple[RedisClusterProcesses, dict[str, ServiceProcess]],
) -> None:
    """Their events hash to other slots than the state they announce: the relay takes them."""
    cluster, procs = cluster_system
    urls = {name: p.url for name, p in procs.items()}
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    home = client.keyslot(streams.QUESTION_POSTED)
    away = (streams.QUESTION_EDITED, streams.ANSWER_ACCEPTED, streams.QUESTION_FOLLOWED)
    assert all(client.keyslot(s) != home for s in away)
    register(urls["notify"], "dr-cl-edit")
    qid = ask(urls["questions"], "pat-cl")
    page_url = f"{urls['questions']}/questions/{qid}"

    edit = httpx.patch(
        page_url, json={"title": "Old acne scars, both cheeks"}, headers=auth("pat-cl"), timeout=10
    )
    assert edit.status_code == 200, edit.text
    follow = httpx.put(f"{page_url}/follow", headers=auth("fan-cl"), timeout=10)
    assert follow.status_code == 200 and follow.json()["follower_count"] == 2, follow.text
    aid = answer(urls["answers"], qid, "dr-cl-edit")
    changed = httpx.patch(
        f"{urls['answers']}/answers/{aid}",
        json={"body": "Fillers and a laser, in that order."},
        headers=auth("dr-cl-edit", "doctor"),
        timeout=10,
    )
    assert changed.status_code == 200, changed.text

    def answered_and_edited() -> bool:
        answers = httpx.get(page_url, timeout=10).json()["answers"]
        return bool(answers) and answers[0].get("revision") == 2

    wait_for(answered_and_edited, timeout=60, what="the edited answer on the page (relayed)")
    pick = httpx.put(
        f"{page_url}/accepted-answer", json={"answer_id": aid}, headers=auth("pat-cl"), timeout=10
    )
    assert pick.status_code == 200 and pick.json()["answers"][0]["accepted"], pick.text

    (alert,) = wait_for(
        lambda: new_answers(urls["notify"], "fan-cl"), timeout=60, what="the follower's alert"
    )
    assert alert["answer_id"] == aid
    wait_for(
        lambda: [
            i
            for i in httpx.get(
                f"{urls['notify']}/inbox", headers=auth("dr-cl-edit", "doctor"), timeout=10
            ).json()["items"]
            if i["kind"] == "answer-accepted"
        ],
        timeout=60,
        what="the picked doctor's alert (relayed answer-accepted)",
    )
    for stream in (*away, streams.ANSWER_EDITED):
        (event,) = events_of(client, stream, "question_id", qid)
        assert event["schema_version"] == 1
    # Each relayed event was published once, and every outbox is drained.
    for service in ("questions", "answers"):
        outbox = outbox_key(streams.slot_tag(streams.HOME_STREAM[service]))
        assert client.xpending(outbox, GROUP)["pending"] == 0
    # The relay did it, and the outbox's backlog is exported like a stream's.
    outbox = outbox_key(streams.slot_tag(streams.QUESTION_POSTED))
    relayed = (
        f'askdoc_events_relayed_total{{service="questions",stream="{streams.QUESTION_EDITED}"}} 1.0'
    )

    def metrics() -> str:
        return httpx.get(f"{urls['questions']}/metrics", timeout=10).text

    assert relayed in metrics()
    wait_for(
        lambda: f'askdoc_group_lag{{group="relay",stream="{outbox}"}} 0.0' in metrics(),
        timeout=20,
        what="the outbox's lag among the metrics",
    )
    # `askdoc lag` lists every outbox with its relay group, drained.
    lag = CliRunner().invoke(
        cli,
        ["lag", "--redis-url", cluster.url, "--json"],
        env={"ASKDOC_REDIS_MODE": "cluster"},
    )
    assert lag.exit_code == 0, lag.output
    report = {s["stream"]: s for s in json.loads(lag.stdout)["streams"]}
    for service in ("questions", "answers", "votes", "notify"):
        listed = report[outbox_key(streams.slot_tag(streams.HOME_STREAM[service]))]
        assert [(g["group"], g["pending"]) for g in listed["groups"]] == [(GROUP, 0)]


def test_flag_and_hide_commit_in_their_streams_slots_on_a_redis_cluster(
    cluster_system: tuple[RedisClusterProcesses, dict[str, ServiceProcess]],
) -> None:
    """Each moderation write shares its stream's slot, so no CROSSSLOT on a cluster."""
    cluster, procs = cluster_system
    questions, notify = procs["questions"].url, procs["notify"].url
    posted = httpx.post(
        f"{questions}/questions",
        json={"title": "Which cream fades acne marks?", "body": "Old marks.", "topics": ["acne"]},
        headers=auth("pat-cluster"),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    qid = posted.json()["id"]
    flagged = httpx.put(
        f"{questions}/questions/{qid}/flag",
        json={"reason": "spam"},
        headers=auth("reader-cluster"),
        timeout=10,
    )
    assert flagged.status_code == 200, flagged.text
    admin = auth("admin-cluster", "admin")

    def queued() -> bool:
        reply = httpx.get(f"{questions}/moderation/queue", headers=admin, timeout=10)
        return any(i["item_id"] == qid for i in reply.json()["items"])

    wait_for(queued, timeout=30, what="the flag in the queue")
    # A long poll of the visibility version waits through the hide on the questions
    # watcher's one blocking read (XREAD) of the signal stream in the service's slot.
    visibility = f"{questions}/moderation/visibility"
    before = httpx.get(visibility, timeout=10).json()["version"]
    polls = ThreadPoolExecutor(max_workers=1)
    waiting = polls.submit(polled_past, visibility, before)
    time.sleep(0.5)  # waiting when the hide lands
    hidden = httpx.put(
        f"{questions}/moderation/questions/{qid}",
        json={"decision": "hidden"},
        headers=admin,
        timeout=10,
    )
    assert hidden.status_code == 200, hidden.text
    wait_for(
        lambda: httpx.get(f"{questions}/questions/{qid}", timeout=10).status_code == 404,
        timeout=30,
        what="the hidden page to go",
    )

    def told() -> bool:
        reply = httpx.get(f"{notify}/inbox", headers=auth("pat-cluster"), timeout=10)
        return any(i["kind"] == "item-hidden" for i in reply.json()["items"])

    wait_for(told, timeout=30, what="the asker told")
    assert waiting.result(timeout=30) == before + 1
    polls.shutdown()
    assert "visibility_follow_failed" not in procs["questions"].logs()
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    assert (
        client.xlen(visibility_signal_key(streams.slot_tag(streams.HOME_STREAM["questions"]))) == 1
    )
    for stream in (streams.ITEM_FLAGGED, streams.MODERATION_DECIDED):
        [(_, fields)] = [e for e in client.xrange(stream) if qid in e[1]["__data__"]]
        assert json.loads(fields["__data__"])["question_id"] == qid
