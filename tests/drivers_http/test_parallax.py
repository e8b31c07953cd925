"""Parallax driver, over real HTTP against the emulator."""

from __future__ import annotations

import re

import numpy as np
import pytest
import trio

from drivers.base import DeviceError, DeviceLost, PlatformOptions
from drivers.http_common import HttpPlatform
from drivers.parallax import ParallaxDialect, create_platform
from drivers.parallax.sim import ParallaxSim
from tests.drivers_http.harness import STALE_AFTER_S, running_rig, unused_port, wait_until_fresh


def fast_sim() -> ParallaxSim:
    return ParallaxSim(3, coarse_speed_mm_s=5.0, fine_speed_mm_s=0.1)


async def test_manipulators_are_the_stage_serial_numbers() -> None:
    async with running_rig(fast_sim(), ParallaxDialect()) as rig:
        assert list(rig.manipulators) == ["SN47520", "SN47521", "SN47522"]
        assert rig.platform.info.name == "Parallax"
        assert rig.platform.info.cli_name == "parallax"


def test_factory_uses_the_parallax_port() -> None:
    platform = create_platform(PlatformOptions(parallax_port=9123))
    assert platform.url == "http://127.0.0.1:9123"


async def test_position_is_the_global_position_in_unified_space() -> None:
    sim = fast_sim()
    sim.stages["SN47520"].stage.move_to((1.0, 2.0, 3.0), 1000.0)
    async with running_rig(sim, ParallaxDialect()) as rig:
        position = await rig.manipulators["SN47520"].position()
        # x = x, y = z, z = y, w = 15 - z
        np.testing.assert_allclose(position, [1.0, 3.0, 2.0, 12.0])


async def test_angles_and_shank_count_come_from_the_state() -> None:
    async with running_rig(fast_sim(), ParallaxDialect()) as rig:
        assert await rig.manipulators["SN47522"].angles() == pytest.approx((30.0, 60.0, 2.0))
        assert await rig.manipulators["SN47522"].shank_count() == 4


async def test_missing_or_null_values_mean_zero_pitch_ninety_and_one_shank() -> None:
    async with running_rig(fast_sim(), ParallaxDialect()) as rig:
        assert await rig.manipulators["SN47521"].angles() == (0.0, 90.0, 0.0)
        assert await rig.manipulators["SN47521"].shank_count() == 1
    state = ParallaxDialect().parse_state(b'{"SN1": {"global_X": null}}')
    assert state["SN1"].native_mm == (0.0, 0.0, 0.0)


async def test_set_position_sends_step_mode_and_move_xyz_and_completes() -> None:
    sim = fast_sim()
    async with running_rig(sim, ParallaxDialect()) as rig:
        target = (9.0, 5.0, 6.0, 0.0)
        with trio.fail_after(5):
            final = await rig.manipulators["SN47520"].move_to(target, 1.0)
        np.testing.assert_allclose(final[:3], target[:3], atol=0.01)
        np.testing.assert_allclose(sim.stages["SN47520"].stage.position(), (9, 6, 5), atol=0.01)
        assert sim.puts == [
            {"move_type": "stepMode", "stage_sn": "SN47520", "step_mode": 0},
            {
                "move_type": "moveXYZ",
                "world": "global",
                "stage_sn": "SN47520",
                "Absolute": 1,
                "Stereotactic": 0,
                "AxisMask": 7,
                "x": 9.0,
                "y": 6.0,
                "z": 5.0,
            },
        ]


async def test_set_depth_is_an_insertion_by_the_distance() -> None:
    sim = fast_sim()
    async with running_rig(sim, ParallaxDialect()) as rig:
        manipulator = rig.manipulators["SN47522"]
        start_w = float((await manipulator.position())[3])
        with trio.fail_after(5):
            final = await manipulator.move_depth(start_w - 0.05, 0.1)
        assert final == pytest.approx(start_w - 0.05, abs=0.01)
        insertion = {
            "move_type": "insertion",
            "stage_sn": "SN47522",
            "world": "global",
            "distance": -50.0,
            "rate": 6000.0,
        }
        assert sim.puts == [pytest.approx(insertion)]


async def test_cancelled_move_sends_the_stop_command_and_the_stage_stops() -> None:
    sim = fast_sim()
    async with running_rig(sim, ParallaxDialect()) as rig:
        with trio.move_on_after(0.4):
            await rig.manipulators["SN47521"].move_to((1.0, 1.0, 1.0, 0.0), 0.05)
        assert sim.puts[0]["step_mode"] == 1
        assert sim.puts[-1] == {"PutId": "stop", "Probe": "SN47521"}
        assert not sim.stages["SN47521"].stage.moving


async def test_parallax_not_running_at_start_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    platform = HttpPlatform(ParallaxDialect(), url)
    async with trio.open_nursery() as nursery:
        with pytest.raises(DeviceError, match=re.escape(f"Parallax at {url} is not answering")):
            await nursery.start(platform.run)


async def test_parallax_going_away_is_a_clear_error_and_reads_recover() -> None:
    async with running_rig(fast_sim(), ParallaxDialect()) as rig:
        manipulator = rig.manipulators["SN47520"]
        rig.server.stop()
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(DeviceLost, match="is not answering"):
            await manipulator.angles()
        await rig.server.start()
        await wait_until_fresh(manipulator)
        assert await manipulator.shank_count() == 1


async def test_a_state_that_is_not_an_object_of_stages_is_nonsense() -> None:
    sim = fast_sim()
    async with running_rig(sim, ParallaxDialect()) as rig:
        sim.override_body = b'["SN47520"]'
        await trio.sleep(STALE_AFTER_S + 0.2)
        with pytest.raises(DeviceError, match=r"Parallax at .* answered nonsense"):
            await rig.manipulators["SN47520"].position()
