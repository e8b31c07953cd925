"""``--platform newscale``: one manipulator per ``--port``, each on its own bridge."""

from __future__ import annotations

import trio

from drivers.base import Manipulator, Platform, PlatformInfo, PlatformOptions
from drivers.newscale.driver import TOLERANCE_MM, TRAVEL_MM, NewScaleManipulator
from drivers.serial_ports import parse_port_specs

INFO = PlatformInfo(
    name="New Scale M3-LS (serial)",
    cli_name="newscale",
    axes_count=3,
    dimensions_mm=(TRAVEL_MM, TRAVEL_MM, TRAVEL_MM, TRAVEL_MM),
    tolerance_mm=TOLERANCE_MM,
)


def parse_ports(ports: tuple[str, ...]) -> list[tuple[str, str]]:
    """``DEVICE`` or ``NAME=DEVICE`` -> (manipulator id, device); ids "1", "2", ... by position."""
    return parse_port_specs(ports, "newscale")


class NewScalePlatform(Platform):
    """Nothing is shared between bridges: each manipulator's actor opens its own port."""

    info = INFO

    def __init__(self, options: PlatformOptions) -> None:
        self.options = options
        self.ports = parse_ports(options.serial_ports)  # checked before anything opens

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        manipulators: list[Manipulator] = [
            NewScaleManipulator(name, device, self.options.serial_baud)
            for name, device in self.ports
        ]
        task_status.started(manipulators)
        await trio.sleep_forever()


def create_platform(options: PlatformOptions) -> Platform:
    return NewScalePlatform(options)
