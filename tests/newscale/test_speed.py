"""The ``40`` registers: the speed a stage runs at for them, from 1 um/s to the maximum.

The stage advances its target V/256 counts every k closed-loop intervals; at 2
counts per um that is V / 256 / (k * interval) / 2 um/s. These tests compute
that from the registers themselves, as the stage would, and never from the
request.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.newscale.codec import CodecError
from drivers.newscale.driver import ACCEL_MM_S2, CUTOFF_MM_S, MAX_SPEED_MM_S, MIN_SPEED_MM_S
from drivers.newscale.speed import SpeedRegisters, speed_from_registers, speed_registers

ACCEL_UM_S2 = ACCEL_MM_S2 * 1000
REQUESTED_UM_S = (1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 25, 50, 100, 333, 1000, 2000, 3000)
# python-newscale's 1 ms; the simulator's 156 x 3.2 us; New Scale's library's 500 us fallback.
INTERVALS_US = (1000.0, 499.2, 500.0)


def stage_speed_um_s(regs: SpeedRegisters, interval_us: float) -> float:
    return regs.speed / 256 / (regs.intervals * interval_us * 1e-6) / 2


def stage_cutoff_um_s(regs: SpeedRegisters, interval_us: float) -> float:
    return regs.cutoff / 256 / (regs.intervals * interval_us * 1e-6) / 2


def driver_registers(speed_um_s: float, interval_us: float) -> SpeedRegisters:
    """The registers the driver sends for a request (its cutoff rule included)."""
    cutoff = min(CUTOFF_MM_S * 1000, speed_um_s / 2)
    return speed_registers(speed_um_s, ACCEL_UM_S2, cutoff, interval_us * 1e-6)


def test_registers_meet_the_request_within_1_percent_from_1_um_s_to_the_maximum() -> None:
    """With the cutoff below the speed. Prints the table (``pytest -s``, or on failure)."""
    assert REQUESTED_UM_S[0] == MIN_SPEED_MM_S * 1000
    assert REQUESTED_UM_S[-1] == MAX_SPEED_MM_S * 1000
    rows = [f"{'interval us':>11} {'requested':>9} {'register':>9} {'error':>7} {'k':>4} {'V':>6}"]
    for interval_us in INTERVALS_US:
        for requested in REQUESTED_UM_S:
            regs = driver_registers(requested, interval_us)
            produced = stage_speed_um_s(regs, interval_us)
            error = produced / requested - 1
            rows.append(
                f"{interval_us:11g} {requested:9g} {produced:9.4f} {error:+7.2%} "
                f"{regs.intervals:4d} {regs.speed:6d}"
            )
            assert abs(error) <= 0.01, rows[-1]
            assert 0 < stage_cutoff_um_s(regs, interval_us) < produced, rows[-1]
            assert regs.acceleration >= 1 and regs.speed > 7  # the vendor's own conditions
            assert speed_from_registers(regs.args()) == regs  # what goes on the wire reads back
    print("\n" + "\n".join(rows))


def test_slow_speeds_raise_the_interval_count_where_one_interval_would_round_badly() -> None:
    # With k = 1 on a 1 ms interval, 3 um/s would be V = round(1.536) = 2: 3.91 um/s (+30%).
    regs = driver_registers(3.0, 1000.0)
    assert regs.intervals > 1
    # New Scale's library stops raising k only once V > 7 and cutoff and acceleration are not 0.
    assert regs.speed > 7 and regs.cutoff > 0 and regs.acceleration > 0
    assert stage_speed_um_s(regs, 1000.0) == pytest.approx(3.0, rel=0.01)


def test_fast_speeds_keep_one_interval() -> None:
    regs = driver_registers(1000.0, 1000.0)
    # 1 mm/s = 2000 counts/s = 2 counts per 1 ms interval, * 256 = 512; A = 512 * 1 ms * 10 = 5
    assert (regs.speed, regs.cutoff, regs.acceleration, regs.intervals) == (512, 10, 5, 1)
    assert regs.args() == ("000200", "00000A", "000005", "0001")


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(
    speed=st.floats(min_value=1.0, max_value=3000.0),
    interval_us=st.floats(min_value=50.0, max_value=20000.0),
)
def test_any_speed_on_any_plausible_interval_is_met_within_one_percent(
    speed: float, interval_us: float
) -> None:
    regs = driver_registers(speed, interval_us)
    assert stage_speed_um_s(regs, interval_us) == pytest.approx(speed, rel=0.01)
    assert 1 <= regs.cutoff < regs.speed and regs.speed > 7 and regs.acceleration >= 1
    assert max(regs.speed, regs.cutoff, regs.acceleration) < 1 << 24 and regs.intervals < 1 << 16


@pytest.mark.parametrize(
    ("speed", "cutoff"),
    [(0.0, 0.5), (-1.0, 0.5), (float("nan"), 0.5), (float("inf"), 20.0), (5.0, 5.0), (5.0, 6.0)],
)
def test_speed_or_cutoff_that_cannot_be_set_is_refused(speed: float, cutoff: float) -> None:
    with pytest.raises(CodecError):
        speed_registers(speed, ACCEL_UM_S2, cutoff, 0.001)


def test_speed_too_fast_for_the_24_bit_register_is_refused() -> None:
    with pytest.raises(CodecError, match="cannot be set"):
        speed_registers(1e9, ACCEL_UM_S2, 20.0, 0.001)
