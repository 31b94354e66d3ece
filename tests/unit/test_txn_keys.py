"""A Txn declares each key once and refers to it by its KEYS index."""

from __future__ import annotations

from shared.atomic import Txn


def test_a_key_used_twice_is_declared_once() -> None:
    txn = Txn().limit("rl", "{t}:rl", 5, 60).call("SET", "{t}:a", "1").call("INCR", "{t}:rl")
    txn.call("HSET", "{t}:a", "f", "v")
    assert txn.keys == ["{t}:rl", "{t}:a"]
    assert [w["key"] for w in txn.writes] == [2, 1, 2]
    assert txn.guards[0]["key"] == 1


def test_keys_given_up_front_keep_their_places() -> None:
    txn = Txn(keys=["{t}:x", "{t}:y"]).call("SET", "{t}:y", "1").call("SET", "{t}:z", "2")
    assert txn.keys == ["{t}:x", "{t}:y", "{t}:z"]
    assert [w["key"] for w in txn.writes] == [2, 3]
