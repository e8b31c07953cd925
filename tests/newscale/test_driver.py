"""The driver against the simulated bridge through a real pty: bytes on the wire and motion."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from drivers.base import DeviceError, Vector
from drivers.newscale.codec import encode_bridge, select_stage
from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.sim import NewScaleSim
from tests.serial_e2e import fault_after

HALT = b"<03>\r"
STATUS = b"<10>\r"
# What New Scale's library asks each stage at connect, after <01> and <20 1>.
IDENTIFY = [b"<44>\r", b"<52>\r", b"<16 piezoq>\r", b"<12 082 02>\r"]


def stage_frames(sim: NewScaleSim, code: bytes) -> list[tuple[int | None, bytes]]:
    return [(r.stage, r.raw) for r in sim.received if r.raw.startswith(b"<" + code)]


def vec(x: float, y: float, z: float, w: float) -> Vector:
    return (x, y, z, w)


async def test_open_asks_bridge_firmware_then_takes_host_control_of_each_stage_in_closed_loop(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    expected = [encode_bridge("01")]
    for address in (1, 2, 3):
        expected += [select_stage(address), b"<01>\r", b"<20 1>\r", *IDENTIFY, STATUS]
    assert sim.raw_frames() == expected
    assert all(s.host_control and s.closed_loop for s in sim.stages.values())


async def test_bridge_commands_are_high_bit_frames_with_nothing_before_them(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    await manipulator.position()
    bridge = [r.raw for r in sim.received if r.command.bridge]
    assert bridge[:2] == [
        bytes(b | 0x80 for b in b"<01>\r"),
        bytes(b | 0x80 for b in b"<A0 01>\r"),
    ]
    assert all(byte & 0x80 for raw in bridge for byte in raw)
    assert not any(b"TR" in raw for raw in sim.raw_frames())
    assert sim.violations == []  # no stray byte between the frames either


async def test_open_reads_each_stages_closed_loop_interval_from_the_stage(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    # The simulator's stages run on 156 timer ticks x 3.2 us, not python-newscale's 1 ms.
    assert manipulator.intervals_us == pytest.approx(dict.fromkeys((1, 2, 3), 499.2))


async def test_nothing_moves_on_open(sim: NewScaleSim, manipulator: NewScaleManipulator) -> None:
    assert not [r for r in sim.received if r.raw.startswith((b"<08", b"<40"))]


async def test_position_maps_stages_to_unified_space(nursery: trio.Nursery) -> None:
    sim = NewScaleSim(start_mm=(2.0, 5.0, 11.0))
    path = await nursery.start(sim.run)
    device = NewScaleManipulator("1", path)
    await device.open()
    # x = 15 - sx, y = sz, z = sy, w = 15 - sz
    assert np.allclose(await device.position(), vec(13.0, 11.0, 5.0, 4.0))
    assert sim.raw_frames()[-6:] == [
        select_stage(1),
        STATUS,
        select_stage(2),
        STATUS,
        select_stage(3),
        STATUS,
    ]
    await device.close()


async def test_stage_is_selected_again_only_when_the_target_stage_changes(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    await manipulator.position()  # ends with stage 03 selected
    before = len(sim.received)
    await manipulator.move_depth(7.4, 1.0)  # stage 03 only
    assert sim.received[before:]
    assert not [r.raw for r in sim.received[before:] if r.command.bridge]


async def test_move_sets_speed_then_absolute_target_on_each_stage_and_ends_on_target(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    final = await manipulator.move_to(vec(10.0, 6.0, 4.0, 0.0), 2.0)
    assert np.allclose(final, vec(10.0, 6.0, 4.0, 9.0))
    # On the stages' 499.2 us interval, one interval (k = 1):
    # 2 mm/s: V = round(4000 counts/s * 256 * 499.2 us) = 511 = 0x1FF (3998.6 counts/s);
    # cutoff 0.02 mm/s: round(40 * 256 * 499.2 us) = 5; A = round(511 * 499.2 us * 10 / 2) = 1.
    speed = b"<40 0001FF 000005 000001 0001>\r"
    assert stage_frames(sim, b"40") + stage_frames(sim, b"08") == [
        (1, speed),
        (2, speed),
        (3, speed),
        (1, b"<08 00002710>\r"),  # sx = 15 - 10 = 5 mm = 10000 counts
        (2, b"<08 00001F40>\r"),  # sy = z = 4 mm
        (3, b"<08 00002EE0>\r"),  # sz = y = 6 mm
    ]
    sent = [r.raw for r in sim.received if r.raw.startswith((b"<40", b"<08"))]
    assert sent == [speed, b"<08 00002710>\r", speed, b"<08 00001F40>\r", speed, b"<08 00002EE0>\r"]
    assert [sim.stage_position_mm(a) for a in (1, 2, 3)] == [5.0, 4.0, 6.0]
    assert not any(s.running for s in sim.stages.values())


async def test_move_runs_at_the_requested_speed(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    start = trio.current_time()
    await manipulator.move_to(vec(7.0, 7.5, 7.5, 0.0), 1.0)  # 0.5 mm at 1 mm/s
    elapsed = trio.current_time() - start
    assert 0.45 < elapsed < 3.0


async def test_move_ignores_the_requested_depth_axis(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    final = await manipulator.move_to(vec(7.5, 7.6, 7.5, 1.0), 1.0)
    assert final[3] == pytest.approx(15.0 - 7.6)


async def test_move_depth_drives_the_z_stage_only(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    depth = await manipulator.move_depth(7.2, 1.0)
    assert depth == pytest.approx(7.2)
    assert stage_frames(sim, b"08") == [(3, b"<08 00003CF0>\r")]  # sz = 15 - 7.2 = 7.8 mm
    assert np.allclose(await manipulator.position(), vec(7.5, 7.8, 7.5, 7.2))


@pytest.mark.parametrize(
    "target",
    [
        vec(15.5, 7.5, 7.5, 0.0),
        vec(-0.01, 7.5, 7.5, 0.0),
        vec(7.5, 16.0, 7.5, 0.0),
        vec(7.5, 7.5, -1.0, 0.0),
        vec(7.5, np.nan, 7.5, 0.0),
    ],
)
async def test_target_outside_travel_is_refused_and_nothing_moves(
    sim: NewScaleSim, manipulator: NewScaleManipulator, target: Vector
) -> None:
    with pytest.raises(DeviceError, match=r"travel|finite"):
        await manipulator.move_to(target, 1.0)
    assert stage_frames(sim, b"08") == []


async def test_depth_outside_travel_is_refused(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    with pytest.raises(DeviceError, match="travel"):
        await manipulator.move_depth(15.5, 1.0)
    assert stage_frames(sim, b"08") == []


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), 0.0009])
async def test_speed_too_small_is_refused(
    sim: NewScaleSim, manipulator: NewScaleManipulator, speed: float
) -> None:
    with pytest.raises(DeviceError, match="speed"):
        await manipulator.move_to(vec(7.0, 7.5, 7.5, 0.0), speed)
    assert stage_frames(sim, b"08") == []


async def test_speed_above_the_stage_maximum_is_slowed_to_it(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    await manipulator.move_to(vec(7.4, 7.5, 7.5, 0.0), 50.0)
    # 3 mm/s: V = round(6000 counts/s * 256 * 499.2 us) = 767 = 0x2FF
    assert {raw for _, raw in stage_frames(sim, b"40")} == {b"<40 0002FF 000005 000001 0001>\r"}


async def test_cancelled_move_halts_every_stage_and_the_stages_stop(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    with trio.move_on_after(0.3):
        await manipulator.move_to(vec(1.0, 1.0, 1.0, 0.0), 1.0)
    assert sim.stages_that_received(HALT) == {1, 2, 3}
    assert not any(s.running for s in sim.stages.values())
    stopped = [sim.stage_position_mm(a) for a in (1, 2, 3)]
    assert all(7.5 < mm < 14.0 for mm in stopped[:1])  # x moved toward sx = 14 and stopped early
    await trio.sleep(0.1)
    assert [sim.stage_position_mm(a) for a in (1, 2, 3)] == stopped


async def test_halt_goes_ahead_of_queued_position_reads(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.reply_delay_s = 0.01  # a slow bridge, so reads are still queued when halt comes
    before = len(sim.received)
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(manipulator.position)
        await trio.sleep(0.005)
        await manipulator.halt()
    after = [r.raw for r in sim.received[before:]]
    first_halt = after.index(HALT)
    assert after[:first_halt].count(STATUS) <= 1  # at most the read already in flight
    assert after.count(STATUS) == 15  # and every queued read still ran afterwards


async def test_stalled_stage_fails_the_move_and_halts(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    def stall() -> None:
        sim.stages[2].stalled = True

    async with fault_after(0.1, stall):
        with pytest.raises(DeviceError, match="stage 02 stalled"):
            await manipulator.move_to(vec(7.5, 7.5, 3.0, 0.0), 1.0)
    assert sim.stages_that_received(HALT) == {1, 2, 3}


async def test_stale_on_target_status_right_after_the_move_command_is_not_taken_as_arrival(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    await manipulator.move_to(vec(7.4, 7.5, 7.5, 0.0), 1.0)  # on target from this move
    sim.stages[1].start_delay_s = 0.1  # still reports "on target, not running" from before
    final = await manipulator.move_to(vec(7.0, 7.5, 7.5, 0.0), 1.0)
    assert final[0] == pytest.approx(7.0)
    assert sim.stage_position_mm(1) == 8.0


async def test_move_without_progress_fails_and_halts(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    sim.stages[1].frozen = True
    with trio.fail_after(3), pytest.raises(DeviceError, match="no progress"):
        await manipulator.move_to(vec(7.0, 7.5, 7.5, 0.0), 1.0)
    assert sim.stages_that_received(HALT) == {1, 2, 3}


async def test_close_halts_and_releases_host_control_of_every_stage(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    await manipulator.close()
    assert sim.stages_that_received(HALT) == {1, 2, 3}
    assert sim.stages_that_received(b"<02>\r") == {1, 2, 3}
    assert not any(s.host_control for s in sim.stages.values())
    await manipulator.close()  # safe to repeat


async def test_position_can_be_read_while_a_move_runs(
    sim: NewScaleSim, manipulator: NewScaleManipulator
) -> None:
    seen: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(manipulator.move_to, vec(7.0, 7.5, 7.5, 0.0), 1.0)
        for _ in range(5):
            await trio.sleep(0.05)
            seen.append(float((await manipulator.position())[0]))
    assert seen == sorted(seen, reverse=True) and seen[0] > seen[-1]
