"""``--platform newscale``: one manipulator per ``--port``, each on its own bridge."""

from __future__ import annotations

from typing import Annotated

import msgspec
import trio

from drivers.base import Manipulator, Platform, PlatformInfo, PlatformOptions
from drivers.newscale.driver import (
    DEFAULT_INTERVAL_US,
    TOLERANCE_MM,
    TRAVEL_MM,
    NewScaleManipulator,
)
from drivers.newscale.stage_info import INTERVAL_RANGE_US
from drivers.serial_ports import manipulator_settings, parse_port_specs

INFO = PlatformInfo(
    name="New Scale M3-LS (serial)",
    cli_name="newscale",
    axes_count=3,
    dimensions_mm=(TRAVEL_MM, TRAVEL_MM, TRAVEL_MM, TRAVEL_MM),
    tolerance_mm=TOLERANCE_MM,
)


class BridgeSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A ``[manipulators.NAME]`` table of a New Scale bridge."""

    # The closed-loop interval of a stage that does not report its own (the
    # driver reads it from each stage at open, as New Scale's library does).
    closed_loop_interval_us: Annotated[
        float, msgspec.Meta(ge=INTERVAL_RANGE_US[0], le=INTERVAL_RANGE_US[1])
    ] = DEFAULT_INTERVAL_US


def parse_ports(ports: tuple[str, ...]) -> list[tuple[str, str]]:
    """``DEVICE`` or ``NAME=DEVICE`` -> (manipulator id, device); ids "1", "2", ... by position."""
    return parse_port_specs(ports, "newscale")


class NewScalePlatform(Platform):
    """Nothing is shared between bridges: each manipulator's actor opens its own port."""

    info = INFO

    def __init__(self, options: PlatformOptions) -> None:
        self.options = options
        # Everything is checked here, before anything opens.
        self.ports = parse_ports(options.serial_ports)
        self.settings = manipulator_settings(
            options.manipulators, (name for name, _ in self.ports), BridgeSettings, "newscale"
        )

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        manipulators: list[Manipulator] = [
            NewScaleManipulator(
                name,
                device,
                self.options.serial_baud,
                default_interval_us=self.settings[name].closed_loop_interval_us,
            )
            for name, device in self.ports
        ]
        task_status.started(manipulators)
        await trio.sleep_forever()


def create_platform(options: PlatformOptions) -> Platform:
    return NewScalePlatform(options)
