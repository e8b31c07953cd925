"""1,000 connections opened and dropped leave no Trio task behind in the daemon.

Tasks are invisible from outside the process, so this runs the daemon in the
test's own Trio loop and counts every task in the tree after the churn.
"""

from __future__ import annotations

import os

import trio

from drivers.fake import FakePlatform
from ephysd.actor import ActorLimits
from ephysd.app import Daemon
from ephysd.config import Settings
from tests.service.sio import Refused, open_and_drop, sio_client


def task_count() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count = 0
    stack = [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def test_a_thousand_dropped_connections_leave_no_task_or_descriptor() -> None:
    settings = Settings(listen="127.0.0.1:0", ping_interval_ms=300, ping_timeout_ms=300)
    daemon = Daemon(settings, FakePlatform(), limits=ActorLimits())
    async with trio.open_nursery() as nursery:
        address = await nursery.start(daemon.run)
        assert address is not None
        port = address[1]
        async with sio_client(port) as client:
            await client.call("get_version")
        await trio.sleep(0.5)
        tasks_before, fds_before = task_count(), len(os.listdir("/proc/self/fd"))

        async def churn(worker: int) -> None:
            for index in range(worker, 1000, 20):
                kind = index % 4
                if kind == 0:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.aclose()
                elif kind == 1:
                    await open_and_drop(port)
                else:
                    try:
                        async with sio_client(port) as client:
                            if kind == 2:
                                await client.call("get_position", "0")
                    except Refused:
                        pass

        async with trio.open_nursery() as clients:
            for worker in range(20):
                clients.start_soon(churn, worker)

        def settled() -> bool:
            return (
                task_count() <= tasks_before
                and len(os.listdir("/proc/self/fd")) <= fds_before
                and daemon.policy is not None
                and daemon.policy.controller is None
            )

        with trio.move_on_after(2):  # abandoned sessions end by ping timeout (0.6 s)
            while not settled():  # noqa: ASYNC110
                await trio.sleep(0.05)
        tasks_after, fds_after = task_count(), len(os.listdir("/proc/self/fd"))
        print(f"tasks {tasks_before} -> {tasks_after}, fds {fds_before} -> {fds_after}")
        assert tasks_after <= tasks_before, (tasks_before, tasks_after)
        assert fds_after <= fds_before, (fds_before, fds_after)
        assert daemon.policy is not None and daemon.policy.controller is None
        nursery.cancel_scope.cancel()
