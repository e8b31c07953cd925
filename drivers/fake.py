"""A simulated rig: manipulators that move at the requested speed, in real time.

Upstream's fake platform teleports; this one advances every manipulator along a
straight line at ``speed`` mm/s in steps of ``1 / update_hz`` s, so a move takes
as long as on a rig, ``position()`` sees intermediate points, and a cancelled
move (``stop``) leaves the probe where it was at that moment. Ids, angles and
shank counts are upstream's, so clients see the same rig.

Tests can unplug a manipulator (:meth:`FakeManipulator.unplug`) to exercise the
daemon's lost-device path.

The arithmetic is plain Python on 4-tuples: a simulated rig has no coordinate
transform, and not importing numpy keeps a fake daemon's memory small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import trio
import trio.lowlevel

from drivers.base import (
    DeviceError,
    DeviceLost,
    JackhammerPattern,
    Manipulator,
    Platform,
    PlatformInfo,
    PlatformOptions,
    Vector,
)

INFO = PlatformInfo(
    name="Fake Manipulator",
    cli_name="fake",
    axes_count=4,
    dimensions_mm=(20.0, 20.0, 20.0, 20.0),
    tolerance_mm=0.001,
)

# (yaw, pitch, roll) per manipulator index, as upstream's fake binding.
ANGLES: tuple[tuple[float, float, float], ...] = (
    (90.0, 60.0, 0.0),
    (-90.0, 60.0, 0.0),
    (180.0, 60.0, 0.0),
    (0.0, 60.0, 0.0),
    (45.0, 30.0, 0.0),
    (-45.0, 30.0, 0.0),
    (135.0, 30.0, 0.0),
    (-135.0, 30.0, 0.0),
)


ORIGIN: Vector = (0.0, 0.0, 0.0, 0.0)

JACKHAMMER_STEP_S = 0.01
"""How long one simulated jackhammer step takes."""
JACKHAMMER_THRUST_PER_MM = 10_000
"""Percent-of-thrust steps per mm: one step moves thrust x 0.1 um, so a default
cycle (10 steps at 15, then 5 at -15) advances 7.5 um in 150 ms."""


def _finite_vector(values: Iterable[float]) -> Vector | None:
    """``values`` as a Vector, or None unless they are exactly 4 finite numbers."""
    try:
        x, y, z, w = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    vector = (x, y, z, w)
    return vector if all(map(math.isfinite, vector)) else None


def _toward(start: Vector, goal: Vector, fraction: float) -> Vector:
    """The point ``fraction`` of the way from ``start`` to ``goal``."""
    x, y, z, w = start
    gx, gy, gz, gw = goal
    return (
        x + (gx - x) * fraction,
        y + (gy - y) * fraction,
        z + (gz - z) * fraction,
        w + (gw - w) * fraction,
    )


class FakeManipulator(Manipulator):
    """One simulated 4-axis manipulator."""

    def __init__(
        self,
        manipulator_id: str,
        angles: tuple[float, float, float],
        shank_count: int = 1,
        update_hz: float = 100.0,
    ) -> None:
        super().__init__(manipulator_id)
        self._position: Vector = ORIGIN
        self._angles = angles
        self._shank_count = shank_count
        self._step_s = 1.0 / update_hz
        self._plugged = True
        self.opened = False
        self.halts = 0
        self.moves_started = 0
        self.jackhammer_cycles = 0

    # --- test hooks --------------------------------------------------------------

    def unplug(self) -> None:
        """Every call raises DeviceLost until :meth:`replug`."""
        self._plugged = False

    def replug(self) -> None:
        self._plugged = True

    def _check(self) -> None:
        if not self._plugged:
            self.opened = False
            raise DeviceLost(f"fake manipulator {self.id} unplugged")
        if not self.opened:
            raise DeviceLost(f"fake manipulator {self.id} is not open")

    # --- Manipulator -------------------------------------------------------------

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()
        if not self._plugged:
            raise DeviceLost(f"fake manipulator {self.id} unplugged")
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    async def position(self) -> Vector:
        # No checkpoint: a simulated read is instantaneous, and the actor's
        # channel receive already gave the scheduler its turn.
        self._check()
        return self._position

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        self._check()
        self.moves_started += 1
        goal = _finite_vector(target)
        if goal is None or not math.isfinite(speed_mm_s) or speed_mm_s <= 0:
            raise DeviceError(f"invalid move target {target!r} at {speed_mm_s} mm/s")
        try:
            while True:
                start = self._position
                distance = math.dist(goal, start)
                step = speed_mm_s * self._step_s
                if distance <= step:
                    await trio.sleep(self._step_s * distance / step)
                    self._check()
                    self._position = goal
                    return goal
                await trio.sleep(self._step_s)
                self._check()
                self._position = _toward(start, goal, step / distance)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(0.2):
                await self.halt()
            raise

    async def halt(self) -> None:
        await trio.lowlevel.checkpoint()
        self.halts += 1

    def check_jackhammer(self) -> None:
        """The simulated rig can jackhammer, so that the closed loop is testable end to end."""

    async def jackhammer(self, axis: int, cycles: int, pattern: JackhammerPattern) -> None:
        """Step ``axis`` by thrust x 0.1 um every 10 ms (positive thrust: the axis
        grows, which on w is deeper); a cancelled run halts where it is."""
        self._check()
        if not 0 <= axis < len(self._position):
            raise DeviceError(f"fake manipulator {self.id} has no axis {axis}")
        phases = (
            (pattern.phase1_steps, pattern.phase1_pulses),
            (pattern.phase2_steps, pattern.phase2_pulses),
        )
        start = self._position[axis]
        thrust_sum = 0  # summed as integers, so positions stay round decimals
        try:
            for _ in range(cycles):
                self.jackhammer_cycles += 1
                for steps, thrust in phases:
                    for _ in range(steps):
                        await trio.sleep(JACKHAMMER_STEP_S)
                        self._check()
                        thrust_sum += thrust
                        self._set_axis(axis, start + thrust_sum / JACKHAMMER_THRUST_PER_MM)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(0.2):
                await self.halt()
            raise

    def _set_axis(self, axis: int, mm: float) -> None:
        position = list(self._position)
        position[axis] = mm
        x, y, z, w = position
        self._position = (x, y, z, w)

    async def angles(self) -> tuple[float, float, float]:
        await trio.lowlevel.checkpoint()
        self._check()
        return self._angles

    async def shank_count(self) -> int:
        await trio.lowlevel.checkpoint()
        self._check()
        return self._shank_count


class FakePlatform(Platform):
    def __init__(self, count: int = 8, update_hz: float = 100.0) -> None:
        self.info = INFO
        self.manipulators = [
            FakeManipulator(str(i), ANGLES[i % len(ANGLES)], 1, update_hz) for i in range(count)
        ]

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        task_status.started(list(self.manipulators))
        await trio.sleep_forever()


def create_platform(options: PlatformOptions) -> FakePlatform:
    return FakePlatform(count=options.manipulator_count)
