"""Faults through the pty: error replies, garbage, silence, the cable pulled, and recovery."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from drivers.base import DeviceError, DeviceLost, Vector
from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.protocol import ControllerError
from drivers.scientifica.sim import ScientificaSim
from tests.serial_e2e import fault_after, unplug_and_replug

ZERO: Vector = (10.0, 10.0, 10.0, 10.0)
FAR: Vector = (10.0, 15.0, 10.0, 0.0)


async def test_an_error_reply_is_an_error_naming_its_code_and_the_next_command_works(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    sim.next_error = 7
    with pytest.raises(ControllerError, match=r"controller answered error 7 to 'P'"):
        await manipulator.position()
    assert await manipulator.position() == ZERO


async def test_a_garbled_reply_is_drained_and_the_command_sent_again(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    for garbage in (b"\x00\xff\rgarbage", b"12\t", b"A\r", b"\r\r", b"1\t2\r"):
        sent = len(sim.commands("P"))
        sim.send_garbage_before_next_reply(garbage)
        assert await manipulator.position() == ZERO
        assert len(sim.commands("P")) == sent + 2


async def test_a_dropped_reply_is_sent_again(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    sim.drop_next_reply()
    with trio.fail_after(1):
        assert await manipulator.position() == ZERO
    assert sim.commands("P") == ["P", "P"]


async def test_a_reply_garbled_twice_is_an_error_within_a_second(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    sim.baud = 9600  # power-cycled: it fell back to 9600, every reply is noise now
    with trio.fail_after(1), pytest.raises(DeviceError, match=r"garbled reply .* sent twice"):
        await manipulator.position()


async def test_a_reply_missing_twice_means_the_controller_is_silent_device_lost_within_a_second(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    sim.drop_next_reply(2)
    with trio.fail_after(1), pytest.raises(DeviceLost, match="silent"):
        await manipulator.position()
    assert await manipulator.position() == ZERO  # it talks again: the next command works


async def test_a_controller_going_silent_mid_move_is_device_lost_within_a_second(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    def go_silent() -> None:
        sim.silent = True

    async with fault_after(0.3, go_silent):
        with trio.fail_after(2.5), pytest.raises(DeviceLost, match="silent"):
            await manipulator.move_to(FAR, 1.0)
    assert "STOP" in sim.commands()  # it was told to stop anyway, in case it still hears


async def test_the_cable_pulled_mid_move_is_device_lost_at_once_and_reads_fail_fast(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    async with fault_after(0.3, sim.close_device):
        with trio.fail_after(1), pytest.raises(DeviceLost, match=r"gone|not open"):
            await manipulator.move_to(FAR, 1.0)
    for _ in range(2):
        with trio.fail_after(0.5), pytest.raises(DeviceLost):
            await manipulator.position()


async def test_the_manipulator_comes_back_by_reopening_when_the_port_returns(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    await manipulator.move_to((10.2, 10.0, 10.0, 0.0), 2.0)
    position = await unplug_and_replug(sim, manipulator, timeout_s=5)
    assert position == pytest.approx((10.2, 10.0, 10.0, 10.0))


async def test_a_port_that_does_not_exist_is_device_lost(tmp_path: Path) -> None:
    device = ScientificaManipulator("1", str(tmp_path / "ttyUSB9"))
    with trio.fail_after(1), pytest.raises(DeviceLost, match="cannot open"):
        await device.open()
    await device.close()


async def test_a_port_opened_by_another_process_is_refused(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    second = ScientificaManipulator("2", sim.path)
    with pytest.raises(DeviceLost, match=r"cannot open|lock"):
        await second.open()
    assert await manipulator.position() == ZERO  # the owner is undisturbed
    assert sim.commands("SCIENTIFICA") == ["scientifica", "scientifica", "scientifica"]


async def test_stop_goes_ahead_of_queued_position_reads(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    before = len(sim.received)
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(manipulator.position)
        await trio.lowlevel.checkpoint()
        nursery.start_soon(manipulator.halt)
    words = [r.word for r in sim.received[before:]]
    assert words.count("P") == 20
    assert words.index("STOP") <= 1  # behind at most the read already on the wire
