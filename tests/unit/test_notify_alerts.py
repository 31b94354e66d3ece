"""notify's alert use cases against fakes: once per doctor, held and released, milestones."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from services.notify.alerts.release import HeldAlerts
from services.notify.alerts.service import AlertService, QuestionNotSeenYet
from services.notify.inbox.service import InboxService
from services.notify.matching.service import Matcher
from services.notify.settings import NotifySettings
from shared.events import (
    AnswerPosted,
    DoctorCard,
    Location,
    QuestionFollowed,
    QuestionPosted,
    QuestionUnfollowed,
    VoteCast,
)
from tests.unit.notify_fakes import (
    FakeAlertStore,
    FakeDoctorIndex,
    FakeFrozenMatches,
    FakeInbox,
    FakePrefs,
)

LA = (34.0522, -118.2437)
SETTINGS = NotifySettings(jwt_secret="x" * 32, match_cap=5)  # type: ignore[call-arg]


class World:
    def __init__(self) -> None:
        self.index = FakeDoctorIndex()
        self.prefs = FakePrefs()
        self.inbox_store = FakeInbox()
        self.store = FakeAlertStore(self.inbox_store)
        inbox = InboxService(self.inbox_store, SETTINGS)
        matcher = Matcher(self.index, FakeFrozenMatches(), SETTINGS)
        self.alerts = AlertService(self.store, matcher, self.prefs, inbox, SETTINGS)
        self.held = HeldAlerts(self.store, self.prefs, inbox, SETTINGS)

    def kinds(self, recipient: str) -> list[str]:
        ids = sorted(self.inbox_store.ids.get(recipient, ()))
        return [json.loads(self.inbox_store.hashes[i]["item"])["kind"] for i in ids]


def question(qid: str, asker: str = "p1", urgent: bool = False) -> QuestionPosted:
    return QuestionPosted(
        correlation_id=f"c-{qid}",
        producer="questions",
        question_id=qid,
        title=f"Title {qid}",
        body="private body",
        topics=["botox"],
        specialties=["dermatology"],
        location=Location(lat=LA[0], lon=LA[1]),
        asker_id=asker,
        urgent=urgent,
    )


def quiet_all_day(world: World, doctor_id: str) -> None:
    # A window covering the present moment in UTC, ending within the day.
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=5)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    world.prefs.by_doctor[doctor_id] = {
        "quiet_hours": {"start": start, "end": end, "tz": "UTC"},
        "channels": [],
    }


def test_each_matched_doctor_is_alerted_once_even_when_the_event_comes_twice() -> None:
    world = World()
    world.index.add("dr-a", ("dermatology",), *LA)
    world.index.add("dr-b", ("dermatology",), LA[0] + 0.05, LA[1])
    world.index.add("p1", ("dermatology",), *LA)  # the asker is a doctor too
    asyncio.run(world.alerts.on_question_posted(question("q1")))
    asyncio.run(world.alerts.on_question_posted(question("q1")))
    assert world.kinds("dr-a") == world.kinds("dr-b") == ["question-match"]
    assert world.kinds("p1") == []
    assert world.store.questions["q1"] == {"asker_id": "p1", "title": "Title q1"}


def test_quiet_hours_hold_an_alert_until_they_end_but_urgent_ones_pass() -> None:
    world = World()
    world.index.add("dr-q", ("dermatology",), *LA)
    quiet_all_day(world, "dr-q")
    asyncio.run(world.alerts.on_question_posted(question("q-routine")))
    asyncio.run(world.alerts.on_question_posted(question("q-urgent", urgent=True)))
    assert world.kinds("dr-q") == ["question-match"]  # only the urgent one
    assert len(world.store.holds["dr-q"]) == 1
    assert asyncio.run(world.held.release_due(datetime.now(UTC))) == 0  # not due yet
    later = datetime.now(UTC) + timedelta(hours=3)
    assert asyncio.run(world.held.release_due(later)) == 1
    assert world.kinds("dr-q") == ["question-match", "question-match"]
    assert world.store.holds["dr-q"] == {} and "dr-q" not in world.store.due


def test_urgent_floods_are_bounded_per_asker_and_collapse_per_doctor_at_night() -> None:
    flood = SETTINGS.model_copy(
        update={"urgent_per_asker_per_day": 4, "urgent_per_doctor_per_quiet_hour": 2}
    )
    world = World()
    world.alerts.settings = flood
    world.index.add("dr-night", ("dermatology",), *LA)
    quiet_all_day(world, "dr-night")
    for n in range(6):
        asyncio.run(world.alerts.on_question_posted(question(f"q-chest-{n}", "p-flood", True)))
    asyncio.run(world.alerts.on_question_posted(question("q-chest-0", "p-flood", True)))  # again
    # Two urgent pages this hour; two more urgent ones wait as a digest; the asker's
    # 5th and 6th urgent questions of the day alert as routine (held for the morning).
    items = [
        json.loads(world.inbox_store.hashes[i]["item"])
        for i in sorted(world.inbox_store.ids["dr-night"])
    ]
    assert [(i["kind"], i["urgent"]) for i in items] == [("question-match", True)] * 2
    assert len(world.store.holds["dr-night"]) == 4
    asyncio.run(world.held.release_due(datetime.now(UTC) + timedelta(hours=3)))
    released = world.kinds("dr-night")[2:]
    assert sorted(released) == ["digest", "question-match", "question-match"]


def test_alerts_held_for_a_doctor_suspended_meanwhile_never_go_out() -> None:
    world = World()
    world.index.add("dr-s", ("dermatology",), *LA)
    quiet_all_day(world, "dr-s")
    asyncio.run(world.alerts.on_question_posted(question("q-held")))
    assert len(world.store.holds["dr-s"]) == 1
    world.prefs.by_doctor["dr-s"] = {**world.prefs.by_doctor["dr-s"], "verified": False}
    later = datetime.now(UTC) + timedelta(hours=3)
    assert asyncio.run(world.held.release_due(later)) == 1
    assert world.kinds("dr-s") == []
    assert world.store.holds["dr-s"] == {} and "dr-s" not in world.store.due


def test_alerts_over_the_daily_cap_go_out_in_one_digest() -> None:
    world = World()
    world.index.add("dr-cap", ("dermatology",), *LA)
    world.prefs.by_doctor["dr-cap"] = {"daily_cap": 1, "channels": []}
    for n in range(3):
        asyncio.run(world.alerts.on_question_posted(question(f"q{n}")))
    assert world.kinds("dr-cap") == ["question-match"]
    assert len(world.store.holds["dr-cap"]) == 2
    tomorrow = datetime.now(UTC) + timedelta(days=1, hours=1)
    asyncio.run(world.held.release_due(tomorrow))
    assert world.kinds("dr-cap") == ["question-match", "digest"]


def answer(aid: str, qid: str, doctor_id: str = "dr-x") -> AnswerPosted:
    return AnswerPosted(
        correlation_id=f"c-{aid}",
        producer="answers",
        answer_id=aid,
        question_id=qid,
        body="an answer",
        doctor=DoctorCard(id=doctor_id, name="Dr X", credentials="MD", specialty="dermatology"),
        created_at=datetime.now(UTC),
    )


def test_the_asker_hears_of_each_answer_once_and_never_before_the_question() -> None:
    world = World()
    with pytest.raises(QuestionNotSeenYet):
        asyncio.run(world.alerts.on_answer_posted(answer("a1", "q1")))
    asyncio.run(world.alerts.on_question_posted(question("q1")))
    asyncio.run(world.alerts.on_answer_posted(answer("a1", "q1")))
    asyncio.run(world.alerts.on_answer_posted(answer("a1", "q1")))
    asyncio.run(world.alerts.on_answer_posted(answer("a2", "q1", doctor_id="p1")))  # own
    assert world.kinds("p1") == ["new-answer"]


def vote(helpful: int, version: int) -> VoteCast:
    return VoteCast(
        correlation_id=f"c-v{version}",
        producer="votes",
        answer_id="a1",
        question_id="q1",
        doctor_id="dr-x",
        voter_id=f"v{version}",
        value=1,
        helpful=helpful,
        unhelpful=0,
        tally_version=version,
    )


def test_vote_alerts_come_at_milestones_and_stale_tallies_change_nothing() -> None:
    world = World()
    for helpful, version in [(1, 1), (2, 2), (4, 4), (3, 3), (5, 5), (6, 6)]:
        asyncio.run(world.alerts.on_vote_cast(vote(helpful, version)))
    assert world.kinds("dr-x") == ["answer-voted", "answer-voted"]  # at 1 and at 5
    assert world.store.tallies["a1"] == {"version": 6, "helpful": 6, "notified": 5}


def follow(
    qid: str, user: str, version: int, on: bool = True
) -> QuestionFollowed | QuestionUnfollowed:
    kind = QuestionFollowed if on else QuestionUnfollowed
    return kind(
        correlation_id=f"c-f{version}",
        producer="questions",
        question_id=qid,
        user_id=user,
        follow_version=version,
    )


def test_followers_hear_of_an_answer_once_in_batches_never_the_answering_doctor() -> None:
    settings = SETTINGS.model_copy(update={"follow_alert_batch": 2})
    world = World()
    world.alerts.settings = settings
    asyncio.run(world.alerts.on_question_posted(question("q1", asker="p1")))
    for user in ("f1", "f2", "f3", "dr-x", "dr-y"):
        asyncio.run(world.alerts.on_follow_changed(follow("q1", user, 1)))
    asyncio.run(world.alerts.on_follow_changed(follow("q1", "p1", 3)))  # the asker, again
    asyncio.run(world.alerts.on_answer_posted(answer("a1", "q1", doctor_id="dr-x")))
    asyncio.run(world.alerts.on_answer_posted(answer("a1", "q1", doctor_id="dr-x")))  # again
    for user in ("p1", "f1", "f2", "f3", "dr-y"):
        assert world.kinds(user) == ["new-answer"], user
    assert world.kinds("dr-x") == []


def test_a_late_follow_event_never_undoes_a_newer_unfollow_and_the_asker_may_opt_out() -> None:
    world = World()
    asyncio.run(world.alerts.on_question_posted(question("q1", asker="p1")))
    asyncio.run(world.alerts.on_follow_changed(follow("q1", "f1", 2, on=False)))
    asyncio.run(world.alerts.on_follow_changed(follow("q1", "f1", 1)))  # late, older
    asyncio.run(world.alerts.on_follow_changed(follow("q1", "p1", 2, on=False)))
    asyncio.run(world.alerts.on_answer_posted(answer("a1", "q1")))
    assert world.kinds("f1") == [] and world.kinds("p1") == []
