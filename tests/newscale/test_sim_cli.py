"""``python -m drivers.newscale.sim``: what ``make run`` starts, with fault control on stdin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trio

from drivers.newscale.driver import NewScaleManipulator
from tests.serial_e2e import simulator_process, until_lost


async def test_simulator_prints_its_pty_and_obeys_fault_commands(tmp_path: Path) -> None:
    link = tmp_path / "newscale-sim"
    async with simulator_process("drivers.newscale.sim", link) as sim:
        assert await sim.line() == f"PTY {link}"

        device = NewScaleManipulator("1", str(link))
        await device.open()
        assert np.allclose(await device.position(), 7.5)

        await sim.command("close")
        await until_lost(device)

        await sim.command("reopen")
        assert await sim.line() == f"PTY {link}"
        await device.open()
        assert np.allclose(await device.position(), 7.5)
        await device.close()

        await sim.command("quit")
        with trio.fail_after(5):
            assert await sim.process.wait() == 0
