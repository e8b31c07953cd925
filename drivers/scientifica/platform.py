"""``--platform scientifica``: one manipulator per ``--port``, each its own controller."""

from __future__ import annotations

import trio

from drivers.base import Manipulator, Platform, PlatformInfo, PlatformOptions
from drivers.scientifica.driver import TOLERANCE_UM, ScientificaManipulator
from drivers.scientifica.settings import ManipulatorSettings, manipulator_settings

DEPTH_AXIS_INDEX = {"x": 0, "y": 1, "z": 2, "approach": 0}
"""Which axis's travel w has (along the approach direction, x's)."""


def platform_info(settings: list[ManipulatorSettings]) -> PlatformInfo:
    """3 axes; the dimensions of the largest configured travel (20 mm by default)."""
    x, y, z = (max(s.dimensions_mm[i] for s in settings) for i in range(3))
    w = max(s.dimensions_mm[DEPTH_AXIS_INDEX[s.depth_axis]] for s in settings)
    return PlatformInfo(
        name="Scientifica (serial)",
        cli_name="scientifica",
        axes_count=3,
        dimensions_mm=(x, y, z, w),
        tolerance_mm=2 * TOLERANCE_UM / 1000,
    )


class ScientificaPlatform(Platform):
    """Nothing is shared between controllers: each manipulator's actor opens its own port."""

    def __init__(self, options: PlatformOptions) -> None:
        self.ports = manipulator_settings(options)  # checked before anything opens
        self.info = platform_info([settings for _, _, settings in self.ports])

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        manipulators: list[Manipulator] = [
            ScientificaManipulator(name, device, settings) for name, device, settings in self.ports
        ]
        task_status.started(manipulators)
        await trio.sleep_forever()


def create_platform(options: PlatformOptions) -> Platform:
    return ScientificaPlatform(options)
