"""Which events a cluster Committer sends through the relay outbox (pure: key slots only)."""

from __future__ import annotations

from redis.crc import key_slot

from shared import streams
from shared.atomic import Txn, relayed
from shared.events import QuestionEdited, QuestionPosted
from shared.relay import outbox_key

HOME = streams.slot_tag(streams.QUESTION_POSTED)
OUTBOX = outbox_key(HOME)


def edited() -> QuestionEdited:
    return QuestionEdited(
        correlation_id="c",
        producer="questions",
        question_id="q1",
        title="A title long enough",
        body="b",
        revision=2,
        edited_at="2026-12-01T00:00:00+00:00",  # type: ignore[arg-type]
    )


def test_an_away_event_goes_to_the_outbox_and_its_stream_is_not_even_declared() -> None:
    txn = Txn().absent("revision", f"{HOME}:q:q1:rev:2").call("SET", f"{HOME}:q:q1", "x")
    out = relayed(txn.publish(edited()), OUTBOX)
    assert streams.QUESTION_EDITED not in out.keys
    assert {key_slot(k.encode()) for k in out.keys} == {key_slot(HOME.encode())}
    xadd = out.writes[-1]
    assert xadd["command"] == "XADD" and out.keys[xadd["key"] - 1] == OUTBOX
    assert list(xadd["args"][:3]) == ["*", "stream", streams.QUESTION_EDITED]
    assert out.guards[0]["key"] == out.keys.index(f"{HOME}:q:q1:rev:2") + 1
    assert out.guard_names == ["revision"]


def test_a_home_event_and_another_slots_state_are_left_alone() -> None:
    posted = QuestionPosted(
        correlation_id="c",
        producer="questions",
        question_id="q1",
        title="A title long enough",
        body="b",
        topics=["botox"],
        specialties=["dermatology"],
        asker_id="a",
    )
    home = Txn().call("SET", f"{HOME}:q:q1", "x").publish(posted)
    assert relayed(home, OUTBOX) is home
    # notify's directory keeps its keys in its own stream's slot: not the outbox's business.
    tag = streams.slot_tag(streams.DOCTOR_PROFILE_CHANGED)
    directory = Txn().call("HSET", f"{tag}:doc:d1", "v", "1")
    directory.call("XADD", streams.DOCTOR_PROFILE_CHANGED, "*", "__data__", "{}")
    assert relayed(directory, outbox_key(streams.slot_tag(streams.NOTIFICATION_SENT))) is directory


def test_conditions_on_writes_follow_their_keys_into_the_rewritten_txn() -> None:
    hidden = f"{HOME}:hidden:q1"
    txn = Txn().absent("revision", f"{HOME}:q:q1:rev:2")
    txn.call("SET", f"{HOME}:q:q1", "x", unless=[hidden])
    txn.call("SET", f"{HOME}:q:q1:note", "y", when=[hidden, f"{HOME}:other"])
    out = relayed(txn.publish(edited()), OUTBOX)
    assert out is not txn
    unless, when = out.writes[0]["unless"], out.writes[1]["when"]
    assert [out.keys[i - 1] for i in unless] == [hidden]
    assert [out.keys[i - 1] for i in when] == [hidden, f"{HOME}:other"]
