"""A simulated controller on a real pty, and the sutter platform's drives opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from drivers.base import PlatformOptions
from drivers.sutter.drive import SutterDrive
from drivers.sutter.platform import SutterPlatform
from drivers.sutter.sim import SutterSim


@pytest.fixture
async def sim(nursery: trio.Nursery, tmp_path: Path) -> SutterSim:
    simulator = SutterSim(link=str(tmp_path / "sutter-sim"), drives=(1, 2))
    await nursery.start(simulator.run)
    return simulator


async def open_drives(
    nursery: trio.Nursery, options: PlatformOptions
) -> tuple[SutterPlatform, list[SutterDrive]]:
    platform = SutterPlatform(options)
    found = await nursery.start(platform.run)
    drives = [m for m in found if isinstance(m, SutterDrive)]
    assert len(drives) == len(found)
    with trio.fail_after(5):
        for drive in drives:
            await drive.open()
    return platform, drives


@pytest.fixture
async def drives(sim: SutterSim, nursery: trio.Nursery) -> AsyncIterator[list[SutterDrive]]:
    _, found = await open_drives(nursery, PlatformOptions(serial_ports=(sim.path,)))
    yield found
    for drive in found:
        await drive.close()
