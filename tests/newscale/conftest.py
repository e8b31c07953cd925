"""A simulated bridge on a real pty, and a driver opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.sim import NewScaleSim


@pytest.fixture
async def sim(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[NewScaleSim]:
    simulator = NewScaleSim(link=str(tmp_path / "newscale-sim"))
    await nursery.start(simulator.run)
    yield simulator
    # Every test: the driver sent nothing outside the USB bridge's framing (no "TR").
    assert simulator.violations == []


@pytest.fixture
async def manipulator(sim: NewScaleSim) -> AsyncIterator[NewScaleManipulator]:
    device = NewScaleManipulator("1", sim.path)
    with trio.fail_after(2):
        await device.open()
    yield device
    await device.close()
