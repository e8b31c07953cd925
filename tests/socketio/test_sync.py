"""The send gate: one sender at a time, waiters woken in turn, none lost to cancellation."""

from __future__ import annotations

import trio
import trio.testing

from protocol.socketio.sync import SendGate


async def test_the_gate_admits_one_sender_at_a_time_and_wakes_the_next() -> None:
    gate = SendGate()
    inside = 0
    peak = 0
    order: list[int] = []

    async def sender(i: int) -> None:
        nonlocal inside, peak
        await gate.acquire()
        try:
            inside += 1
            peak = max(peak, inside)
            await trio.sleep(0.001)
            order.append(i)
            inside -= 1
        finally:
            gate.release()

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(sender, i)
    assert peak == 1
    assert sorted(order) == list(range(5))
    assert not gate.busy


async def test_a_cancelled_waiter_does_not_strand_the_others() -> None:
    gate = SendGate()
    await gate.acquire()
    got_it = trio.Event()
    impatient_scope = trio.CancelScope()

    async def impatient() -> None:
        with impatient_scope:
            await gate.acquire()
            gate.release()

    async def patient() -> None:
        await gate.acquire()
        got_it.set()
        gate.release()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(impatient)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(patient)
        await trio.testing.wait_all_tasks_blocked()
        impatient_scope.cancel()  # the first in line gives up
        await trio.testing.wait_all_tasks_blocked()
        gate.release()
        with trio.fail_after(2):
            await got_it.wait()
    assert not gate.busy
