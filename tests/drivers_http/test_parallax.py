"""Parallax driver, over real HTTP against the emulator of every Parallax era."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import trio

from drivers.base import DeviceError, DeviceLost, PlatformOptions, Vector
from drivers.http_common import Command, HttpPlatform, ProbeFault, ProbeState
from drivers.http_sim import SimStage
from drivers.parallax import ParallaxDialect, create_platform
from drivers.parallax.sim import ParallaxSim
from drivers.pathfinder_mpm import MpmDialect
from tests.drivers_http.harness import (
    STALE_AFTER_S,
    TILTED,
    UNCALIBRATED,
    VERTICAL,
    running_rig,
    unused_port,
    wait_until,
    wait_until_fresh,
)

SERVED_ERAS = ["1.5", "1.15", "1.16"]
"""Flat 1.5.1-1.12.0, flat 1.15.1, nested 1.16.0 on."""

FAR: Vector = (4.0, 4.0, 4.0, 0.0)
"""Far from every stage's start: a slow move there lasts many seconds."""


def fast_sim(era: str = "1.16", **kwargs: float) -> ParallaxSim:
    return ParallaxSim(3, era=era, coarse_speed_mm_s=5.0, fine_speed_mm_s=0.1, **kwargs)


@pytest.fixture(params=SERVED_ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def wait_moving(sim: ParallaxSim, serial: str) -> None:
    await wait_until(lambda: sim.stages[serial].stage.moving)


def stops_of(sim: ParallaxSim, serial: str) -> list[dict[str, object]]:
    return [put for put in sim.puts if put == {"move_type": "stop", "stage_sn": serial}]


async def test_the_platform_is_parallax_for_new_scale_with_a_manipulator_per_stage_serial() -> None:
    async with running_rig(fast_sim(), ParallaxDialect()) as rig:
        assert list(rig.manipulators) == [VERTICAL, UNCALIBRATED, TILTED]
        assert rig.platform.info.name == "Parallax for New Scale"
        assert rig.platform.info.cli_name == "parallax"


def test_the_factory_uses_the_parallax_port() -> None:
    platform = create_platform(PlatformOptions(parallax_port=9123))
    assert platform.url == "http://127.0.0.1:9123"


async def test_position_is_the_global_point_and_w_the_stage_own_z(era: str) -> None:
    sim = fast_sim(era)
    sim.stages[TILTED].stage = SimStage((5.0, 6.0, 8.0))
    calibration = sim.stages[TILTED].calibration
    assert calibration is not None
    gx, gy, gz = calibration.to_global((5.0, 6.0, 8.0))
    async with running_rig(sim, ParallaxDialect()) as rig:
        position = await rig.manipulators[TILTED].position()
        # x = global X, y = global Z, z = global Y, w = the stage's own Z.
        np.testing.assert_allclose(position, [gx, gz, gy, 8.0], atol=0.0002)


async def test_angles_and_shank_count_are_what_each_era_serves(era: str) -> None:
    async with running_rig(fast_sim(era), ParallaxDialect()) as rig:
        tilted = rig.manipulators[TILTED]
        if era == "1.16":  # Pathfinder's Pitch and ShankCount, unrounded
            assert await tilted.angles() == (0.0, 60.5, 0.0)
            assert await tilted.shank_count() == 4
        else:  # the flat eras never fill angles; shank count is 1 or absent
            assert await tilted.angles() == (0.0, 90.0, 0.0)
            assert await tilted.shank_count() == 1
        assert await rig.manipulators[UNCALIBRATED].angles() == (0.0, 90.0, 0.0)


def test_null_or_missing_values_take_upstream_defaults_and_angles_pass_unrounded() -> None:
    dialect = ParallaxDialect()
    flat = dialect.parse_state(
        b'{"SN1": {"relative_X": 1.0, "stage_X": null, "yaw": null},'
        b' "SN2": {"relative_X": 1.0, "global_X": 1, "global_Y": 2, "global_Z": 3,'
        b' "stage_Z": 4.5, "yaw": 12.25, "pitch": 0, "roll": -3.5, "shank_cnt": 4}}'
    )
    nested = dialect.parse_state(
        b'{"status": "success", "selected_sn": null, "probes": {'
        b'"SN1": {"obj": {"stage_x": null}, "is_calib": false, "calib_info": null},'
        b'"SN2": {"obj": {"stage_x_global": 1000, "stage_y_global": 2000,'
        b' "stage_z_global": 3000, "stage_z": 4500, "yaw": 12.25, "pitch": 0,'
        b' "roll": -3.5, "shank_cnt": 4}, "is_calib": true}}}'
    )
    for state in (flat, nested):
        unknown, known = state["SN1"], state["SN2"]
        assert isinstance(unknown, ProbeState) and isinstance(known, ProbeState)
        assert unknown.native_mm == (0.0,) * 6
        assert unknown.angles == (0.0, 90.0, 0.0)
        assert unknown.shank_count == 1
        assert "no calibration" in unknown.move_refusal
        assert "no stage Z" in unknown.depth_refusal
        assert known.native_mm[:3] == (1.0, 2.0, 3.0)
        assert known.native_mm[5] == 4.5
        assert known.angles == (12.25, 0.0, -3.5)
        assert known.shank_count == 4
        assert known.move_refusal == known.depth_refusal == ""


def test_globals_of_a_stage_parallax_says_is_not_calibrated_are_stale_and_refuse_a_move() -> None:
    # Parallax 1.15.1 and 1.16 update a stage's globals only while it is calibrated,
    # so without calibration they may be the last ones, served beside a false flag.
    flat = b'{"SN1": {"relative_X": 0, "global_X": 1, "global_Y": 2, "global_Z": 3,'
    flat += b' "stage_Z": 4, "is_calibrated": false}}'
    nested = b'{"status": "success", "selected_sn": null, "probes": {"SN1": {"obj":'
    nested += b' {"stage_x_global": 1000, "stage_y_global": 2000, "stage_z_global": 3000,'
    nested += b' "stage_z": 4000}, "is_calib": false, "calib_info": null}}}'
    for body in (flat, nested):
        state = ParallaxDialect().parse_state(body)["SN1"]
        assert isinstance(state, ProbeState)
        assert "no calibration" in state.move_refusal
        assert state.depth_refusal == ""
        assert state.native_mm[5] == 4.0


def test_w_is_what_the_pathfinder_mpm_platform_reports_for_the_same_stage() -> None:
    stage_z = 4.25  # Pathfinder's Stage_Z; Parallax's own z is 15 - Stage_Z
    probe = (
        f'{{"Id": "A", "Stage_X": 1, "Stage_Y": 2, "Stage_Z": {stage_z}, "Polar": 0,'
        ' "Pitch": 90, "ShankOrientation": 0, "ShankCount": 1}'
    )
    mpm = MpmDialect().parse_state(f'{{"PosteriorAngle": 0, "ProbeArray": [{probe}]}}'.encode())
    flat = f'{{"SN1": {{"relative_X": 1, "stage_Z": {15 - stage_z}}}}}'
    nested = (
        '{"status": "success", "selected_sn": "SN1", "probes": {"SN1": {"obj":'
        f' {{"stage_z": {(15 - stage_z) * 1000}}}, "is_calib": false}}}}}}'
    )
    expected = MpmDialect.axis_map.to_unified(getattr(mpm["A"], "native_mm", ()))[3]
    for body in (flat, nested):
        state = ParallaxDialect().parse_state(body.encode())["SN1"]
        assert isinstance(state, ProbeState)
        assert ParallaxDialect.axis_map.to_unified(state.native_mm)[3] == expected == 10.75


def test_a_stage_with_a_value_that_is_not_a_number_fails_alone() -> None:
    state = ParallaxDialect().parse_state(
        b'{"SN1": {"relative_X": 0, "stage_Z": "n/a"}, "SN2": {"relative_X": 0, "stage_Z": 1}}'
    )
    broken, sound = state["SN1"], state["SN2"]
    assert isinstance(broken, ProbeFault) and broken.reason == 'stage_Z is "n/a", not a number'
    assert isinstance(sound, ProbeState) and sound.native_mm[5] == 1.0


async def test_set_position_sends_step_mode_then_a_global_move_and_arrives(era: str) -> None:
    sim = fast_sim(era)
    async with running_rig(sim, ParallaxDialect()) as rig:
        target: Vector = (-1.0, 1.5, 2.5, 0.0)
        with trio.fail_after(10):
            final = await rig.manipulators[VERTICAL].move_to(target, 1.0)
        np.testing.assert_allclose(final[:3], target[:3], atol=0.01)
        assert sim.puts == [
            {"move_type": "stepMode", "stage_sn": VERTICAL, "step_mode": 0},
            {"move_type": "moveXYZ", "world": "global", "stage_sn": VERTICAL, "x": -1.0}
            | {"y": 2.5, "z": 1.5},
        ]


async def test_a_move_of_a_stage_without_calibration_is_refused_at_once_and_nothing_is_sent(
    era: str,
) -> None:
    sim = fast_sim(era)
    async with running_rig(sim, ParallaxDialect()) as rig:
        with pytest.raises(DeviceError, match=f"Manipulator {UNCALIBRATED} cannot move: .*calib"):
            await rig.manipulators[UNCALIBRATED].move_to((1.0, 1.0, 1.0, 0.0), 1.0)
        assert sim.puts == []


async def test_set_depth_on_a_tilted_probe_inserts_along_the_probe_and_ends_at_the_requested_w(
    era: str,
) -> None:
    sim = fast_sim(era)
    calibration = sim.stages[TILTED].calibration
    assert calibration is not None
    async with running_rig(sim, ParallaxDialect()) as rig:
        manipulator = rig.manipulators[TILTED]
        start_w = (await manipulator.position())[3]
        with trio.fail_after(10):
            final = await manipulator.move_depth(start_w + 0.25, 1.0)
        assert final == pytest.approx(start_w + 0.25, abs=0.01)
        insertion = {"move_type": "insertion", "stage_sn": TILTED, "distance": 250.0}
        assert sim.puts == [pytest.approx(insertion | {"rate": 9000.0})]
        local = sim.stages[TILTED].stage.position()
        assert local[2] == pytest.approx(start_w + 0.25, abs=0.01)
        # Global Z went only cos(tilt) as far: a w of 15 - global Z (upstream's)
        # would have fallen short of the requested depth by more than the tolerance.
        global_dz = calibration.to_global(local)[2] - calibration.to_global((7.5, 7.5, 7.5))[2]
        assert abs(global_dz) == pytest.approx(0.25 * math.cos(math.radians(29.5)), abs=0.01)
        assert 0.25 - abs(global_dz) > 0.01


async def test_set_depth_needs_no_calibration(era: str) -> None:
    sim = fast_sim(era)
    async with running_rig(sim, ParallaxDialect()) as rig:
        manipulator = rig.manipulators[UNCALIBRATED]
        start_w = (await manipulator.position())[3]
        with trio.fail_after(10):
            final = await manipulator.move_depth(start_w - 0.1, 1.0)
        assert final == pytest.approx(start_w - 0.1, abs=0.01)
        assert sim.puts[0]["distance"] == pytest.approx(-100.0)


async def test_halt_sends_parallax_stop_and_the_stage_stops(era: str) -> None:
    sim = fast_sim(era)
    async with running_rig(sim, ParallaxDialect()) as rig, trio.open_nursery() as moves:
        manipulator = rig.manipulators[VERTICAL]
        moves.start_soon(manipulator.move_to, FAR, 0.05)
        await wait_moving(sim, VERTICAL)
        with trio.fail_after(10):
            await manipulator.halt()
        assert {"move_type": "stop", "stage_sn": VERTICAL} in sim.puts
        assert not sim.stages[VERTICAL].stage.moving
        assert sim.dropped == []


async def test_the_old_put_id_stop_is_dropped_with_a_200_and_the_stage_keeps_moving(
    era: str,
) -> None:
    import httpx

    sim = fast_sim(era)
    async with running_rig(sim, ParallaxDialect()) as rig, trio.open_nursery() as moves:
        moves.start_soon(rig.manipulators[VERTICAL].move_to, FAR, 0.05)
        await wait_moving(sim, VERTICAL)
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.put(rig.server.url, json={"PutId": "stop", "Probe": VERTICAL})
        assert (answer.status_code, answer.content) == (200, b"")
        assert sim.dropped == ["No move type found in the command."]
        before = sim.stages[VERTICAL].stage.position()
        await trio.sleep(0.3)
        assert sim.stages[VERTICAL].stage.position() != before
        moves.cancel_scope.cancel()


class OldStopDialect(ParallaxDialect):
    """The stop upstream Ephys Link (and ephysd before) sent."""

    def stop_command(self, manipulator_id: str) -> Command:
        return {"PutId": "stop", "Probe": manipulator_id}


async def test_a_halt_with_the_old_stop_would_be_caught_and_fail_naming_the_stage() -> None:
    sim = fast_sim()
    async with running_rig(sim, OldStopDialect()) as rig, trio.open_nursery() as moves:
        moves.start_soon(rig.manipulators[VERTICAL].move_to, FAR, 0.05)
        await wait_moving(sim, VERTICAL)
        with trio.fail_after(10), pytest.raises(DeviceError) as failure:
            await rig.manipulators[VERTICAL].halt()
        assert str(failure.value).startswith(
            f"Manipulator {VERTICAL} did not stop after 2 stop commands"
        )
        assert sim.dropped.count("No move type found in the command.") >= 2
        assert sim.stages[VERTICAL].stage.moving
        moves.cancel_scope.cancel()


async def test_a_stop_parallax_dropped_is_sent_again_and_the_halt_ends_when_that_one_takes() -> (
    None
):
    sim = fast_sim()
    async with running_rig(sim, ParallaxDialect()) as rig, trio.open_nursery() as moves:
        manipulator = rig.manipulators[TILTED]
        moves.start_soon(manipulator.move_to, FAR, 0.05)
        await wait_moving(sim, TILTED)
        sim.lookup_fails = True  # Parallax cannot ask Pathfinder for the stage's index
        async with trio.open_nursery() as halting:
            halting.start_soon(manipulator.halt)
            await wait_until(lambda: bool(sim.dropped))
            sim.lookup_fails = False
        assert len(stops_of(sim, TILTED)) >= 2
        assert sim.dropped == ["Failed to retrieve status to find probe index."]
        assert not sim.stages[TILTED].stage.moving


async def test_a_stop_that_never_takes_fails_naming_the_stage(era: str) -> None:
    sim = fast_sim(era)
    async with running_rig(sim, ParallaxDialect()) as rig, trio.open_nursery() as moves:
        moves.start_soon(rig.manipulators[VERTICAL].move_to, FAR, 0.05)
        await wait_moving(sim, VERTICAL)
        sim.lookup_fails = True
        with trio.fail_after(10), pytest.raises(DeviceError) as failure:
            await rig.manipulators[VERTICAL].halt()
        assert re.fullmatch(
            f"Manipulator {VERTICAL} did not stop after 2 stop commands: "
            r"Parallax at \S+ took the stop, but .*",
            str(failure.value),
        )
        assert len(stops_of(sim, VERTICAL)) == 2
        assert sim.stages[VERTICAL].stage.moving
        moves.cancel_scope.cancel()


async def test_puts_go_one_at_a_time_and_a_stop_waits_only_for_the_one_in_flight() -> None:
    sim = fast_sim(put_delay_s=0.3)  # Parallax's round trip to Pathfinder, made slow
    async with running_rig(sim, ParallaxDialect()) as rig, trio.open_nursery() as moves:
        for serial in (VERTICAL, TILTED):
            moves.start_soon(rig.manipulators[serial].move_to, FAR, 0.05)
        # The first PUT is with Parallax, the next one waits.
        await wait_until(lambda: bool(sim.puts))
        moves.start_soon(rig.manipulators[UNCALIBRATED].halt)
        await wait_until(lambda: len(sim.puts) == 5, timeout_s=10)
        assert sim.puts[1] == {"move_type": "stop", "stage_sn": UNCALIBRATED}
        assert sim.max_puts_at_once == 1
        moves.cancel_scope.cancel()


async def test_a_slow_move_served_only_every_half_second_is_not_taken_for_a_stall() -> None:
    # 3.6 um/s: under Parallax's 2 um movement threshold per 0.5 s poll, so it keeps
    # refreshing every 0.5 s and the served depth stands still between refreshes.
    sim = fast_sim("1.16")
    async with running_rig(sim, ParallaxDialect()) as rig:
        manipulator = rig.manipulators[VERTICAL]
        start_w = (await manipulator.position())[3]
        with trio.fail_after(20):
            final = await manipulator.move_depth(start_w + 0.015, 0.0036)
        assert final == pytest.approx(start_w + 0.015, abs=0.01)


async def test_a_move_given_up_as_stalled_is_stopped_before_it_is_answered() -> None:
    # Parallax 1.5.1-1.15.1 stop polling Pathfinder for good after one poll that
    # failed: the stage goes on moving while GET serves the same position. The
    # move ends as stopped short, and the stage must not be left moving behind it.
    sim = fast_sim("1.15")
    async with running_rig(sim, ParallaxDialect()) as rig:
        sim.listener_stopped = True
        with trio.fail_after(10):
            await rig.manipulators[VERTICAL].move_to(FAR, 0.05)
        assert {"move_type": "stop", "stage_sn": VERTICAL} in sim.puts
        assert not sim.stages[VERTICAL].stage.moving


async def test_each_answer_is_read_in_its_own_shape_when_parallax_changes_version() -> None:
    sim = fast_sim("1.5")
    async with running_rig(sim, ParallaxDialect()) as rig:
        manipulator = rig.manipulators[TILTED]
        flat = await manipulator.position()
        assert await manipulator.shank_count() == 1
        sim.era = "1.16"  # restarted as a newer Parallax
        with trio.fail_after(5):
            while True:
                if await manipulator.shank_count() == 4:
                    break
                await trio.sleep(0.02)
        np.testing.assert_allclose(await manipulator.position(), flat, atol=0.0002)


async def test_an_error_status_is_a_device_error_with_parallax_message() -> None:
    sim = fast_sim("1.16")
    async with running_rig(sim, ParallaxDialect()) as rig:
        sim.get_error = "'NoneType' object has no attribute 'sn'"
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(DeviceError, match=r"reports an error \(HTTP 500\): 'NoneType'"):
            await rig.manipulators[VERTICAL].position()
        sim.get_error = None
        await wait_until_fresh(rig.manipulators[VERTICAL])


async def test_parallax_older_than_1_5_1_is_refused_at_start_saying_which_version_is_needed() -> (
    None
):
    sim = fast_sim("1.4")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        platform = HttpPlatform(ParallaxDialect(), f"http://127.0.0.1:{port}")
        with pytest.raises(DeviceError) as refusal:
            await nursery.start(platform.run)
        nursery.cancel_scope.cancel()
    text = str(refusal.value)
    assert "\n" not in text
    assert text.endswith("ephysd needs Parallax for New Scale 1.5.1 or newer")


async def test_parallax_not_running_at_start_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    platform = HttpPlatform(ParallaxDialect(), url)
    async with trio.open_nursery() as nursery:
        with pytest.raises(DeviceError, match=re.escape(f"Parallax at {url} is not answering")):
            await nursery.start(platform.run)


async def test_parallax_going_away_is_a_clear_error_and_reads_recover() -> None:
    async with running_rig(fast_sim(), ParallaxDialect()) as rig:
        manipulator = rig.manipulators[TILTED]
        rig.server.stop()
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(DeviceLost, match="is not answering"):
            await manipulator.angles()
        with pytest.raises(DeviceLost):
            await manipulator.halt()
        await rig.server.start()
        await wait_until_fresh(manipulator)
        assert await manipulator.shank_count() == 4


async def test_a_state_that_is_not_an_object_of_stages_is_nonsense() -> None:
    sim = fast_sim()
    async with running_rig(sim, ParallaxDialect()) as rig:
        sim.override_body = b'["SN47520"]'
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(DeviceError, match=r"Parallax at .* answered nonsense"):
            await rig.manipulators[VERTICAL].position()
