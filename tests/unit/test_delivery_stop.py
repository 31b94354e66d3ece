"""The delivery worker's stop ends everything it started, promptly, even when its Redis
calls are blocked and lose a cancel (Python 3.11's asyncio.wait_for inside redis-py can:
see shared.service.end_tasks)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from services.notify.delivery.store import Entry, OutboxStore
from services.notify.delivery.worker import DeliveryWorker
from services.notify.settings import NotifySettings
from shared.service import end_tasks

SETTINGS = NotifySettings(jwt_secret="x" * 32)  # type: ignore[call-arg]
#: Far more than the stop needs; a stop that left work running never got there.
STOP_S = 5


async def blocked_losing_first_cancel(calls: list[str], name: str) -> None:
    """A Redis call that blocks (a stalled server) and loses the first cancel it gets."""
    calls.append(name)
    lost = False
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost:
                raise
            lost = True


class BlockedOutbox:
    """An outbox whose every call blocks once an entry is handed out."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.handed_out = False

    async def ensure_group(self) -> None:
        return None

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        if not self.handed_out:
            self.handed_out = True
            return [("1-0", {"nid": "n" + "0" * 24, "recipient": "d1", "channels": "webhook"})]
        await blocked_losing_first_cancel(self.calls, "read")
        return []

    async def claim(self, consumer: str, idle_ms: int, count: int) -> list[Entry]:
        await blocked_losing_first_cancel(self.calls, "claim")
        return []

    async def deliveries(self, entry_id: str) -> int:
        await blocked_losing_first_cancel(self.calls, "deliveries")
        return 1


async def test_a_worker_blocked_in_redis_stops_promptly_and_leaves_nothing_running() -> None:
    outbox = BlockedOutbox()
    worker = DeliveryWorker(cast(OutboxStore, outbox), cast(Any, None), cast(Any, None), SETTINGS)
    run = asyncio.create_task(worker.run())
    while len(outbox.calls) < 3:  # read, claim and the delivery all blocked
        await asyncio.sleep(0.01)
    deliveries = set(worker._tasks)
    assert len(deliveries) == 1

    async def stop() -> None:
        # As notify's lifespan does: the worker, then its loop (notify's Background).
        await worker.stop(grace_s=0.1)
        still_running = [task for task in deliveries if not task.done()]
        assert not still_running, "a delivery whose cancel was lost outlived the stop"
        await end_tasks([run])

    try:
        await asyncio.wait_for(stop(), timeout=STOP_S)
        assert run.done() and not worker._tasks
        # The claimer the loop started has ended with it: no task of the worker is left.
        assert not others(), "the worker left a task running"
    finally:
        await end_tasks(others())  # what a failed test left, so that the loop can close


def others() -> list[asyncio.Task[None]]:
    """The tasks running beside the test's own."""
    return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
