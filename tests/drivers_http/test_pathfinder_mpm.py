"""Pathfinder MPM driver, over real HTTP against the emulator."""

from __future__ import annotations

import re

import numpy as np
import pytest
import trio

from drivers.base import DeviceError, DeviceLost, Manipulator, PlatformOptions, Vector
from drivers.http_common import HttpPlatform
from drivers.pathfinder_mpm import MpmDialect, create_platform
from drivers.pathfinder_mpm.sim import MpmSim
from tests.drivers_http.harness import (
    STALE_AFTER_S,
    EmulatorServer,
    running_rig,
    unused_port,
    wait_until_fresh,
)


def fast_sim(**kwargs: float) -> MpmSim:
    return MpmSim(3, coarse_speed_mm_s=5.0, fine_speed_mm_s=0.1, **kwargs)


async def test_manipulators_are_the_probes_pathfinder_reports() -> None:
    async with running_rig(fast_sim(), MpmDialect()) as rig:
        assert list(rig.manipulators) == ["A", "B", "C"]
        assert rig.platform.info.cli_name == "pathfinder-mpm"
        assert rig.platform.info.axes_count == 3


def test_factory_builds_the_url_from_the_options() -> None:
    platform = create_platform(PlatformOptions(http_host="10.0.0.2", mpm_port=9000))
    assert isinstance(platform, HttpPlatform)
    assert platform.url == "http://10.0.0.2:9000"


async def test_position_is_the_stage_position_in_unified_space() -> None:
    sim = fast_sim()
    sim.probes["B"].stage.move_to((1.0, 2.0, 3.0), 1000.0)
    async with running_rig(sim, MpmDialect()) as rig:
        position = await rig.manipulators["B"].position()
        # x = 15 - Stage_X, y = Stage_Z, z = Stage_Y, w = 15 - Stage_Z
        np.testing.assert_allclose(position, [14.0, 3.0, 2.0, 12.0])


async def test_angles_subtract_the_posterior_angle_and_wrap_into_0_360() -> None:
    sim = fast_sim(posterior_angle=40.0)
    sim.probes["A"].polar, sim.probes["A"].pitch, sim.probes["A"].shank_orientation = 10, 55, 7
    sim.probes["B"].polar = 100.0
    async with running_rig(sim, MpmDialect()) as rig:
        assert await rig.manipulators["A"].angles() == pytest.approx((330.0, 55.0, 7.0))
        assert (await rig.manipulators["B"].angles())[0] == pytest.approx(60.0)


async def test_shank_count_comes_from_the_state() -> None:
    async with running_rig(fast_sim(), MpmDialect()) as rig:
        assert await rig.manipulators["A"].shank_count() == 1
        assert await rig.manipulators["B"].shank_count() == 4


async def test_set_position_sends_step_mode_and_absolute_motion_and_completes() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        target = (13.0, 8.0, 6.0, 0.0)
        with trio.fail_after(5):
            final = await rig.manipulators["C"].move_to(target, 2.0)
        np.testing.assert_allclose(final[:3], target[:3], atol=0.01)
        np.testing.assert_allclose(sim.probes["C"].stage.position(), (2.0, 6.0, 8.0), atol=0.01)
        assert sim.puts[0] == {"PutId": "ProbeStepMode", "Probe": 2, "StepMode": 0}
        assert sim.puts[1] == {
            "PutId": "ProbeMotion",
            "Probe": 2,
            "Absolute": 1,
            "Stereotactic": 0,
            "AxisMask": 7,
            "X": 2.0,
            "Y": 6.0,
            "Z": 8.0,
        }


async def test_set_depth_is_an_insertion_by_the_distance_at_a_capped_rate() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        manipulator = rig.manipulators["A"]
        start_w = float((await manipulator.position())[3])
        with trio.fail_after(5):
            final = await manipulator.move_depth(start_w + 0.1, 1.0)
        assert final == pytest.approx(start_w + 0.1, abs=0.01)
        assert sim.puts == [
            {
                "PutId": "ProbeInsertion",
                "Probe": 0,
                "Distance": pytest.approx(100.0),
                "Rate": 9000.0,
            }
        ]


