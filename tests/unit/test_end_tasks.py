"""`end_tasks` (shared/service.py): a stop's tasks all end, even one whose cancellation
was lost (as Python 3.11's asyncio.wait_for inside redis-py loses it) and one started
while the stop waited."""

from __future__ import annotations

import asyncio

from shared.service import end_tasks


async def loses_its_first_cancel(rounds: list[int]) -> None:
    """A watcher loop whose first cancel is lost, as one inside a Redis command's write."""
    lost = False
    while True:
        rounds.append(1)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if lost:
                raise
            lost = True


async def test_a_task_that_lost_its_cancel_is_cancelled_again() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(loses_its_first_cancel(rounds))
    await asyncio.sleep(0.02)
    await asyncio.wait_for(end_tasks([task], every_s=0.05), timeout=5)
    assert task.cancelled()


async def test_a_task_started_while_waiting_is_ended_too() -> None:
    tasks: list[asyncio.Task[None]] = []

    async def starts_a_watcher_when_cancelled() -> None:
        # A connect task that outlived its cancel goes on to start the watchers.
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            tasks.append(asyncio.create_task(asyncio.sleep(60)))

    tasks.append(asyncio.create_task(starts_a_watcher_when_cancelled()))
    await asyncio.sleep(0)
    await asyncio.wait_for(end_tasks(tasks, every_s=0.05), timeout=5)
    assert len(tasks) == 2 and all(task.done() for task in tasks)


async def test_a_failed_task_does_not_fail_the_stop() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await end_tasks([task])
    assert isinstance(task.exception(), RuntimeError)


async def test_an_end_that_is_itself_cancelled_still_ends_its_tasks_first() -> None:
    # A loop ending its helper as it is ended, by an end_tasks that cancels it again
    # every round: its own end_tasks used to give up at the second cancel.
    rounds: list[int] = []
    helper = asyncio.create_task(loses_its_first_cancel(rounds))

    async def loop_with_a_helper() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await end_tasks([helper], every_s=0.05)

    loop = asyncio.create_task(loop_with_a_helper())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(end_tasks([loop], every_s=0.01), timeout=5)
    assert loop.cancelled() and helper.cancelled()
