"""A simulated controller on a real pty, and a driver opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from drivers.pty_sim import PtyDevice
from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.settings import ManipulatorSettings
from drivers.scientifica.sim import ScientificaSim


@pytest.fixture
async def sim(nursery: trio.Nursery, tmp_path: Path) -> ScientificaSim:
    """An IVM on firmware 3 (38400 baud, 0.01 µm counts) at its zero."""
    simulator = ScientificaSim(link=str(tmp_path / "scientifica-sim"))
    await nursery.start(simulator.run)
    return simulator


@pytest.fixture
async def manipulator(sim: ScientificaSim) -> AsyncIterator[ScientificaManipulator]:
    device = ScientificaManipulator("1", sim.path)
    with trio.fail_after(5):
        await device.open()
    yield device
    await device.close()


async def open_on(nursery: trio.Nursery, sim: PtyDevice, **settings: Any) -> ScientificaManipulator:
    """Start ``sim`` and open manipulator "1" on it with ``settings`` (a test's own controller)."""
    path = await nursery.start(sim.run)
    device = ScientificaManipulator("1", path, ManipulatorSettings(**settings))
    with trio.fail_after(5):
        await device.open()
    return device
