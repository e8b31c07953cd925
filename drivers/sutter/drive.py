"""One Sutter drive as a manipulator: a thin client of its controller's bus.

The drive never touches the port. It plans (unified mm -> microsteps, the
speed byte, the segments of a long move, the steps of a slow one) and asks its
:class:`~drivers.sutter.bus.SutterBus` for each piece through a
:class:`~drivers.sutter.bus.BusHandle`. A cancelled move (stop, a newer move)
sends the bus a stop before it re-raises, so the drive is left halted and no
segment it asked for can start afterwards.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import msgspec
import numpy as np
import trio

from drivers.base import DeviceError, Manipulator, Vector
from drivers.coordinates import AxisMap, checked_target
from drivers.halting import halt_shielded
from drivers.sutter.bus import BusHandle, SegmentEnd, segment_duration_s
from drivers.sutter.codec import (
    DEFAULT_USTEPS_PER_UM,
    MIN_MOVE_USTEPS,
    PAUSE_AFTER_S_S,
    TRAVEL_UM,
    USteps,
    byte_speed_um_s,
    speed_byte_for,
)

log = logging.getLogger(__name__)

TRAVEL_MM = TRAVEL_UM / 1000
TOLERANCE_MM = 0.001
"""A move under 1 um on every axis is never sent, so a finished move is within 1 um."""

SEGMENT_S = 0.5
"""Longest piece of a move; between pieces the bus answers every drive's reads."""
STEP_PERIOD_S = 0.5
"""A move slower than the slowest speed byte takes one short step about this often."""
MIN_STEP_USTEPS = 2 * MIN_MOVE_USTEPS
"""A step the controller is sure to carry out (it ignores moves under 16 microsteps)."""
STEP_OVERHEAD_S = PAUSE_AFTER_S_S + 0.015
"""Per step besides the motion: the ``S`` pause, the position reads, the gaps."""

READ_TIMEOUT_S = 2.0
"""A read waits at most one segment (~0.55 s) behind a moving drive, plus the other reads."""
STOP_TIMEOUT_S = 0.5
OPEN_TIMEOUT_S = 5.0

Axis = Literal["x", "y", "z"]
AXES: dict[str, int] = {"x": 0, "y": 1, "z": 2}


class DriveSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A drive's ``[manipulators.NAME]`` table in the configuration file."""

    usteps_per_um: float = DEFAULT_USTEPS_PER_UM
    """Microsteps per micrometre: 16 for MP-285-class manipulators; others may differ."""
    invert: tuple[Axis, ...] = ()
    """Native axes that count the other way on this rig (read as 25 mm - position)."""
    depth_axis: Axis = "x"
    """The native axis along the probe: ``w`` and ``set_depth`` use it."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.usteps_per_um) and self.usteps_per_um > 0):
            raise ValueError(f"usteps_per_um must be a positive number, got {self.usteps_per_um}")


def axis_map(settings: DriveSettings) -> AxisMap:
    """Unified from native mm, like uMp-3: x = y_p, y = 25 - x_p, z = 25 - z_p, w = depth."""
    return AxisMap(
        source=(1, 0, 2, AXES[settings.depth_axis]),
        sign=(1.0, -1.0, -1.0, 1.0),
        offset=(0.0, TRAVEL_MM, TRAVEL_MM, 0.0),
    )


class SutterDrive(Manipulator):
    """Drive ``drive`` (1..4) of the controller behind ``bus``."""

    def __init__(
        self, manipulator_id: str, bus: BusHandle, drive: int, settings: DriveSettings
    ) -> None:
        super().__init__(manipulator_id)
        self.bus = bus
        self.drive = drive
        self.settings = settings
        self._map = axis_map(settings)
        self._depth = AXES[settings.depth_axis]
        self._inverted = np.array([a in settings.invert for a in AXES], dtype=bool)
        self._usteps_per_mm = settings.usteps_per_um * 1000
        self._travel_usteps = round(TRAVEL_UM * settings.usteps_per_um)

    def __repr__(self) -> str:
        return f"SutterDrive({self.id!r}, {self.bus.device!r}, drive {self.drive})"

    # --- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        await self.bus.attach(self.drive, OPEN_TIMEOUT_S)
        log.info("manipulator %s is drive %d on %s", self.id, self.drive, self.bus.device)

    async def close(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT_S):
            try:
                await self.bus.stop(self.drive, STOP_TIMEOUT_S)
            except DeviceError as exc:
                log.debug("manipulator %s: stop on close: %s", self.id, exc)

    # --- reads ------------------------------------------------------------------

    async def position(self) -> Vector:
        return self._unified(await self._position_usteps())

    async def _position_usteps(self) -> USteps:
        return await self.bus.position(self.drive, READ_TIMEOUT_S)

    # --- moves ------------------------------------------------------------------

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        unified = checked_target(target)
        native_mm = self._map.to_native(unified, 3)
        native_mm = np.where(self._inverted, TRAVEL_MM - native_mm, native_mm)
        x, y, z = (
            self._usteps_within_travel(float(mm), axis)
            for mm, axis in zip(native_mm, AXES, strict=True)
        )
        return self._unified(await self._go((x, y, z), speed_mm_s))

    async def move_depth(self, depth_mm: float, speed_mm_s: float) -> float:
        if not math.isfinite(depth_mm):
            raise DeviceError(f"depth must be a finite number in mm, got {depth_mm!r}")
        axis_mm = TRAVEL_MM - depth_mm if self._inverted[self._depth] else depth_mm
        goal_axis = self._usteps_within_travel(axis_mm, self.settings.depth_axis)
        native = list(await self._position_usteps())
        native[self._depth] = goal_axis  # only the depth axis moves
        goal = (native[0], native[1], native[2])
        return self._unified(await self._go(goal, speed_mm_s))[3]

    async def halt(self) -> None:
        await self.bus.stop(self.drive, STOP_TIMEOUT_S)
        log.info("manipulator %s halted", self.id)

    async def _go(self, goal: USteps, speed_mm_s: float) -> USteps:
        if not (math.isfinite(speed_mm_s) and speed_mm_s > 0):
            raise DeviceError(f"speed must be a positive number of mm/s, got {speed_mm_s!r}")
        try:
            start = await self._position_usteps()
            delta = np.subtract(goal, start)
            longest = float(np.max(np.abs(delta)))
            if longest < MIN_MOVE_USTEPS:
                return start  # under 1 um on every axis: answered at once, never sent
            path_factor = float(np.linalg.norm(delta)) / longest
            speed_um_s = speed_mm_s * 1000
            speed_byte = speed_byte_for(speed_um_s, path_factor)
            log.info(
                "manipulator %s: move to %s usteps at %s",
                self.id,
                goal,
                f"speed byte {speed_byte}" if speed_byte is not None else f"{speed_um_s:g} um/s",
            )
            if speed_byte is None:
                return await self._stepped(start, goal, speed_um_s)
            return await self._segmented(start, goal, speed_byte)
        except BaseException:
            await halt_shielded(self, STOP_TIMEOUT_S)
            raise

    async def _segmented(self, start: USteps, goal: USteps, speed_byte: int) -> USteps:
        """Pieces of at most SEGMENT_S along the line, each from where the last one ended."""
        axis_usteps_s = byte_speed_um_s(speed_byte) * self.settings.usteps_per_um
        piece = axis_usteps_s * SEGMENT_S
        current = start
        while True:
            delta = np.subtract(goal, current)
            longest = float(np.max(np.abs(delta)))
            if longest < MIN_MOVE_USTEPS:
                return current
            fraction = min(1.0, piece / longest)
            target = _rounded(np.asarray(current) + delta * fraction)
            end = await self._segment(current, target, speed_byte, axis_usteps_s)
            if end.interrupted:
                return end.position
            self._check_progress(current, end.position)
            current = end.position

    async def _stepped(self, start: USteps, goal: USteps, speed_um_s: float) -> USteps:
        """Slower than speed byte 0: short steps at byte 0, started on a clock.

        Step k starts no earlier than k periods after the first and ends k
        steps along the line, so the average never exceeds the request; the
        drive rests between steps, where a stop needs no byte at all.
        """
        delta = np.subtract(goal, start, dtype=np.float64)
        longest = float(np.max(np.abs(delta)))
        path_usteps = float(np.linalg.norm(delta))
        upu = self.settings.usteps_per_um
        slowest = byte_speed_um_s(0) * upu * path_usteps / longest  # path usteps/s at byte 0
        speed = speed_um_s * upu
        step = max(speed * STEP_PERIOD_S, MIN_STEP_USTEPS * path_usteps / longest)
        if speed < slowest:  # long enough that motion + overhead fit in one period
            step = max(step, STEP_OVERHEAD_S / (1 / speed - 1 / slowest))
        step = min(step, slowest * SEGMENT_S)
        period = step / speed
        steps = math.ceil(path_usteps / step)
        axis_usteps_s = byte_speed_um_s(0) * upu
        began = trio.current_time()
        current = start
        for k in range(1, steps + 1):
            await trio.sleep_until(began + (k - 1) * period)
            target = _rounded(np.asarray(start) + delta * min(1.0, k * step / path_usteps))
            end = await self._segment(current, target, 0, axis_usteps_s)
            if end.interrupted:
                return end.position
            current = end.position
        return current

    async def _segment(
        self, current: USteps, target: USteps, speed_byte: int, axis_usteps_s: float
    ) -> SegmentEnd:
        duration = segment_duration_s(current, target, axis_usteps_s)
        # The bus may run one segment of every other drive and their reads first.
        timeout = 4 * (SEGMENT_S + STEP_OVERHEAD_S) + duration * 1.5 + 2.0
        return await self.bus.segment(self.drive, target, speed_byte, duration, timeout)

    def _check_progress(self, before: USteps, after: USteps) -> None:
        if max(abs(a - b) for a, b in zip(after, before, strict=True)) < MIN_MOVE_USTEPS:
            raise DeviceError(
                f"manipulator {self.id}: drive {self.drive} did not move "
                f"(stuck at {self._unified(after)})"
            )

    # --- geometry ---------------------------------------------------------------

    def _usteps_within_travel(self, native_mm: float, axis: str) -> int:
        """Microsteps of one native axis; a target outside the travel is refused, never clamped."""
        usteps = round(native_mm * self._usteps_per_mm)
        if not 0 <= usteps <= self._travel_usteps:
            raise DeviceError(
                f"manipulator {self.id}: target puts drive {self.drive} axis {axis} at "
                f"{native_mm:.4f} mm, outside its 0..{TRAVEL_MM:g} mm travel"
            )
        return usteps

    def _unified(self, usteps: USteps) -> Vector:
        native_mm = np.asarray(usteps, dtype=np.float64) / self._usteps_per_mm
        native_mm = np.where(self._inverted, TRAVEL_MM - native_mm, native_mm)
        return self._map.to_unified(native_mm)


def _rounded(values: np.typing.NDArray[np.float64]) -> USteps:
    x, y, z = (round(float(v)) for v in values)
    return x, y, z
