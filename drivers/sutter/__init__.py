"""Sutter MPC-200 / MPC-325 controllers, up to four drives on one port (``--platform sutter``)."""

from drivers.sutter.bus import BusHandle, SutterBus
from drivers.sutter.drive import DriveSettings, SutterDrive
from drivers.sutter.platform import SutterPlatform, create_platform

__all__ = [
    "BusHandle",
    "DriveSettings",
    "SutterBus",
    "SutterDrive",
    "SutterPlatform",
    "create_platform",
]
