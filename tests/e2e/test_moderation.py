"""End to end (issue 16 item 5): flag, the moderation queue, hide and restore.

Questions, answers, votes and notify run as processes on their own redis-server; the events are
read with plain XRANGE, and the CLI drives the same HTTP API as an admin would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from typer.testing import CliRunner

from askdoc_cli.main import app as cli
from shared import streams
from shared.events import ItemFlagged, ModerationDecided
from tests.e2e.test_community import answer, ask, events_of, register
from tests.support import JWT_SECRET, auth, wait_for

ADMIN = auth("admin-mod", "admin")
SNAPSHOTS = Path(__file__).parents[1] / "contract" / "snapshots"


def schema(stream: str) -> dict[str, Any]:
    """The reviewed JSON Schema of a stream's event (tests/contract/snapshots)."""
    loaded: dict[str, Any] = json.loads((SNAPSHOTS / f"{stream}.schema.json").read_text())
    return loaded


def flag(url: str, who: str, reason: str, note: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"reason": reason}
    if note is not None:
        body["note"] = note
    return httpx.put(f"{url}/flag", json=body, headers=auth(who), timeout=10)


def queue(questions: str, status: str = "open") -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{questions}/moderation/queue", params={"status": status}, headers=ADMIN, timeout=10
    )
    assert reply.status_code == 200, reply.text
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


def decide(url: str, decision: str, reason: str | None = None) -> dict[str, Any]:
    body = {"decision": decision, **({"reason": reason} if reason else {})}
    reply = httpx.put(url, json=body, headers=ADMIN, timeout=10)
    assert reply.status_code == 200, reply.text
    decided: dict[str, Any] = reply.json()
    return decided


