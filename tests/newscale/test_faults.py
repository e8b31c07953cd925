"""Faults through the pty: the device vanishing, silence, garbage, dropped replies, and recovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from drivers.base import DeviceError, DeviceLost, Vector
from drivers.newscale.codec import encode_bridge
from drivers.newscale.driver import (
    HALT_BUDGET_S,
    HALT_REPLY_TIMEOUT_S,
    HALT_TRIES,
    STAGES,
    NewScaleManipulator,
)
from drivers.newscale.sim import NewScaleSim
from drivers.newscale.transport import IN_FLIGHT_GRACE_S, REPLY_TIMEOUT_S
from ephysd.actor import ActorLimits
from tests.serial_e2e import fault_after, unplug_and_replug

FAR: Vector = (1.0, 1.0, 1.0, 0.0)


async def test_device_vanishing_mid_move_is_device_lost_within_one_second(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    async with fault_after(0.05, sim.close_device):
        with trio.fail_after(1.2), pytest.raises(DeviceLost, match=r"gone|not open"):
            await manipulator.move_to(FAR, 1.0)


async def test_reads_after_the_device_vanished_fail_at_once_with_device_lost(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.close_device()
    for _ in range(2):
        with trio.fail_after(1), pytest.raises(DeviceLost):
            await manipulator.position()


async def test_manipulator_recovers_by_reopening_when_the_device_comes_back(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    position = await unplug_and_replug(sim, manipulator, timeout_s=2)
    assert np.allclose(position, [7.5, 7.5, 7.5, 7.5])
    assert sim.raw_frames()[0] == encode_bridge("01")  # a fresh handshake on the new pty
    assert all(s.host_control and s.closed_loop for s in sim.stages.values())


async def test_garbage_before_a_reply_is_skipped_and_the_driver_keeps_working(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    for garbage in (b"\x00\xff\xfe", b"<10 12", b">\r<<<", b"<zz>\r", b"\r\r>"):
        sim.send_garbage_before_next_reply(garbage)
        assert np.allclose(await manipulator.position(), [7.5, 7.5, 7.5, 7.5])
    final = await manipulator.move_to((7.4, 7.5, 7.5, 0.0), 1.0)
    assert final[0] == pytest.approx(7.4)


async def test_dropped_reply_is_an_error_within_the_timeout_and_the_next_command_works(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.drop_next_reply()
    with trio.fail_after(0.5), pytest.raises(DeviceError, match="no reply"):
        await manipulator.position()
    assert np.allclose(await manipulator.position(), [7.5, 7.5, 7.5, 7.5])


async def test_dropped_reply_during_a_move_fails_the_move_quickly_and_halts(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    async with fault_after(0.1, sim.drop_next_reply):
        with trio.fail_after(1), pytest.raises(DeviceError, match="no reply"):
            await manipulator.move_to(FAR, 1.0)
    assert sim.stages_that_received(b"<03>\r") == {1, 2, 3}
    assert not any(s.running for s in sim.stages.values())


async def test_silent_device_fails_open_within_a_second(sim: NewScaleSim) -> None:
    sim.silent = True
    device = NewScaleManipulator("1", sim.path)
    with trio.fail_after(1), pytest.raises(DeviceError, match="no reply"):
        await device.open()
    sim.silent = False
    await device.open()  # re-callable after a failed open
    await device.close()


async def test_missing_stage_is_a_clear_open_error(nursery: trio.Nursery) -> None:
    sim = NewScaleSim(addresses=(1, 2))
    path = await nursery.start(sim.run)
    device = NewScaleManipulator("1", path)
    with trio.fail_after(1), pytest.raises(DeviceError, match="no stage at bridge address 03"):
        await device.open()


async def test_port_that_does_not_exist_is_device_lost(tmp_path: Path) -> None:
    device = NewScaleManipulator("1", str(tmp_path / "ttyUSB9"))
    with trio.fail_after(1), pytest.raises(DeviceLost, match="cannot open"):
        await device.open()
    await device.close()


async def test_stage_that_lost_host_control_is_device_lost_so_the_actor_reopens(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.stages[2].host_control = False  # the stage was power-cycled
    with pytest.raises(DeviceLost, match="host control"):
        await manipulator.position()
    await manipulator.open()
    assert sim.stages[2].host_control
    await manipulator.position()


async def test_a_port_opened_by_another_process_is_refused(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    second = NewScaleManipulator("2", sim.path)
    with pytest.raises(DeviceLost, match=r"cannot open|lock"):
        await second.open()
    assert np.allclose(await manipulator.position(), 7.5)  # the owner is undisturbed


async def test_halt_still_reaches_the_other_stages_when_one_stage_stops_answering(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    def mute() -> None:
        sim.stages[1].mute = True

    async with fault_after(0.2, mute):
        with trio.fail_after(1), pytest.raises(DeviceError, match="no reply"):
            await manipulator.move_to(FAR, 1.0)
    assert {2, 3} <= sim.stages_that_received(b"<03>\r")
    assert not sim.stages[2].running and not sim.stages[3].running


async def test_stage_losing_host_control_mid_move_halts_the_other_stages(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    def power_cycle() -> None:
        sim.stages[2].host_control = False

    async with fault_after(0.2, power_cycle):
        with trio.fail_after(1), pytest.raises(DeviceLost, match="host control"):
            await manipulator.move_to(FAR, 1.0)
    assert {1, 3} <= sim.stages_that_received(b"<03>\r")
    assert not sim.stages[1].running and not sim.stages[3].running


async def test_late_select_reply_for_another_stage_is_not_taken_as_this_stages_answer(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    await manipulator.position()  # stage 03 selected
    sim.send_garbage_before_next_reply(b"<A0 02 0>\r")  # a stale select reply
    assert np.allclose(await manipulator.position(), 7.5)


async def test_a_halt_whose_reply_is_lost_is_sent_again_and_the_stop_succeeds(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    """A lost reply may only mean a busy bridge: the stage gets a second <03>."""
    halts_before = sum(frame == b"<03>\r" for frame in sim.raw_frames())
    sim.drop_next_reply()
    with trio.fail_after(1):
        await manipulator.halt()
    halts = sum(frame == b"<03>\r" for frame in sim.raw_frames()) - halts_before
    assert halts == 4  # three stages, one of them twice
    assert sim.stages_that_received(b"<03>\r") == {1, 2, 3}


async def test_an_illegal_command_reply_with_arguments_is_device_lost_naming_the_code(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    """python-newscale: "<24> even if it returns with arguments"; not "no reply"."""
    sim.send_garbage_before_next_reply(b"<24 01 FF>\r")  # answers the <10> of stage 03
    with trio.fail_after(1), pytest.raises(DeviceLost, match=r"answered error 24 \(invalid"):
        await manipulator.move_depth(7.0, 1.0)
    assert np.allclose(await manipulator.position(), 7.5)


async def test_an_invalid_parameter_reply_with_arguments_is_an_error_naming_the_code(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.send_garbage_before_next_reply(b"<23 7>\r")
    with trio.fail_after(1), pytest.raises(DeviceError, match=r"answered error 23 .* to <10>"):
        await manipulator.move_depth(7.0, 1.0)


async def test_an_error_reply_to_a_select_is_an_error_naming_the_code(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.send_garbage_before_next_reply(b"<24 01>\r")  # answers the select of stage 01
    with trio.fail_after(1), pytest.raises(DeviceError, match=r"bridge answered error 24 .* 01"):
        await manipulator.position()


async def test_a_halt_is_sent_again_to_a_stage_whose_reply_is_lost_after_the_others(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    """Up to three tries, as New Scale's library re-sends; the other stages are not kept waiting."""
    before = len(sim.received)
    sim.stages[2].lose_replies = 2
    with trio.fail_after(2):
        await manipulator.halt()  # the third <03> is answered
    halts = [r.stage for r in sim.received[before:] if r.raw == b"<03>\r"]
    assert halts.count(2) == 3
    assert set(halts[:3]) == {1, 2, 3}  # every stage once before stage 02 again


