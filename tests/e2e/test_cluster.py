"""The seed scenario on a local three-node Redis Cluster (ASKDOC_REDIS_MODE=cluster)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from redis.cluster import RedisCluster

from shared import streams
from tests.e2e.scenario import SEED, alerted, play_seed
from tests.support import (
    RedisClusterProcesses,
    ServiceProcess,
    auth,
    running_services,
    wait_for,
)


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
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    for stream in (streams.ITEM_FLAGGED, streams.MODERATION_DECIDED):
        [(_, fields)] = [e for e in client.xrange(stream) if qid in e[1]["__data__"]]
        assert json.loads(fields["__data__"])["question_id"] == qid
