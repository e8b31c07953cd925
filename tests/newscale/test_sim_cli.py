"""``python -m drivers.newscale.sim``: what ``make run`` starts, with fault control on stdin."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from drivers.base import DeviceLost
from drivers.newscale.driver import NewScaleManipulator


async def read_line(stream: trio.abc.ReceiveStream, buf: bytearray) -> str:
    with trio.fail_after(10):
        while b"\n" not in buf:
            data = await stream.receive_some(1024)
            if not data:
                raise EOFError("simulator exited")
            buf += data
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode()


async def test_simulator_prints_its_pty_and_obeys_fault_commands(tmp_path: Path) -> None:
    link = tmp_path / "newscale-sim"
    async with trio.open_nursery() as nursery:
        run_sim = functools.partial(
            trio.run_process,
            [sys.executable, "-m", "drivers.newscale.sim", "--link", str(link)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            check=False,
        )
        process: trio.Process = await nursery.start(run_sim)
        assert process.stdin is not None and process.stdout is not None
        buf = bytearray()
        assert await read_line(process.stdout, buf) == f"PTY {link}"

        device = NewScaleManipulator("1", str(link))
        await device.open()
        assert np.allclose(await device.position(), 7.5)

        await process.stdin.send_all(b"close\n")
        with trio.fail_after(2), pytest.raises(DeviceLost):
            while True:
                await device.position()
                await trio.sleep(0.01)

        await process.stdin.send_all(b"reopen\n")
        assert await read_line(process.stdout, buf) == f"PTY {link}"
        await device.open()
        assert np.allclose(await device.position(), 7.5)
        await device.close()

        await process.stdin.send_all(b"quit\n")
        with trio.fail_after(5):
            assert await process.wait() == 0
