"""The seed page for the e2e tests: demo.scenario with the tests' signing secret."""

from __future__ import annotations

from typing import Any

from demo.scenario import SEED, SeedPlayer, ranking_matches_seed
from tests.support import token

__all__ = ["SEED", "alerted", "play_seed", "ranking_matches_seed"]


def player(urls: dict[str, str]) -> SeedPlayer:
    """A seed player signing with the test secret."""
    return SeedPlayer(urls, lambda sub, role, name: token(sub, role, name))


def play_seed(urls: dict[str, str]) -> dict[str, Any]:
    """Doctors register, the patient asks, doctors answer, readers vote; the final page."""
    played = player(urls).play()
    played["asker_headers"] = {"Authorization": f"Bearer {token(played['asker'], 'patient')}"}
    return played


def alerted(urls: dict[str, str], doctors: list[str], qid: str) -> dict[str, dict[str, Any]]:
    """The question-match reasons of the doctors alerted of `qid` (each at most once)."""
    return player(urls).alerted(doctors, qid)
