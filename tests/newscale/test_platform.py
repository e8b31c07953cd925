"""``--platform newscale``: ports to manipulators, and independence of the manipulators."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import trio

import drivers.newscale
from drivers.base import DeviceError, DeviceLost, PlatformConfigError, PlatformOptions
from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.platform import parse_ports
from drivers.newscale.sim import NewScaleSim


def test_ports_become_manipulators_numbered_in_order_or_named() -> None:
    assert parse_ports(("/dev/ttyUSB0", "/dev/ttyUSB1")) == [
        ("1", "/dev/ttyUSB0"),
        ("2", "/dev/ttyUSB1"),
    ]
    assert parse_ports(("left=/dev/newscale-A", "/dev/ttyUSB1")) == [
        ("left", "/dev/newscale-A"),
        ("2", "/dev/ttyUSB1"),
    ]


@pytest.mark.parametrize(
    "ports", [("=/dev/x",), ("a=",), ("/dev/x", "/dev/x"), ("a=/dev/x", "a=/dev/y"), ("2=/x", "/y")]
)
def test_bad_or_ambiguous_ports_are_refused(ports: tuple[str, ...]) -> None:
    with pytest.raises(PlatformConfigError, match="--port"):
        parse_ports(ports)


def test_platform_reports_three_axes_of_fifteen_millimetres() -> None:
    platform = drivers.newscale.create_platform(PlatformOptions(serial_ports=("/dev/x",)))
    assert platform.info.cli_name == "newscale"
    assert platform.info.axes_count == 3
    assert platform.info.dimensions_mm == (15.0, 15.0, 15.0, 15.0)
    assert platform.info.tolerance_mm == 0.01


@pytest.mark.parametrize(
    ("tables", "said"),
    [
        ({"left": {"closed_loop_interval": 500}}, r"\[manipulators.left\]: .*unknown field"),
        (
            {"left": {"closed_loop_interval_us": 0}},
            r"\[manipulators.left\]: Expected `float` >= 50",
        ),
        ({"left": {"closed_loop_interval_us": "1ms"}}, r"\[manipulators.left\]: Expected `float`"),
        ({"right": {}}, r"\[manipulators.right\]: no --port is named 'right'"),
    ],
)
def test_a_bad_manipulator_table_is_one_config_error_line_before_anything_opens(
    tables: dict[str, dict[str, object]], said: str
) -> None:
    options = PlatformOptions(serial_ports=("left=/dev/x", "/dev/y"), manipulators=tables)
    with pytest.raises(PlatformConfigError, match=said) as caught:
        drivers.newscale.create_platform(options)
    assert "\n" not in str(caught.value)


async def test_the_per_bridge_interval_setting_reaches_only_its_manipulator(
    nursery: trio.Nursery,
) -> None:
    options = PlatformOptions(
        serial_ports=("left=/dev/x", "/dev/y"),
        manipulators={"left": {"closed_loop_interval_us": 500}},
    )
    left, other = await nursery.start(drivers.newscale.create_platform(options).run)
    assert isinstance(left, NewScaleManipulator) and isinstance(other, NewScaleManipulator)
    assert left.intervals_us == dict.fromkeys((1, 2, 3), 500.0)  # until a stage says otherwise
    assert other.intervals_us == dict.fromkeys((1, 2, 3), 1000.0)


def test_platform_without_a_port_is_a_config_error_before_anything_opens() -> None:
    with pytest.raises(PlatformConfigError, match="needs at least one --port DEVICE"):
        drivers.newscale.create_platform(PlatformOptions())


async def test_a_dead_or_silent_port_never_delays_another_manipulator(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    healthy, silent = NewScaleSim(), NewScaleSim()
    await nursery.start(healthy.run)
    await nursery.start(silent.run)
    options = PlatformOptions(
        serial_ports=(healthy.path, f"quiet={silent.path}", str(tmp_path / "unplugged"))
    )
    platform = drivers.newscale.create_platform(options)
    good, quiet, dead = await nursery.start(platform.run)
    assert [m.id for m in (good, quiet, dead)] == ["1", "quiet", "3"]
    await good.open()
    await quiet.open()
    silent.silent = True
    reads = 0

    async def keep_reading_good() -> None:
        nonlocal reads
        for _ in range(20):
            assert np.allclose(await good.position(), 7.5)
            reads += 1

    async def expect(error: type[DeviceError], call: Callable[[], Awaitable[object]]) -> None:
        with pytest.raises(error):
            await call()

    with trio.fail_after(2):
        async with trio.open_nursery() as inner:
            inner.start_soon(keep_reading_good)
            inner.start_soon(expect, DeviceError, quiet.position)
            inner.start_soon(expect, DeviceLost, dead.open)
    assert reads == 20
    for manipulator in (good, quiet, dead):
        await manipulator.close()
