"""Idempotency-Key records and the write limit, without Redis."""

from __future__ import annotations

import json

import pytest

from shared import idempotency, ratelimit
from shared.atomic import Txn
from shared.errors import RateLimited
from shared.idempotency import IdempotencyKeyReused, IdempotentWrite
from shared.ratelimit import WriteLimit


def test_no_key_means_no_record_and_no_fingerprint_work() -> None:
    assert IdempotentWrite.of(None, {"a": 1}) is None
    assert idempotency.reply_record("{t}", "u", None, {"id": "x"}, 60) is None


def test_a_record_replays_its_reply_for_the_same_body_only() -> None:
    write = IdempotentWrite.of("k", {"b": 2, "a": 1})
    record = idempotency.reply_record("{t}", "u", write, {"id": "x"}, 60)
    assert record is not None and record.ttl_s == 60
    assert record.key == idempotency.record_key("{t}", "u", "k")
    assert json.loads(record.value)["status"] == 201
    same = IdempotentWrite.of("k", {"a": 1, "b": 2})
    assert idempotency.replay(record.value, same) == {"id": "x"}
    with pytest.raises(IdempotencyKeyReused):
        idempotency.replay(record.value, IdempotentWrite.of("k", {"a": 2}))


def test_keys_are_per_user_and_never_hold_the_raw_key() -> None:
    mine = idempotency.record_key("{t}", "u1", "secret-key")
    assert mine != idempotency.record_key("{t}", "u2", "secret-key")
    assert "secret-key" not in mine


def test_admins_are_the_one_exemption_from_the_write_limit() -> None:
    limit = WriteLimit("{t}", 5, 60)
    assert limit.applies_to("patient") and limit.applies_to("doctor")
    assert not limit.applies_to("admin")
    assert limit.add_to(Txn(), "root", "admin").guards == []
    txn = limit.add_to(Txn(), "pat", "patient")
    assert txn.guard_names == [ratelimit.GUARD]
    assert txn.guards[0] == {"kind": "limit", "key": 1, "limit": 5, "window_s": 60}
    assert txn.keys[0].startswith("{t}:rl:pat:")


def test_over_the_limit_says_when_to_retry() -> None:
    refusal = WriteLimit("{t}", 5, 60).exceeded("0")
    assert isinstance(refusal, RateLimited) and refusal.retry_after_s == 1
    assert refusal.message == "too many writes: at most 5 per 60 s"
