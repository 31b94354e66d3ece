"""Every resolved address is tried, IPv4 first: a real receiver on ::1 only, its IPv4
address refusing. The resolver is the one fake here (no dual-stack name exists on a
test machine); the connections are real."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from services.notify.delivery.attempts import GiveUp
from services.notify.delivery.domain import new_webhook_secret
from services.notify.delivery.slots import DeliverySlots
from services.notify.delivery.webhook import webhook_attempt
from services.notify.settings import NotifySettings
from tests.receivers import WebhookReceiver, verify

ITEM = {"id": "n0000000000010000000000aa", "kind": "digest", "created_at": "2026-01-01T00:00:00"}


def resolving_to(*ips: str) -> Any:
    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port),
            )
            for ip in ips
        ]

    return getaddrinfo


def settings(allow_private: bool) -> NotifySettings:
    return NotifySettings(  # type: ignore[call-arg]
        jwt_secret="x" * 32, webhook_allow_private=allow_private, webhook_timeout_s=5
    )


def test_the_next_address_is_tried_when_the_first_refuses() -> None:
    receiver = WebhookReceiver(host="::1").start()
    secret = new_webhook_secret()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        # The name resolves to ::1 first; IPv4 is tried first all the same, and refuses.
        loop.getaddrinfo = resolving_to("::1", "127.0.0.1")  # type: ignore[method-assign]
        async with httpx.AsyncClient(follow_redirects=False) as http:
            url = f"http://dual.test:{receiver.port}/hook"
            attempt = webhook_attempt(
                http, DeliverySlots(4, 1), settings(True), url, [secret], ITEM["id"], "dr-1", ITEM
            )
            await attempt()

    try:
        asyncio.run(scenario())
        [delivery] = receiver.deliveries
        assert delivery.headers["host"] == f"dual.test:{receiver.port}"
        assert verify(delivery, secret)["data"]["recipient_id"] == "dr-1"
    finally:
        receiver.stop()


def test_one_private_address_among_public_ones_refuses_the_whole_host() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.getaddrinfo = resolving_to("93.184.216.34", "10.0.0.7")  # type: ignore[method-assign]
        async with httpx.AsyncClient() as http:
            attempt = webhook_attempt(
                http,
                DeliverySlots(4, 1),
                settings(False),
                "https://mixed.test/hook",
                [new_webhook_secret()],
                ITEM["id"],
                "dr-1",
                ITEM,
            )
            await attempt()

    with pytest.raises(GiveUp, match=r"refused: .*10\.0\.0\.7"):
        asyncio.run(scenario())