def inbox(notify: str, who: str, role: str, kind: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{notify}/inbox", headers=auth(who, role), timeout=10)
    assert reply.status_code == 200, reply.text
    return [i for i in reply.json()["items"] if i["kind"] == kind]


def test_readers_flag_admins_hide_and_restore_and_authors_are_told(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    q, a, n = urls["questions"], urls["answers"], urls["notify"]
    register(n, "dr-mod")
    qid = ask(q, "pat-mod")
    other = ask(q, "pat-other")
    aid = answer(a, qid, "dr-mod")
    question_url = f"{q}/questions/{qid}"
    answer_url = f"{question_url}/answers/{aid}"
    wait_for(
        lambda: httpx.get(question_url, timeout=10).json()["answer_count"] == 1,
        timeout=30,
        what="the answer on the page",
    )

    # Who may flag what.
    assert httpx.put(f"{question_url}/flag", json={"reason": "spam"}, timeout=10).status_code == 401
    assert flag(question_url, "pat-mod", "spam").status_code == 403  # one's own question
    own = httpx.put(
        f"{answer_url}/flag", json={"reason": "spam"}, headers=auth("dr-mod", "doctor"), timeout=10
    )
    assert own.status_code == 403, own.text
    assert flag(question_url, "reader-1", "rude").status_code == 422
    assert flag(f"{q}/questions/q-nope", "reader-1", "spam").status_code == 404
    assert flag(f"{question_url}/answers/a-nope", "reader-1", "spam").status_code == 404

    # One flag per user per item: a repeat is no second count, and keeps the first reason.
    first = flag(question_url, "reader-1", "spam", "selling pills")
    assert first.status_code == 200, first.text
    assert first.json() == {
        "item_kind": "question",
        "item_id": qid,
        "question_id": qid,
        "reason": "spam",
        "flagged": True,
    }
    assert flag(question_url, "reader-1", "harassment").json()["reason"] == "spam"
    for reader, reason in (("reader-1", "unsafe-medical-advice"), ("reader-2", "other")):
        flagged = flag(answer_url, reader, reason)
        assert flagged.status_code == 200, flagged.text

    # The wire: plain JSON, one event per counted flag, never who flagged.
    on_question = events_of(redis, streams.ITEM_FLAGGED, "item_id", qid)
    assert [e["flag_count"] for e in on_question] == [1]
    assert on_question[0]["note"] == "selling pills"
    on_answer = events_of(redis, streams.ITEM_FLAGGED, "item_id", aid)
    assert [e["flag_count"] for e in on_answer] == [1, 2]
    assert on_answer[-1]["counts"] == {
        "spam": 0,
        "unsafe-medical-advice": 1,
        "harassment": 0,
        "other": 1,
    }
    for event in on_question + on_answer:
        ItemFlagged.model_validate(event)
        jsonschema.validate(event, schema(streams.ITEM_FLAGGED))
    raw = json.dumps([f for _, f in redis.xrange(streams.ITEM_FLAGGED)])
    assert "reader-1" not in raw and "reader-2" not in raw

    # The queue: admins only; the most flagged first, counts per reason, notes.
    refused = httpx.get(f"{q}/moderation/queue", headers=auth("reader-1"), timeout=10)
    assert refused.status_code == 403
    assert httpx.get(f"{q}/moderation/queue", timeout=10).status_code == 401
    wait_for(lambda: len(queue(q)) == 2, timeout=30, what="both items in the queue")
    top, second = queue(q)
    assert (top["item_kind"], top["item_id"], top["flag_count"]) == ("answer", aid, 2)
    assert top["counts"]["unsafe-medical-advice"] == 1 and top["counts"]["other"] == 1
    assert (second["item_id"], second["notes"], second["status"]) == (
        qid,
        ["selling pills"],
        "open",
    )
    assert second["title"] == "Acne scars on my cheeks"

    # Hide the answer: off the page, the count and the answers listing; its doctor is told.
    decided = decide(f"{q}/moderation/questions/{qid}/answers/{aid}", "hidden")
    assert decided["decision"] == "hidden" and decided["reason"] == "unsafe-medical-advice"
    wait_for(
        lambda: httpx.get(question_url, timeout=10).json()["answer_count"] == 0,
        timeout=30,
        what="the hidden answer to leave the page",
    )
    wait_for(
        lambda: httpx.get(f"{a}/questions/{qid}/answers", timeout=10).json()["answer_count"] == 0,
        timeout=30,
        what="the hidden answer to leave the answers listing",
    )
    assert httpx.get(f"{a}/answers/{aid}", timeout=10).status_code == 404
    assert httpx.get(f"{a}/answers/{aid}/revisions", timeout=10).status_code == 404
    told = wait_for(
        lambda: inbox(n, "dr-mod", "doctor", "item-hidden"), timeout=30, what="the doctor told"
    )
    assert told[0]["answer_id"] == aid
    assert told[0]["reason"] == {"item_kind": "answer", "category": "unsafe-medical-advice"}
    assert "reader-1" not in json.dumps(told) and "reader-2" not in json.dumps(told)
    # A hidden item cannot be flagged, and it leaves the open queue for the hidden list.
    assert flag(answer_url, "reader-3", "spam").status_code == 404
    wait_for(lambda: [i["item_id"] for i in queue(q)] == [qid], timeout=30, what="queue moved")
    assert [i["item_id"] for i in queue(q, "hidden")] == [aid]

    # Hiding again changes nothing: no second decision, no second alert.
    again = decide(f"{q}/moderation/questions/{qid}/answers/{aid}", "hidden")
    assert again["decision_version"] == decided["decision_version"] == 1

    # Hide the question: off its page, the listing and related questions; the asker is told.
    related_url = f"{q}/questions/{other}/related"
    assert qid in [r["id"] for r in httpx.get(related_url, timeout=10).json()["items"]]
    decide(f"{q}/moderation/questions/{qid}", "hidden", "spam")
    wait_for(
        lambda: httpx.get(question_url, timeout=10).status_code == 404,
        timeout=30,
        what="the hidden question's page to go",
    )

    def listed(**by: str) -> list[str]:
        params = {"limit": 100, **by}
        reply = httpx.get(f"{q}/questions", params=params, timeout=10)
        assert reply.status_code == 200, reply.text
        return [i["id"] for i in reply.json()["items"]]

    # Off every listing: the newest, by topic and by specialty.
    for by in ({}, {"topic": "acne"}, {"specialty": "dermatology"}):
        assert qid not in listed(**by) and other in listed(**by), by
    assert qid not in [r["id"] for r in httpx.get(related_url, timeout=10).json()["items"]]
    for gone in ("revisions", "related"):
        assert httpx.get(f"{question_url}/{gone}", timeout=10).status_code == 404
    # The answers service learns of it from moderation-decided: no new answer, no listing.
    register(n, "dr-mod-late")
    wait_for(
        lambda: httpx.get(f"{a}/questions/{qid}/answers", timeout=10).status_code == 404,
        timeout=30,
        what="the hidden question's answers listing to go",
    )
    late = httpx.post(
        f"{a}/questions/{qid}/answers",
        json={"body": "A late answer to a question the moderators hid, with some detail."},
        headers=auth("dr-mod-late", "doctor"),
        timeout=10,
    )
    assert late.status_code == 404, late.text
    hidden_q = wait_for(
        lambda: inbox(n, "pat-mod", "patient", "item-hidden"), timeout=30, what="asker told"
    )
    assert hidden_q[0]["reason"]["category"] == "spam"

    # Restore the question: back on its page and in the listing; the asker is told again.
    decide(f"{q}/moderation/questions/{qid}", "restored")
    wait_for(
        lambda: httpx.get(question_url, timeout=10).status_code == 200,
        timeout=30,
        what="the restored page",
    )
    for by in ({}, {"topic": "acne"}, {"specialty": "dermatology"}):
        assert qid in listed(**by), by
    wait_for(
        lambda: inbox(n, "pat-mod", "patient", "item-restored"), timeout=30, what="restored told"
    )
    # The restored question left the queue (decided); the answer is still hidden.
    wait_for(lambda: queue(q) == [], timeout=30, what="the queue to empty")
    assert httpx.get(question_url, timeout=10).json()["answer_count"] == 0

    decisions = events_of(redis, streams.MODERATION_DECIDED, "question_id", qid)
    assert [(e["item_kind"], e["decision"]) for e in decisions] == [
        ("answer", "hidden"),
        ("question", "hidden"),
        ("question", "restored"),
    ]
    for event in decisions:
        ModerationDecided.model_validate(event)
        jsonschema.validate(event, schema(streams.MODERATION_DECIDED))
    assert {e["author_id"] for e in decisions} == {"dr-mod", "pat-mod"}
    raw = json.dumps([f for _, f in redis.xrange(streams.MODERATION_DECIDED)])
    assert "reader-" not in raw and "admin-mod" not in raw


def test_a_hidden_answer_takes_no_vote_and_its_page_tally_stays_the_votes_tally(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    q, a, v, n = urls["questions"], urls["answers"], urls["votes"], urls["notify"]
    register(n, "dr-vote-mod")
    qid = ask(q, "pat-vote-mod")
    aid = answer(a, qid, "dr-vote-mod")
    page_url, tally_url = f"{q}/questions/{qid}", f"{v}/answers/{aid}/votes"

    def cast(who: str, value: int) -> httpx.Response:
        body = {"value": value}
        return httpx.put(f"{v}/answers/{aid}/vote", json=body, headers=auth(who), timeout=10)

    def on_page() -> dict[str, Any] | None:
        page = httpx.get(page_url, timeout=10)
        if page.status_code != 200:
            return None
        found = [x for x in page.json()["answers"] if x["id"] == aid]
        return found[0] if found else None

    wait_for(lambda: cast("voter-1", 1).status_code == 200, timeout=30, what="the first vote")
    wait_for(lambda: (on_page() or {}).get("helpful") == 1, timeout=30, what="tally on page")

    def tally_status() -> int:
        return httpx.get(tally_url, timeout=10).status_code

    # The answer hidden, then its question: votes learns of each from moderation-decided.
    for decision_url in (
        f"{q}/moderation/questions/{qid}/answers/{aid}",
        f"{q}/moderation/questions/{qid}",
    ):
        decide(decision_url, "hidden", "spam")
        wait_for(lambda: tally_status() == 404, timeout=30, what="votes to learn of the hiding")
        for who, value in (("voter-1", 0), ("voter-2", 1), ("voter-3", -1)):
            refused = cast(who, value)
            assert refused.status_code == 404, refused.text
        decide(decision_url, "restored")
        wait_for(lambda: tally_status() == 200, timeout=30, what="votes to learn of the restore")
        wait_for(on_page, timeout=30, what="the answer back on its page")

    # Nothing was published while hidden; voting carries on from the same tally.
    assert [e["tally_version"] for e in events_of(redis, streams.VOTE_CAST, "answer_id", aid)] == [
        1
    ]
    assert cast("voter-2", 1).json()["helpful"] == 2
    wait_for(lambda: (on_page() or {}).get("helpful") == 2, timeout=30, what="page tally")
    shown = on_page() or {}
    tally = httpx.get(tally_url, timeout=10).json()
    assert (
        (shown["helpful"], shown["unhelpful"]) == (tally["helpful"], tally["unhelpful"]) == (2, 0)
    )


def test_a_doctor_cannot_edit_an_answer_the_moderators_hid(world: dict[str, Any]) -> None:
    urls, redis = world["urls"], world["server"].client()
    q, a, n = urls["questions"], urls["answers"], urls["notify"]
    register(n, "dr-edit-mod")
    qid = ask(q, "pat-edit-mod")
    aid = answer(a, qid, "dr-edit-mod")
    answer_url = f"{a}/answers/{aid}"
    doctor = auth("dr-edit-mod", "doctor")
    # Moderators act on the question's page: the answer must have reached it first.
    wait_for(
        lambda: httpx.get(f"{q}/questions/{qid}", timeout=10).json()["answer_count"] == 1,
        timeout=30,
        what="the answer on the page",
    )

    def edit(text: str) -> httpx.Response:
        body = {"body": f"{text} An edit with enough detail to be a real answer body."}
        return httpx.patch(answer_url, json=body, headers=doctor, timeout=10)

    # Hidden, or on a hidden question: the edit is refused as not found, like every
    # other write on a hidden item, and nothing is published.
    for decision_url in (
        f"{q}/moderation/questions/{qid}/answers/{aid}",
        f"{q}/moderation/questions/{qid}",
    ):
        decide(decision_url, "hidden", "spam")
        wait_for(
            lambda: edit("While hidden.").status_code == 404,
            timeout=30,
            what="answers to learn of the hiding",
        )
        refused = edit("While hidden, again.")
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "not_found"
        decide(decision_url, "restored")
        wait_for(
            lambda: (
                httpx.get(answer_url, timeout=10).status_code == 200
                and httpx.get(f"{a}/questions/{qid}/answers", timeout=10).status_code == 200
            ),
            timeout=30,
            what="answers to learn of the restore",
        )
    assert events_of(redis, streams.ANSWER_EDITED, "answer_id", aid) == []
    restored = edit("Restored.")
    assert restored.status_code == 200 and restored.json()["revision"] == 2, restored.text


def test_the_cli_lists_hides_and_restores(world: dict[str, Any]) -> None:
    urls = world["urls"]
    q, a, n = urls["questions"], urls["answers"], urls["notify"]
    register(n, "dr-cli-mod")
    qid = ask(q, "pat-cli-mod")
    aid = answer(a, qid, "dr-cli-mod")
    answer_url = f"{q}/questions/{qid}/answers/{aid}"
    wait_for(
        lambda: flag(answer_url, "reader-9", "harassment").status_code == 200,
        timeout=30,
        what="the answer flagged",
    )
    env = {"ASKDOC_QUESTIONS_URL": q, "ASKDOC_JWT_SECRET": JWT_SECRET}
    runner = CliRunner()

    def listed(status: str) -> list[dict[str, Any]]:
        result = runner.invoke(cli, ["moderation", "list", "--status", status, "--json"], env=env)
        assert result.exit_code == 0, result.output
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items

    wait_for(lambda: any(i["item_id"] == aid for i in listed("open")), timeout=30, what="listed")
    hide = ["moderation", "hide", qid, "--answer", aid, "--reason", "harassment", "--json"]
    result = runner.invoke(cli, hide, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decision"] == "hidden"
    wait_for(lambda: any(i["item_id"] == aid for i in listed("hidden")), timeout=30, what="hidden")
    result = runner.invoke(cli, ["moderation", "restore", qid, "--answer", aid], env=env)
    assert result.exit_code == 0, result.output
    wait_for(
        lambda: httpx.get(f"{a}/questions/{qid}/answers", timeout=10).json()["answer_count"] == 1,
        timeout=30,
        what="the restored answer listed",
    )
    # A patient's token is refused: the CLI reports the service's 403 and exits 1.
    patient = runner.invoke(
        cli,
        ["moderation", "hide", qid, "--token", auth("pat-cli-mod")["Authorization"][7:]],
        env=env,
    )
    assert patient.exit_code == 1
    assert "403" in patient.output


def test_admins_dismiss_harmless_flags_the_item_stays_and_a_new_flag_reopens_it(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    q, n = urls["questions"], urls["notify"]
    qid = ask(q, "pat-dismiss")
    question_url = f"{q}/questions/{qid}"
    decision_url = f"{q}/moderation/questions/{qid}"
    for reader in ("reader-d1", "reader-d2"):
        assert flag(question_url, reader, "other").status_code == 200

    def in_queue() -> dict[str, Any] | None:
        found = [i for i in queue(q) if i["item_id"] == qid]
        return found[0] if found else None

    wait_for(lambda: (in_queue() or {}).get("flag_count") == 2, timeout=30, what="queued")

    # Only admins dismiss, with no reason: nobody is told anything.
    body = {"decision": "dismissed"}
    refused = httpx.put(decision_url, json=body, headers=auth("reader-d1"), timeout=10)
    assert refused.status_code == 403, refused.text
    with_reason = httpx.put(
        decision_url, json={**body, "reason": "spam"}, headers=ADMIN, timeout=10
    )
    assert with_reason.status_code == 422, with_reason.text
    dismissed = decide(decision_url, "dismissed")
    assert (dismissed["decision"], dismissed["dismissed_flags"]) == ("dismissed", 2)
    # Off the open queue at once (not in the hidden list either); still shown to readers.
    assert in_queue() is None and qid not in [i["item_id"] for i in queue(q, "hidden")]
    assert httpx.get(question_url, timeout=10).status_code == 200
    listing = httpx.get(f"{q}/questions", params={"limit": 100}, timeout=10).json()["items"]
    assert qid in [i["id"] for i in listing]
    # A repeat changes nothing.
    assert decide(decision_url, "dismissed")["dismissed_flags"] == 2

    # A later flag reopens it, with what was dismissed before.
    assert flag(question_url, "reader-d3", "spam").status_code == 200
    reopened = wait_for(in_queue, timeout=30, what="the item back in the queue")
    assert (reopened["flag_count"], reopened["dismissed_flags"]) == (3, 2)
    assert reopened["dismissed_at"] and reopened["status"] == "open"

    # The CLI dismisses it again.
    env = {"ASKDOC_QUESTIONS_URL": q, "ASKDOC_JWT_SECRET": JWT_SECRET}
    result = CliRunner().invoke(cli, ["moderation", "dismiss", qid, "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dismissed_flags"] == 3
    assert in_queue() is None

    # A hidden item's flags are not dismissed: restoring is what clears it.
    decide(decision_url, "hidden", "spam")
    hidden = httpx.put(decision_url, json=body, headers=ADMIN, timeout=10)
    assert hidden.status_code == 409 and hidden.json()["error"]["code"] == "item_hidden"

    # Only the hiding was a decision: the dismissals published nothing, so the asker was
    # told of the hiding alone.
    decisions = events_of(redis, streams.MODERATION_DECIDED, "question_id", qid)
    assert [e["decision"] for e in decisions] == ["hidden"]
    told = wait_for(
        lambda: inbox(n, "pat-dismiss", "patient", "item-hidden"), timeout=30, what="told"
    )
    assert len(told) == 1
    assert inbox(n, "pat-dismiss", "patient", "item-restored") == []


def test_a_hidden_pick_is_neither_shown_nor_named_and_comes_back_restored(
    world: dict[str, Any],
) -> None:
    urls = world["urls"]
    q, a, n = urls["questions"], urls["answers"], urls["notify"]
    register(n, "dr-hidden-pick")
    qid = ask(q, "pat-hidden-pick")
    aid = answer(a, qid, "dr-hidden-pick")
    page_url = f"{q}/questions/{qid}"
    wait_for(
        lambda: httpx.get(page_url, timeout=10).json()["answer_count"] == 1,
        timeout=30,
        what="the answer on the page",
    )
    picked = httpx.put(
        f"{page_url}/accepted-answer",
        json={"answer_id": aid},
        headers=auth("pat-hidden-pick"),
        timeout=10,
    )
    assert picked.status_code == 200, picked.text
    assert picked.json()["accepted_answer_id"] == aid

    decision_url = f"{q}/moderation/questions/{qid}/answers/{aid}"
    decide(decision_url, "hidden", "spam")
    page = wait_for(
        lambda: (p := httpx.get(page_url, timeout=10).json())["answer_count"] == 0 and p,
        timeout=30,
        what="the hiding on the page",
    )
    assert page["answers"] == []
    assert "accepted_answer_id" not in page
    assert aid not in json.dumps(page)

    decide(decision_url, "restored")
    page = wait_for(
        lambda: (p := httpx.get(page_url, timeout=10).json())["answer_count"] == 1 and p,
        timeout=30,
        what="the restore on the page",
    )
    assert page["accepted_answer_id"] == aid
    assert [(x["id"], x["accepted"]) for x in page["answers"]] == [(aid, True)]


def test_a_hidden_question_leaves_the_inboxes_it_reached_and_comes_back_restored(
    world: dict[str, Any],
) -> None:
    urls = world["urls"]
    q, a, n = urls["questions"], urls["answers"], urls["notify"]
    for doctor in ("dr-inbox-mod", "dr-inbox-ans"):
        register(n, doctor)
    qid = ask(q, "pat-inbox-mod")
    follow = httpx.put(f"{q}/questions/{qid}/follow", headers=auth("fan-inbox-mod"), timeout=10)
    assert follow.status_code == 200, follow.text
    who = {
        "dr-inbox-mod": ("doctor", "question-match"),
        "fan-inbox-mod": ("patient", "new-answer"),
        "pat-inbox-mod": ("patient", "new-answer"),
    }

    def mine(user: str, unread: bool = False) -> tuple[list[dict[str, Any]], int]:
        """The user's items about the question, and their unread count (GET /inbox)."""
        params = {"limit": 100, **({"unread": "true"} if unread else {})}
        reply = httpx.get(f"{n}/inbox", params=params, headers=auth(user, who[user][0]), timeout=10)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return [i for i in body["items"] if i["question_id"] == qid], body["unread_count"]

    def shown(user: str) -> list[dict[str, Any]]:
        return [i for i in mine(user)[0] if i["kind"] == who[user][1]]

    def mine_is(user: str, items: list[dict[str, Any]]) -> bool:
        return mine(user)[0] == items

    def is_before(user: str) -> bool:
        return mine(user) == before[user]

    # The matched doctor is alerted; an answer reaches the follower and the asker.
    aid = answer(a, qid, "dr-inbox-ans")
    for user in who:
        wait_for(partial(shown, user), timeout=30, what=f"{user}'s alert")
    alert = shown("dr-inbox-mod")[0]
    assert alert["title"] == "Acne scars on my cheeks" and not alert["read"]
    before = {user: mine(user) for user in who}
    assert [i["answer_id"] for i in shown("fan-inbox-mod")] == [aid]

    decide(f"{q}/moderation/questions/{qid}", "hidden", "spam")
    # Gone from the listing and from the unread count; the asker keeps the notice alone.
    for user in ("dr-inbox-mod", "fan-inbox-mod"):
        wait_for(partial(mine_is, user, []), timeout=30, what=f"{user}'s alert gone")
        unread = mine(user)[1]
        assert unread == before[user][1] - 1, user
        assert mine(user, unread=True)[1] == unread
    notice = wait_for(
        lambda: [k["kind"] for k in mine("pat-inbox-mod")[0]] == ["item-hidden"],
        timeout=30,
        what="the asker's inbox left with the notice",
    )
    assert notice
    assert mine("pat-inbox-mod")[1] == before["pat-inbox-mod"][1]  # one gone, one told
    raw = httpx.get(f"{n}/inbox", headers=auth("dr-inbox-mod", "doctor"), timeout=10).text
    assert qid not in raw and "Acne scars on my cheeks" not in raw
    # Not to be marked read either: as if it were not there.
    gone = httpx.post(
        f"{n}/inbox/{alert['id']}/read", headers=auth("dr-inbox-mod", "doctor"), timeout=10
    )
    assert gone.status_code == 404, gone.text

    decide(f"{q}/moderation/questions/{qid}", "restored")
    for user in ("dr-inbox-mod", "fan-inbox-mod"):
        wait_for(partial(is_before, user), timeout=30, what=f"{user}'s alert back")
    wait_for(
        lambda: (
            {k["kind"] for k in mine("pat-inbox-mod")[0]}
            == {"new-answer", "item-hidden", "item-restored"}
        ),
        timeout=30,
        what="the asker's alert back beside both notices",
    )
    assert mine("pat-inbox-mod")[1] == before["pat-inbox-mod"][1] + 2
    # Back, it can be read as before.
    read = httpx.post(
        f"{n}/inbox/{alert['id']}/read", headers=auth("dr-inbox-mod", "doctor"), timeout=10
    )
    assert read.status_code == 200 and read.json()["read"] is True, read.text
    assert mine("dr-inbox-mod")[1] == before["dr-inbox-mod"][1] - 1


def next_event(lines: Iterator[str]) -> tuple[str | None, str, dict[str, Any]]:
    """The next (id, event type, data) on an SSE body's lines, heartbeats skipped."""
    event_id, kind, data = None, "", ""
    for line in lines:
        if not line:
            if kind:
                return event_id, kind, json.loads(data)
            continue
        name, _, value = line.partition(": ")
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data += value
    raise AssertionError("the stream ended")


def test_open_live_streams_are_told_which_alerts_a_hiding_withdraws(
    world: dict[str, Any],
) -> None:
    urls = world["urls"]
    q, a, n = urls["questions"], urls["answers"], urls["notify"]
    register(n, "dr-live-mod")
    qid = ask(q, "pat-live-mod")
    follow = httpx.put(f"{q}/questions/{qid}/follow", headers=auth("fan-live-mod"), timeout=10)
    assert follow.status_code == 200, follow.text
    [match] = wait_for(
        lambda: [
            i
            for i in inbox(n, "dr-live-mod", "doctor", "question-match")
            if i["question_id"] == qid
        ],
        timeout=30,
        what="the matched doctor's alert",
    )
    timeout = httpx.Timeout(10.0, read=30.0)

    def live(who: str, role: str) -> Any:
        headers = {**auth(who, role), "Accept": "text/event-stream"}
        return httpx.stream("GET", f"{n}/inbox/stream", headers=headers, timeout=timeout)

    with live("fan-live-mod", "patient") as fan, live("dr-live-mod", "doctor") as doctor:
        assert fan.status_code == doctor.status_code == 200
        fan_lines, doctor_lines = fan.iter_lines(), doctor.iter_lines()
        aid = answer(a, qid, "dr-live-mod")
        nid, kind, item = next_event(fan_lines)
        assert (kind, item["kind"], item["answer_id"], nid) == (
            "notification",
            "new-answer",
            aid,
            item["id"],
        )
        # The answer hidden: the follower's alert about it is withdrawn, with no event id
        # (the client's Last-Event-ID stays that of its newest notification), saying it was
        # unread (a page that lists it on a later page counts it).
        decide(f"{q}/moderation/questions/{qid}/answers/{aid}", "hidden", "spam")
        assert next_event(fan_lines) == (None, "withdrawn", {"ids": [nid], "unread": [nid]})
        # Its doctor is told of the hiding; that notice is about nothing, and stays.
        notice_id, kind, notice = next_event(doctor_lines)
        assert (kind, notice["kind"], notice_id) == ("notification", "item-hidden", notice["id"])
        # The question hidden: the matched doctor's alert about it is withdrawn, and only it.
        decide(f"{q}/moderation/questions/{qid}", "hidden", "spam")
        withdrawn = {"ids": [match["id"]], "unread": [match["id"]]}
        assert next_event(doctor_lines) == (None, "withdrawn", withdrawn)
        # The follower's alert is about the question too: named again (nothing left to drop).
        assert next_event(fan_lines) == (None, "withdrawn", {"ids": [nid], "unread": [nid]})

        def about_it(who: str, role: str, kind: str) -> list[dict[str, Any]]:
            return [i for i in inbox(n, who, role, kind) if i["question_id"] == qid]

        def gone(who: str, role: str, kind: str) -> bool:
            return about_it(who, role, kind) == []

        for who, role, kind in (
            ("fan-live-mod", "patient", "new-answer"),
            ("dr-live-mod", "doctor", "question-match"),
        ):
            wait_for(
                partial(gone, who, role, kind), timeout=30, what=f"{who}'s alert to leave the inbox"
            )
        assert [i["id"] for i in about_it("dr-live-mod", "doctor", "item-hidden")] == [notice_id]

        # The question restored: the matched doctor's alert comes back on the open stream as
        # the inbox lists it (no event id either). The follower's stays out, its answer
        # hidden, so the follower's next event is the answer's restore.
        decide(f"{q}/moderation/questions/{qid}", "restored")
        assert next_event(doctor_lines) == (None, "restored", {"items": [match]})
        decide(f"{q}/moderation/questions/{qid}/answers/{aid}", "restored")
        assert next_event(fan_lines) == (None, "restored", {"items": [item]})
        for who, role, kind in (
            ("fan-live-mod", "patient", "new-answer"),
            ("dr-live-mod", "doctor", "question-match"),
        ):
            wait_for(
                lambda who=who, role=role, kind=kind: not gone(who, role, kind),
                timeout=30,
                what=f"{who}'s alert to come back to the inbox",
            )
