"""notify's delivery pieces without a network: rotation, host slots, the e-mail message."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import cast
from urllib.parse import parse_qs, urlsplit

from services.notify.delivery.domain import unsubscribe_token_valid
from services.notify.delivery.mail import message_for, unsubscribe_key
from services.notify.delivery.slots import DeliverySlots
from services.notify.delivery.worker import signing_secrets
from services.notify.settings import NotifySettings

SETTINGS = NotifySettings(  # type: ignore[call-arg]
    jwt_secret="x" * 32, public_url="https://askdoc.example/", smtp_from="alerts@mail.example"
)


def test_both_secrets_sign_only_while_the_rotation_lasts() -> None:
    contact = {
        "webhook_secret": "whsec_new",
        "webhook_secret_previous": "whsec_old",
        "webhook_secret_previous_until": 1000.0,
    }
    assert signing_secrets(contact, now=999.0) == ["whsec_new", "whsec_old"]
    assert signing_secrets(contact, now=1000.0) == ["whsec_new"]
    assert signing_secrets({"webhook_secret": "whsec_new"}, now=0) == ["whsec_new"]
    assert signing_secrets({}, now=0) == []


def test_one_host_holds_no_more_than_its_share_of_the_slots() -> None:
    async def scenario() -> tuple[int, int, int]:
        slots = DeliverySlots(total=4, per_host=2)
        busy = {"slow": 0, "peak": 0}
        release = asyncio.Event()

        async def slow() -> None:
            async with slots.hold("slow.example"):
                busy["slow"] += 1
                busy["peak"] = max(busy["peak"], busy["slow"])
                await release.wait()
                busy["slow"] -= 1

        waiting = [asyncio.create_task(slow()) for _ in range(10)]
        await asyncio.sleep(0.01)
        done = 0
        for _ in range(2):  # other hosts still get the two slots left
            async with slots.hold("fast.example"):
                done += 1
        async with slots.hold():
            done += 1
        hosts = slots.hosts_in_use()
        release.set()
        await asyncio.gather(*waiting)
        return busy["peak"], done, hosts * 10 + slots.hosts_in_use()

    peak, done, hosts = asyncio.run(scenario())
    assert peak == 2 and done == 3
    assert hosts == 10  # one host waiting while blocked, none once all are done


def test_the_email_has_both_parts_escaped_and_one_click_unsubscribe() -> None:
    item = {
        "id": "n0123456789ab0123456789ab",
        "kind": "question-match",
        "title": "<b>Bold</b> & co",
        "reason_text": "Near you",
    }
    message = message_for(SETTINGS, "dr@example.org", item["id"], "dr-1", item)
    parsed = cast(EmailMessage, message_from_bytes(message.as_bytes(), policy=policy.default))
    assert parsed["Message-ID"] == "<n0123456789ab0123456789ab@mail.example>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    web, mailto = (p.strip().strip("<>") for p in parsed["List-Unsubscribe"].split(","))
    assert web.startswith("https://askdoc.example/unsubscribe/email?")
    assert mailto.startswith("mailto:unsubscribe@mail.example?subject=")
    query = parse_qs(urlsplit(web).query)
    assert query["r"] == ["dr-1"]
    assert unsubscribe_token_valid(unsubscribe_key(SETTINGS), "dr-1", query["t"][0])
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert "<b>Bold</b> & co" in plain.get_content()
    markup = html.get_content()
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in markup and "<b>" not in markup
    assert "https://askdoc.example/settings" in markup
    # The same message on every retry (the same Message-ID is what dedupes it).
    again = message_for(SETTINGS, "dr@example.org", item["id"], "dr-1", item)
    assert again["List-Unsubscribe"] == message["List-Unsubscribe"]
