"""``--platform newscale``: one manipulator per ``--port``, each on its own bridge."""

from __future__ import annotations

import trio

from drivers.base import DeviceError, Manipulator, Platform, PlatformInfo, PlatformOptions
from drivers.newscale.driver import TOLERANCE_MM, TRAVEL_MM, NewScaleManipulator

INFO = PlatformInfo(
    name="New Scale M3-LS (serial)",
    cli_name="newscale",
    axes_count=3,
    dimensions_mm=(TRAVEL_MM, TRAVEL_MM, TRAVEL_MM, TRAVEL_MM),
    tolerance_mm=TOLERANCE_MM,
)


def parse_ports(ports: tuple[str, ...]) -> list[tuple[str, str]]:
    """``DEVICE`` or ``NAME=DEVICE`` -> (manipulator id, device); ids "1", "2", ... by position."""
    if not ports:
        raise DeviceError("--platform newscale needs at least one --port DEVICE")
    parsed: list[tuple[str, str]] = []
    for index, spec in enumerate(ports, start=1):
        name, sep, device = spec.partition("=")
        if not sep:
            name, device = str(index), spec
        name, device = name.strip(), device.strip()
        if not name or not device:
            raise DeviceError(f"--port {spec!r}: expected DEVICE or NAME=DEVICE")
        parsed.append((name, device))
    for what, values in (("id", [n for n, _ in parsed]), ("device", [d for _, d in parsed])):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise DeviceError(f"--port: manipulator {what} given twice: {', '.join(duplicates)}")
    return parsed


class NewScalePlatform(Platform):
    """Nothing is shared between bridges: each manipulator's actor opens its own port."""

    info = INFO

    def __init__(self, options: PlatformOptions) -> None:
        self.options = options

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        manipulators: list[Manipulator] = [
            NewScaleManipulator(name, device, self.options.serial_baud)
            for name, device in parse_ports(self.options.serial_ports)
        ]
        task_status.started(manipulators)
        await trio.sleep_forever()


def create_platform(options: PlatformOptions) -> Platform:
    return NewScalePlatform(options)
