"""The handler pool: concurrent up to its limit, reuses idle workers, waits when full."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from protocol.socketio.pool import HandlerPool


async def test_items_run_concurrently_up_to_the_limit_and_submit_waits_beyond_it() -> None:
    gates = {i: trio.Event() for i in range(3)}
    started: list[int] = []

    async def run(i: int) -> None:
        started.append(i)
        await gates[i].wait()

    async with trio.open_nursery() as nursery:
        pool = HandlerPool(nursery, 2, run)
        await pool.submit(0)
        await pool.submit(1)
        third_submitted = trio.Event()

        async def submit_third() -> None:
            await pool.submit(2)
            third_submitted.set()

        nursery.start_soon(submit_third)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(started) == [0, 1] and not third_submitted.is_set()
        gates[1].set()
        with trio.fail_after(2):
            await third_submitted.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(started) == [0, 1, 2]
        assert pool.busy == 2
        gates[0].set()
        gates[2].set()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.busy == 0
        nursery.cancel_scope.cancel()


async def test_idle_workers_are_reused_instead_of_spawning_new_tasks() -> None:
    done: list[int] = []

    async def run(i: int) -> None:
        done.append(i)

    async with trio.open_nursery() as nursery:
        pool = HandlerPool(nursery, 8, run)
        for i in range(100):
            await pool.submit(i)
            await trio.testing.wait_all_tasks_blocked()
        assert done == list(range(100))
        assert len(nursery.child_tasks) == 1
        nursery.cancel_scope.cancel()


def test_a_pool_needs_at_least_one_worker() -> None:
    with pytest.raises(ValueError):
        HandlerPool(None, 0, None)  # type: ignore[arg-type]
