"""The seed scenario on a local three-node Redis Cluster (ASKDOC_REDIS_MODE=cluster)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from shared import streams
from tests.e2e.scenario import SEED, alerted, play_seed
from tests.support import RedisClusterProcesses, ServiceProcess, running_services, wait_for


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
