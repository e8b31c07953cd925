"""Moves through the pty: TOP, ABS, S until idle, the re-check; steps; stop; depth."""

from __future__ import annotations

import math
from collections.abc import Coroutine
from typing import Any

import pytest
import trio

from drivers.base import DeviceError
from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.sim import ScientificaSim
from tests.scientifica.conftest import open_on


def after(sim: ScientificaSim, command: str) -> list[str]:
    """The commands received after the last ``command``."""
    commands = sim.commands()
    return commands[len(commands) - commands[::-1].index(command) :]


async def cancelled_after(seconds: float, move: Coroutine[Any, Any, object]) -> float:
    """Run ``move``, cancel it (what ``stop`` does) after ``seconds``; returns when it was
    cancelled, once it has wound down. Fails if the move ended first."""
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await move

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(seconds)
        cancelled_at = trio.current_time()
        scope.cancel()
    assert scope.cancelled_caught, "the move ended before the stop"
    return cancelled_at


async def test_a_move_sets_top_sends_abs_restores_top_polls_until_idle_and_answers_the_position(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    final = await manipulator.move_to((10.5, 9.8, 10.2, 0.0), 1.0)
    # unified x = y_p, y = 20 - x_p, z = 20 - z_p, w = x_p; platform = 10 mm + counts
    assert final == pytest.approx((10.5, 9.8, 10.2, 10.2))
    assert sim.position_um() == pytest.approx((200.0, 500.0, -200.0))
    moves = sim.commands()
    abs_at = moves.index("ABS 20000 50000 -20000")
    assert moves[abs_at - 1 : abs_at + 2] == ["TOP 1000", "ABS 20000 50000 -20000", "TOP 1500"]
    assert moves[abs_at - 3 : abs_at - 1] == ["S", "P"]  # idle checked before the move
    polls = [r for r in sim.received[abs_at + 2 :] if r.word == "S"]
    assert len(polls) > 1 and polls[-1].status == 0 and polls[0].status != 0
    assert moves[-1] == "P"
    assert sim.top == "1500"  # the user's speed is back for the knobs


async def test_firmware_2_speeds_are_sent_as_raw_units(nursery: trio.Nursery) -> None:
    sim = ScientificaSim(firmware=2)
    device = await open_on(nursery, sim)
    await device.move_to((10.2, 10.0, 10.0, 0.0), 0.5)
    assert "TOP 6400" in sim.commands()  # 500 µm/s x 2 x |UUX| 6.4
    assert sim.position_um() == pytest.approx((0.0, 200.0, 0.0))


async def test_a_request_faster_than_the_limit_is_slowed_to_it(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    await manipulator.move_to((10.5, 10.0, 10.0, 0.0), 50.0)
    assert "TOP 2000" in sim.commands()  # max_speed_mm_s = 2.0 by default


async def test_set_depth_moves_only_the_depth_axis(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    await manipulator.move_to((10.1, 10.2, 9.7, 0.0), 2.0)
    depth = await manipulator.move_depth(10.4, 1.0)
    assert depth == pytest.approx(10.4)
    assert sim.commands("ABS")[-1] == "ABS 40000 10000 30000"  # only x (the depth axis) changed
    assert await manipulator.position() == pytest.approx((10.1, 9.6, 9.7, 10.4))


async def test_the_depth_axis_can_be_configured_to_z(nursery: trio.Nursery) -> None:
    sim = ScientificaSim()
    device = await open_on(nursery, sim, depth_axis="z")
    assert await device.move_depth(10.25, 1.0) == pytest.approx(10.25)
    assert sim.commands("ABS") == ["ABS 0 0 25000"]
    assert await device.position() == pytest.approx((10.0, 10.0, 9.75, 10.25))


async def test_signs_origins_and_dimensions_come_from_the_settings(nursery: trio.Nursery) -> None:
    sim = ScientificaSim(start_um=(1000.0, 0.0, 0.0))
    device = await open_on(
        nursery, sim, origin_mm=(5.0, 12.5, 10.0), dimensions_mm=(10.0, 25.0, 20.0), sign=(-1, 1, 1)
    )
    # x_p = 5 - 1 mm = 4; unified y = 10 - x_p
    assert await device.position() == pytest.approx((12.5, 6.0, 10.0, 4.0))
    final = await device.move_to((13.0, 5.5, 10.0, 0.0), 2.0)
    assert final == pytest.approx((13.0, 5.5, 10.0, 4.5))
    assert sim.commands("ABS")[-1] == "ABS 50000 50000 0"  # x_p 4.5 = 5 - 0.5 mm


async def test_along_the_approach_angle_depth_moves_x_and_z_together_on_the_probe_axis(
    nursery: trio.Nursery,
) -> None:
    sim = ScientificaSim(angle_deg=30.0)
    device = await open_on(nursery, sim, depth_axis="approach")
    start = await device.position()
    assert start[3] == pytest.approx(10 * math.cos(math.radians(30)) + 10 * 0.5)
    depth = await device.move_depth(start[3] + 0.1, 1.0)
    assert depth == pytest.approx(start[3] + 0.1, abs=0.001)
    x, _, z = sim.position_um()
    assert (x, z) == pytest.approx((100 * math.cos(math.radians(30)), 50.0), abs=0.02)
    targets = [[int(v) for v in c.split()[1:]] for c in sim.commands("ABS")]
    assert len(targets) >= 10  # steps of at most 10 µm along the probe
    previous = (0, 0, 0)
    for tx, ty, tz in targets:
        assert ty == 0
        off_axis = abs(tx * math.sin(math.radians(30)) - tz * math.cos(math.radians(30)))
        assert off_axis <= 1.0  # within a count of the probe's axis
        assert math.dist(previous, (tx, ty, tz)) <= 10 * 100 + 1
        previous = (tx, ty, tz)


async def test_a_target_outside_the_travel_is_refused_and_nothing_moves(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    for target in ((25.0, 10.0, 10.0, 0.0), (10.0, -0.5, 10.0, 0.0), (10.0, 10.0, math.nan, 0.0)):
        with pytest.raises(DeviceError, match=r"outside its 0\.\.20 mm travel|finite"):
            await manipulator.move_to(target, 1.0)
    with pytest.raises(DeviceError, match="outside"):
        await manipulator.move_depth(20.5, 1.0)
    with pytest.raises(DeviceError, match="speed"):
        await manipulator.move_to((10.0, 10.0, 10.0, 0.0), 0.0)
    assert not sim.commands("ABS")


async def test_a_manipulator_already_moving_is_stopped_and_settled_before_the_abs(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    sim.turn_knobs(500.0, 0.0, 0.0, 100.0)  # someone at the knobs
    await manipulator.move_to((10.0, 10.0, 10.0, 0.0), 1.0)
    stop = next(r for r in sim.received if r.word == "STOP")
    move = next(r for r in sim.received if r.word == "ABS")
    assert stop.status == 6 and stop.time < move.time
    settled = [r for r in sim.received if stop.time < r.time < move.time and r.word == "S"]
    assert settled and settled[-1].status == 0
    assert move.status == 0
    assert sim.position_um() == pytest.approx((0.0, 0.0, 0.0))


async def test_a_controller_that_reports_idle_early_is_checked_again_100_ms_later(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    sim.early_idle_s = 0.05  # says 0 while 50 ms of motion remain
    final = await manipulator.move_to((10.0, 9.5, 10.0, 0.0), 1.0)
    assert final == pytest.approx((10.0, 9.5, 10.0, 10.5))
    assert after(sim, "TOP 1500").count("P") == 2  # the first one was short of the target


async def test_stop_mid_move_sends_stop_waits_until_idle_and_the_move_stops_short(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    await cancelled_after(0.5, manipulator.move_to((10.0, 12.0, 10.0, 0.0), 1.0))
    stop = next(r for r in sim.received if r.word == "STOP")
    assert stop.status in (2, 3)  # it went out while the motors ran
    polls = [r for r in sim.received if r.word == "S" and r.time > stop.time]
    assert polls and polls[-1].status == 0 and not sim.moving
    assert 0.0 < -sim.position_um()[0] < 2000.0  # x_p = 20 - 12 mm was not reached
    with trio.fail_after(1):
        await manipulator.halt()  # a stop while idle is harmless


@pytest.mark.parametrize(("firmware", "step_top"), [(3, "TOP 100"), (2, "TOP 1280")])
async def test_a_slow_move_is_stepped_so_its_average_speed_is_the_requested_one(
    nursery: trio.Nursery, firmware: int, step_top: str
) -> None:
    sim = ScientificaSim(firmware=firmware)
    device = await open_on(nursery, sim)
    halfway: list[float] = []

    async def look_halfway() -> None:
        await trio.sleep(1.0)
        halfway.append(sim.position_um()[0])

    began = trio.current_time()
    nursery.start_soon(look_halfway)
    depth = await device.move_depth(10.05, 0.025)  # 50 µm at 25 µm/s: 2 s
    took = trio.current_time() - began
    assert depth == pytest.approx(10.05)
    assert 1.9 <= took < 8.0
    assert 10.0 <= halfway[0] <= 40.0  # about 25 µm after a second
    assert len(sim.commands("ABS")) >= 5
    assert set(sim.commands("TOP")) - {"TOP", f"TOP {sim.top}"} == {step_top}


async def test_stop_during_a_stepped_move_sends_stop_at_once_not_after_the_step(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    cancelled_at = await cancelled_after(0.75, manipulator.move_depth(10.1, 0.01))  # 10 µm/s
    later = [r for r in sim.received if r.time >= cancelled_at]
    assert later[0].word == "STOP"
    assert not any(r.word in ("ABS", "TOP") for r in later)
    assert not sim.moving
    assert 0 < sim.position_um()[0] < 20.0


async def test_a_refused_move_is_an_error_that_leaves_it_stopped_and_the_users_top_restored(
    sim: ScientificaSim, manipulator: ScientificaManipulator
) -> None:
    sim.refuse["ABS"] = 4
    with pytest.raises(DeviceError, match=r"error 4 to 'ABS 0 50000 0'"):
        await manipulator.move_to((10.5, 10.0, 10.0, 0.0), 1.0)
    assert after(sim, "TOP 1000")[:4] == ["ABS 0 50000 0", "STOP", "S", "TOP 1500"]
    assert sim.top == "1500" and not sim.moving
