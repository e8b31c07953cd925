"""jackhammer and abort_jackhammer through the API, on the simulated rig and the real drivers.

The fake rig steps the chosen axis by thrust x 0.1 um every 10 ms, so a
default cycle advances 7.5 um in 150 ms and every answer below is exact.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from drivers.base import JackhammerPattern, Platform, PlatformOptions
from drivers.fake import ANGLES, FakeManipulator, FakePlatform
from ephysd.actor import ActorLimits
from ephysd.api import Api
from ephysd.rig import open_rig
from tests.daemon.e2e import in_background, run_client, running_daemon, url_of

MALFORMED = '{"error": "Malformed request."}'
SUCCESS = '{"success": true}'
# A closed loop that runs until something ends it (its target is never reached).
ENDLESS = {"ClosedLoop": True, "TargetUm": 10_000, "MaxIterations": 200}


def request(mid: str, **fields: Any) -> str:
    return json.dumps({"ManipulatorId": mid, **fields})


def move(mid: str, x: float, speed: float) -> str:
    return json.dumps({"ManipulatorId": mid, "Position": {"x": x}, "Speed": speed})


# --- answers, exactly as upstream 2.3.6 shapes them ---------------------------------


async def test_open_loop_runs_every_cycle_and_answers_the_final_position(
    api: Api, platform: FakePlatform
) -> None:
    answer = await api.handle("jackhammer", [request("1")])
    # Upstream's spacing (json.dumps), not the compact form of every other answer.
    assert answer == '{"Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.075}, "Error": ""}'
    assert platform.manipulators[1].jackhammer_cycles == 10


async def test_snake_case_keys_and_a_json_object_are_accepted(api: Api) -> None:
    snake = '{"manipulator_id": "2", "axis": 0, "iterations": 2}'
    assert json.loads(await api.handle("jackhammer", [snake])) == {
        "Position": {"x": 0.015, "y": 0.0, "z": 0.0, "w": 0.0},
        "Error": "",
    }
    pascal = {"ManipulatorId": "3", "Axis": 2, "Iterations": 1, "Phase2Steps": 0}
    assert json.loads(await api.handle("jackhammer", [pascal]))["Position"]["z"] == 0.015


async def test_closed_loop_with_target_45_um_is_reached_after_6_iterations(api: Api) -> None:
    answer = await api.handle("jackhammer", [request("4", ClosedLoop=True, TargetUm=45)])
    assert answer == (
        '{"Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.045}, "Error": "",'
        ' "IterationsUsed": 6, "StopReason": "target_reached", "AdvancementUm": 45.0}'
    )


async def test_closed_loop_stops_after_max_iterations(api: Api) -> None:
    answer = json.loads(
        await api.handle(
            "jackhammer", [request("5", ClosedLoop=True, TargetUm=1000, MaxIterations=3)]
        )
    )
    assert answer["StopReason"] == "max_iterations"
    assert answer["IterationsUsed"] == 3
    assert answer["AdvancementUm"] == pytest.approx(22.5)
    assert answer["Error"] == ""


async def test_closed_loop_stops_when_pushed_back_twice_in_a_row(api: Api) -> None:
    # Each cycle drives 30 steps of -100 % back: 300 um, more than the 250 um allowed.
    backward = request(
        "6", ClosedLoop=True, TargetUm=50, Phase1Steps=30, Phase1Pulses=-100, Phase2Steps=0
    )
    answer = json.loads(await api.handle("jackhammer", [backward]))
    assert answer["StopReason"] == "backward_movement"
    assert answer["IterationsUsed"] == 2
    assert answer["AdvancementUm"] == pytest.approx(-600.0)


async def test_abort_jackhammer_answers_success(api: Api) -> None:
    assert await api.handle("abort_jackhammer", []) == SUCCESS
    assert await api.handle("abort_jackhammer", ["ignored"]) == SUCCESS


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "not json",
        "[]",
        "5",
        '{"ManipulatorId": "1", "Iterations": "many"}',
        '{"ManipulatorId": "1", "Phase1Pulses": 101}',
        '{"ManipulatorId": "1", "Axis": 4}',
        '{"ManipulatorId": "1", "Iterations": -1}',
        '{"ManipulatorId": "1", "ClosedLoop": "sometimes"}',
    ],
)
async def test_a_missing_or_bad_argument_gets_the_malformed_answer(
    api: Api, platform: FakePlatform, data: str | None
) -> None:
    args = [] if data is None else [data]
    assert await api.handle("jackhammer", args) == MALFORMED
    assert platform.manipulators[1].jackhammer_cycles == 0


async def test_an_unknown_or_missing_manipulator_id_is_an_error_with_a_zero_position(
    api: Api,
) -> None:
    assert await api.handle("jackhammer", [request("9")]) == (
        '{"Position": {"x": 0, "y": 0, "z": 0, "w": 0},'
        ' "Error": "ValueError: Manipulator 9 not found."}'
    )
    assert json.loads(await api.handle("jackhammer", ["{}"]))["Error"] == (
        "ValueError: Manipulator  not found."
    )


async def test_inside_the_brain_only_the_depth_axis_may_jackhammer(
    api: Api, platform: FakePlatform
) -> None:
    await api.handle("set_inside_brain", ['{"ManipulatorId":"1","Inside":true}'])
    refused = json.loads(await api.handle("jackhammer", [request("1", Axis=0, Iterations=1)]))
    assert refused["Error"] == (
        "Cannot jackhammer manipulator 1 on axis 0 while inside the brain."
        " Only its depth axis (3) may be used."
    )
    assert platform.manipulators[1].jackhammer_cycles == 0
    allowed = json.loads(await api.handle("jackhammer", [request("1", Iterations=1)]))
    assert allowed == {"Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0075}, "Error": ""}


# --- a jackhammer is a motion: everything that ends a move ends it ------------------


def hammering(api: Api, mid: str, **fields: Any) -> AbstractAsyncContextManager[list[str]]:
    """A jackhammer under way for the block; the list holds its answer afterwards."""
    return in_background(lambda: api.handle("jackhammer", [request(mid, **fields)]))


async def test_abort_ends_a_running_closed_loop_at_once_with_no_error(
    api: Api, platform: FakePlatform
) -> None:
    async with hammering(api, "2", **ENDLESS) as answers:
        assert await api.handle("abort_jackhammer", []) == SUCCESS
    answer = json.loads(answers[0])
    assert answer["StopReason"] == "aborted"
    assert answer["Error"] == ""
    assert 1 <= answer["IterationsUsed"] < 200
    assert answer["AdvancementUm"] == pytest.approx(answer["Position"]["w"] * 1000)
    fake = platform.manipulators[2]
    assert fake.halts >= 1
    stopped_at = (await fake.position())[3]
    await trio.sleep(0.1)
    assert (await fake.position())[3] == stopped_at


async def test_abort_ends_an_open_loop_too_and_its_answer_says_so(api: Api) -> None:
    async with hammering(api, "3", Iterations=100) as answers:
        assert await api.handle("abort_jackhammer", []) == SUCCESS
    answer = json.loads(answers[0])
    assert answer["Error"] == "Manipulator 3 jackhammer was aborted by abort_jackhammer."
    assert 0.0 < answer["Position"]["w"] < 0.75
    assert "StopReason" not in answer


async def test_an_abort_while_nothing_runs_leaves_the_next_closed_loop_alone(api: Api) -> None:
    assert await api.handle("abort_jackhammer", []) == SUCCESS
    answer = json.loads(
        await api.handle("jackhammer", [request("4", ClosedLoop=True, TargetUm=15)])
    )
    assert answer["StopReason"] == "target_reached"
    assert answer["IterationsUsed"] == 2


async def test_abort_leaves_a_running_move_alone(api: Api) -> None:
    async with in_background(lambda: api.handle("set_position", [move("5", 1, 2)])) as answers:
        assert await api.handle("abort_jackhammer", []) == SUCCESS
    assert json.loads(answers[0]) == {
        "Position": {"x": 1.0, "y": 0.0, "z": 0.0, "w": 0.0},
        "Error": "",
    }


@pytest.mark.parametrize("stop", ["stop", "stop_all"])
async def test_stop_and_stop_all_end_a_jackhammer_and_halt_the_device(
    api: Api, platform: FakePlatform, stop: str
) -> None:
    async with hammering(api, "6", **ENDLESS) as answers:
        assert await api.handle(stop, ["6"] if stop == "stop" else []) == ""
    answer = json.loads(answers[0])
    assert answer["Error"] == "Manipulator 6 jackhammer was stopped."
    assert answer["StopReason"] == "aborted"
    assert answer["Position"]["w"] > 0
    assert platform.manipulators[6].halts >= 1


async def test_a_new_move_supersedes_a_jackhammer_and_a_jackhammer_a_move(api: Api) -> None:
    async with hammering(api, "7", **ENDLESS) as answers:
        moved = json.loads(await api.handle("set_position", [move("7", 0.5, 100)]))
        assert moved["Error"] == ""
    assert json.loads(answers[0])["Error"] == (
        "Manipulator 7 jackhammer was superseded by a newer set_position or set_depth request."
    )
    async with in_background(lambda: api.handle("set_position", [move("7", 10, 1)])) as answers:
        done = json.loads(await api.handle("jackhammer", [request("7", Iterations=1)]))
        assert done["Error"] == ""
    assert json.loads(answers[0])["Error"] == (
        "Manipulator 7 move was superseded by a newer jackhammer request."
    )


async def test_a_second_jackhammer_supersedes_the_first(api: Api) -> None:
    async with hammering(api, "0", **ENDLESS) as answers:
        second = json.loads(
            await api.handle("jackhammer", [request("0", ClosedLoop=True, TargetUm=1)])
        )
    assert second["StopReason"] == "target_reached"
    first = json.loads(answers[0])
    assert first["StopReason"] == "aborted"
    assert "superseded by a newer jackhammer request" in first["Error"]


async def test_a_device_lost_mid_jackhammer_ends_it_with_the_error(
    api: Api, platform: FakePlatform
) -> None:
    fake = platform.manipulators[1]
    async with hammering(api, "1", **ENDLESS) as answers:
        fake.unplug()
    answer = json.loads(answers[0])
    assert answer["Position"] == {"x": 0, "y": 0, "z": 0, "w": 0}
    assert answer["Error"].startswith("DeviceLost: ")
    assert "StopReason" not in answer
    fake.replug()


async def test_the_e_stop_ends_a_jackhammer_and_halts_the_device() -> None:
    platform = FakePlatform()
    async with running_daemon(platform) as daemon:
        assert daemon.api is not None
        async with hammering(daemon.api, "3", **ENDLESS) as answers:
            await daemon.emergency_stop("STOP")
    assert json.loads(answers[0])["Error"] == "Manipulator 3 jackhammer was stopped."
    assert platform.manipulators[3].halts >= 1


async def test_the_controller_leaving_ends_its_jackhammer_and_halts_the_device() -> None:
    platform = FakePlatform()
    async with running_daemon(platform) as daemon:
        steps = [["connect"], ["start", "jackhammer", request("2", **ENDLESS)], ["disconnect"]]
        await run_client("python", url_of(daemon), steps)
        assert daemon.policy is not None
        with trio.fail_after(5):
            await daemon.policy.wait_until_free()
        fake = platform.manipulators[2]
        assert fake.halts >= 1
        stopped_at = (await fake.position())[3]
        await trio.sleep(0.1)
        assert (await fake.position())[3] == stopped_at


class StuckJackhammer(FakeManipulator):
    """Starts a jackhammer and never finishes it."""

    async def jackhammer(self, axis: int, cycles: int, pattern: JackhammerPattern) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.halts += 1


async def test_a_jackhammer_that_never_ends_is_bounded_and_halted() -> None:
    platform = FakePlatform(count=1)
    stuck = platform.manipulators[0] = StuckJackhammer("0", ANGLES[0])
    limits = ActorLimits(move_slack_s=0.3, jackhammer_cycle_slack_s=0.1, jackhammer_settle_s=0.0)
    async with open_rig(platform, limits) as rig:
        api = Api(rig, "1a2b3c4d")
        with trio.fail_after(5):
            answer = json.loads(await api.handle("jackhammer", [request("0", Iterations=1)]))
    assert answer["Error"].startswith(
        "DeviceTimeout: Manipulator 0 did not answer the end of a jackhammer within"
    )
    assert stuck.halts == 1


# --- platforms whose hardware cannot jackhammer --------------------------------------


@asynccontextmanager
async def unsupported_platform(kind: str, tmp_path: Path) -> AsyncIterator[Platform]:
    async with trio.open_nursery() as nursery:
        if kind == "newscale":
            from drivers.newscale import create_platform
            from drivers.newscale.sim import NewScaleSim

            sim = NewScaleSim(link=str(tmp_path / "bridge"))
            path = await nursery.start(sim.run)
            yield create_platform(PlatformOptions(serial_ports=(path,)))
        elif kind == "pathfinder-mpm":
            from drivers.pathfinder_mpm import create_platform as create_mpm
            from drivers.pathfinder_mpm.sim import MpmSim

            port = await nursery.start(MpmSim(1).serve, "127.0.0.1", 0)
            yield create_mpm(PlatformOptions(mpm_port=port))
        else:
            from drivers.parallax import create_platform as create_parallax
            from drivers.parallax.sim import ParallaxSim

            port = await nursery.start(ParallaxSim(1).serve, "127.0.0.1", 0)
            yield create_parallax(PlatformOptions(parallax_port=port))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["newscale", "pathfinder-mpm", "parallax"])
async def test_platforms_without_jackhammer_refuse_it_by_name_and_nothing_moves(
    kind: str, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with unsupported_platform(kind, tmp_path) as platform, open_rig(platform) as rig:
            api = Api(rig, "1a2b3c4d")
            mid = rig.ids[0]
            before = await api.handle("get_position", [mid])
            for closed in (False, True):
                answer = await api.handle("jackhammer", [request(mid, ClosedLoop=closed)])
                assert answer == (
                    '{"Position": {"x": 0, "y": 0, "z": 0, "w": 0}, "Error": "NotSupported: '
                    f'{rig.info.name} does not support jackhammer mode"}}'
                )
            assert await api.handle("abort_jackhammer", []) == SUCCESS
            await trio.sleep(0.2)
            assert await api.handle("get_position", [mid]) == before
