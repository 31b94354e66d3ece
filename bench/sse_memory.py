"""What one live stream costs a server, measured inside it (not part of `make bench`).

`python -m bench.sse_memory notify|baseline N [--trace FRAMES]` serves notify (as
`python -m services.notify` builds it) or the bare Starlette endpoint
(bench/sse_baseline_app.py) in this process on its own redis-server, opens N streams
from bench/sse_client.py in another process, and prints per stream: RSS, the objects
the GC tracks by type, and with --trace the tracemalloc difference by line (Python's
allocations only; a traced run's RSS counts tracemalloc's own too, so read RSS from an
untraced one).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from typing import Any

import uvicorn

from bench.sse import rss_kib
from tests.support import JWT_SECRET, TEST_ENV, RedisServer, free_port


def tracked_types() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def app_for(which: str, redis_url: str) -> Any:
    os.environ.update(
        {
            **TEST_ENV,
            "ASKDOC_LOG_LEVEL": "WARNING",
            "ASKDOC_SSE_MAX_STREAMS_PER_USER": "5",
            "ASKDOC_REDIS_URL": redis_url,
            "ASKDOC_JWT_SECRET": JWT_SECRET,
        }
    )
    if which == "baseline":
        from bench.sse_baseline_app import app

        return app
    from services.notify.app import create_app
    from services.notify.settings import NotifySettings
    from shared.logging import configure_logging

    settings = NotifySettings()
    configure_logging("notify", settings.log_format, settings.log_level)
    return create_app(settings)


def report_trace(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, held: int) -> None:
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(skip).compare_to(before.filter_traces(skip), "lineno")
    print(f"tracemalloc: {sum(s.size_diff for s in diff) / held:.0f} B per stream; by line:")
    for stat in diff[:40]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / held:7.0f} B {stat.count_diff / held:5.2f} blocks"
            f"  {frame.filename}:{frame.lineno}"
        )


async def measure(which: str, n: int, frames: int) -> None:
    redis_server = RedisServer().start()
    port = free_port()
    config = uvicorn.Config(
        app_for(which, redis_server.url),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # notify: ready, its reference data frozen
        gc.collect()
        if frames:
            tracemalloc.start(frames)
        counts = tracked_types()
        snapshot = tracemalloc.take_snapshot() if frames else None
        rss = rss_kib(os.getpid())
        prefix = "sse-doctor-" if which == "notify" else "sse-base-"
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.sse_client",
            "127.0.0.1",
            str(port),
            str(n),
            prefix,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert client.stdout is not None and client.stdin is not None
        started = time.perf_counter()
        opened = json.loads(await client.stdout.readline())
        held = max(int(opened["connected"]), 1)
        print(f"{which}: {held} streams open in {time.perf_counter() - started:.1f} s")
        await asyncio.sleep(2)
        gc.collect()
        print(f"RSS: {(rss_kib(os.getpid()) - rss) / held:.2f} KiB per stream")
        grown = tracked_types() - counts
        print(f"objects the GC tracks: {sum(grown.values()) / held:.1f} per stream; by type:")
        for name, count in grown.most_common(30):
            print(f"  {count / held:6.2f}  {name}")
        if snapshot is not None:
            report_trace(snapshot, tracemalloc.take_snapshot(), held)
        client.stdin.write(b"quit\n")
        await client.stdin.drain()
        await client.wait()
    finally:
        server.should_exit = True
        await serving
        redis_server.cleanup()


if __name__ == "__main__":
    import uvloop

    args = sys.argv[1:]
    frames = int(args[args.index("--trace") + 1]) if "--trace" in args else 0
    uvloop.install()
    asyncio.run(measure(args[0], int(args[1]), frames))
