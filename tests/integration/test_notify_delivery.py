"""Alert timing and channels of the notify service, against real Redis and a real process.

Quiet hours and daily caps (held, released, digest), the urgent bypass, a Standard
Webhooks delivery received by a local uvicorn server and verified with the
`standardwebhooks` package, e-mail received by a local SMTP server (aiosmtpd) with
one-click unsubscribe followed against the running notify, server-sent
events with resume, the asker's new-answer alert, batched vote alerts, and the inbox API.
Each test uses its own specialty and doctors so that tests do not see each other's alerts.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller

from services.notify.api import DoctorIn
from services.notify.directory.store import DIRECTORY_TAG
from services.notify.parts import build_delivery, build_parts
from services.notify.settings import NotifySettings
from shared import geo, streams
from shared.atomic import Committer
from shared.auth import Principal
from shared.events import AnswerPosted, DoctorCard, Location, QuestionPosted, VoteCast
from shared.redis import make_redis
from tests.receivers import WebhookReceiver, verify
from tests.support import (
    JWT_SECRET,
    WEBHOOK_SECRET_KEY,
    RedisServer,
    ServiceProcess,
    admin_auth,
    auth,
    free_port,
    verified,
    wait_for,
)

TAG = streams.slot_tag(streams.NOTIFICATION_SENT)
SECRET = "whsec_YXNrZG9jLXRlc3Qtd2ViaG9vay1zZWNyZXQtMDAwMDA="
EMAIL = "dr.orthodontist@example.org"


# --- local receivers -------------------------------------------------------------------


class MailSink:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    # /flaky answers 503 to the first try of each delivery (webhook-id), then 200.
    hooks = WebhookReceiver(behaviours={"/flaky": lambda n: (503 if n == 1 else 200, {})})
    hooks.start()
    sink = MailSink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    port = free_port()
    notify = ServiceProcess(
        "notify",
        server.url,
        port,
        # The e-mails' links lead to this notify (in production: the web's public URL).
        ASKDOC_PUBLIC_URL=f"http://127.0.0.1:{port}",
        ASKDOC_SMTP_HOST="127.0.0.1",
        ASKDOC_SMTP_PORT=str(smtp.port),
        ASKDOC_RETRY_BASE_S="0.2",
        ASKDOC_HELD_RELEASE_INTERVAL_S="0.2",
        ASKDOC_INBOX_MAX_ITEMS="20",
        ASKDOC_SSE_HEARTBEAT_S="1",
    )
    try:
        notify.start(timeout=120)  # a loaded machine takes a while to load the gazetteer
        yield {"server": server, "notify": notify, "hooks": hooks, "sink": sink}
    finally:
        notify.terminate(15)
        smtp.stop()
        hooks.stop()
        server.cleanup()


# --- helpers ---------------------------------------------------------------------------


def put_doctor(env: dict[str, Any], doctor_id: str, **profile: Any) -> dict[str, Any]:
    body = verified({"name": f"Dr {doctor_id}", "credentials": "MD", **profile}, doctor_id)
    r = httpx.put(
        f"{env['notify'].url}/doctors/{doctor_id}",
        json=body,
        headers=admin_auth(),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def where(city: str, state: str) -> Location:
    p = geo.geocode(city=city, state=state)
    return Location(city=p.city, state=p.state, zip=p.zip, lat=p.lat, lon=p.lon)


def question(
    qid: str,
    specialties: list[str],
    location: Location | None,
    *,
    urgent: bool = False,
    asker: str = "patient-1",
) -> QuestionPosted:
    return QuestionPosted(
        correlation_id=f"corr-{qid}",
        producer="questions",
        question_id=qid,
        title=f"Private question title {qid}",
        body=f"Private question body text {qid}",
        topics=["botox"],
        specialties=specialties,
        location=location,
        asker_id=asker,
        urgent=urgent,
        red_flags=["stroke_signs"] if urgent else [],
    )


def publish(env: dict[str, Any], event: Any) -> None:
    env["server"].client().xadd(event.stream, event.to_wire())


def inbox(env: dict[str, Any], sub: str, role: str = "doctor", **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{env['notify'].url}/inbox", params=params, headers=auth(sub, role), timeout=5)
    assert r.status_code == 200, r.text
    return dict(r.json())


def items(env: dict[str, Any], sub: str, role: str = "doctor") -> list[dict[str, Any]]:
    return list(inbox(env, sub, role, limit=100)["items"])


def settled(env: dict[str, Any]) -> bool:
    client = env["server"].client()
    for stream in (streams.QUESTION_POSTED, streams.ANSWER_POSTED, streams.VOTE_CAST):
        if not client.exists(stream):
            continue
        for group in client.xinfo_groups(stream):
            if group["name"] == "notify" and (group["pending"] or group["lag"]):
                return False
    return True


def answer(aid: str, qid: str, doctor_id: str = "dr-answerer") -> AnswerPosted:
    return AnswerPosted(
        correlation_id=f"corr-{aid}",
        producer="answers",
        answer_id=aid,
        question_id=qid,
        body="Private answer body",
        doctor=DoctorCard(
            id=doctor_id, name="Jon A. Perlman", credentials="MD", specialty="plastic-surgery"
        ),
        created_at=datetime.now(UTC),
    )


def vote(aid: str, helpful: int, version: int) -> VoteCast:
    return VoteCast(
        correlation_id=f"corr-{aid}-{version}",
        producer="votes",
        answer_id=aid,
        question_id="q-voted",
        doctor_id="dr-voted",
        voter_id=f"voter-{version}",
        value=1,
        helpful=helpful,
        unhelpful=0,
        tally_version=version,
    )


# --- directory ---------------------------------------------------------------------------


def test_directory_validates_and_keeps_contact_data_private(env: dict[str, Any]) -> None:
    url = env["notify"].url
    me = auth("dr-dir", "doctor")
    good = {
        "name": "Dr Dir",
        "specialties": ["Dermatology"],
        "location": {"zip": "90210"},
        "email": "dr.dir@example.org",
        "webhook_url": "https://hooks.example.com/askdoc",
        "webhook_secret": SECRET,
        "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "America/Los_Angeles"},
        "daily_cap": 20,
    }
    assert httpx.put(f"{url}/doctors/dr-other", json=good, headers=me).status_code == 403
    assert httpx.put(f"{url}/doctors/dr-dir", json=good).status_code == 401
    bad = httpx.put(
        f"{url}/doctors/dr-dir",
        json={**good, "specialties": ["dermatology", "astrology"]},
        headers=me,
    )
    assert bad.status_code == 422 and "astrology" in bad.json()["error"]["message"]
    place = httpx.put(
        f"{url}/doctors/dr-dir",
        json={**good, "location": {"city": "Nowhere", "state": "ZZ"}},
        headers=me,
    )
    assert place.status_code == 422 and place.json()["error"]["code"] == "unknown_place"
    for broken in (
        {"webhook_secret": "short"},
        {"radius_km": 900},
        {"daily_cap": 0},
        {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"}},
        {"webhook_url": "ftp://hooks.example.com/x"},
        {"webhook_url": "https://user:pw@hooks.example.com/x"},
        {"webhook_secret": "whsec-0123456789abcdef0123456789abcdef0123"},
        {"webhook_secret": "0123456789abcdef0123456789abcdef0123456789"},
    ):
        r = httpx.put(f"{url}/doctors/dr-dir", json={**good, **broken}, headers=me)
        assert r.status_code == 422, (broken, r.text)

    saved = httpx.put(f"{url}/doctors/dr-dir", json=good, headers=me).json()
    assert saved["specialties"] == ["dermatology"]
    assert saved["email"] == "dr.dir@example.org" and saved["has_webhook_secret"] is True
    assert saved["webhook_secret"] == SECRET  # in the reply that set it, and never again
    # Leaving the secret out of a later PUT keeps it (it is never shown, so never resent).
    again = {k: v for k, v in good.items() if k != "webhook_secret"}
    kept = httpx.put(f"{url}/doctors/dr-dir", json=again, headers=me)
    assert kept.json()["has_webhook_secret"] and SECRET not in kept.text
    for reader in (me, auth("root", "admin"), {}):
        shown = httpx.get(f"{url}/doctors/dr-dir", headers=reader)
        assert SECRET not in shown.text and "webhook_secret" not in shown.json()
    # At rest the secret is sealed (Fernet): not in Redis in any readable form.
    stored = env["server"].client().hgetall(f"{DIRECTORY_TAG}:doc:dr-dir")
    dump = json.dumps(stored)
    assert SECRET not in dump and SECRET.removeprefix("whsec_") not in dump
    assert '"webhook_secret": "fernet:' in stored["profile"]

    card = httpx.get(f"{url}/doctors/dr-dir").json()
    assert card["name"] == "Dr Dir" and card["city"] == "Beverly Hills"
    for private in ("email", "webhook_url", "webhook_secret", "quiet_hours", "daily_cap"):
        assert private not in card
    assert httpx.get(f"{url}/doctors/dr-dir", headers=me).json()["email"] == "dr.dir@example.org"
    assert httpx.get(f"{url}/doctors/nobody").status_code == 404
    admin = httpx.put(f"{url}/doctors/dr-dir", json=good, headers=auth("root", "admin")).json()
    assert admin["profile_version"] == 3


# --- quiet hours, caps, digest, urgent -------------------------------------------------


def test_quiet_hours_hold_alerts_until_lifted_but_urgent_ones_pass(env: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "tz": "UTC",
    }
    base = {"specialties": ["ophthalmology"], "location": {"city": "Denver", "state": "CO"}}
    put_doctor(env, "dr-sleepy", **base, quiet_hours=quiet)
    denver = where("Denver", "CO")
    publish(env, question("q-quiet", ["ophthalmology"], denver))
    wait_for(lambda: settled(env), what="question handled")
    assert items(env, "dr-sleepy") == []
    held = env["server"].client().zcard(f"{TAG}:held:dr-sleepy")
    assert held == 1

    publish(env, question("q-stroke", ["ophthalmology"], denver, urgent=True))
    [urgent] = wait_for(lambda: items(env, "dr-sleepy"), what="urgent alert")
    assert urgent["question_id"] == "q-stroke" and urgent["urgent"] is True
    assert urgent["red_flags"] == ["stroke_signs"]

    # The doctor lifts quiet hours: the held alert comes at once, explaining the hold.
    put_doctor(env, "dr-sleepy", **base)
    released = wait_for(
        lambda: [i for i in items(env, "dr-sleepy") if i["question_id"] == "q-quiet"],
        what="held alert released",
    )
    [item] = released
    assert item["kind"] == "question-match" and item["reason"]["held"] == "quiet_hours"
    assert item["reason"]["specialty"] == "ophthalmology"
    assert env["server"].client().zcard(f"{TAG}:held:dr-sleepy") == 0


def test_daily_cap_holds_the_rest_for_one_digest(env: dict[str, Any]) -> None:
    put_doctor(
        env,
        "dr-busy",
        specialties=["neurology"],
        location={"city": "Seattle", "state": "WA"},
        daily_cap=1,
    )
    seattle = where("Seattle", "WA")
    for qid in ("q-cap-1", "q-cap-2", "q-cap-3"):
        publish(env, question(qid, ["neurology"], seattle))
        wait_for(lambda: settled(env), what=f"{qid} handled")
    [first] = items(env, "dr-busy")
    assert first["question_id"] == "q-cap-1"
    client = env["server"].client()
    held_key = f"{TAG}:held:dr-busy"
    assert client.zcard(held_key) == 2

    # Urgent alerts bypass the cap too.
    publish(env, question("q-cap-urgent", ["neurology"], seattle, urgent=True))
    wait_for(lambda: len(items(env, "dr-busy")) == 2, what="urgent alert over the cap")

    # Midnight comes (the holds are moved to now): one digest lists both held questions.
    past = int(time.time() * 1000) - 1000
    for member in client.zrange(held_key, 0, -1):
        client.zadd(held_key, {member: past})
    client.zadd(f"{TAG}:held-due", {"dr-busy": past})
    digest = wait_for(
        lambda: [i for i in items(env, "dr-busy") if i["kind"] == "digest"], what="digest"
    )
    [d] = digest
    assert {e["question_id"] for e in d["items"]} == {"q-cap-2", "q-cap-3"}
    assert d["reason"]["count"] == 2 and d["reason"]["held"] == "daily_cap"
    assert all(e["reason"]["specialty"] == "neurology" for e in d["items"])
    kinds = [i["kind"] for i in items(env, "dr-busy")]
    assert sorted(kinds) == ["digest", "question-match", "question-match"]
    assert client.zcard(held_key) == 0


def test_question_without_location_alerts_the_best_rated(env: dict[str, Any]) -> None:
    cities = [("Austin", "TX"), ("Portland", "OR"), ("Tampa", "FL"), ("Omaha", "NE")]
    for i in range(12):
        city, state = cities[i % 4]
        put_doctor(
            env,
            f"dr-mohs-{i:02d}",
            specialties=["mohs-surgery"],
            location={"city": city, "state": state},
            rating=3.0 + i * 0.15,
            review_count=i,
        )
    publish(env, question("q-nowhere", ["mohs-surgery"], None))
    wait_for(lambda: settled(env), what="question handled")
    got = {}
    for i in range(12):
        for item in items(env, f"dr-mohs-{i:02d}"):
            got[i] = item
    assert sorted(got) == list(range(2, 12))  # the ten best rated, not the two lowest
    assert got[11]["reason"]["rank"] == 1 and got[2]["reason"]["rank"] == 10
    assert got[11]["reason"]["distance_km"] is None


# --- channels ----------------------------------------------------------------------------


def test_webhook_follows_standard_webhooks_retried_with_one_id_and_recorded(
    env: dict[str, Any],
) -> None:
    hooks: WebhookReceiver = env["hooks"]
    put_doctor(
        env,
        "dr-hook",
        specialties=["otolaryngology"],
        location={"city": "Chicago", "state": "IL"},
        webhook_url=hooks.url("/flaky"),
        webhook_secret=SECRET,
    )
    publish(env, question("q-hook", ["otolaryngology"], where("Chicago", "IL")))
    [item] = wait_for(
        lambda: [i for i in items(env, "dr-hook") if i["delivery"].get("webhook") == "delivered"],
        what="webhook delivered",
    )
    calls = hooks.to("/flaky")
    assert [c.status for c in calls] == [503, 200]  # a 503 first, then success after a wait
    bodies = set()
    for call in calls:
        # Verified as a receiver does: the standardwebhooks package, not our own code.
        payload = verify(call, SECRET)
        assert call.headers["webhook-id"] == item["id"]  # the same id on every retry
        assert call.headers["webhook-signature"].startswith("v1,")
        assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 60
        assert set(payload) == {"type", "timestamp", "data"}
        assert payload["type"] == "notification.question-match"
        assert payload["timestamp"] == item["created_at"]
        assert payload["data"]["recipient_id"] == "dr-hook"
        assert payload["data"]["notification"]["id"] == item["id"]
        assert payload["data"]["notification"]["question_id"] == "q-hook"
        assert "Private question body" not in call.body.decode()
        bodies.add(call.body)
    assert len(bodies) == 1  # the body is fixed across retries
    assert item["delivery"]["inbox"] == "delivered"


def test_email_respects_inboxes_and_unsubscribes_in_one_click(env: dict[str, Any]) -> None:
    sink: MailSink = env["sink"]
    notify_url = env["notify"].url
    profile = {
        "specialties": ["orthodontics"],
        "location": {"city": "Boston", "state": "MA"},
        "email": EMAIL,
    }
    put_doctor(env, "dr-mail", **profile)
    boston = where("Boston", "MA")
    marked_up = question("q-mail", ["orthodontics"], boston).model_copy(
        update={"title": 'Braces <script>alert("x")</script> & retainers'}
    )
    publish(env, marked_up)
    [item] = wait_for(
        lambda: [i for i in items(env, "dr-mail") if i["delivery"].get("email") == "delivered"],
        what="e-mail delivered",
    )
    [(_, raw)] = [m for m in sink.messages if EMAIL in m[0]]
    message = cast(EmailMessage, message_from_bytes(raw, policy=policy.default))
    assert message["Message-ID"] == f"<{item['id']}@askdoc.example>"
    assert message["From"] == "alerts@askdoc.example"
    assert "orthodontics" in message["Subject"]
    assert "Private question body" not in raw.decode()

    # RFC 8058: an https (here: this notify's) link and a mailto, and the one-click POST.
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = [part.strip().strip("<>") for part in message["List-Unsubscribe"].split(",")]
    [web] = [link for link in links if link.startswith(notify_url + "/unsubscribe/email?")]
    [mailto] = [link for link in links if link.startswith("mailto:")]
    assert "unsubscribe" in mailto

    # A plain-text and an HTML part, the HTML escaped, both linking to the settings page.
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    text, markup = plain.get_content(), html.get_content()
    assert '<script>alert("x")</script> & retainers' in text
    assert "<script>" not in markup and "&lt;script&gt;" in markup and "&amp; retainers" in markup
    assert f"{notify_url}/settings" in text and f"{notify_url}/settings" in markup
    assert web in text

    # Following the link: a GET only asks to confirm; a forged token is refused.
    page = httpx.get(web, timeout=5)
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    query = parse_qs(urlsplit(web).query)
    forged = web.replace(query["t"][0], "A" * len(query["t"][0]))
    assert httpx.post(forged, timeout=5).status_code == 403
    other = web.replace("r=dr-mail", "r=dr-someone-else")
    assert httpx.post(other, timeout=5).status_code == 403
    assert put_doctor(env, "dr-mail", **profile)["email_alerts"] is True
    # The one-click POST as a mailbox provider sends it (RFC 8058), no sign-in.
    done = httpx.post(
        web,
        content=b"List-Unsubscribe=One-Click",
        timeout=5,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200, done.text
    assert httpx.post(web, timeout=5).status_code == 200  # a second click changes nothing
    own = httpx.get(f"{notify_url}/doctors/dr-mail", headers=auth("dr-mail", "doctor")).json()
    assert own["email_alerts"] is False and own["email"] == EMAIL

    # The next alert comes to the inbox only: no e-mail channel, no message.
    before = len(sink.messages)
    publish(env, question("q-mail-2", ["orthodontics"], boston))
    [second] = wait_for(
        lambda: [i for i in items(env, "dr-mail") if i["question_id"] == "q-mail-2"],
        what="second alert",
    )
    assert "email" not in second["delivery"]
    time.sleep(0.5)
    assert len(sink.messages) == before
    # The doctor turns e-mail back on in their settings.
    assert put_doctor(env, "dr-mail", **profile, email_alerts=True)["email_alerts"] is True


def test_webhook_to_a_private_address_is_refused_when_not_allowed() -> None:
    """In process, on its own Redis: the SSRF guard resolves the host and refuses."""
    server = RedisServer().start()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

    port = free_port()
    receiver = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()

    async def scenario() -> dict[str, str]:
        settings = NotifySettings(  # type: ignore[call-arg]
            redis_url=server.url,
            jwt_secret=JWT_SECRET,
            webhook_allow_private=False,
            webhook_secret_key=WEBHOOK_SECRET_KEY,
        )
        client = make_redis(settings)
        committer = Committer(client)
        parts = build_parts(client, committer, TAG, settings)
        profile = DoctorIn(
            name="Dr Local",
            specialties=["dermatology"],
            location={"zip": "10001"},  # type: ignore[arg-type]
            webhook_url=f"https://localhost:{port}/hook",
            webhook_secret=SECRET,
        )
        admin = Principal("root", "admin", "root")
        await parts.directory.save_profile(profile.command("dr-voted", admin))
        await parts.alerts.on_vote_cast(vote("a-local", 1, 1))
        worker = build_delivery(client, committer, TAG, settings)
        await parts.stores.outbox.ensure_group()
        await worker._read_once()
        await asyncio.gather(*worker._tasks)
        [nid] = await parts.stores.inbox.page("dr-voted", False, None, 10)
        [note] = await parts.stores.inbox.notes([nid])
        pending = await client.xpending(f"{TAG}:outbox", "notify")
        await worker.stop(1)
        await client.aclose()
        return {**note, "pending": str(pending["pending"])}

    try:
        note = asyncio.run(scenario())
        assert note["d:webhook"] == "refused"
        assert note["pending"] == "0"
        assert hits == []
    finally:
        receiver.shutdown()
        server.cleanup()


def test_server_sent_events_deliver_live_and_resume_after_last_event_id(
    env: dict[str, Any],
) -> None:
    put_doctor(
        env, "dr-live", specialties=["family-medicine"], location={"city": "Miami", "state": "FL"}
    )
    miami = where("Miami", "FL")
    url = f"{env['notify'].url}/inbox/stream"
    headers = auth("dr-live", "doctor")

    def listen(
        extra: dict[str, str],
        want: int,
        seen: list[tuple[str, dict[str, Any]]],
        comments: list[str],
        ready: threading.Event,
    ) -> None:
        with httpx.stream(
            "GET", url, headers={**headers, **extra}, timeout=httpx.Timeout(15.0)
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            current = ""
            for line in r.iter_lines():
                if line.startswith(":"):
                    comments.append(line)
                    ready.set()
                elif line.startswith("id: "):
                    current = line[4:]
                elif line.startswith("data: "):
                    seen.append((current, json.loads(line[6:])))
                    if len(seen) >= want:
                        return

    def run(extra: dict[str, str], want: int) -> tuple[threading.Thread, list[Any], list[str]]:
        seen: list[Any] = []
        comments: list[str] = []
        ready = threading.Event()
        t = threading.Thread(target=listen, args=(extra, want, seen, comments, ready), daemon=True)
        t.start()
        assert ready.wait(10), "stream did not open"
        return t, seen, comments

    t, seen, _ = run({}, 1)
    publish(env, question("q-live-1", ["family-medicine"], miami))
    t.join(10)
    [(first_id, first)] = seen
    assert first["id"] == first_id and first["question_id"] == "q-live-1"

    # While the client is away two more alerts arrive; on reconnect they are replayed
    # (oldest first) and live ones follow, each once.
    publish(env, question("q-live-2", ["family-medicine"], miami))
    publish(env, question("q-live-3", ["family-medicine"], miami))
    wait_for(lambda: len(items(env, "dr-live")) == 3, what="alerts while away")
    t, seen, comments = run({"Last-Event-ID": first_id}, 3)
    time.sleep(1.5)  # idle long enough for a heartbeat
    publish(env, question("q-live-4", ["family-medicine"], miami))
    t.join(10)
    assert [e["question_id"] for _, e in seen] == ["q-live-2", "q-live-3", "q-live-4"]
    assert len({i for i, _ in seen}) == 3
    assert ": heartbeat" in comments


# --- other alerts ------------------------------------------------------------------------


def test_the_asker_hears_of_each_answer_once_even_out_of_order(env: dict[str, Any]) -> None:
    publish(env, question("q-asked", ["pediatric-dermatology"], None, asker="patient-ask"))
    wait_for(lambda: settled(env), what="question handled")
    publish(env, answer("a-1", "q-asked"))
    publish(env, answer("a-1", "q-asked"))  # redelivered
    [item] = wait_for(lambda: items(env, "patient-ask", "patient"), what="new-answer alert")
    assert item["kind"] == "new-answer" and item["answer_id"] == "a-1"
    assert item["question_id"] == "q-asked" and item["title"] == "Private question title q-asked"
    assert "Jon A. Perlman" in item["reason_text"]

    # The answer's event overtakes its question's: retried until the question is known.
    publish(env, answer("a-late", "q-late"))
    time.sleep(0.3)
    publish(env, question("q-late", ["pediatric-dermatology"], None, asker="patient-late"))
    [late] = wait_for(
        lambda: items(env, "patient-late", "patient"), timeout=20, what="late new-answer alert"
    )
    assert late["answer_id"] == "a-late"
    wait_for(lambda: settled(env), what="all handled")
    assert len(items(env, "patient-ask", "patient")) == 1


def test_vote_alerts_come_at_milestones_not_per_vote(env: dict[str, Any]) -> None:
    publish(env, vote("a-popular", 1, 1))
    wait_for(lambda: items(env, "dr-voted"), what="first milestone")
    for version in range(2, 8):
        publish(env, vote("a-popular", version, version))
    publish(env, vote("a-popular", 3, 3))  # redelivered
    publish(env, vote("a-popular", 2, 2))  # an older tally, late
    wait_for(lambda: settled(env) and len(items(env, "dr-voted")) >= 2, what="second milestone")
    publish(env, vote("a-popular", 9, 8))
    publish(env, vote("a-popular", 10, 9))
    wait_for(lambda: settled(env) and len(items(env, "dr-voted")) >= 3, what="third milestone")
    time.sleep(0.3)
    alerts = items(env, "dr-voted")
    assert [a["reason"]["milestone"] for a in reversed(alerts)] == [1, 5, 10]
    assert all(a["kind"] == "answer-voted" and a["answer_id"] == "a-popular" for a in alerts)


# --- the inbox ---------------------------------------------------------------------------


def test_inbox_pages_marks_read_and_stays_bounded(env: dict[str, Any]) -> None:
    me = "patient-busy"
    publish(env, question("q-busy", ["pediatric-dermatology"], None, asker=me))
    for i in range(15):
        publish(env, answer(f"a-busy-{i:02d}", "q-busy", doctor_id=f"dr-{i}"))
    wait_for(lambda: len(items(env, me, "patient")) == 15, what="15 alerts")

    page1 = inbox(env, me, "patient", limit=10)
    page2 = inbox(env, me, "patient", limit=10, cursor=page1["next_cursor"])
    assert len(page1["items"]) == 10 and len(page2["items"]) == 5
    assert page2["next_cursor"] is None
    ids = [i["id"] for i in page1["items"] + page2["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 15  # newest first
    assert page1["unread_count"] == 15

    url = env["notify"].url
    newest = ids[:3]
    for nid in newest:
        r = httpx.post(f"{url}/inbox/{nid}/read", headers=auth(me, "patient"))
        assert r.status_code == 200 and r.json()["read"] is True
    again = httpx.post(f"{url}/inbox/{newest[0]}/read", headers=auth(me, "patient"))
    assert again.status_code == 200
    stranger = httpx.post(f"{url}/inbox/{newest[0]}/read", headers=auth("someone", "patient"))
    assert stranger.status_code == 404
    assert httpx.post(f"{url}/inbox/bogus/read", headers=auth(me, "patient")).status_code == 404
    unread = inbox(env, me, "patient", unread="true", limit=100)
    assert len(unread["items"]) == 12 and unread["unread_count"] == 12
    assert httpx.get(f"{url}/inbox", params={"cursor": "zzz"}, headers=auth(me)).status_code == 400
    assert httpx.get(f"{url}/inbox").status_code == 401

    # Ten more: over the bound of 20, the read ones go first, then the oldest unread.
    for i in range(15, 25):
        publish(env, answer(f"a-busy-{i:02d}", "q-busy", doctor_id=f"dr-{i}"))
    wait_for(lambda: settled(env), what="answers handled")
    kept = wait_for(
        lambda: (lambda got: got if len(got) == 20 else None)(items(env, me, "patient")),
        what="inbox trimmed to 20",
    )
    kept_ids = {i["id"] for i in kept}
    assert not kept_ids & set(newest)
    oldest_two = ids[-2:]
    assert not kept_ids & set(oldest_two)
    assert set(ids[3:-2]) <= kept_ids


def test_logs_carry_no_personal_data(env: dict[str, Any]) -> None:
    logs = env["notify"].logs()
    assert "notification_sent" in logs
    private = (EMAIL, "dr.dir@example.org", SECRET, "Private question", "Private answer", "/flaky")
    for secret in private:
        assert secret not in logs, secret


def test_a_token_in_the_stream_url_is_refused_and_never_logged(env: dict[str, Any]) -> None:
    """Auth is the bearer header only: a token in a URL is kept by proxies and histories,
    so `?access_token=` gets a clear 400, even beside a good header."""
    url = f"{env['notify'].url}/inbox/stream"
    headers = auth("dr-browser", "doctor")
    bearer = headers["Authorization"].removeprefix("Bearer ")
    for sent in ({}, headers):
        # Streamed, so a stream opened by mistake fails the test instead of holding it.
        with httpx.stream("GET", url, params={"access_token": bearer}, headers=sent) as r:
            assert r.status_code == 400
            error = json.loads(r.read())["error"]
        assert error["code"] == "token_in_url"
        assert "Authorization: Bearer" in error["message"]
    with httpx.stream("GET", url, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
    assert httpx.get(url).status_code == 401
    assert bearer not in env["notify"].logs()


def test_sigterm_ends_open_streams_and_stops_promptly(env: dict[str, Any]) -> None:
    """Runs last: stops the module's notify process with an SSE client attached."""
    notify: ServiceProcess = env["notify"]
    ended = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET",
            f"{notify.url}/inbox/stream",
            headers=auth("dr-live", "doctor"),
            timeout=httpx.Timeout(30.0),
        ) as r:
            for _ in r.iter_lines():
                pass
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    time.sleep(0.5)
    started = time.monotonic()
    # uvicorn re-raises the SIGTERM it handled once it is done, hence -15.
    assert notify.terminate(30) in (0, -15)
    assert time.monotonic() - started < 8  # not the 20 s grace period
    assert ended.wait(5)