async def test_a_halt_that_is_never_answered_fails_loudly_after_three_tries_each(
    sim: NewScaleSim, manipulator: NewScaleManipulator, caplog: pytest.LogCaptureFixture
) -> None:
    before = len(sim.received)
    sim.stages[1].mute = True
    unconfirmed = r"stage 01 did not confirm the halt in 3 tries: .*no reply to <03> within 60 ms"
    with trio.fail_after(2), pytest.raises(DeviceError, match=unconfirmed):
        await manipulator.halt()
    halts = [r.stage for r in sim.received[before:] if r.raw == b"<03>\r"]
    assert halts.count(1) == 3
    assert set(halts[:3]) == {1, 2, 3}
    assert "sending <03> again (try 3 of 3)" in caplog.text


def test_every_halt_try_fits_in_the_halt_budget_inside_the_actors_halt_deadline() -> None:
    # Three rounds in which all three stages time out still fit the budget,
    # and the budget leaves the actor's deadline room for a transaction in flight.
    rounds = HALT_TRIES * len(STAGES) * HALT_REPLY_TIMEOUT_S
    assert HALT_TRIES == 3
    assert rounds < HALT_BUDGET_S
    assert ActorLimits().halt_timeout_s > HALT_BUDGET_S + REPLY_TIMEOUT_S + IN_FLIGHT_GRACE_S
