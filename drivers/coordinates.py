"""Conversion between unified space and a platform's own axes, as data.

Each platform declares one :class:`AxisMap` next to its driver instead of
writing the arithmetic again: ``unified[i] = offset[i] + sign[i] * native[source[i]]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.base import Vector


@dataclass(frozen=True)
class AxisMap:
    source: tuple[int, int, int, int]
    sign: tuple[float, float, float, float]
    offset: tuple[float, float, float, float]

    def to_unified(self, native: Vector) -> Vector:
        native = np.asarray(native, dtype=np.float64)
        return np.asarray(self.offset) + np.asarray(self.sign) * native[list(self.source)]

    def to_native(self, unified: Vector, native_axes: int) -> Vector:
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
