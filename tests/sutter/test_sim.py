"""The simulator as a referee: it must catch the violations the tests assert never happen."""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from drivers.base import PlatformOptions
from drivers.sutter.codec import encode_position, move_body
from drivers.sutter.sim import SutterSim
from tests.serial_e2e import raw_pty, simulator_process
from tests.sutter.conftest import open_drives


@pytest.fixture
async def port(sim: SutterSim) -> AsyncIterator[trio.lowlevel.FdStream]:
    async with raw_pty(sim.path) as stream:
        yield stream


async def receive(stream: trio.lowlevel.FdStream, count: int) -> bytes:
    data = b""
    with trio.fail_after(2):
        while len(data) < count:
            data += await stream.receive_some(count - len(data))
    return data


async def test_a_proper_s_move_ends_with_cr_at_the_speed_bytes_rate(
    sim: SutterSim, port: trio.lowlevel.FdStream
) -> None:
    await port.send_all(b"S")
    await trio.sleep(0.035)
    start = trio.current_time()
    await port.send_all(move_body(15, (200000 + 1300 * 16 // 5, 200000, 200000)))  # 0.26 mm
    assert await receive(port, 1) == b"\r"
    assert trio.current_time() - start >= 0.2 - 0.01  # 260 um at 1300 um/s
    await port.send_all(b"C")
    assert await receive(port, 14) == encode_position(1, (204160, 200000, 200000))
    assert sim.violations == []


async def test_bytes_during_a_move_a_hasty_s_and_a_negative_target_are_violations(
    sim: SutterSim, port: trio.lowlevel.FdStream
) -> None:
    await port.send_all(b"S" + move_body(0, (0, 200000, 200000)))  # no pause
    await trio.sleep(0.05)
    await port.send_all(b"C")  # during the move
    await port.send_all(b"\x03")
    assert await receive(port, 1) == b"\r"
    assert sim.moving is None
    await port.send_all(b"S")
    await trio.sleep(0.035)
    await port.send_all(b"\x00" + struct.pack("<iii", -5, 0, 0))
    assert await receive(port, 1) == b"\r"
    await port.send_all(b"C")  # the simulator reads this, then waits: S comes after that
    await receive(port, 14)
    await port.send_all(b"S")
    await trio.sleep(0.01)  # a pause, but too short
    await port.send_all(move_body(0, (200000, 200000, 200000)))
    await trio.sleep(0.05)
    assert len(sim.violations) == 4, sim.violations
    assert "S packet written at once" in sim.violations[0]
    assert "during a move" in sim.violations[1]
    assert "negative" in sim.violations[2]
    assert re.fullmatch(r"S body at most \d+\.\d ms after S \(< 30 ms\)", sim.violations[3])


async def test_a_scripted_session_on_two_drives_breaks_no_rule(
    sim: SutterSim, nursery: trio.Nursery
) -> None:
    _, (one, two) = await open_drives(nursery, PlatformOptions(serial_ports=(sim.path,)))
    async with trio.open_nursery() as session:
        session.start_soon(one.move_depth, 13.0, 1.0)
        session.start_soon(two.move_to, (12.0, 12.2, 12.4, 0.0), 0.3)
        for _ in range(10):
            await one.position()
            await two.position()
            await trio.sleep(0.05)
        await one.halt()  # a stop while both move
        await two.halt()
    with trio.move_on_after(0.6):
        await two.move_depth(12.0, 0.02)  # stepped, then stopped
    await one.move_depth(12.5, 2.0)
    assert len(sim.commands(b"S")) >= 4
    assert sim.interrupts
    assert sim.violations == []


async def test_the_simulator_process_prints_its_pty_and_obeys_stdin(tmp_path: Path) -> None:
    link = tmp_path / "sutter-sim"
    async with simulator_process("drivers.sutter.sim", link, "--drives", "1,4") as process:
        assert await process.line() == f"PTY {link}"
        async with trio.open_nursery() as inner:
            _, drives = await open_drives(inner, PlatformOptions(serial_ports=(str(link),)))
            assert [d.id for d in drives] == ["1", "4"]
            assert await drives[1].position() == pytest.approx((12.5, 12.5, 12.5, 12.5))
            inner.cancel_scope.cancel()
        await process.command("violations")
        assert await process.line() == "VIOLATIONS 0"
        await process.command("close")
        await trio.sleep(0.2)
        assert not link.exists()
        await process.command("reopen")
        assert await process.line() == f"PTY {link}"
        await process.command("quit")
        with trio.fail_after(5):
            assert await process.process.wait() == 0
