"""The port's priority lock: halt goes first, and cancellation never leaves it held."""

from __future__ import annotations

import trio
import trio.testing

from drivers.priority_lock import PriorityLock


async def test_priority_waiter_goes_ahead_of_earlier_ordinary_waiters() -> None:
    lock = PriorityLock()
    order: list[str] = []

    async def take(name: str, priority: bool) -> None:
        async with lock.hold(priority=priority):
            order.append(name)

    async with trio.open_nursery() as nursery:
        await lock.acquire()
        for name in ("read1", "read2"):
            nursery.start_soon(take, name, False)
            await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "halt", True)
        await trio.testing.wait_all_tasks_blocked()
        lock.release()
    assert order == ["halt", "read1", "read2"]
    assert not lock.locked


async def test_cancelled_acquire_of_a_free_lock_leaves_it_free() -> None:
    lock = PriorityLock()
    with trio.CancelScope() as scope:
        scope.cancel()
        await lock.acquire()
    assert not lock.locked
    await lock.acquire()  # still usable
    lock.release()


async def test_cancelled_waiter_leaves_the_queue_and_the_lock_passes_on() -> None:
    lock = PriorityLock()
    got: list[str] = []
    doomed = trio.CancelScope()

    async def take(name: str, scope: trio.CancelScope) -> None:
        with scope:
            async with lock.hold():
                got.append(name)

    await lock.acquire()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "cancelled", doomed)
        await trio.testing.wait_all_tasks_blocked()
        doomed.cancel()
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "next", trio.CancelScope())
        await trio.testing.wait_all_tasks_blocked()
        lock.release()
    assert got == ["next"]
    assert not lock.locked


async def test_waiter_cancelled_just_as_it_is_granted_passes_the_lock_on() -> None:
    lock = PriorityLock()
    got: list[str] = []
    await lock.acquire()
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def granted_then_cancelled() -> None:
            with scope:
                await lock.acquire()
                got.append("first")
                lock.release()

        async def second() -> None:
            async with lock.hold():
                got.append("second")

        nursery.start_soon(granted_then_cancelled)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        lock.release()  # hands over to the first waiter...
        scope.cancel()  # ...which is cancelled before it runs
    assert got == ["first", "second"]  # a granted lock is used once, then passed on
    assert not lock.locked