async def test_cancelled_move_sends_probe_stop_and_the_stage_stops() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        manipulator = rig.manipulators["B"]
        with trio.move_on_after(0.4):
            await manipulator.move_to((1.0, 1.0, 1.0, 0.0), 0.05)
        assert {"PutId": "ProbeStepMode", "Probe": 1, "StepMode": 1} in sim.puts
        assert sim.puts[-1] == {"PutId": "ProbeStop", "Probe": 1}
        assert not sim.probes["B"].stage.moving


async def test_halt_ends_a_running_move_without_waiting_for_the_target() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        manipulator = rig.manipulators["A"]
        results: list[Vector] = []

        async def move() -> None:
            results.append(await manipulator.move_to((1.0, 1.0, 1.0, 0.0), 0.05))

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(move)
                await trio.sleep(0.3)
                await manipulator.halt()
        assert sim.puts[-1] == {"PutId": "ProbeStop", "Probe": 0}
        assert abs(results[0][0] - 1.0) > 1.0


async def test_fast_polling_clients_do_not_multiply_requests() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        before = sim.gets
        start = trio.current_time()
        for _ in range(300):
            for manipulator in rig.manipulators.values():
                await manipulator.position()
            await trio.sleep(0.001)
        elapsed = trio.current_time() - start
        # One GET per ~33 ms poll at most, however often positions are read.
        assert sim.gets - before <= elapsed * 30 + 3


async def test_pathfinder_not_running_at_start_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    platform = HttpPlatform(MpmDialect(), url)
    async with trio.open_nursery() as nursery:
        with pytest.raises(
            DeviceError, match=re.escape(f"Pathfinder MPM at {url} is not answering")
        ):
            await nursery.start(platform.run)


async def test_pathfinder_going_away_is_a_clear_error_and_reads_recover_when_it_returns() -> None:
    async with running_rig(fast_sim(), MpmDialect()) as rig:
        manipulator = rig.manipulators["A"]
        rig.server.stop()
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(
            DeviceLost, match=f"Pathfinder MPM at {rig.server.url} is not answering"
        ):
            await manipulator.position()
        with pytest.raises(DeviceLost):
            await manipulator.move_to((7.0, 7.0, 7.0, 0.0), 1.0)
        await rig.server.start()
        await wait_until_fresh(manipulator)
        await manipulator.open()
        assert len(await manipulator.position()) == 4


async def test_bad_json_is_reported_as_nonsense() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        sim.override_body = b"<html>not json"
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(DeviceError, match=r"Pathfinder MPM at .* answered nonsense"):
            await rig.manipulators["A"].position()
        sim.override_body = None
        await wait_until_fresh(rig.manipulators["A"])


async def test_missing_fields_at_start_are_reported_before_the_platform_starts() -> None:
    sim = fast_sim()
    sim.override_body = b'{"PosteriorAngle": 0, "ProbeArray": [{"Id": "A", "Stage_Y": 1}]}'
    async with trio.open_nursery() as nursery:
        server = EmulatorServer(sim, nursery)
        await server.start()
        platform = HttpPlatform(MpmDialect(), server.url)
        with pytest.raises(DeviceError, match=r"answered nonsense: .*Stage_X"):
            await nursery.start(platform.run)
        server.stop()


async def test_unknown_probe_id_is_nonsense() -> None:
    dialect = MpmDialect()
    probe = (
        '{"Id": "ZZ", "Stage_X": 1, "Stage_Y": 1, "Stage_Z": 1, "Polar": 0, "Pitch": 0,'
        ' "ShankOrientation": 0, "ShankCount": 1}'
    )
    with pytest.raises(ValueError, match="unknown probe id 'ZZ'"):
        dialect.parse_state(f'{{"PosteriorAngle": 0, "ProbeArray": [{probe}]}}'.encode())


def test_probe_index_covers_a_to_an() -> None:
    dialect = MpmDialect()
    assert dialect.stop_command("A") == {"PutId": "ProbeStop", "Probe": 0}
    assert dialect.stop_command("Z") == {"PutId": "ProbeStop", "Probe": 25}
    assert dialect.stop_command("AN") == {"PutId": "ProbeStop", "Probe": 39}


