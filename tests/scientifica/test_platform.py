"""``--platform scientifica``: ports, the [manipulators.NAME] tables, and the platform's info."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drivers.base import PlatformConfigError, PlatformOptions
from drivers.scientifica import ScientificaPlatform
from drivers.scientifica.settings import ManipulatorSettings
from ephysd.platforms import create_platform
from tests.service.example_config import example_settings


def platform(ports: tuple[str, ...], **tables: dict[str, Any]) -> ScientificaPlatform:
    built = create_platform(
        "scientifica", PlatformOptions(serial_ports=ports, manipulators=dict(tables))
    )
    assert isinstance(built, ScientificaPlatform)
    return built


def test_one_manipulator_per_port_named_by_position_or_by_name() -> None:
    built = platform(("/dev/ttyUSB0", "left=/dev/ttyUSB1"))
    assert [(name, device) for name, device, _ in built.ports] == [
        ("1", "/dev/ttyUSB0"),
        ("left", "/dev/ttyUSB1"),
    ]
    info = built.info
    assert (info.cli_name, info.axes_count, info.dimensions_mm) == (
        "scientifica",
        3,
        (20.0, 20.0, 20.0, 20.0),
    )
    assert info.tolerance_mm == 0.001


def test_a_manipulator_table_sets_that_manipulator_only() -> None:
    built = platform(
        ("left=/dev/ttyUSB0", "right=/dev/ttyUSB1"),
        right={
            "baud": 38400,
            "sign": [1, -1, 1],
            "depth_axis": "approach",
            "origin_mm": [10, 12, 8],
        },
    )
    left, right = (settings for _, _, settings in built.ports)
    assert left.baud is None and left.sign == (1, 1, 1) and left.depth_axis == "x"
    assert right.baud == 38400 and right.sign == (1, -1, 1) and right.depth_axis == "approach"
    assert right.origin_mm == (10.0, 12.0, 8.0)


def test_the_largest_travel_is_the_platforms_dimensions() -> None:
    built = platform(
        ("a=/dev/ttyUSB0", "b=/dev/ttyUSB1"),
        b={"dimensions_mm": [25, 20, 15], "depth_axis": "y"},
    )
    assert built.info.dimensions_mm == (25.0, 20.0, 20.0, 20.0)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"bauds": 9600}, "unknown field `bauds`"),
        ({"baud": 115200}, "baud must be 9600 or 38400"),
        ({"baud": "fast"}, "Expected `int | null`"),
        ({"sign": [1, 0, 1]}, "sign must be 1 or -1"),
        ({"sign": [1, 1]}, "Expected `array` of length 3"),
        ({"depth_axis": "w"}, "Invalid enum value 'w'"),
        ({"dimensions_mm": [20, 0, 20]}, "dimensions_mm must be positive"),
        ({"origin_mm": [10, "10", 10]}, "Expected `float`"),
        ({"origin_mm": [10, float("nan"), 10]}, "origin_mm must be finite numbers"),
        ({"max_speed_mm_s": -1}, "max_speed_mm_s must be a positive number"),
    ],
)
def test_a_wrong_setting_is_one_clear_error_naming_its_table(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlatformConfigError, match=r"^\[manipulators\.left\]: ") as refused:
        platform(("left=/dev/ttyUSB0",), left=table)
    assert message in str(refused.value)


def test_a_table_for_a_manipulator_no_port_names_is_refused() -> None:
    with pytest.raises(
        PlatformConfigError, match=r"\[manipulators\.lefft\]: no --port is named 'lefft'"
    ):
        platform(("left=/dev/ttyUSB0",), lefft={"sign": [1, 1, -1]})


def test_ports_are_required_and_checked() -> None:
    with pytest.raises(PlatformConfigError, match="needs at least one --port"):
        platform(())
    with pytest.raises(PlatformConfigError, match="given twice"):
        platform(("/dev/ttyUSB0", "/dev/ttyUSB0"))


def test_a_bad_table_ends_the_daemon_with_status_2_and_one_line_before_opening_anything(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text(
        'platform = "scientifica"\nport = ["left=/dev/ttyUSB-missing"]\n'
        '[manipulators.left]\ndepth_axis = "diagonal"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "ephysd", "--config", str(config), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[manipulators.left]" in lines[0] and "diagonal" in lines[0]
    assert "ttyUSB-missing" not in done.stdout + done.stderr  # never tried to open it


def test_the_example_configuration_documents_every_key_with_its_default() -> None:
    table = example_settings()["manipulators"]["ivm"]
    built = platform(("ivm=/dev/ttyUSB0",), ivm=table)
    ((_, _, settings),) = built.ports
    documented = set(table)
    assert documented == set(ManipulatorSettings.__struct_fields__)
    defaults = ManipulatorSettings()
    for key in documented - {"baud"}:  # baud has no default: unset means "find it"
        assert getattr(settings, key) == getattr(defaults, key), key
