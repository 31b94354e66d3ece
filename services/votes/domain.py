"""The votes service's pure rule: how one voter's vote moves an answer's tally.

`cast_vote.lua` applies the same rule inside Redis; an integration test checks
that the two agree on all nine (previous, new) transitions.
"""

from __future__ import annotations

from typing import Literal

Vote = Literal[1, 0, -1]
VALUES: tuple[Vote, ...] = (1, 0, -1)


def apply_vote(previous: int, new: int, helpful: int, unhelpful: int) -> tuple[int, int, bool]:
    """The tally after a voter moves from `previous` to `new` (1, -1, or 0 for none).

    Returns (helpful, unhelpful, changed); repeating a vote changes nothing.
    """
    if previous not in VALUES or new not in VALUES:
        raise ValueError("a vote is 1 (helpful), -1 (unhelpful) or 0 (none)")
    if previous == new:
        return helpful, unhelpful, False
    if previous == 1:
        helpful -= 1
    elif previous == -1:
        unhelpful -= 1
    if new == 1:
        helpful += 1
    elif new == -1:
        unhelpful += 1
    return max(helpful, 0), max(unhelpful, 0), True
