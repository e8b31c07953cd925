"""Sensapex uMp driver through FakeSensapexSDK, the test double of the SDK boundary."""

from __future__ import annotations

import errno
import importlib.util
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import pytest
import trio

from drivers.base import DeviceError, DeviceLost, Manipulator, NotSupported, Vector
from drivers.ump import UmpPlatform
from drivers.ump.sdk import SdkUnavailable, SensapexSDK, load_sensapex
from tests.ump.fake_sdk import (
    LIBUM_INVALID_ARG,
    LIBUM_INVALID_DEV,
    LIBUM_INVALID_RESP,
    LIBUM_NOT_OPEN,
    LIBUM_PEER_ERROR,
    LIBUM_TIMEOUT,
    FakeSensapexSDK,
    FakeUMError,
    um_error,
    um_os_error,
)


@asynccontextmanager
async def running(sdk: FakeSensapexSDK) -> AsyncIterator[tuple[UmpPlatform, list[Manipulator]]]:
    platform = UmpPlatform(lambda: sdk)
    async with trio.open_nursery() as nursery:
        manipulators = await nursery.start(platform.run)
        yield platform, manipulators
        nursery.cancel_scope.cancel()


async def start_error(factory: Callable[[], SensapexSDK]) -> str:
    platform = UmpPlatform(factory)
    async with trio.open_nursery() as nursery:
        with pytest.raises(DeviceError) as caught:
            await nursery.start(platform.run)
    return str(caught.value)


async def test_a_ump4_rig_lists_every_device_by_id() -> None:
    async with running(FakeSensapexSDK({1: 4, 2: 4})) as (platform, manipulators):
        assert [m.id for m in manipulators] == ["1", "2"]
        assert platform.info.axes_count == 4
        assert platform.info.cli_name == "ump"


async def test_ump4_position_maps_to_unified_space() -> None:
    sdk = FakeSensapexSDK({1: 4})
    sdk.devices[1].place([1000.0, 2000.0, 3000.0, 4000.0])
    async with running(sdk) as (_, [manipulator]):
        # x = y, y = 20 - z, z = x, w = d
        np.testing.assert_allclose(await manipulator.position(), [2.0, 17.0, 1.0, 4.0])


async def test_ump3_position_maps_to_unified_space_with_x_as_depth() -> None:
    sdk = FakeSensapexSDK({5: 3, 6: 3})
    sdk.devices[5].place([1000.0, 2000.0, 3000.0])
    async with running(sdk) as (platform, manipulators):
        assert platform.info.axes_count == 3
        # x = y, y = 20 - x, z = 20 - z, w = d (the x axis)
        np.testing.assert_allclose(await manipulators[0].position(), [2.0, 19.0, 17.0, 1.0])


async def test_ump4_move_goes_to_the_native_target_in_um_per_second_and_completes() -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):
        target = (10.5, 9.5, 10.2, 10.4)
        with trio.fail_after(5):
            final = await manipulator.move_to(target, 5.0)
        np.testing.assert_allclose(final, target, atol=0.001)
        [(_, _, pos, speed)] = sdk.calls_named("goto_pos")
        np.testing.assert_allclose(pos, [10_200.0, 10_500.0, 10_500.0, 10_400.0])
        assert speed == pytest.approx(5000.0)


async def test_ump3_move_sends_three_axes_and_ignores_w() -> None:
    sdk = FakeSensapexSDK({1: 3})
    async with running(sdk) as (_, [manipulator]):
        with trio.fail_after(5):
            final = await manipulator.move_to((10.5, 9.5, 10.2, 3.0), 5.0)
        [(_, _, pos, _)] = sdk.calls_named("goto_pos")
        np.testing.assert_allclose(pos, [10_500.0, 10_500.0, 9_800.0])
        np.testing.assert_allclose(final, [10.5, 9.5, 10.2, 10.5], atol=0.001)


async def test_set_depth_drives_d_on_a_ump4() -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):
        with trio.fail_after(5):
            depth = await manipulator.move_depth(10.3, 5.0)
        assert depth == pytest.approx(10.3, abs=0.001)
        [(_, _, pos, _)] = sdk.calls_named("goto_pos")
        assert pos == pytest.approx([10_000.0, 10_000.0, 10_000.0, 10_300.0])


async def test_set_depth_drives_x_on_a_ump3() -> None:
    sdk = FakeSensapexSDK({1: 3})
    async with running(sdk) as (_, [manipulator]):
        with trio.fail_after(5):
            depth = await manipulator.move_depth(10.3, 5.0)
        assert depth == pytest.approx(10.3, abs=0.001)
        [(_, _, pos, _)] = sdk.calls_named("goto_pos")
        assert pos == pytest.approx([10_300.0, 10_000.0, 10_000.0])


