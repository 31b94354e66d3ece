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
from bench.harness import alternate, paired_ratio
from bench.matching import QUESTION_SPECIALTIES, _zip_points, bulk_load, doctors
from bench.report import Row, Section, ratio_text
from shared import streams
from shared.events import Location, QuestionPosted

DOCTORS = 10_000
READY_S = 180  # services start slowly on a loaded machine; that is not what is measured


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


def alerts_sent(client: redis.Redis) -> int:
    return client.xlen(streams.NOTIFICATION_SENT) if client.exists(streams.NOTIFICATION_SENT) else 0


def redis_cpu_s(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def drain(server: RedisServer, events: list[QuestionPosted]) -> dict[str, float]:
    """Events/s drained by the notify replicas running now, alerts per event, and Redis
    CPU per alert (INFO cpu: user + sys, over the drain)."""
    client = server.client()
    before, cpu = alerts_sent(client), redis_cpu_s(client)
    started = time.perf_counter()
    fill(client, streams.QUESTION_POSTED, events)
    while not drained(client, streams.QUESTION_POSTED, "notify"):
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    alerts = alerts_sent(client) - before
    return {
        "events_per_s": len(events) / elapsed,
        "alerts_per_event": alerts / len(events),
        "alerts_per_s": alerts / elapsed,
        "redis_cpu_us_per_alert": (redis_cpu_s(client) - cpu) / max(alerts, 1) * 1e6,
        "redis_cpu_share": (redis_cpu_s(client) - cpu) / elapsed,
    }


def raw_loop(server: RedisServer, events: list[QuestionPosted]) -> dict[str, float]:
    """The baseline: a plain redis-py XREADGROUP/XACK loop, one entry at a time, no work."""
    stream = "bench.raw"
    client = server.client()
    client.delete(stream)
    fill(client, stream, events)
    return {"events_per_s": raw_loop_rate(server.url, stream, len(events))}


class Celery:
    """Two prefork Celery workers running notify's question handler, one task per event."""

    def __init__(self, server: RedisServer) -> None:
        self.client = server.client()
        self.broker = f"redis://127.0.0.1:{server.port}/1"
        env = {
            **os.environ,
            "BENCH_CELERY_BROKER": self.broker,
            "ASKDOC_REDIS_URL": server.url,
            "ASKDOC_JWT_SECRET": JWT_SECRET,
            "ASKDOC_LOG_LEVEL": "WARNING",
        }
        self.worker = Child(
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

    def start(self) -> Celery:
        from bench.celery_app import app

        app.conf.broker_url = self.broker
        self.worker.spawn()
        return self

    def rate(self, events: list[QuestionPosted]) -> dict[str, float]:
        from bench.celery_app import fanout

        self.client.set("bench:celery:done", 0)
        started = time.perf_counter()
        for event in events:
            fanout.apply_async(args=(event.model_dump_json(),))
        deadline = time.monotonic() + 120
        while int(self.client.get("bench:celery:done") or 0) < len(events):
            if time.monotonic() > deadline:
                raise RuntimeError("celery workers did not finish")
            time.sleep(0.01)
        return {"events_per_s": len(events) / (time.perf_counter() - started)}

    def stop(self) -> None:
        self.worker.terminate(20)


def latency(server: RedisServer, rate: float, seconds: float) -> dict[str, Any]:
    """POST /questions -> the first notification-sent of that question, at a fixed rate."""
    questions = ServiceProcess(
        "questions", server.url, ASKDOC_LOG_LEVEL="WARNING", ASKDOC_RATE_LIMIT_WRITES="100000000"
    ).start(timeout=READY_S)
    notify = ServiceProcess("notify", server.url, ASKDOC_LOG_LEVEL="WARNING").start(timeout=READY_S)
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
        # A post waits for a free connection rather than failing the run when the machine
        # is loaded (its wait counts in its latency, as a client's would).
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, pool=None)) as client:
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


def progress(round_: int, name: str, figures: Mapping[str, float]) -> None:
    shown = ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
    print(f"  fan-out round {round_ + 1} {name}: {shown}", file=sys.stderr, flush=True)