async def test_a_move_that_stops_short_ends_after_about_ten_unchanged_polls() -> None:
    sim = MpmSim(1, coarse_speed_mm_s=0.0)  # Pathfinder accepts the move but nothing moves
    async with running_rig(sim, MpmDialect()) as rig:
        manipulator = rig.manipulators["A"]
        start = await manipulator.position()
        with trio.fail_after(4):
            final = await manipulator.move_to((1.0, 1.0, 1.0, 0.0), 1.0)
        np.testing.assert_allclose(final, start)


async def test_a_command_the_server_refuses_is_a_clear_error() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        del sim.probes["C"]
        with pytest.raises(DeviceError, match=r"refused command .*ProbeStop.*HTTP 400"):
            await rig.manipulators["C"].halt()


NULL_POSITION: dict[str, object] = {"Stage_X": None, "Stage_Y": None, "Stage_Z": None}


async def failure_of(manipulator: Manipulator) -> DeviceError:
    """Wait (bounded) until the manipulator's position read fails, and return why."""
    with trio.fail_after(3.0):
        while True:
            try:
                await manipulator.position()
            except DeviceError as exc:
                return exc
            await trio.sleep(0.02)


async def test_a_probe_with_null_positions_fails_alone_and_the_others_keep_working() -> None:
    sim = fast_sim()
    async with running_rig(sim, MpmDialect()) as rig:
        sim.probes["B"].overrides = dict(NULL_POSITION)
        failure = await failure_of(rig.manipulators["B"])
        assert type(failure) is DeviceError
        assert re.fullmatch(
            r"Pathfinder MPM at \S+ reports manipulator B without a usable state: "
            r"Stage_X is null",
            str(failure),
        )
        # Outlive the staleness limit: a state refused as a whole would fail A and C by now.
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(DeviceError, match="manipulator B without a usable state"):
            await rig.manipulators["B"].angles()
        with pytest.raises(DeviceError, match="manipulator B without a usable state"):
            await rig.manipulators["B"].move_to((7.0, 7.0, 7.0, 0.0), 1.0)
        assert not any(put.get("Probe") == 1 for put in sim.puts)
        assert await rig.manipulators["A"].angles() == pytest.approx((0.0, 45.0, 0.0))
        with trio.fail_after(5):
            final = await rig.manipulators["C"].move_to((13.0, 8.0, 6.0, 0.0), 2.0)
        np.testing.assert_allclose(final[:3], (13.0, 8.0, 6.0), atol=0.01)
        sim.probes["B"].overrides = {}
        await wait_until_fresh(rig.manipulators["B"])


async def test_a_probe_without_a_usable_state_at_start_is_listed_and_opens() -> None:
    sim = fast_sim()
    sim.probes["A"].overrides = {"Stage_Y": "n/a"}
    async with running_rig(sim, MpmDialect()) as rig:
        assert list(rig.manipulators) == ["A", "B", "C"]
        for manipulator in rig.manipulators.values():
            await manipulator.open()
        with pytest.raises(
            DeviceError, match=r"manipulator A without a usable state: Stage_Y is \"n/a\""
        ):
            await rig.manipulators["A"].position()
        assert len(await rig.manipulators["B"].position()) == 4
        sim.probes["A"].overrides = {}
        await wait_until_fresh(rig.manipulators["A"])


def test_a_probe_without_an_id_or_with_a_missing_field_makes_the_whole_state_nonsense() -> None:
    dialect = MpmDialect()
    sound = (
        '"Stage_X": 1, "Stage_Y": 1, "Stage_Z": 1, "Polar": 0, "Pitch": 0,'
        ' "ShankOrientation": 0, "ShankCount": 1'
    )
    with pytest.raises(ValueError, match="Id"):
        dialect.parse_state(
            f'{{"PosteriorAngle": 0, "ProbeArray": [{{"Id": null, {sound}}}]}}'.encode()
        )
    missing = sound.replace('"Pitch": 0,', "")
    with pytest.raises(ValueError, match="Pitch"):
        dialect.parse_state(
            f'{{"PosteriorAngle": 0, "ProbeArray": [{{"Id": "A", {sound}}},'
            f' {{"Id": "B", {missing}}}]}}'.encode()
        )
