"""What users do most, over HTTP, beside bare FastAPI baselines (bench/baseline_app.py).

- page reads: GET /questions/{id} (JSON), the web's rendered HTML page, and a repeat
  answered 304 from its ETag, beside a bare GET returning one prebuilt JSON value;
- votes: PUT /answers/{id}/vote beside a bare endpoint making one EVALSHA;
- ingest: POST /questions beside a bare endpoint making one XADD.

The services run as processes on one redis-server, seeded with the seed page (six
answers, votes); wrk loads them from another process. Each figure is the median of
`rounds` short wrk runs alternating askdoc and its baseline (bench/harness.py).

Anonymous read limit: page reads are measured anonymous, as most page views are, with
the per-address limit (shared.ratelimit.ReadLimit) switched on, so every read pays for
its counter as in production; its budget is raised above what one wrk address sends
(ASKDOC_ANON_READ_LIMIT below), since all of wrk's connections come from 127.0.0.1.

The web's HTML page is read as a returning visitor: with the session cookie a first view
set (a browser sends it on every later view); its 304 repeat carries that cookie and the
page's ETag. A visitor's page comes from the web's shared page cache: with the default
freshness window (ASKDOC_WEB_PAGE_FRESH_S=1) one read a second revalidates it upstream;
a second web with the window off (0) measures every read revalidated by ETag at the
questions service (concurrent reads of the page share one request: single flight).

Each part runs only the services it measures: a consumer catching up in the background
would take CPU from the service under load that the baseline never gives up.

Votes go to one answer of the seed page from VOTERS voters, each alternating up and down,
so every request changes the tally and publishes vote-cast (no request is a no-op).

Profile a service under the same load with py-spy (in the bench extra), e.g.
`py-spy record -p <pid> -d 10 -r 200 -f raw -o prof.txt --nonblocking` while wrk runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from askdoc_cli.launcher import peer_env
from bench.common import RedisServer, ServiceProcess, start_uvicorn, token
from bench.harness import alternate, fmt_spread, paired_ratio, wrk
from bench.report import Row, Section, ratio_text
from demo.scenario import SeedPlayer
from tests.support import running_services

#: Figures from every run, for the command line that reproduces them.
COMMAND = "python -m bench --only http"

ENV = {
    "ASKDOC_LOG_LEVEL": "WARNING",
    "ASKDOC_RATE_LIMIT_WRITES": "1000000000",
    "ASKDOC_ANON_READ_LIMIT": "1000000000",
    "ASKDOC_STREAM_MAXLEN": "100000",
}

_QUESTION = json.dumps(
    {
        "title": "Is there a treatment for facial asymmetry?",
        "body": "My face is asymmetrical; is there an injection?",
        "topics": ["facial-asymmetry", "botox"],
        "location": {"zip": "90012"},
    }
)
_VOTES = ('{"value": 1}', '{"value": -1}')
#: An odd number of voters, so each voter's requests alternate up and down (a change each).
VOTERS = 51


def _bearer(sub: str, role: str = "patient") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, role)}", "Content-Type": "application/json"}


def run(quick: bool = False) -> dict[str, Any]:
    """Seed one page, then measure reads, votes and ingest; every figure alternates."""
    rounds, seconds = (3, 1.0) if quick else (4, 2.0)
    server = RedisServer().start()
    try:
        baseline, base_url = start_uvicorn("bench.baseline_app:app", server.url)
        try:
            return _measure(server, base_url, rounds, seconds)
        finally:
            baseline.terminate(10)
    finally:
        server.cleanup()


def _measure(server: RedisServer, base_url: str, rounds: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "seconds_each": seconds, "connections": 32}
    with running_services(server.url, **ENV) as procs:
        urls = {name: p.url for name, p in procs.items()}
        played = SeedPlayer(urls, lambda sub, role, name: token(sub, role, name)).play()
        qid = played["qid"]
        answer_id = played["page"]["answers"][0]["id"]
        page = httpx.get(f"{urls['questions']}/questions/{qid}")
        server.client().set(f"bench:page:{qid}", page.content)
        out["page_bytes"] = len(page.content)
        # The web again, with no freshness window: every read revalidates upstream.
        revalidating = ServiceProcess("web", server.url, **ENV, ASKDOC_WEB_PAGE_FRESH_S="0")
        revalidating.env.update(peer_env("web", urls))
        revalidating.start()
        try:
            out["pages"] = _pages(
                urls, base_url, qid, page.headers.get("etag"), rounds, seconds, revalidating.url
            )
        finally:
            revalidating.terminate(10)
        for name in ("web", "notify", "answers"):
            procs[name].terminate(10)
        out["ingest"] = alternate(
            {
                "askdoc": lambda: wrk(
                    f"{urls['questions']}/questions",
                    "POST",
                    [_QUESTION],
                    [_bearer("bench-asker")],
                    seconds,
                ),
                "baseline": lambda: wrk(
                    f"{base_url}/questions", "POST", [_QUESTION], [_bearer("x")], seconds
                ),
            },
            rounds,
        )
        out["ingest"]["ratio"] = paired_ratio(out["ingest"], "askdoc", "baseline")
        procs["questions"].terminate(10)  # it would project every vote the bench casts
        voters = [_bearer(f"bench-voter-{n}") for n in range(VOTERS)]
        out["votes"] = alternate(
            {
                "askdoc": lambda: wrk(
                    f"{urls['votes']}/answers/{answer_id}/vote", "PUT", _VOTES, voters, seconds
                ),
                "baseline": lambda: wrk(
                    f"{base_url}/answers/{answer_id}/vote", "PUT", _VOTES, voters, seconds
                ),
            },
            rounds,
        )
        out["votes"]["ratio"] = paired_ratio(out["votes"], "askdoc", "baseline")
    return out


def _pages(
    urls: Mapping[str, str],
    base_url: str,
    qid: str,
    etag: str | None,
    rounds: int,
    seconds: float,
    revalidating_web: str,
) -> dict[str, Any]:
    html_url = f"{urls['web']}/questions/{qid}"
    first_view = httpx.get(html_url)
    cookie = "; ".join(f"{k}={v}" for k, v in first_view.cookies.items())
    html_etag = first_view.headers.get("etag")
    fresh0_url = f"{revalidating_web}/questions/{qid}"
    fresh0_view = httpx.get(fresh0_url)
    fresh0_cookie = "; ".join(f"{k}={v}" for k, v in fresh0_view.cookies.items())
    contenders = {
        "json": lambda: wrk(f"{urls['questions']}/questions/{qid}", seconds=seconds),
        "html": lambda: wrk(html_url, headers=[{"Cookie": cookie}], seconds=seconds),
        "html_fresh0": lambda: wrk(
            fresh0_url, headers=[{"Cookie": fresh0_cookie}], seconds=seconds
        ),
        "baseline": lambda: wrk(f"{base_url}/pages/{qid}", seconds=seconds),
    }
    if etag:
        contenders["json_304"] = lambda: wrk(
            f"{urls['questions']}/questions/{qid}",
            headers=[{"If-None-Match": etag}],
            seconds=seconds,
        )
    if html_etag:
        contenders["html_304"] = lambda: wrk(
            html_url, headers=[{"Cookie": cookie, "If-None-Match": html_etag}], seconds=seconds
        )
    result = alternate(contenders, rounds)
    result["etag"] = etag
    result["ratio"] = paired_ratio(result, "json", "baseline")
    result["html_ratio"] = paired_ratio(result, "html", "baseline")
    result["html_fresh0_ratio"] = paired_ratio(result, "html_fresh0", "baseline")
    if etag:
        result["not_modified_ratio"] = paired_ratio(result, "json_304", "baseline")
    if html_etag:
        result["html_not_modified_ratio"] = paired_ratio(result, "html_304", "baseline")
    return result


def ratios(result: Mapping[str, Any]) -> dict[str, Any]:
    pages = result["pages"]
    out = {
        "ingest_vs_xadd_baseline": result["ingest"]["ratio"],
        "page_read_vs_baseline": pages["ratio"],
        "page_html_vs_baseline": pages["html_ratio"],
        "page_html_no_window_vs_baseline": pages["html_fresh0_ratio"],
        "vote_vs_baseline": result["votes"]["ratio"],
    }
    if "not_modified_ratio" in pages:
        out["page_304_vs_baseline"] = pages["not_modified_ratio"]
    if "html_not_modified_ratio" in pages:
        out["page_html_304_vs_baseline"] = pages["html_not_modified_ratio"]
    return out


def _load(summary: Mapping[str, Any]) -> str:
    return (
        f"{fmt_spread(summary, 'requests_per_s', ' req/s')}, "
        f"p99 {fmt_spread(summary, 'p99_ms', ' ms', 1)}"
    )


def rows(result: Mapping[str, Any]) -> list[Row]:
    everything = result["_all"]
    pages, votes, ingest = result["pages"], result["votes"], result["ingest"]
    conns = result["connections"]
    base = f"bare FastAPI GET of one prebuilt JSON from Redis: {_load(pages['baseline'])}"
    out: list[Row] = [
        (
            f"page read: GET /questions/{{id}} JSON, wrk {conns} conns",
            _load(pages["json"]),
            base,
            ratio_text(everything, "page_read_vs_baseline", ">= 0.8x"),
            ">= 0.8x",
        ),
    ]
    if "json_304" in pages:
        out.append(
            (
                "page read, repeat with If-None-Match (304)",
                _load(pages["json_304"]),
                "same bare GET",
                ratio_text(everything, "page_304_vs_baseline"),
                "",
            )
        )
    out += [
        (
            "page read: the web's rendered HTML page (returning visitor)",
            _load(pages["html"]),
            "same bare GET",
            ratio_text(everything, "page_html_vs_baseline", ">= 0.5x"),
            ">= 0.5x",
        ),
    ]
    out.append(
        (
            "HTML page, no freshness window (ASKDOC_WEB_PAGE_FRESH_S=0: each read revalidated)",
            _load(pages["html_fresh0"]),
            "same bare GET",
            ratio_text(everything, "page_html_no_window_vs_baseline"),
            "",
        )
    )
    if "html_304" in pages:
        out.append(
            (
                "HTML page, repeat with If-None-Match (304)",
                _load(pages["html_304"]),
                "same bare GET",
                ratio_text(everything, "page_html_304_vs_baseline"),
                "",
            )
        )
    out += [
        (
            f"vote: PUT /answers/{{id}}/vote, {VOTERS} voters",
            _load(votes["askdoc"]),
            f"bare FastAPI + one EVALSHA of cast_vote.lua: {_load(votes['baseline'])}",
            ratio_text(everything, "vote_vs_baseline", ">= 0.7x"),
            ">= 0.7x",
        ),
        (
            "ingest: POST /questions",
            _load(ingest["askdoc"]),
            f"bare FastAPI + one XADD: {_load(ingest['baseline'])}",
            ratio_text(everything, "ingest_vs_xadd_baseline", ">= 0.7x"),
            ">= 0.7x",
        ),
    ]
    return out


SECTION = Section(
    "http", "page reads, votes, ingest (wrk, alternating with bare FastAPI)", run, ratios, rows
)


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
