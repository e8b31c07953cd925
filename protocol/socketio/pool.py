"""A per-connection pool of reusable handler tasks.

Each incoming event runs concurrently with the connection's others (a slow
handler must never hold up ``stop``), but spawning a fresh Trio task per event
costs more than the rest of the Socket.IO work on a tiny event. Workers here
are spawned on demand up to a limit and then reused: handing an event to an
idle worker is a deque append and one wake-up. When every worker is busy and
the limit is reached, ``submit`` waits, which pauses the connection's reads:
backpressure instead of unbounded growth.

An item may also run inline on the caller's own task (``inline``), which
saves even the wake-up of a worker; it counts against the same limit, and
``wait_inline`` waits for such runs to end (cancelling them is the caller's
business: they run on its tasks).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import trio
from trio.lowlevel import ParkingLot

T = TypeVar("T")


class HandlerPool(Generic[T]):
    """Runs ``run(item)`` for each submitted item on at most ``limit`` concurrent tasks.

    ``run`` must handle its own exceptions; one escaping ends that worker and,
    through the nursery, the connection.
    """

    def __init__(self, nursery: trio.Nursery, limit: int, run: Callable[[T], Awaitable[None]]):
        if limit < 1:
            raise ValueError("a handler pool needs at least one worker")
        self._nursery = nursery
        self._limit = limit
        self._run = run
        self._items: deque[T] = deque()
        self._workers = 0
        self._idle = 0  # workers parked in _work_lot, each owed exactly one item
        self._work_lot = ParkingLot()
        self._free_lot = ParkingLot()
        self._inline = 0
        # Items handed to a worker that has not started them yet.
        self._starting = 0
        self._inline_done = ParkingLot()

    @property
    def busy(self) -> int:
        """Items running now, on workers or inline."""
        return self._workers - self._idle + self._inline

    def try_submit(self, item: T) -> bool:
        """Start ``run(item)`` soon if a worker is free or may be added; never waits."""
        if self._workers - self._idle + self._inline >= self._limit:
            return False
        self._starting += 1
        if self._idle:
            self._idle -= 1
            self._items.append(item)
            self._work_lot.unpark()
            return True
        self._workers += 1
        self._nursery.start_soon(self._worker, item)
        return True

    def inline(self, item: T) -> Coroutine[Any, Any, None] | None:
        """A coroutine running ``run(item)`` for the caller to drive on its own task.

        None when the limit is reached, or while an item handed to a worker has
        not started yet (so items still start in the order they came). The run
        is counted from its first step until it ends.
        """
        if self._starting or self._workers - self._idle + self._inline >= self._limit:
            return None
        return self._run_inline(item)

    async def _run_inline(self, item: T) -> None:
        self._inline += 1
        try:
            await self._run(item)
        finally:
            self._inline -= 1
            if self._free_lot:
                self._free_lot.unpark()
            if not self._inline and self._inline_done:
                self._inline_done.unpark_all()

    async def wait_inline(self) -> None:
        """Wait until no item runs inline any more."""
        while self._inline:
            await self._inline_done.park()

    async def submit(self, item: T) -> None:
        """Start ``run(item)`` soon; waits only while all ``limit`` workers are busy."""
        while not self.try_submit(item):
            await self._free_lot.park()

    async def _worker(self, item: T) -> None:
        try:
            while True:
                self._starting -= 1
                await self._run(item)
                # Going idle and parking happen with no checkpoint in between,
                # so a submitter that sees _idle > 0 always finds us parked.
                self._idle += 1
                if self._free_lot:
                    self._free_lot.unpark()
                await self._work_lot.park()
                item = self._items.popleft()
        finally:
            self._workers -= 1
