"""The closed loop's decisions, against a manipulator whose every cycle moves as scripted."""

from __future__ import annotations

import pytest

from drivers.base import JackhammerPattern, Manipulator, Vector
from ephysd import jackhammer
from ephysd.models import ClosedLoopReport

PATTERN = JackhammerPattern(10, 15, 5, -15)


class ScriptedDepth(Manipulator):
    """Each jackhammer cycle moves the depth by the next scripted number of um."""

    def __init__(self, deltas_um: list[float]) -> None:
        super().__init__("1")
        self._deltas = list(deltas_um)
        self._depth_mm = 2.0
        self.cycles: list[tuple[int, int, JackhammerPattern]] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def position(self) -> Vector:
        return (1.0, 2.0, 3.0, self._depth_mm)

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        raise AssertionError("a jackhammer never moves to a target")

    async def halt(self) -> None:
        return None

    def check_jackhammer(self) -> None:
        return None

    async def jackhammer(self, axis: int, cycles: int, pattern: JackhammerPattern) -> None:
        self.cycles.append((axis, cycles, pattern))
        self._depth_mm += self._deltas.pop(0) / 1000


async def run(
    deltas_um: list[float], target_um: float, max_iterations: int = 50
) -> tuple[ScriptedDepth, Vector, ClosedLoopReport]:
    device = ScriptedDepth(deltas_um)
    progress = jackhammer.Progress()
    final, report = await jackhammer.closed_loop(
        device, 3, PATTERN, target_um, max_iterations, 0.0, progress
    )
    assert progress.iterations_used == report.iterations_used
    return device, final, report


async def test_ninety_percent_of_the_target_is_enough() -> None:
    device, final, report = await run([20.0, 20.5, 100.0], target_um=45)
    assert report.stop_reason == "target_reached"
    assert report.iterations_used == 2
    assert report.advancement_um == pytest.approx(40.5)
    assert final[3] == pytest.approx(2.0405)
    # One cycle per iteration, on the axis asked for, with the request's pattern.
    assert device.cycles == [(3, 1, PATTERN), (3, 1, PATTERN)]


async def test_a_third_backward_movement_in_all_ends_the_loop() -> None:
    _, _, report = await run([-300.0, 400.0, -300.0, 400.0, -300.0, 400.0], target_um=10_000)
    assert report.stop_reason == "backward_movement"
    assert report.iterations_used == 5
    assert report.advancement_um == pytest.approx(-100.0)


async def test_two_backward_movements_in_a_row_end_the_loop() -> None:
    _, _, report = await run([10.0, -251.0, -251.0, 10.0], target_um=10_000)
    assert report.stop_reason == "backward_movement"
    assert report.iterations_used == 3


async def test_a_step_back_of_250_um_or_less_is_not_backward_movement() -> None:
    _, _, report = await run([-250.0, -250.0, -250.0], target_um=10_000, max_iterations=3)
    assert report.stop_reason == "max_iterations"
    assert report.iterations_used == 3
    assert report.advancement_um == pytest.approx(-750.0)


async def test_zero_iterations_is_max_iterations_at_once() -> None:
    device, _, report = await run([], target_um=10, max_iterations=0)
    assert report == ClosedLoopReport(0, "max_iterations", 0.0)
    assert device.cycles == []


def test_the_depth_axis_is_w_on_four_axes_and_x_on_three() -> None:
    assert jackhammer.depth_axis(4) == 3
    assert jackhammer.depth_axis(3) == 0
