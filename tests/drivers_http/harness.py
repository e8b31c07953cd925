"""A vendor emulator on a real port plus the platform under test, for the HTTP driver tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from drivers.base import Manipulator
from drivers.http_common import Dialect, HttpPlatform
from drivers.http_sim import HttpSim

STALE_AFTER_S = 0.5

VERTICAL, UNCALIBRATED, TILTED = "SN47520", "SN47521", "SN47522"
"""The Parallax emulator's first three stages (drivers/parallax/sim.py): calibrated and
vertical, without calibration, calibrated and tilted."""


@dataclass
class EmulatorServer:
    """Runs an emulator in its own cancel scope so a test can take it down and back up."""

    sim: HttpSim
    nursery: trio.Nursery
    port: int = 0
    _scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def start(self) -> int:
        self._scope = trio.CancelScope()
        scope = self._scope

        async def serve(*, task_status: trio.TaskStatus[int]) -> None:
            with scope:
                await self.sim.serve("127.0.0.1", self.port, task_status=task_status)

        self.port = await self.nursery.start(serve)
        return self.port

    def stop(self) -> None:
        self._scope.cancel()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Rig:
    server: EmulatorServer
    platform: HttpPlatform
    manipulators: dict[str, Manipulator]


@asynccontextmanager
async def running_rig(sim: HttpSim, dialect: Dialect) -> AsyncIterator[Rig]:
    async with trio.open_nursery() as nursery:
        server = EmulatorServer(sim, nursery)
        await server.start()
        platform = HttpPlatform(dialect, server.url, stale_after=STALE_AFTER_S)
        manipulators = await nursery.start(platform.run)
        yield Rig(server, platform, {m.id: m for m in manipulators})
        nursery.cancel_scope.cancel()


def unused_port() -> int:
    """A loopback port nobody listens on (bound and released just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_fresh(manipulator: Manipulator) -> None:
    """Wait (bounded) until the manipulator's reads work again."""
    with trio.fail_after(3.0):
        while True:
            try:
                await manipulator.position()
                return
            except Exception:
                await trio.sleep(0.02)


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> float:
    """Poll an emulator's state until ``condition`` holds (bounded); return when it did.

    The emulators have no events to wait on, and a test must not change them to get one.
    """
    with trio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.002)
    return trio.current_time()
