"""The ``[manipulators.NAME]`` keys of a Scientifica manipulator, checked before any port opens.

A wrong sign or depth axis drives a probe the wrong way, so everything is
validated when the platform is created (the daemon then exits 2 with one
line): unknown keys, wrong types, impossible values, and tables naming no
``--port`` (a typo there would otherwise silently leave the defaults).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from drivers import serial_ports
from drivers.base import PlatformConfigError, PlatformOptions
from drivers.scientifica.protocol import BAUD_RATES
from drivers.serial_ports import parse_port_specs

DepthAxis = Literal["x", "y", "z", "approach"]


class ManipulatorSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One controller's geometry and line settings; every key is optional."""

    # 9600 or 38400; unset: try 9600, then 38400.
    baud: int | None = None
    # Platform position (mm) of the controller's zero, per axis x, y, z.
    origin_mm: tuple[float, float, float] = (10.0, 10.0, 10.0)
    # Travel per axis (mm); targets outside 0..dimension are refused.
    dimensions_mm: tuple[float, float, float] = (20.0, 20.0, 20.0)
    # +1 or -1 per axis: -1 flips an axis whose counts run against the platform's direction.
    sign: tuple[int, int, int] = (1, 1, 1)
    # The axis along the probe (w): "x", "y", "z", or "approach" (x and z at the
    # controller's ANGLE).
    depth_axis: DepthAxis = "x"
    # Faster requests are slowed to this (mm/s).
    max_speed_mm_s: float = 2.0


def _checked(name: str, settings: ManipulatorSettings) -> ManipulatorSettings:
    """The values a type cannot rule out: rates, signs, finite and positive lengths."""
    where = f"[manipulators.{name}]"
    if settings.baud is not None and settings.baud not in BAUD_RATES:
        raise PlatformConfigError(f"{where}: baud must be 9600 or 38400, not {settings.baud}")
    if any(s not in (1, -1) for s in settings.sign):
        raise PlatformConfigError(f"{where}: sign must be 1 or -1 per axis, not {settings.sign}")
    if not all(math.isfinite(v) and v > 0 for v in settings.dimensions_mm):
        raise PlatformConfigError(
            f"{where}: dimensions_mm must be positive, not {settings.dimensions_mm}"
        )
    if not all(math.isfinite(v) for v in settings.origin_mm):
        raise PlatformConfigError(f"{where}: origin_mm must be finite numbers")
    if not (math.isfinite(settings.max_speed_mm_s) and settings.max_speed_mm_s > 0):
        raise PlatformConfigError(f"{where}: max_speed_mm_s must be a positive number")
    return settings


def manipulator_settings(options: PlatformOptions) -> list[tuple[str, str, ManipulatorSettings]]:
    """(name, device, settings) per ``--port``, in order; PlatformConfigError for anything wrong."""
    ports = parse_port_specs(options.serial_ports, "scientifica")
    tables = serial_ports.manipulator_settings(
        options.manipulators, (name for name, _ in ports), ManipulatorSettings, "scientifica"
    )
    return [(name, device, _checked(name, tables[name])) for name, device in ports]
