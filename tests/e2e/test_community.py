"""End to end (issue 16): edits with history, the asker's pick, following a question.
Questions, answers and notify run as processes on their own redis-server; events are read
with plain XRANGE and checked against their reviewed schemas (the contract snapshots)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import httpx
import jsonschema

from demo.scenario import demo_npi
from shared import streams
from shared.events import (
    AnswerAccepted,
    AnswerEdited,
    QuestionEdited,
    QuestionFollowed,
    QuestionUnfollowed,
)
from tests.support import ROOT, auth, wait_for

NUMBERS = itertools.count()
SNAPSHOTS = ROOT / "tests" / "contract" / "snapshots"
ANSWER = "Botox in the depressor muscles can soften the pull on the stronger side."
EDITED = "Botox in the depressor muscles softens the pull; fillers can balance the rest."


def register(notify: str, doctor_id: str) -> None:
    body = {
        "name": f"Dr {doctor_id}",
        "credentials": "MD",
        "specialties": ["dermatology"],
        "location": {"city": "Los Angeles", "state": "CA"},
        "radius_km": 50,
        "npi": demo_npi(500 + next(NUMBERS)),
    }
    reply = httpx.put(
        f"{notify}/doctors/{doctor_id}", json=body, headers=auth(doctor_id, "doctor"), timeout=10
    )
    assert reply.status_code == 200, reply.text
    # Only verified doctors may answer: an admin verifies this one.
    verified = httpx.put(
        f"{notify}/doctors/{doctor_id}/status",
        json={"status": "verified"},
        headers=auth("admin-1", "admin"),
        timeout=10,
    )
    assert verified.status_code == 200, verified.text


def ask(questions: str, asker: str) -> str:
    posted = httpx.post(
        f"{questions}/questions",
        json={
            "title": "Acne scars on my cheeks",
            "body": "What helps with old acne scars?",
            "topics": ["acne"],
            "location": {"city": "Los Angeles", "state": "CA"},
        },
        headers=auth(asker),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    qid: str = posted.json()["id"]
    return qid


def answer(answers: str, qid: str, doctor_id: str) -> str:
    def posted() -> httpx.Response | None:
        reply = httpx.post(
            f"{answers}/questions/{qid}/answers",
            json={"body": ANSWER},
            headers=auth(doctor_id, "doctor"),
            timeout=10,
        )
        # 404 / 403 until the question and the doctor's card reach the answers service.
        return reply if reply.status_code == 201 else None

    reply = wait_for(posted, timeout=60, interval=0.5, what="the answer to be accepted")
    aid: str = reply.json()["id"]
    return aid


def events_of(redis: Any, stream: str, key: str, value: str) -> list[dict[str, Any]]:
    """The events on `stream` whose `key` is `value`, each valid against the stream's
    reviewed JSON Schema (tests/contract/snapshots) as the services published it."""
    found = [json.loads(f["__data__"]) for _, f in redis.xrange(stream)]
    mine = [e for e in found if e[key] == value]
    snapshot = json.loads((SNAPSHOTS / f"{stream}.schema.json").read_text())
    for event in mine:
        jsonschema.validate(event, snapshot)
    return mine


def test_an_asker_edits_until_answered_and_a_doctor_edits_without_re_alerting(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    register(urls["notify"], "dr-edit")
    qid = ask(urls["questions"], "pat-edit")
    page_url = f"{urls['questions']}/questions/{qid}"

    # The asker edits: the page shows the new title and when it was edited.
    edit = {"title": "Old acne scars on both cheeks"}
    refused = httpx.patch(page_url, json=edit, headers=auth("someone-else"), timeout=10)
    assert refused.status_code == 403, refused.text
    edited = httpx.patch(page_url, json=edit, headers=auth("pat-edit"), timeout=10)
    assert edited.status_code == 200, edited.text
    page = httpx.get(page_url, timeout=10).json()
    assert page["title"] == "Old acne scars on both cheeks" and page["edited_at"]
    revisions = httpx.get(f"{page_url}/revisions", timeout=10).json()["items"]
    assert [(r["revision"], r["title"]) for r in revisions] == [
        (1, "Acne scars on my cheeks"),
        (2, "Old acne scars on both cheeks"),
    ]
    (q_event,) = events_of(redis, streams.QUESTION_EDITED, "question_id", qid)
    assert QuestionEdited.model_validate(q_event).revision == 2
    assert "pat-edit" not in json.dumps(q_event)

    # Answered: the asker can no longer edit.
    aid = answer(urls["answers"], qid, "dr-edit")
    wait_for(
        lambda: httpx.get(page_url, timeout=10).json()["answer_count"] == 1,
        timeout=30,
        what="the answer on the page",
    )
    late = httpx.patch(
        page_url, json={"body": "Also some redness."}, headers=auth("pat-edit"), timeout=10
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "question_answered", (
        late.text
    )

    def new_answer_alerts() -> list[dict[str, Any]]:
        inbox = httpx.get(f"{urls['notify']}/inbox", headers=auth("pat-edit"), timeout=10)
        return [i for i in inbox.json()["items"] if i["kind"] == "new-answer"]

    assert len(wait_for(new_answer_alerts, timeout=30, what="the asker's new-answer alert")) == 1

    # The doctor edits the answer; nobody else may.
    answer_url = f"{urls['answers']}/answers/{aid}"
    other = httpx.patch(
        answer_url, json={"body": EDITED}, headers=auth("dr-other", "doctor"), timeout=10
    )
    assert other.status_code == 403, other.text
    changed = httpx.patch(
        answer_url, json={"body": EDITED}, headers=auth("dr-edit", "doctor"), timeout=10
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["revision"] == 2 and changed.json()["edited_at"]

    def edited_on_page() -> dict[str, Any] | None:
        (shown,) = httpx.get(page_url, timeout=10).json()["answers"]
        return shown if shown["body"] == EDITED else None

    shown = wait_for(edited_on_page, timeout=30, what="the edited answer on the page")
    assert shown["edited_at"] and shown["revision"] == 2
    listed = httpx.get(f"{answer_url}/revisions", timeout=10).json()["items"]
    assert [(r["revision"], r["body"]) for r in listed] == [(1, ANSWER), (2, EDITED)]
    (a_event,) = events_of(redis, streams.ANSWER_EDITED, "answer_id", aid)
    assert AnswerEdited.model_validate(a_event).body == EDITED

    # notify does not re-alert for an edit: the asker still has the one new-answer alert
    # (the page already showed the edit, so an alert would have had time to arrive), and
    # the matched doctor the one question-match alert of before the question was edited.
    time.sleep(2)
    assert len(new_answer_alerts()) == 1
    doctor_inbox = httpx.get(
        f"{urls['notify']}/inbox", headers=auth("dr-edit", "doctor"), timeout=10
    )
    matches = [
        i
        for i in doctor_inbox.json()["items"]
        if i["kind"] == "question-match" and i["question_id"] == qid
    ]
    assert len(matches) == 1, matches


def test_the_askers_pick_comes_first_with_a_mark_and_its_doctor_is_told(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    for doctor in ("dr-pick-a", "dr-pick-b"):
        register(urls["notify"], doctor)
    qid = ask(urls["questions"], "pat-pick")
    first = answer(urls["answers"], qid, "dr-pick-a")
    second = answer(urls["answers"], qid, "dr-pick-b")
    page_url = f"{urls['questions']}/questions/{qid}"
    wait_for(
        lambda: httpx.get(page_url, timeout=10).json()["answer_count"] == 2,
        timeout=30,
        what="both answers on the page",
    )
    pick_url = f"{page_url}/accepted-answer"

    refused = httpx.put(pick_url, json={"answer_id": first}, headers=auth("pat-other"), timeout=10)
    assert refused.status_code == 403, refused.text
    unknown = httpx.put(
        pick_url, json={"answer_id": "a-none"}, headers=auth("pat-pick"), timeout=10
    )
    assert unknown.status_code == 404, unknown.text

    def alerts(doctor: str) -> list[dict[str, Any]]:
        inbox = httpx.get(f"{urls['notify']}/inbox", headers=auth(doctor, "doctor"), timeout=10)
        return [i for i in inbox.json()["items"] if i["kind"] == "answer-accepted"]

    for picked, other in ((second, first), (first, second)):
        reply = httpx.put(
            pick_url, json={"answer_id": picked}, headers=auth("pat-pick"), timeout=10
        )
        assert reply.status_code == 200, reply.text
        shown = httpx.get(page_url, timeout=10).json()["answers"]
        assert [(a["id"], a["accepted"]) for a in shown] == [(picked, True), (other, False)]

    (told_b,) = wait_for(lambda: alerts("dr-pick-b"), timeout=30, what="dr-pick-b's alert")
    (told_a,) = wait_for(lambda: alerts("dr-pick-a"), timeout=30, what="dr-pick-a's alert")
    assert told_b["answer_id"] == second and told_a["answer_id"] == first
    picks = events_of(redis, streams.ANSWER_ACCEPTED, "question_id", qid)
    assert [AnswerAccepted.model_validate(e).previous_answer_id for e in picks] == [None, second]
    assert "pat-pick" not in json.dumps(picks)


def new_answers(notify: str, user: str, role: str = "patient") -> list[dict[str, Any]]:
    inbox = httpx.get(f"{notify}/inbox", headers=auth(user, role), timeout=10)
    assert inbox.status_code == 200, inbox.text
    return [i for i in inbox.json()["items"] if i["kind"] == "new-answer"]


def test_followers_hear_of_each_new_answer_once_and_never_of_their_own(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    notify = urls["notify"]
    for doctor in ("dr-fol-a", "dr-fol-b"):
        register(notify, doctor)
    qid = ask(urls["questions"], "pat-fol")
    page_url = f"{urls['questions']}/questions/{qid}"
    follow_url = f"{page_url}/follow"

    anonymous = httpx.get(page_url, timeout=10).json()
    assert anonymous["follower_count"] == 1 and "following" not in anonymous  # the asker
    assert httpx.put(follow_url, timeout=10).status_code == 401
    missing = httpx.put(
        f"{urls['questions']}/questions/q-none/follow", headers=auth("fan-1"), timeout=10
    )
    assert missing.status_code == 404, missing.text

    # Following is idempotent: twice is one follow, one event.
    for _ in range(2):
        reply = httpx.put(follow_url, headers=auth("fan-1"), timeout=10)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"question_id": qid, "following": True, "follower_count": 2}
    assert httpx.put(follow_url, headers=auth("fan-2"), timeout=10).json()["follower_count"] == 3
    for _ in range(2):
        gone = httpx.delete(follow_url, headers=auth("fan-2"), timeout=10)
        assert gone.status_code == 200 and gone.json()["following"] is False, gone.text
    # A doctor may follow too; they then hear of other doctors' answers, not their own.
    assert httpx.put(follow_url, headers=auth("dr-fol-b", "doctor"), timeout=10).status_code == 200
    page = httpx.get(page_url, headers=auth("fan-1"), timeout=10).json()
    assert page["follower_count"] == 3 and page["following"] is True
    assert httpx.get(page_url, headers=auth("fan-2"), timeout=10).json()["following"] is False

    followed = events_of(redis, streams.QUESTION_FOLLOWED, "question_id", qid)
    assert sorted(
        (e["user_id"], QuestionFollowed.model_validate(e).follow_version) for e in followed
    ) == [("dr-fol-b", 1), ("fan-1", 1), ("fan-2", 1)]
    (unfollowed,) = events_of(redis, streams.QUESTION_UNFOLLOWED, "question_id", qid)
    assert QuestionUnfollowed.model_validate(unfollowed).follow_version == 2

    first = answer(urls["answers"], qid, "dr-fol-b")
    (fan_alert,) = wait_for(
        lambda: new_answers(notify, "fan-1"), timeout=30, what="the follower's alert"
    )
    assert fan_alert["answer_id"] == first and "question you follow" in fan_alert["reason_text"]
    (asker_alert,) = wait_for(
        lambda: new_answers(notify, "pat-fol"), timeout=30, what="the asker's alert"
    )
    assert asker_alert["answer_id"] == first

    second = answer(urls["answers"], qid, "dr-fol-a")
    (told,) = wait_for(
        lambda: new_answers(notify, "dr-fol-b", "doctor"), timeout=30, what="dr-fol-b's alert"
    )
    assert told["answer_id"] == second  # of the other doctor's answer, never of their own
    wait_for(
        lambda: len(new_answers(notify, "fan-1")) == 2, timeout=30, what="fan-1's second alert"
    )
    time.sleep(1)  # time for any duplicate to arrive
    assert sorted(a["answer_id"] for a in new_answers(notify, "pat-fol")) == sorted([first, second])
    assert sorted(a["answer_id"] for a in new_answers(notify, "fan-1")) == sorted([first, second])
    assert new_answers(notify, "fan-2") == []
    assert new_answers(notify, "dr-fol-a", "doctor") == []


def test_the_asker_of_a_question_from_before_following_is_counted_and_may_unfollow(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    notify = urls["notify"]
    register(notify, "dr-old")
    qid = ask(urls["questions"], "pat-old")
    page_url = f"{urls['questions']}/questions/{qid}"
    # The question as a version before following stored it: no followers, no versions,
    # and no page built from them.
    old_keys = redis.keys(f"*:q:{qid}:follow*") + redis.keys(f"*:q:{qid}:page")
    assert len([k for k in old_keys if k.endswith(("followers", "follow-ver"))]) == 2
    redis.delete(*old_keys)

    page = httpx.get(page_url, headers=auth("pat-old"), timeout=10).json()
    assert page["follower_count"] == 1 and page["following"] is True
    fan = httpx.put(f"{page_url}/follow", headers=auth("fan-old"), timeout=10)
    assert fan.json() == {"question_id": qid, "following": True, "follower_count": 2}
    # The asker's unfollow is their first recorded change (version 2, as if the post had
    # recorded version 1, as it does now); notify hears of it.
    gone = httpx.delete(f"{page_url}/follow", headers=auth("pat-old"), timeout=10)
    assert gone.json() == {"question_id": qid, "following": False, "follower_count": 1}
    (unfollowed,) = events_of(redis, streams.QUESTION_UNFOLLOWED, "question_id", qid)
    assert (unfollowed["user_id"], unfollowed["follow_version"]) == ("pat-old", 2)
    assert httpx.get(page_url, timeout=10).json()["follower_count"] == 1

    aid = answer(urls["answers"], qid, "dr-old")
    wait_for(lambda: new_answers(notify, "fan-old"), timeout=30, what="the follower's alert")
    time.sleep(1)  # time for an alert to the asker, were one still due
    assert [a["answer_id"] for a in new_answers(notify, "fan-old")] == [aid]
    assert new_answers(notify, "pat-old") == []


def test_a_suspended_doctors_answers_lose_the_verified_mark_and_cannot_be_edited(
    world: dict[str, Any],
) -> None:
    urls = world["urls"]
    q, a, n = urls["questions"], urls["answers"], urls["notify"]
    register(n, "dr-suspended")
    qid = ask(q, "pat-suspended")
    aid = answer(a, qid, "dr-suspended")
    page_url, listing_url = f"{q}/questions/{qid}", f"{a}/questions/{qid}/answers"

    def marks() -> tuple[list[bool], list[bool], bool]:
        page = httpx.get(page_url, timeout=10).json()["answers"]
        listing = httpx.get(listing_url, timeout=10).json()["items"]
        one = httpx.get(f"{a}/answers/{aid}", timeout=10).json()
        return (
            [x["doctor"]["verified"] for x in page],
            [x["doctor"]["verified"] for x in listing],
            one["doctor"]["verified"],
        )

    wait_for(lambda: marks()[0] == [True], timeout=30, what="the answer on its page")
    assert marks() == ([True], [True], True)

    def set_status(status: str) -> None:
        reply = httpx.put(
            f"{n}/doctors/dr-suspended/status",
            json={"status": status},
            headers=auth("admin-1", "admin"),
            timeout=10,
        )
        assert reply.status_code == 200, reply.text

    def edit_answer() -> httpx.Response:
        return httpx.patch(
            f"{a}/answers/{aid}",
            json={"body": EDITED},
            headers=auth("dr-suspended", "doctor"),
            timeout=10,
        )

    # Suspended: the page, the listing and the answer itself show no verified mark.
    set_status("suspended")
    wait_for(
        lambda: marks() == ([False], [False], False),
        timeout=30,
        what="the suspension on the page and the listing",
    )
    edit = edit_answer()
    assert edit.status_code == 403, edit.text
    assert edit.json()["error"]["code"] == "doctor_not_verified"
    assert httpx.get(page_url, timeout=10).json()["answers"][0]["body"] == ANSWER

    # Verified again: the mark is back, and the doctor may edit.
    set_status("verified")
    wait_for(
        lambda: marks() == ([True], [True], True),
        timeout=30,
        what="the verification back on the page and the listing",
    )
    edit = edit_answer()
    assert edit.status_code == 200, edit.text


def test_an_asker_who_unfollows_hears_of_no_answer_until_they_follow_again(
    world: dict[str, Any],
) -> None:
    urls = world["urls"]
    notify = urls["notify"]
    for doctor in ("dr-optout-a", "dr-optout-b"):
        register(notify, doctor)
    qid = ask(urls["questions"], "pat-optout")
    follow_url = f"{urls['questions']}/questions/{qid}/follow"
    # The asker follows by default, which is how they hear of answers; unfollowing is
    # their opt-out of those alerts.
    gone = httpx.delete(follow_url, headers=auth("pat-optout"), timeout=10)
    assert gone.json() == {"question_id": qid, "following": False, "follower_count": 0}
    assert httpx.put(follow_url, headers=auth("fan-optout"), timeout=10).status_code == 200
    first = answer(urls["answers"], qid, "dr-optout-a")
    wait_for(lambda: new_answers(notify, "fan-optout"), timeout=30, what="the follower's alert")
    time.sleep(1)  # time for an alert to the asker, were one due
    assert new_answers(notify, "pat-optout") == []

    # Following again opts back in: the next answer reaches the asker, the first does not.
    back = httpx.put(follow_url, headers=auth("pat-optout"), timeout=10)
    assert back.json() == {"question_id": qid, "following": True, "follower_count": 2}
    second = answer(urls["answers"], qid, "dr-optout-b")
    told = wait_for(lambda: new_answers(notify, "pat-optout"), timeout=30, what="asker told")
    assert [a["answer_id"] for a in told] == [second]
    assert "answered your question" in told[0]["reason_text"]
    assert sorted(a["answer_id"] for a in new_answers(notify, "fan-optout")) == sorted(
        [first, second]
    )
