"""Sutter drives through their bus and a simulated controller on a pty: axes, speeds, stops."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
import trio

from drivers.base import DeviceError, PlatformOptions
from drivers.sutter.bus import RESTORE_AFTER_S
from drivers.sutter.codec import byte_speed_um_s
from drivers.sutter.drive import SutterDrive
from drivers.sutter.sim import SutterSim
from tests.sutter.conftest import open_drives


def um(*values: float) -> tuple[int, int, int]:
    x, y, z = (usteps(v) for v in values)
    return x, y, z


def usteps(micrometres: float) -> int:
    return round(micrometres * 16)


async def move_and_stop(drive: SutterDrive, moment: Callable[[], Awaitable[None]]) -> None:
    """A long move, stopped at ``moment`` the way the actor stops it: cancel, then halt."""
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def move() -> None:
            with scope:
                await drive.move_depth(20.0, 1.0)

        nursery.start_soon(move)
        await moment()
        scope.cancel()
        await drive.halt()


async def test_start_up_finds_the_connected_drives_and_logs_the_firmware(
    nursery: trio.Nursery, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sim = SutterSim(drives=(1, 3, 4), user_drive=3)
    await nursery.start(sim.run)
    _, drives = await open_drives(nursery, PlatformOptions(serial_ports=(sim.path,)))
    assert [(d.id, d.drive) for d in drives] == [("1", 1), ("3", 3), ("4", 4)]
    assert "firmware 3.15, drives 1, 3, 4, ROE-200 on drive 3" in caplog.text


async def test_positions_map_like_ump3_and_w_copies_the_depth_axis(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    sim.positions[1] = um(1000, 2000, 3000)
    # x = y_p, y = 25 - x_p, z = 25 - z_p, w = x_p
    assert await drives[0].position() == pytest.approx((2.0, 24.0, 22.0, 1.0))


async def test_set_position_moves_the_drive_there_with_s_and_never_m(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    final = await drives[0].move_to((12.0, 12.2, 12.4, 0.0), 2.0)
    assert final == pytest.approx((12.0, 12.2, 12.4, 12.8), abs=0.001)
    assert sim.position(1) == um(12800, 12000, 12600)
    assert sim.position(2) == um(12500, 12500, 12500)  # the other drive stayed put
    assert sim.moves and all(m.speed_byte is not None for m in sim.moves)  # no M
    assert sim.violations == []


async def test_set_depth_moves_only_the_x_axis(sim: SutterSim, drives: list[SutterDrive]) -> None:
    depth = await drives[1].move_depth(12.9, 1.0)
    assert depth == pytest.approx(12.9, abs=0.001)
    assert sim.position(2) == um(12900, 12500, 12500)
    assert {m.target[1:] for m in sim.moves} == {um(0, 12500, 12500)[1:]}


@pytest.mark.parametrize(
    ("speed_mm_s", "expected_byte"),
    [(1.3, 15), (5.0, 15), (0.5, 5), (0.4874, 4), (0.08125, 0)],
)
async def test_the_speed_byte_is_the_fastest_not_faster_than_requested(
    sim: SutterSim, drives: list[SutterDrive], speed_mm_s: float, expected_byte: int
) -> None:
    await drives[0].move_depth(12.45, speed_mm_s)  # one axis: the path runs at the byte's speed
    assert {m.speed_byte for m in sim.moves} == {expected_byte}
    assert byte_speed_um_s(expected_byte) <= speed_mm_s * 1000 + 1e-9


async def test_a_diagonal_uses_a_slower_byte_so_the_path_is_not_faster_than_requested(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    await drives[0].move_to((12.4, 12.4, 12.4, 0.0), 0.5)  # all three axes by 0.1 mm
    (byte,) = {m.speed_byte for m in sim.moves}
    assert byte is not None and byte_speed_um_s(byte) * 3**0.5 <= 500
    assert byte_speed_um_s(byte + 1) * 3**0.5 > 500


async def test_a_move_under_one_micrometre_is_answered_at_once_and_never_sent(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    final = await drives[0].move_to((12.5005, 12.5, 12.4995, 0.0), 1.0)
    assert final[:3] == pytest.approx((12.5, 12.5, 12.5))
    assert sim.moves == []
    assert sim.commands(b"S") == []


@pytest.mark.parametrize("target", [(-0.1, 12.0, 12.0, 0.0), (12.0, 12.0, 25.5, 0.0)])
async def test_a_target_outside_the_travel_is_refused_and_never_sent(
    sim: SutterSim, drives: list[SutterDrive], target: tuple[float, float, float, float]
) -> None:
    with pytest.raises(DeviceError, match=r"outside its 0\.\.25 mm travel"):
        await drives[0].move_to(target, 1.0)
    with pytest.raises(DeviceError, match="outside"):
        await drives[0].move_depth(25.01, 1.0)
    assert sim.moves == []


async def test_a_speed_below_the_slowest_byte_is_stepped_and_never_faster_on_average(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    speed_um_s = 10.0
    await drives[1].move_depth(12.51, speed_um_s / 1000)  # 10 um
    assert sim.position(2) == um(12510, 12500, 12500)
    steps = [m for m in sim.moves if m.drive == 2]
    assert len(steps) >= 2 and {m.speed_byte for m in steps} == {0}
    # Each step ends no farther along than the request allows by the time it starts.
    first = steps[0].time
    for k, step in enumerate(steps[1:], start=1):
        covered_um = (step.target[0] - steps[0].target[0]) / 16
        assert covered_um <= speed_um_s * (step.time - first) + 0.1, k
    assert sim.violations == []


async def test_a_slow_insertion_stops_at_once_between_steps(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    with trio.move_on_after(0.8):
        await drives[1].move_depth(12.6, 0.005)
    moves = len(sim.moves)
    await trio.sleep(1.0)
    assert len(sim.moves) == moves  # no step after the stop
    assert sim.moving is None
    assert usteps(12500) < sim.position(2)[0] < usteps(12520)


async def test_reads_of_both_drives_are_served_while_one_moves_and_show_it_moving(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    reads: dict[str, list[float]] = {"1": [], "2": []}

    async def poll(drive: SutterDrive) -> None:
        while True:
            reads[drive.id].append((await drive.position())[3])
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        for drive in drives:
            nursery.start_soon(poll, drive)
        await drives[0].move_depth(13.5, 0.4)  # 1 mm at 325 um/s: about 3 s in segments
        nursery.cancel_scope.cancel()
    moving = reads["1"]
    assert len(moving) >= 4 and len(reads["2"]) >= 4
    assert len(set(moving)) >= 4  # fresh positions while it moved, not one stale value
    assert moving == sorted(moving)
    assert set(reads["2"]) == {12.5}
    assert len(sim.commands(b"S")) >= 4  # the long move ran as segments
    assert sim.violations == []


async def test_stop_interrupts_the_move_with_ctrl_c_and_leaves_the_drive_short_of_its_target(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    async def when_stopped() -> None:
        await trio.sleep(0.4)

    await move_and_stop(drives[0], when_stopped)
    assert len(sim.interrupts) == 1
    assert sim.moving is None
    x = sim.position(1)[0]
    await trio.sleep(0.6)
    assert sim.position(1)[0] == x < usteps(20000)
    assert (await drives[0].position())[3] == pytest.approx(x / 16000)
    assert sim.violations == []


async def test_stopping_an_idle_drive_never_interrupts_another_drives_move(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drives[0].move_depth, 13.2, 1.0)
        for _ in range(5):
            await trio.sleep(0.1)
            await drives[1].halt()
    assert sim.interrupts == []
    assert sim.position(1) == um(13200, 12500, 12500)


async def until_active(sim: SutterSim, drive: int) -> None:
    """The bus waits RESTORE_AFTER_S of quiet, then selects ``drive`` (a bounded wait)."""
    await trio.sleep(RESTORE_AFTER_S)
    with trio.fail_after(5):
        while sim.active != drive:  # noqa: ASYNC110
            await trio.sleep(0.02)


async def test_the_users_roe_drive_is_active_again_after_work_on_another_drive(
    nursery: trio.Nursery,
) -> None:
    sim = SutterSim(drives=(1, 2), user_drive=2)
    await nursery.start(sim.run)
    _, drives = await open_drives(nursery, PlatformOptions(serial_ports=(sim.path,)))
    await drives[0].move_depth(12.6, 1.0)
    await drives[0].position()
    assert sim.active == 1
    await until_active(sim, 2)
    sim.turn_knob(1)  # the user turns to drive 1 while ephysd is quiet
    await drives[1].position()
    await until_active(sim, 1)  # ephysd learnt the new choice and gave it back


async def polls_that_gave_the_knobs_back(
    sim: SutterSim, drive: SutterDrive, user_drive: int, rounds: int
) -> list[bool]:
    """Read ``drive`` again and again, never leaving the bus quiet for RESTORE_AFTER_S, and
    note after each read whether the ROE-200 was back on ``user_drive`` before the next."""
    back = []
    for _ in range(rounds):
        await drive.position()
        with trio.move_on_after(RESTORE_AFTER_S * 0.8):
            while sim.active != user_drive:  # noqa: ASYNC110
                await trio.sleep(0.002)
        back.append(sim.active == user_drive)
    return back


async def test_the_users_roe_drive_comes_back_between_reads_even_under_steady_polling(
    nursery: trio.Nursery,
) -> None:
    sim = SutterSim(drives=(1, 2, 3), user_drive=1)
    await nursery.start(sim.run)
    _, (_, two, _) = await open_drives(nursery, PlatformOptions(serial_ports=(sim.path,)))
    assert all(await polls_that_gave_the_knobs_back(sim, two, 1, 10))
    sim.turn_knob(3)  # the user turns to drive 3 while ephysd keeps polling drive 2
    assert all(await polls_that_gave_the_knobs_back(sim, two, 3, 10))


async def test_a_stop_in_the_pause_inside_s_completes_the_packet_in_place_so_nothing_moves(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    async def in_the_pause() -> None:
        with trio.fail_after(2):
            while not sim.awaiting_move_body:  # noqa: ASYNC110
                await trio.sleep(0.001)

    await move_and_stop(drives[0], in_the_pause)
    assert sim.moves[-1].target == um(12500, 12500, 12500)  # its own position: no motion
    assert sim.position(1) == um(12500, 12500, 12500)
    assert len(sim.interrupts) == 1  # and ^C right after, in case it had been nudged
    assert sim.violations == []


async def test_drives_polled_without_pause_never_starve_a_move(
    sim: SutterSim, drives: list[SutterDrive]
) -> None:
    async def hammer(drive: SutterDrive) -> None:
        while True:
            await drive.position()

    async with trio.open_nursery() as nursery:
        for drive in drives:
            nursery.start_soon(hammer, drive)
        with trio.fail_after(10):
            assert await drives[0].move_depth(13.0, 1.0) == pytest.approx(13.0, abs=0.001)
        nursery.cancel_scope.cancel()
    assert sim.violations == []
