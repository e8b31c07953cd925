"""Sensapex jackhammer mode through FakeSensapexSDK, the test double of the SDK boundary.

A cycle is libum's ``um_take_jackhammer_step``, which only Sensapex's special
SDK build exports: with it the controller steps (simulated: thrust x 0.1 um
per 10 ms step); without it the answer names the missing function and nothing
moves.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from drivers.base import JackhammerPattern, NotSupported
from drivers.ump import UmpPlatform
from ephysd.api import Api
from ephysd.rig import open_rig
from tests.daemon.e2e import in_background
from tests.ump.fake_sdk import FakeSensapexSDK

DEFAULT = JackhammerPattern(10, 15, 5, -15)


@asynccontextmanager
async def api_on(sdk: FakeSensapexSDK) -> AsyncIterator[Api]:
    async with open_rig(UmpPlatform(lambda: sdk)) as rig:
        yield Api(rig, "1a2b3c4d")


async def test_one_sdk_call_runs_every_cycle_with_upstreams_arguments() -> None:
    sdk = FakeSensapexSDK({3: 4}, jackhammer=True)
    async with api_on(sdk) as api:
        answer = json.loads(await api.handle("jackhammer", ['{"ManipulatorId": "3"}']))
    assert answer["Error"] == ""
    # Axis -1 on a uMp-4 is d (3); ten default cycles advance 75 um along it.
    assert sdk.calls_named("um_take_jackhammer_step") == [
        (3, "um_take_jackhammer_step", 3, 10, 10, 15, 5, -15)
    ]
    assert sdk.devices[3].position_now() == pytest.approx([10_000, 10_000, 10_000, 10_075])
    assert answer["Position"]["w"] == pytest.approx(10.075)
    # The call returned at once; the driver waited until the controller was idle.
    assert len(sdk.calls_named("is_busy")) > 1


async def test_the_axis_goes_to_libum_as_a_c_char_like_upstream() -> None:
    seen: list[object] = []
    sdk = FakeSensapexSDK({1: 4}, jackhammer=True)
    real = getattr(sdk.lib, "um_take_jackhammer_step")  # noqa: B009 (a test double's symbol)

    def spy(*args: object) -> int:
        seen.extend(args)
        return int(real(*args))

    setattr(sdk.lib, "um_take_jackhammer_step", spy)  # noqa: B010
    async with open_rig(UmpPlatform(lambda: sdk)) as rig:
        await rig.actors["1"].manipulator.jackhammer(2, 1, DEFAULT)
    assert [type(arg) for arg in seen] == [ctypes.c_int, ctypes.c_char] + [ctypes.c_int] * 5
    assert sdk.devices[1].position_now()[2] == pytest.approx(10_007.5)


async def test_a_ump3_jackhammers_along_x_its_depth_axis() -> None:
    sdk = FakeSensapexSDK({1: 3}, jackhammer=True)
    async with api_on(sdk) as api:
        request = '{"ManipulatorId": "1", "ClosedLoop": true, "TargetUm": 45}'
        answer = json.loads(await api.handle("jackhammer", [request]))
    assert [call[2] for call in sdk.calls_named("um_take_jackhammer_step")] == [0] * 6
    assert answer["StopReason"] == "target_reached"
    assert answer["IterationsUsed"] == 6
    assert answer["AdvancementUm"] == pytest.approx(45.0)


async def test_without_the_special_sdk_build_the_answer_names_the_function_and_nothing_moves() -> (
    None
):
    sdk = FakeSensapexSDK({1: 4})
    async with api_on(sdk) as api:
        for closed in ("false", "true"):
            request = f'{{"ManipulatorId": "1", "ClosedLoop": {closed}}}'
            assert await api.handle("jackhammer", [request]) == (
                '{"Position": {"x": 0, "y": 0, "z": 0, "w": 0}, "Error": "NotSupported:'
                " Sensapex uMp does not support jackhammer mode with this SDK: the loaded"
                " libum has no um_take_jackhammer_step (only Sensapex's special SDK build"
                ' has it)."}'
            )
    assert sdk.calls_named("goto_pos") == []
    assert sdk.calls_named("stop") == []
    assert sdk.devices[1].position_now() == [10_000.0] * 4
    # And the real SDK's way of failing is what the fake does: no such attribute.
    with pytest.raises(AttributeError):
        sdk.call("um_take_jackhammer_step", ctypes.c_int(1))


async def test_check_jackhammer_refuses_without_waiting() -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with open_rig(UmpPlatform(lambda: sdk)) as rig:
        with pytest.raises(NotSupported, match="um_take_jackhammer_step"):
            rig.actors["1"].manipulator.check_jackhammer()


async def test_a_stop_mid_jackhammer_stops_the_controller_where_it_is() -> None:
    sdk = FakeSensapexSDK({1: 4}, jackhammer=True)
    async with api_on(sdk) as api:
        hammer = '{"ManipulatorId":"1","Iterations":100}'
        async with in_background(lambda: api.handle("jackhammer", [hammer])) as answers:
            assert await api.handle("stop", ["1"]) == ""
        stopped_at = sdk.devices[1].position_now()
        await trio.sleep(0.1)
        assert sdk.devices[1].position_now() == stopped_at
    assert sdk.calls_named("stop")
    answer = json.loads(answers[0])
    assert answer["Error"] == "Manipulator 1 jackhammer was stopped."
    assert 10.0 < answer["Position"]["w"] < 10.75


async def test_abort_ends_a_closed_loop_on_the_controller() -> None:
    sdk = FakeSensapexSDK({1: 4}, jackhammer=True)
    async with api_on(sdk) as api:
        hammer = '{"ManipulatorId":"1","ClosedLoop":true,"TargetUm":9000}'
        async with in_background(lambda: api.handle("jackhammer", [hammer])) as answers:
            assert await api.handle("abort_jackhammer", []) == '{"success": true}'
    answer = json.loads(answers[0])
    assert (answer["StopReason"], answer["Error"]) == ("aborted", "")
    assert answer["IterationsUsed"] < 50
    assert sdk.calls_named("stop")
