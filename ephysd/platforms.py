"""CLI platform name -> driver module, imported only when chosen.

Lazy imports keep one platform's dependencies (an SDK, an HTTP client) from
being needed to run another, and keep start-up fast.
"""

from __future__ import annotations

import importlib
from typing import Final

from drivers.base import DeviceError, Platform, PlatformOptions

DRIVER_MODULES: Final[dict[str, str]] = {
    "fake": "drivers.fake",
    "newscale": "drivers.newscale",
    "pathfinder-mpm": "drivers.pathfinder_mpm",
    "parallax": "drivers.parallax",
    "ump": "drivers.ump",
    "scientifica": "drivers.scientifica",
    "sutter": "drivers.sutter",
}

PLATFORM_NAMES: Final = tuple(DRIVER_MODULES)

# Platforms that take ``--port`` (one serial device per manipulator); the
# others ignore a ``port`` list, and the daemon and ``ephysd check`` say so.
SERIAL_PLATFORMS: Final = frozenset({"newscale", "scientifica", "sutter"})


class PlatformUnavailable(DeviceError):
    """The chosen platform's driver cannot be loaded."""


def create_platform(name: str, options: PlatformOptions) -> Platform:
    """Build the platform called ``name`` on the command line."""
    try:
        module_name = DRIVER_MODULES[name]
    except KeyError:
        raise PlatformUnavailable(
            f"unknown platform {name!r}; choose one of: {', '.join(PLATFORM_NAMES)}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PlatformUnavailable(
            f"platform {name!r} is not available: cannot import {module_name} ({exc})"
        ) from None
    factory = getattr(module, "create_platform", None)
    if factory is None:
        raise PlatformUnavailable(f"platform {name!r}: {module_name} has no create_platform()")
    platform = factory(options)
    if not isinstance(platform, Platform):
        raise PlatformUnavailable(f"platform {name!r}: create_platform() returned {platform!r}")
    return platform
