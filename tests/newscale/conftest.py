"""A simulated bridge on a real pty, and a driver opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.sim import NewScaleSim


@pytest.fixture
async def sim(nursery: trio.Nursery, tmp_path: Path) -> NewScaleSim:
    simulator = NewScaleSim(link=str(tmp_path / "newscale-sim"))
    await nursery.start(simulator.run)
    return simulator


@pytest.fixture
async def manipulator(sim: NewScaleSim) -> AsyncIterator[NewScaleManipulator]:
    device = NewScaleManipulator("1", sim.path)
    with trio.fail_after(2):
        await device.open()
    yield device
    await device.close()
