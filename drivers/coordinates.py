"""Conversion between unified space and a platform's own axes, as data.

Each platform declares one :class:`AxisMap` next to its driver instead of
writing the arithmetic again: ``unified[i] = offset[i] + sign[i] * native[source[i]]``.

numpy does the arithmetic here, inside the real drivers; the driver contract
speaks plain 4-tuples (:data:`drivers.base.Vector`), so this is where the two
meet: anything array-like goes in, a ``Vector`` comes out of ``to_unified``, and
``to_native`` gives the driver a numpy array of native coordinates to work on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.base import DeviceError, Vector

NativeArray = npt.NDArray[np.float64]
"""Native coordinates in a driver, one entry per native axis (mm or the device's unit)."""


def checked_target(target: Vector) -> NativeArray:
    """A move's ``target`` as numpy; DeviceError unless it is 4 numbers, x, y and z finite.

    w is left unchecked: a 3-axis platform ignores it.
    """
    unified = np.asarray(target, dtype=np.float64)
    if unified.shape != (4,) or not np.all(np.isfinite(unified[:3])):
        raise DeviceError(f"target must be 4 finite numbers in mm, got {target!r}")
    return unified


@dataclass(frozen=True)
class AxisMap:
    source: tuple[int, int, int, int]
    sign: tuple[float, float, float, float]
    offset: tuple[float, float, float, float]

    def to_unified(self, native: npt.ArrayLike) -> Vector:
        native = np.asarray(native, dtype=np.float64)
        unified = np.asarray(self.offset) + np.asarray(self.sign) * native[list(self.source)]
        x, y, z, w = unified.tolist()  # Python floats, in one call
        return (x, y, z, w)

    def to_native(self, unified: npt.ArrayLike, native_axes: int) -> NativeArray:
        """Native coordinates of ``unified``.

        When two unified axes come from one native axis (3-axis platforms copy
        depth into w), the first unified axis that names it wins, so position
        moves follow x, y, z and ignore w.
        """
        unified = np.asarray(unified, dtype=np.float64)
        native = np.zeros(native_axes, dtype=np.float64)
        seen: set[int] = set()
        for i, j in enumerate(self.source):
            if j >= native_axes or j in seen:
                continue
            seen.add(j)
            native[j] = (unified[i] - self.offset[i]) * self.sign[i]
        return native
