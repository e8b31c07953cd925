"""``--platform sutter``: one bus per controller port, one manipulator per connected drive."""

from __future__ import annotations

import logging

import msgspec
import trio

from drivers.base import (
    DeviceError,
    Manipulator,
    Platform,
    PlatformConfigError,
    PlatformInfo,
    PlatformOptions,
)
from drivers.serial_ports import parse_port_specs
from drivers.sutter.bus import SutterBus
from drivers.sutter.drive import TOLERANCE_MM, TRAVEL_MM, DriveSettings, SutterDrive

log = logging.getLogger(__name__)

INFO = PlatformInfo(
    name="Sutter MPC-200 / MPC-325",
    cli_name="sutter",
    axes_count=3,
    dimensions_mm=(TRAVEL_MM, TRAVEL_MM, TRAVEL_MM, TRAVEL_MM),
    tolerance_mm=TOLERANCE_MM,
)
DRIVES = (1, 2, 3, 4)


class Controller(msgspec.Struct, frozen=True):
    """One ``--port``: ``prefix`` names its drives ("" for the drive number alone)."""

    prefix: str
    device: str

    def drive_name(self, drive: int) -> str:
        return f"{self.prefix}-{drive}" if self.prefix else str(drive)


def parse_controllers(ports: tuple[str, ...]) -> list[Controller]:
    """A lone unnamed port names its drives "1".."4"; otherwise "NAME-<drive>"."""
    specs = parse_port_specs(ports, "sutter")
    if len(specs) == 1 and "=" not in ports[0]:
        return [Controller("", specs[0][1])]
    return [Controller(name, device) for name, device in specs]


def parse_drive_settings(
    controllers: list[Controller], tables: dict[str, dict[str, object]]
) -> dict[str, DriveSettings]:
    """``[manipulators.NAME]`` tables by drive name; an unknown name or key is a config error."""
    possible = {c.drive_name(d) for c in controllers for d in DRIVES}
    settings: dict[str, DriveSettings] = {}
    for name, table in tables.items():
        if name not in possible:
            raise PlatformConfigError(
                f"[manipulators.{name}]: no such Sutter drive; names are "
                f"{', '.join(sorted(possible))}"
            )
        try:
            settings[name] = msgspec.convert(table, DriveSettings)
        except (msgspec.ValidationError, ValueError) as exc:
            raise PlatformConfigError(f"[manipulators.{name}]: {exc}") from None
    return settings


class SutterPlatform(Platform):
    """Runs one :class:`SutterBus` per port; the drives it finds are the manipulators."""

    info = INFO

    def __init__(self, options: PlatformOptions) -> None:
        self.controllers = parse_controllers(options.serial_ports)
        self.settings = parse_drive_settings(self.controllers, options.manipulators)
        self.buses = [SutterBus(c.device) for c in self.controllers]

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        async with trio.open_nursery() as nursery:
            found: dict[int, tuple[int, ...]] = {}

            async def start(index: int) -> None:
                found[index] = await nursery.start(self.buses[index].run)

            try:
                async with trio.open_nursery() as starting:
                    for index in range(len(self.buses)):
                        starting.start_soon(start, index)
            except BaseExceptionGroup as group:
                first = group.subgroup(DeviceError)
                if first is not None:
                    raise _first_leaf(first) from None
                raise
            manipulators: list[Manipulator] = []
            for index, controller in enumerate(self.controllers):
                bus = self.buses[index]
                for drive in found[index]:
                    name = controller.drive_name(drive)
                    settings = self.settings.get(name, DriveSettings())
                    manipulators.append(SutterDrive(name, bus.handle, drive, settings))
            task_status.started(manipulators)


def _first_leaf(group: BaseExceptionGroup[DeviceError]) -> DeviceError:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def create_platform(options: PlatformOptions) -> Platform:
    return SutterPlatform(options)