def run(quick: bool = False) -> dict[str, Any]:
    """Rounds that alternate notify (one replica), the raw loop and Celery on the same
    Redis, then notify with two replicas beside the raw loop; then the latency."""
    n, m, rounds = (600, 150, 2) if quick else (1000, 200, 3)
    server = RedisServer().start()
    batches = iter(range(1000))

    def batch(size: int, prefix: str) -> list[QuestionPosted]:
        return question_events(size, seed=next(batches), prefix=f"{prefix}{next(batches)}-")

    env = {"ASKDOC_LOG_LEVEL": "WARNING"}
    replicas: list[ServiceProcess] = []
    celery: Celery | None = None
    try:
        load_directory(server)
        replicas.append(ServiceProcess("notify", server.url, **env).start(timeout=READY_S))
        celery = Celery(server).start()
        time.sleep(3)  # the workers boot (and load the gazetteer)
        celery.rate(batch(20, "qw"))
        one = alternate(
            {
                "notify": lambda: drain(server, batch(n, "q1")),
                "raw": lambda: raw_loop(server, batch(n, "qr")),
                "celery": lambda: celery.rate(batch(m, "qc")) if celery else {},
            },
            rounds=rounds,
            warmup=False,
            on_round=progress,
        )
        celery.stop()
        celery = None
        replicas.append(ServiceProcess("notify", server.url, **env).start(timeout=READY_S))
        drain(server, batch(100, "qw"))  # the second replica warms up
        two = alternate(
            {
                "notify": lambda: drain(server, batch(n, "q2")),
                "raw": lambda: raw_loop(server, batch(n, "qr")),
            },
            rounds=rounds,
            warmup=False,
            on_round=progress,
        )
        for replica in replicas:
            replica.terminate()
        replicas.clear()
        ceiling = redis_benchmark_xadd(server.port)
        rate = max(10.0, min(one["notify"]["events_per_s"] / 2, 200.0))
        lat = latency(server, rate, seconds=4 if quick else 5)
        lat["hop"] = hop_latency(server.url, rate, seconds=4 if quick else 5)
    finally:
        for replica in replicas:
            replica.terminate()
        if celery is not None:
            celery.stop()
        server.cleanup()
    return {
        "doctors": DOCTORS,
        "events_per_run": n,
        "celery_events_per_run": m,
        "rounds": rounds,
        "one_replica": one,
        "two_replicas": two,
        "notify_events_per_s": one["notify"]["events_per_s"],
        "notify_2_replicas_events_per_s": two["notify"]["events_per_s"],
        "alerts_per_event": one["notify"]["alerts_per_event"],
        "redis_cpu_us_per_alert": one["notify"]["redis_cpu_us_per_alert"],
        "redis_cpu_us_per_alert_2_replicas": two["notify"]["redis_cpu_us_per_alert"],
        "redis_cpu_share_2_replicas": two["notify"]["redis_cpu_share"],
        "raw_loop_per_s": one["raw"]["events_per_s"],
        "redis_benchmark_xadd_per_s": ceiling,
        "celery_events_per_s": one["celery"]["events_per_s"],
        "latency": lat,
    }


# --- how fan-out reads in latest.json and the table (bench/report.py) ---------------------


def ratios(result: Mapping[str, Any]) -> dict[str, Any]:
    """Fan-out against the raw loop and Celery, paired round by round; two replicas
    against one as the ratio of their medians (with the extremes of each as the spread)."""
    one, two = result["one_replica"]["notify"], result["two_replicas"]["notify"]
    (one_low, one_high), (two_low, two_high) = (
        one["spread"]["events_per_s"],
        two["spread"]["events_per_s"],
    )
    return {
        "fanout_vs_raw_loop": paired_ratio(result["one_replica"], "notify", "raw", "events_per_s"),
        "fanout_vs_celery": paired_ratio(result["one_replica"], "notify", "celery", "events_per_s"),
        "fanout_2_replicas_vs_1": {
            "median": two["events_per_s"] / one["events_per_s"],
            "min": two_low / one_high,
            "max": two_high / one_low,
        },
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
            "fan-out, 2 notify replicas vs 1",
            f"{result['notify_2_replicas_events_per_s']:.0f} events/s; Redis CPU "
            f"{result['redis_cpu_us_per_alert']:.0f} us/alert (1 replica), "
            f"{result['redis_cpu_us_per_alert_2_replicas']:.0f} us/alert (2)",
            f"1 replica: {result['notify_events_per_s']:.0f} events/s",
            ratio_text(everything, "fanout_2_replicas_vs_1"),
            "",
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
