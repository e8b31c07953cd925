"""Jackhammer runs (Sensapex dura penetration), open and closed loop, as upstream 2.3.6 has them.

An open loop runs all its cycles, lets the stage settle and reads where it
ended. A closed loop runs one cycle at a time, settles, reads the depth and
decides: target reached (90 % of ``TargetUm``), too much backward movement,
or out of iterations. The numbers and the order of the checks are upstream's,
so a client sees the same ``StopReason`` for the same motion.

Where ephysd differs is how a run ends early. Upstream polls an abort flag
between iterations (an abort waits for the cycle in progress, and one sent
while nothing runs stops the *next* closed loop at once). Here the actor runs
these coroutines inside the cancel scope of the manipulator's current motion:
``abort_jackhammer``, ``stop``, ``stop_all``, the e-stop, a disconnect and a
newer request cancel it at once, the driver halts the device as its call
unwinds, and nothing is left behind for the next run. :class:`Progress`
outlives a cancelled run so that its answer can still say how far it got.
"""

from __future__ import annotations

from typing import Final

import trio

from drivers.base import JackhammerPattern, Manipulator, Vector
from ephysd.models import ClosedLoopReport, StopReason

DEPTH: Final = 3
"""Index of the depth in a unified position; upstream measures advancement on it
(its platform-space w, which is the unified w on every platform that jackhammers)."""
TARGET_FRACTION: Final = 0.9
BACKWARD_LIMIT_UM: Final = 250.0
"""One iteration that moves back more than this counts as a backward movement."""
BACKWARD_IN_ALL: Final = 3
BACKWARD_IN_A_ROW: Final = 2


def depth_axis(axes_count: int) -> int:
    """The native axis that drives along the probe: w on 4-axis manipulators,
    x on 3-axis ones (a uMp-3 inserts with x), as upstream's ``get_depth_axis``."""
    return 3 if axes_count == 4 else 0


def advancement_um(start: Vector, now: Vector) -> float:
    return (now[DEPTH] - start[DEPTH]) * 1000


class Progress:
    """How far a closed loop got; read by the actor after the run, finished or not."""

    __slots__ = ("iterations_used", "start")

    def __init__(self) -> None:
        self.start: Vector | None = None
        self.iterations_used = 0

    def report(self, reason: StopReason, position: Vector) -> ClosedLoopReport:
        advanced = 0.0 if self.start is None else advancement_um(self.start, position)
        return ClosedLoopReport(self.iterations_used, reason, advanced)


async def open_loop(
    manipulator: Manipulator, axis: int, cycles: int, pattern: JackhammerPattern, settle_s: float
) -> Vector:
    """Run ``cycles`` cycles in one go, settle, and return the final position."""
    await manipulator.jackhammer(axis, cycles, pattern)
    await trio.sleep(settle_s)
    return await manipulator.position()


async def closed_loop(
    manipulator: Manipulator,
    axis: int,
    pattern: JackhammerPattern,
    target_um: float,
    max_iterations: int,
    settle_s: float,
    progress: Progress,
) -> tuple[Vector, ClosedLoopReport]:
    """Cycle until the target depth is (nearly) reached, the probe keeps being
    pushed back, or ``max_iterations`` cycles have run; the final position and why."""
    start = progress.start = await manipulator.position()
    last = start
    backward = backward_in_a_row = 0
    for _ in range(max_iterations):
        await manipulator.jackhammer(axis, 1, pattern)
        progress.iterations_used += 1
        await trio.sleep(settle_s)
        now = await manipulator.position()
        if advancement_um(start, now) >= target_um * TARGET_FRACTION:
            return now, progress.report("target_reached", now)
        if advancement_um(last, now) < -BACKWARD_LIMIT_UM:
            backward += 1
            backward_in_a_row += 1
        else:
            backward_in_a_row = 0
        if backward >= BACKWARD_IN_ALL or backward_in_a_row >= BACKWARD_IN_A_ROW:
            return now, progress.report("backward_movement", now)
        last = now
    final = await manipulator.position()
    return final, progress.report("max_iterations", final)
