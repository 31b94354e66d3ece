"""2, 3 and 5: fan-out through notify with 10,000 doctors, post -> first alert latency,
and the same fan-out as Celery tasks; each beside its baseline from the same run."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
import redis

from bench.baselines import hop_latency, raw_loop_rate, redis_benchmark_xadd
from bench.common import JWT_SECRET, Child, RedisServer, ServiceProcess, percentile, token
from bench.matching import QUESTION_SPECIALTIES, _zip_points, bulk_load, doctors
from bench.report import Row, Section, ratio_text
from shared import streams
from shared.events import Location, QuestionPosted

DOCTORS = 10_000


def question_events(n: int, seed: int = 3, prefix: str = "qb") -> list[QuestionPosted]:
    rng = random.Random(seed)
    points = _zip_points()
    events = []
    for i in range(n):
        lat, lon = rng.choice(points)
        events.append(
            QuestionPosted(
                correlation_id=f"bench-{i}",
                producer="bench",
                question_id=f"{prefix}{i}",
                title="Is there a treatment for facial asymmetry?",
                body="My face is asymmetrical.",
                topics=["facial-asymmetry", "botox"],
                specialties=QUESTION_SPECIALTIES,
                location=Location(lat=lat, lon=lon),
                asker_id=f"asker-{i}",
            )
        )
    return events


def fill(client: redis.Redis, stream: str, events: list[QuestionPosted]) -> None:
    pipe = client.pipeline(transaction=False)
    for n, event in enumerate(events, 1):
        pipe.xadd(stream, event.to_wire())
        if n % 1000 == 0:
            pipe.execute()
    pipe.execute()


def drained(client: redis.Redis, stream: str, group: str) -> bool:
    for g in client.xinfo_groups(stream):
        if g["name"] == group:
            return g["pending"] == 0 and g.get("lag") == 0
    return False


def load_directory(server: RedisServer) -> None:
    from services.notify.app import create_app
    from services.notify.settings import NotifySettings

    app = create_app(NotifySettings(redis_url=server.url, jwt_secret=JWT_SECRET))  # type: ignore[arg-type]
    bulk_load(server.port, app.state.parts.stores.directory, doctors(DOCTORS))


def notify_rate(server: RedisServer, events: list[QuestionPosted]) -> tuple[float, float]:
    """Events/s drained by one notify process, and alerts written per event."""
    client = server.client()
    notify = ServiceProcess("notify", server.url, ASKDOC_LOG_LEVEL="WARNING").start()
    try:
        before = (
            client.xlen(streams.NOTIFICATION_SENT)
            if client.exists(streams.NOTIFICATION_SENT)
            else 0
        )
        started = time.perf_counter()
        fill(client, streams.QUESTION_POSTED, events)
        while not drained(client, streams.QUESTION_POSTED, "notify"):
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        alerts = client.xlen(streams.NOTIFICATION_SENT) - before
    finally:
        notify.terminate()
    return len(events) / elapsed, alerts / len(events)


def celery_rate(server: RedisServer, events: list[QuestionPosted]) -> float:
    """Tasks/s of the same handler run as Celery tasks by two prefork workers."""
    broker = f"redis://127.0.0.1:{server.port}/1"
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": broker,
        "ASKDOC_REDIS_URL": server.url,
        "ASKDOC_JWT_SECRET": JWT_SECRET,
        "ASKDOC_LOG_LEVEL": "WARNING",
    }
    worker = Child(
        "celery",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
    )
    worker.spawn()
    client = server.client()
    try:
        from bench.celery_app import app, fanout

        app.conf.broker_url = broker
        time.sleep(4)  # workers boot (and load the gazetteer)
        warm = events[:20]
        for event in warm:
            fanout.apply_async(args=(event.model_dump_json(),))
        while int(client.get("bench:celery:done") or 0) < len(warm):
            time.sleep(0.05)
        rest = events[20:]
        client.set("bench:celery:done", 0)
        started = time.perf_counter()
        for event in rest:
            fanout.apply_async(args=(event.model_dump_json(),))
        while int(client.get("bench:celery:done") or 0) < len(rest):
            time.sleep(0.02)
        return len(rest) / (time.perf_counter() - started)
    finally:
        worker.terminate(20)


def latency(server: RedisServer, rate: float, seconds: float) -> dict[str, Any]:
    """POST /questions -> the first notification-sent of that question, at a fixed rate."""
    questions = ServiceProcess(
        "questions", server.url, ASKDOC_LOG_LEVEL="WARNING", ASKDOC_RATE_LIMIT_WRITES="100000000"
    ).start()
    notify = ServiceProcess("notify", server.url, ASKDOC_LOG_LEVEL="WARNING").start()
    sent_at: dict[str, float] = {}
    first_alert: dict[str, float] = {}
    stop = threading.Event()
    listener = redis.Redis(port=server.port, decode_responses=True)
    last = (
        listener.xinfo_stream(streams.NOTIFICATION_SENT)["last-generated-id"]
        if listener.exists(streams.NOTIFICATION_SENT)
        else "0-0"
    )

    def listen() -> None:
        cursor = last
        while not stop.is_set():
            for _, entries in (
                listener.xread({streams.NOTIFICATION_SENT: cursor}, block=200, count=500) or []
            ):
                now = time.perf_counter()
                for entry_id, fields in entries:
                    cursor = entry_id
                    qid = json.loads(fields["__data__"]).get("question_id")
                    if qid and qid not in first_alert:
                        first_alert[qid] = now

    thread = threading.Thread(target=listen)
    thread.start()
    rng = random.Random(5)
    places = [
        {"zip": z}
        for z in (
            "90012",
            "10001",
            "60601",
            "77002",
            "33101",
            "98101",
            "85004",
            "30303",
            "02108",
            "80202",
        )
    ]

    async def post_all() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = {"Authorization": f"Bearer {token('bench-latency')}"}
            total = int(rate * seconds)
            interval = 1.0 / rate
            start = time.perf_counter()
            tasks = []

            async def one(i: int) -> None:
                before = time.perf_counter()
                r = await client.post(
                    f"{questions.url}/questions",
                    headers=headers,
                    json={
                        "title": "Is there a treatment for facial asymmetry?",
                        "body": f"Question {i}",
                        "topics": ["facial-asymmetry", "botox"],
                        "location": rng.choice(places),
                    },
                )
                if r.status_code == 201:
                    sent_at[r.json()["id"]] = before

            for i in range(total):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)

    try:
        asyncio.run(post_all())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not set(sent_at) <= set(first_alert):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
        questions.terminate()
        notify.terminate()
    samples = [(first_alert[q] - t) * 1000 for q, t in sent_at.items() if q in first_alert]
    return {
        "rate_per_s": rate,
        "posted": len(sent_at),
        "alerted": len(samples),
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
    }


def run(quick: bool = False) -> dict[str, Any]:
    n = 1500 if quick else 5000
    server = RedisServer().start()
    try:
        load_directory(server)
        events = question_events(n)
        notify_per_s, alerts_per_event = notify_rate(server, events)
        raw_stream = "bench.raw"
        fill(server.client(), raw_stream, events)
        raw_per_s = raw_loop_rate(server.url, raw_stream, n)
        ceiling = redis_benchmark_xadd(server.port)
        celery_events = question_events(min(n, 2000), seed=11, prefix="qc")
        celery_per_s = celery_rate(server, celery_events)
        rate = max(10.0, min(notify_per_s / 2, 200.0))
        lat = latency(server, rate, seconds=4 if quick else 8)
        lat["hop"] = hop_latency(server.url, rate, seconds=4 if quick else 8)
    finally:
        server.cleanup()
    return {
        "doctors": DOCTORS,
        "events": n,
        "notify_events_per_s": notify_per_s,
        "alerts_per_event": alerts_per_event,
        "raw_loop_per_s": raw_per_s,
        "redis_benchmark_xadd_per_s": ceiling,
        "celery_events_per_s": celery_per_s,
        "latency": lat,
    }


# --- how fan-out reads in latest.json and the table (bench/report.py) ---------------------


def ratios(result: Mapping[str, Any]) -> dict[str, Any]:
    """The fan-out ratios; ratios.fanout_2_replicas_vs_1 is still to come (issue 14, item 6)."""
    return {
        "fanout_vs_raw_loop": result["notify_events_per_s"] / result["raw_loop_per_s"],
        "fanout_vs_celery": result["notify_events_per_s"] / result["celery_events_per_s"],
    }


def rows(result: Mapping[str, Any]) -> list[Row]:
    everything = result["_all"]
    lat = result["latency"]
    return [
        (
            f"fan-out through notify, {result['doctors']:,} doctors",
            f"{result['notify_events_per_s']:.0f} events/s ({result['alerts_per_event']:.1f} alerts each)",
            f"raw XREADGROUP/XACK loop {result['raw_loop_per_s']:.0f}/s; "
            f"redis-benchmark XADD {result['redis_benchmark_xadd_per_s']:.0f}/s",
            ratio_text(everything, "fanout_vs_raw_loop", ">= 1.0x"),
            ">= 1.0x",
        ),
        (
            "same fan-out as Celery tasks",
            f"{result['notify_events_per_s']:.0f} events/s",
            f"Celery, 2 prefork workers: {result['celery_events_per_s']:.0f} tasks/s",
            ratio_text(everything, "fanout_vs_celery", ">= 3x"),
            ">= 3x",
        ),
        (
            f"post -> first alert at {lat['rate_per_s']:.0f}/s",
            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms",
            f"one XADD -> XREADGROUP hop: p50 {lat['hop']['p50_ms']:.2f} ms, "
            f"p99 {lat['hop']['p99_ms']:.2f} ms",
            "",
            "",
        ),
    ]


SECTION = Section("fanout", "fan-out, latency, Celery", run, ratios, rows)


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
