"""``--platform sutter``: ports and names, ``[manipulators]`` tables, ``ephysd ports``/``check``."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import drivers.sutter
from drivers.base import DeviceError, PlatformConfigError, PlatformOptions
from drivers.sutter.drive import DriveSettings
from drivers.sutter.platform import SutterPlatform
from drivers.sutter.sim import SutterSim
from ephysd.errors import find_leaf
from ephysd.ports import PortKind, classify
from tests.sutter.conftest import open_drives
from tests.usb_ports import usb_port

SYSTEMD = Path(__file__).parents[2] / "systemd"


def settings_of(ports: tuple[str, ...], tables: dict[str, dict[str, Any]]) -> SutterPlatform:
    platform = drivers.sutter.create_platform(
        PlatformOptions(serial_ports=ports, manipulators=tables)
    )
    assert isinstance(platform, SutterPlatform)
    return platform


def test_the_platform_has_three_axes_of_25_mm() -> None:
    info = settings_of(("/dev/x",), {}).info
    assert (info.cli_name, info.axes_count, info.dimensions_mm) == ("sutter", 3, (25.0,) * 4)


def test_drives_are_named_by_number_on_one_port_and_name_dash_number_on_several() -> None:
    one = settings_of(("/dev/x",), {}).controllers
    assert [c.drive_name(2) for c in one] == ["2"]
    named = settings_of(("rig=/dev/x",), {}).controllers
    assert [c.drive_name(2) for c in named] == ["rig-2"]
    several = settings_of(("/dev/x", "b=/dev/y"), {}).controllers
    assert [c.drive_name(4) for c in several] == ["1-4", "b-4"]


def test_per_drive_settings_come_from_the_manipulators_tables() -> None:
    platform = settings_of(
        ("/dev/x",), {"2": {"usteps_per_um": 10.667, "invert": ["y"], "depth_axis": "z"}}
    )
    assert platform.settings == {
        "2": DriveSettings(usteps_per_um=10.667, invert=("y",), depth_axis="z")
    }


@pytest.mark.parametrize(
    ("ports", "tables", "message"),
    [
        ((), {}, "needs at least one --port DEVICE"),
        (("/dev/x",), {"5": {}}, r"\[manipulators\.5\]: no such Sutter drive"),
        (("a=/dev/x", "/dev/y"), {"1": {}}, r"names are 2-1, 2-2, 2-3, 2-4, a-1"),
        (("/dev/x",), {"1": {"speed": 3}}, r"\[manipulators\.1\]: .*unknown field `speed`"),
        (("/dev/x",), {"1": {"usteps_per_um": 0}}, "usteps_per_um must be a positive number"),
        (
            ("/dev/x",),
            {"1": {"depth_axis": "w"}},
            r"\[manipulators\.1\]: Invalid enum value .w. - at `\$\.depth_axis`",
        ),
        (("/dev/x",), {"1": {"invert": ["q"]}}, r"\[manipulators\.1\]"),
    ],
)
def test_bad_settings_are_one_line_config_errors_before_anything_opens(
    ports: tuple[str, ...], tables: dict[str, dict[str, Any]], message: str
) -> None:
    with pytest.raises(PlatformConfigError, match=message) as caught:
        settings_of(ports, tables)
    assert "\n" not in str(caught.value)


async def test_inverted_axes_and_another_depth_axis_follow_the_drives_settings(
    sim: SutterSim, nursery: trio.Nursery
) -> None:
    tables = {"1": {"invert": ["x", "z"], "depth_axis": "z", "usteps_per_um": 8}}
    _, (one, _) = await open_drives(
        nursery, PlatformOptions(serial_ports=(sim.path,), manipulators=tables)
    )
    sim.positions[1] = (8 * 1000, 8 * 2000, 8 * 3000)  # native mm at 8 usteps/um: 1, 2, 3
    # x' = 24, z' = 22: x = y' = 2, y = 25 - 24 = 1, z = 25 - 22 = 3, w = z' = 22
    assert await one.position() == pytest.approx((2.0, 1.0, 3.0, 22.0))
    depth = await one.move_depth(21.0, 1.0)  # z' 22 -> 21: native z 3 -> 4 mm
    assert depth == pytest.approx(21.0)
    assert sim.position(1) == (8 * 1000, 8 * 2000, 8 * 4000)
    assert sim.position(2) == (200000, 200000, 200000)


async def test_a_controller_without_drives_or_an_absent_port_fails_start_up(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    empty = SutterSim(drives=())
    await nursery.start(empty.run)
    for port, message in ((empty.path, "no connected drive"), (str(tmp_path / "none"), "cannot")):
        platform = SutterPlatform(PlatformOptions(serial_ports=(port,)))
        with pytest.raises(BaseExceptionGroup) as caught:
            async with trio.open_nursery() as inner:
                await inner.start(platform.run)
        assert message in str(find_leaf(caught.value, DeviceError))


def test_ephysd_ports_marks_roe_200_controllers() -> None:
    roe = usb_port("/dev/ttyUSB3", 0x1342, 0x0001, "ROE-200", "Sutter", "SI1234")
    assert classify(roe) is PortKind.SUTTER_CONTROLLER
    assert classify(usb_port("/dev/ttyUSB4", 0x1342, 0x0002)) is PortKind.OTHER


def test_the_udev_rule_hands_the_roe_200_to_ftdi_sio_and_names_it() -> None:
    rules = [
        line
        for line in (SYSTEMD / "99-ephysd-sutter.rules").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    bind = [r for r in rules if "new_id" in r]
    assert len(bind) == 1
    assert 'ATTR{idVendor}=="1342"' in bind[0] and 'ATTR{idProduct}=="0001"' in bind[0]
    assert "modprobe -q ftdi_sio" in bind[0]
    assert "echo 1342 0001 > /sys/bus/usb-serial/drivers/ftdi_sio/new_id" in bind[0]
    assert any('SYMLINK+="sutter-$attr{serial}"' in r and 'GROUP="dialout"' in r for r in rules)
    for rule in rules:  # every clause is KEY op "value"
        assert re.fullmatch(
            r'([A-Z]+(\{[^}]+\})?(==|!=|\+=|=)"[^"]*")(, [A-Z]+(\{[^}]+\})?(==|!=|\+=|=)"[^"]*")*',
            rule,
        ), rule
    assert "ftdi_sio" in (SYSTEMD / "ephysd-modules.conf").read_text().split()


async def test_ephysd_check_lists_the_drives_without_moving_them(tmp_path: Path) -> None:
    sim = SutterSim(link=str(tmp_path / "sutter-check"), drives=(2, 3))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        result = await trio.run_process(
            [
                sys.executable,
                "-m",
                "ephysd",
                "check",
                "--platform",
                "sutter",
                "--port",
                sim.path,
                "--listen",
                "127.0.0.1:0",
            ],
            capture_stdout=True,
            check=False,
        )
        nursery.cancel_scope.cancel()
    out = result.stdout.decode()
    assert "ok    platform sutter: manipulators 2, 3" in out, out
    assert "manipulator 2: handshake ok" in out and "manipulator 3: handshake ok" in out
    assert result.returncode == 0, out
    assert sim.moves == [] and sim.violations == []