async def test_a_cancelled_move_stops_the_device_where_it_is() -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):
        with trio.move_on_after(0.2):
            await manipulator.move_to((19.0, 1.0, 19.0, 19.0), 0.5)
        assert len(sdk.calls_named("stop")) == 1
        here = await manipulator.position()
        await trio.sleep(0.1)
        np.testing.assert_allclose(await manipulator.position(), here)
        assert 10.0 < here[0] < 11.0


async def test_halt_goes_straight_to_the_device_and_the_move_returns_where_it_stopped() -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):
        finals: list[Vector] = []

        async def move() -> None:
            finals.append(await manipulator.move_to((19.0, 10.0, 10.0, 10.0), 0.5))

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(move)
                await trio.sleep(0.2)
                await manipulator.halt()
        assert sdk.calls_named("stop")
        assert 10.0 < finals[0][0] < 11.0


async def test_a_move_the_controller_gives_up_on_is_an_error_with_its_reason() -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):

        async def collide() -> None:
            await trio.sleep(0.1)
            sdk.devices[1].fail_move("collision detected")

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collide)
                with pytest.raises(DeviceError, match="uMp-4 1 move interrupted: collision"):
                    await manipulator.move_to((19.0, 10.0, 10.0, 10.0), 0.5)


async def test_angles_and_shank_count_are_not_supported() -> None:
    async with running(FakeSensapexSDK({1: 4})) as (_, [manipulator]):
        with pytest.raises(NotSupported, match="does not report angles"):
            await manipulator.angles()
        with pytest.raises(NotSupported, match="does not report a shank count"):
            await manipulator.shank_count()


async def test_a_mixed_ump3_and_ump4_rig_is_refused_at_start() -> None:
    message = await start_error(lambda: FakeSensapexSDK({1: 3, 2: 4, 3: 3}))
    assert "uMp-3: 1, 3; uMp-4: 2" in message
    assert "cannot be used together" in message


async def test_no_device_answering_is_a_clear_error_at_start() -> None:
    message = await start_error(lambda: FakeSensapexSDK({}))
    assert message.startswith("No Sensapex uMp device answered")


async def test_an_sdk_that_cannot_load_is_a_clear_error_at_start() -> None:
    def broken() -> SensapexSDK:
        raise SdkUnavailable("OSError: libum.so: cannot open shared object file")

    message = await start_error(broken)
    assert (
        message == "Sensapex SDK could not load: OSError: libum.so: cannot open shared object file"
    )


@pytest.mark.skipif(importlib.util.find_spec("sensapex") is not None, reason="sensapex installed")
def test_without_the_sensapex_extra_the_error_says_how_to_install_it() -> None:
    with pytest.raises(SdkUnavailable, match=r"install ephysd\[sensapex\]"):
        load_sensapex()


@pytest.mark.parametrize(
    "failure",
    [
        um_error(LIBUM_TIMEOUT),
        um_error(LIBUM_NOT_OPEN),
        um_error(LIBUM_INVALID_RESP),
        um_os_error(errno.ENETUNREACH),
    ],
    ids=["timeout", "not-open", "invalid-response", "os-error"],
)
async def test_sdk_failures_that_mean_the_device_is_gone_are_device_lost(
    failure: FakeUMError,
) -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):
        sdk.devices[1].failure = failure
        expected = re.escape(f"Sensapex uMp-4 1 position failed: FakeUMError: {failure}")
        with pytest.raises(DeviceLost, match=expected):
            await manipulator.position()
        with pytest.raises(DeviceLost):
            await manipulator.open()
        with pytest.raises(DeviceLost):
            await manipulator.halt()


@pytest.mark.parametrize(
    "failure",
    [
        um_error(LIBUM_INVALID_ARG, "um_goto_position_ext"),
        um_error(LIBUM_INVALID_DEV),
        um_error(LIBUM_PEER_ERROR),
    ],
    ids=["invalid-argument", "invalid-device-id", "peer-failure"],
)
async def test_sdk_errors_about_the_request_itself_stay_device_errors(
    failure: FakeUMError,
) -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):
        sdk.devices[1].failure = failure
        with pytest.raises(DeviceError, match=re.escape(str(failure))) as caught:
            await manipulator.position()
        assert not isinstance(caught.value, DeviceLost)


async def test_a_controller_that_vanishes_mid_move_fails_the_move_as_lost_at_once() -> None:
    sdk = FakeSensapexSDK({1: 4})
    async with running(sdk) as (_, [manipulator]):

        async def vanish() -> None:
            await trio.sleep(0.2)
            sdk.devices[1].unplug()

        # An 18 s move: its own limit is about a minute away.
        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(vanish)
                with pytest.raises(DeviceLost, match="Timeout"):
                    await manipulator.move_to((19.0, 10.0, 10.0, 10.0), 0.5)
        assert len(sdk.calls_named("stop")) == 1
