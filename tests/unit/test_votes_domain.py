"""The vote rule: how one voter's vote moves an answer's tally."""

from __future__ import annotations

import itertools

import pytest

from services.votes.domain import VALUES, apply_vote

# (previous, new) -> (helpful delta, unhelpful delta, changed)
EXPECTED = {
    (0, 0): (0, 0, False),
    (0, 1): (1, 0, True),
    (0, -1): (0, 1, True),
    (1, 0): (-1, 0, True),
    (1, 1): (0, 0, False),
    (1, -1): (-1, 1, True),
    (-1, 0): (0, -1, True),
    (-1, 1): (1, -1, True),
    (-1, -1): (0, 0, False),
}


@pytest.mark.parametrize(("previous", "new"), list(itertools.product(VALUES, VALUES)))
def test_every_transition_moves_the_tally_by_the_rule(previous: int, new: int) -> None:
    d_helpful, d_unhelpful, changed = EXPECTED[(previous, new)]
    assert apply_vote(previous, new, 10, 5) == (10 + d_helpful, 5 + d_unhelpful, changed)


def test_repeating_a_vote_changes_nothing() -> None:
    for value in VALUES:
        assert apply_vote(value, value, 3, 4) == (3, 4, False)


def test_a_vote_cast_and_retracted_leaves_the_tally_as_it_was() -> None:
    helpful, unhelpful, _ = apply_vote(0, 1, 0, 0)
    helpful, unhelpful, _ = apply_vote(1, -1, helpful, unhelpful)
    assert (helpful, unhelpful) == (0, 1)
    assert apply_vote(-1, 0, helpful, unhelpful) == (0, 0, True)


def test_counts_never_go_negative() -> None:
    assert apply_vote(1, 0, 0, 0) == (0, 0, True)
    assert apply_vote(-1, 1, 0, 0) == (1, 0, True)


@pytest.mark.parametrize(("previous", "new"), [(2, 1), (1, 5), (0, -2)])
def test_only_one_zero_and_minus_one_are_votes(previous: int, new: int) -> None:
    with pytest.raises(ValueError, match="a vote is"):
        apply_vote(previous, new, 0, 0)
