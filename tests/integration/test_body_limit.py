"""Every service refuses a body over the limit with a JSON 413, before any parsing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support import RedisServer, ServiceProcess, auth, running_services

LIMIT = 64 * 1024
# One write route per service, as an authorised user would call it.
WRITES = {
    "questions": ("POST", "/questions", "patient"),
    "answers": ("POST", "/questions/q-1/answers", "doctor"),
    "votes": ("PUT", "/answers/a-1/vote", "patient"),
    "notify": ("PUT", "/doctors/doc-1", "doctor"),
}


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, ServiceProcess]]:
    server = RedisServer().start()
    try:
        with running_services(server.url) as procs:
            yield procs
    finally:
        server.cleanup()


def _oversized_json() -> bytes:
    # Valid JSON, so a 413 can only come from the size, never from a parse error.
    return json.dumps({"title": "x", "body": "a" * LIMIT}).encode()


def _request(
    service: ServiceProcess, name: str, content: bytes | Iterator[bytes]
) -> httpx.Response:
    method, path, role = WRITES[name]
    headers = {**auth(f"{role}-big", role), "Content-Type": "application/json"}
    return httpx.request(method, service.url + path, content=content, headers=headers, timeout=10)


def _is_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["limit_bytes"] == LIMIT
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("name", list(WRITES))
def test_a_declared_length_over_the_limit_gets_413(
    services: dict[str, ServiceProcess], name: str
) -> None:
    body = _oversized_json()
    response = _request(services[name], name, body)
    _is_413(response)


@pytest.mark.parametrize("name", list(WRITES))
def test_a_chunked_body_over_the_limit_gets_413(
    services: dict[str, ServiceProcess], name: str
) -> None:
    body = _oversized_json()

    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    _is_413(_request(services[name], name, chunks()))


def test_a_body_under_the_limit_is_parsed_as_usual(services: dict[str, ServiceProcess]) -> None:
    small = json.dumps({"title": "x", "body": "a" * (LIMIT // 2)}).encode()
    # Chunked and with a length: both reach validation, which names the problem.
    for content in (small, iter([small[:1000], small[1000:]])):
        response = _request(services["questions"], "questions", content)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"


def test_an_oversized_body_leaves_no_trace(services: dict[str, ServiceProcess]) -> None:
    """The refused question was never parsed nor stored: the listing stays empty."""
    body = json.dumps(
        {"title": "Is a big body stored?", "body": "b" * LIMIT, "topics": ["botox"]}
    ).encode()
    _is_413(_request(services["questions"], "questions", body))
    listing = httpx.get(services["questions"].url + "/questions", timeout=10).json()
    assert not [q for q in listing["items"] if q["title"] == "Is a big body stored?"]
