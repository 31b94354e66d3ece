"""1. Ingest: POST /questions under load from wrk, beside a bare FastAPI one-XADD endpoint."""

from __future__ import annotations

from typing import Any

from bench.common import RedisServer, ServiceProcess, start_uvicorn, token, wrk_post


def run(seconds: int = 10) -> dict[str, Any]:
    server = RedisServer().start()
    try:
        service = ServiceProcess(
            "questions",
            server.url,
            ASKDOC_LOG_LEVEL="WARNING",
            ASKDOC_RATE_LIMIT_WRITES="100000000",
            ASKDOC_STREAM_MAXLEN="100000",
        ).start()
        try:
            wrk_post(f"{service.url}/questions", token("bench-patient"), seconds=2)  # warm up
            askdoc = wrk_post(f"{service.url}/questions", token("bench-patient"), seconds=seconds)
        finally:
            service.terminate()
        proc, url = start_uvicorn("bench.baseline_app:app", server.url)
        try:
            wrk_post(f"{url}/questions", "unused", seconds=2)
            baseline = wrk_post(f"{url}/questions", "unused", seconds=seconds)
        finally:
            proc.terminate(10)
    finally:
        server.cleanup()
    return {
        "askdoc_post_questions": askdoc,
        "baseline_fastapi_one_xadd": baseline,
        "ratio": askdoc["requests_per_s"] / baseline["requests_per_s"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
