"""Sensapex uMp-3 / uMp-4 manipulators through Sensapex's SDK (``ephysd[sensapex]``)."""

from __future__ import annotations

from drivers.base import PlatformOptions
from drivers.ump.driver import UMP3_AXES, UMP4_AXES, UmpManipulator, UmpPlatform
from drivers.ump.sdk import load_sensapex


def create_platform(options: PlatformOptions) -> UmpPlatform:
    return UmpPlatform(load_sensapex)


__all__ = ["UMP3_AXES", "UMP4_AXES", "UmpManipulator", "UmpPlatform", "create_platform"]
