"""Controller counts <-> platform mm <-> unified mm, for one Scientifica manipulator.

Two steps, both data. Platform position (mm) = origin + sign x counts x unit,
per axis, where the unit is 0.1 µm (firmware 2) or 0.01 µm (firmware 3) and
the origin (default 10 mm) puts the controller's zero, which the user sets,
mid-travel. Then unified space as for a 3-axis Sensapex uMp-3:
x = y_p, y = dim_x - x_p, z = dim_z - z_p, and w, the depth along the probe,
mirrors the depth axis (x by default, the one along the probe).

With ``depth_axis = "approach"`` the probe runs along the controller's
approach direction, x and z together at its ``ANGLE`` above horizontal:
w = cos(angle) x_p + sin(angle) z_p, and a depth move moves x and z together.
(Scientifica's +z points down, towards the sample, so deeper is +x_p, +z_p.)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from drivers.base import DeviceError, Vector
from drivers.coordinates import AxisMap, NativeArray
from drivers.scientifica.settings import ManipulatorSettings

Counts = tuple[int, int, int]
AXES = "xyz"


class Geometry:
    def __init__(
        self, settings: ManipulatorSettings, counts_per_um: int, angle_deg: float | None = None
    ) -> None:
        self._mm_per_count = 1.0 / (counts_per_um * 1000.0)
        self._origin = np.asarray(settings.origin_mm, dtype=np.float64)
        self._sign = np.asarray(settings.sign, dtype=np.float64)
        self._dims = np.asarray(settings.dimensions_mm, dtype=np.float64)
        self.depth_axis = settings.depth_axis
        self._along: NativeArray | None = None
        if settings.depth_axis == "approach":
            if angle_deg is None:
                raise ValueError("depth along the approach direction needs the controller's ANGLE")
            rad = math.radians(angle_deg)
            self._along = np.array([math.cos(rad), 0.0, math.sin(rad)])
        depth_source = AXES.index(settings.depth_axis) if self._along is None else 0
        self._map = AxisMap(
            source=(1, 0, 2, depth_source),
            sign=(1.0, -1.0, -1.0, 1.0),
            offset=(0.0, settings.dimensions_mm[0], settings.dimensions_mm[2], 0.0),
        )

    # --- counts <-> platform mm ----------------------------------------------------

    def platform_mm(self, counts: npt.ArrayLike) -> NativeArray:
        return self._origin + self._sign * np.asarray(counts, dtype=np.float64) * self._mm_per_count

    def counts(self, platform_mm: npt.ArrayLike) -> Counts:
        raw = (np.asarray(platform_mm, dtype=np.float64) - self._origin) / (
            self._sign * self._mm_per_count
        )
        x, y, z = (round(v) for v in raw.tolist())
        return x, y, z

    # --- platform mm <-> unified ---------------------------------------------------

    def to_unified(self, counts: npt.ArrayLike) -> Vector:
        platform = self.platform_mm(counts)
        x, y, z, w = self._map.to_unified(platform)
        if self._along is not None:
            w = float(self._along @ platform)
        return (x, y, z, w)

    def depth(self, counts: npt.ArrayLike) -> float:
        return self.to_unified(counts)[3]

    def target(self, unified: NativeArray) -> Counts:
        """Counts for a unified (x, y, z) target; w is ignored. Refuses targets outside travel."""
        platform = self._map.to_native(unified, 3)
        self._check_travel(platform, (0, 1, 2))
        return self.counts(platform)

    def depth_target(self, current: Counts, depth_mm: float) -> Counts:
        """Counts that put the probe at ``depth_mm`` moving only the depth axis (or x and z
        together along the approach direction). Refuses targets outside travel."""
        platform = self.platform_mm(current)
        if self._along is None:
            axis = AXES.index(self.depth_axis)
            platform[axis] = depth_mm  # w mirrors the depth axis one to one
            moved: tuple[int, ...] = (axis,)
        else:
            platform = platform + (depth_mm - float(self._along @ platform)) * self._along
            moved = (0, 2)
        self._check_travel(platform, moved)
        new = self.counts(platform)
        x, y, z = (new[i] if i in moved else current[i] for i in range(3))
        return x, y, z

    def _check_travel(self, platform: NativeArray, axes: tuple[int, ...]) -> None:
        for axis in axes:
            value = float(platform[axis])
            if not (0.0 <= value <= self._dims[axis]) or not math.isfinite(value):
                raise DeviceError(
                    f"target puts axis {AXES[axis]} at {value:.4f} mm, outside its "
                    f"0..{self._dims[axis]:g} mm travel"
                )
