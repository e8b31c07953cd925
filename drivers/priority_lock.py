"""A lock for one serial line where a halt goes ahead of queued reads.

Every serial platform has one command in flight per port; a stop must not wait
behind the position reads that clients poll, only behind the one transaction
already on the wire.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class PriorityLock:
    """A FIFO lock where priority waiters go ahead of ordinary ones.

    Halt takes it with priority: the transaction in flight finishes, then halt
    runs before any queued position read or move command.
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: collections.deque[trio.Event] = collections.deque()
        self._normal: collections.deque[trio.Event] = collections.deque()

    @property
    def locked(self) -> bool:
        return self._held

    async def acquire(self, *, priority: bool = False) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._held and not self._urgent and not self._normal:
            self._held = True
            await trio.lowlevel.cancel_shielded_checkpoint()  # never cancelled while holding
            return
        granted = trio.Event()
        queue = self._urgent if priority else self._normal
        queue.append(granted)
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():
                self.release()  # handed over just as we were cancelled: pass it on
            else:
                queue.remove(granted)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._normal):
            if queue:
                queue.popleft().set()  # ownership passes directly; _held stays True
                return
        self._held = False

    @asynccontextmanager
    async def hold(self, *, priority: bool = False) -> AsyncIterator[None]:
        await self.acquire(priority=priority)
        try:
            yield
        finally:
            self.release()
