"""The ``40`` command's registers: closed-loop speed, cutoff and acceleration in a stage's units.

A stage does not take a speed in um/s. It takes ``V``, the counts its target
advances per *k* closed-loop intervals times 256, with *k* the interval count
(the fourth field). With *k* = 1 and a 1 ms interval one register step is
~1.95 um/s, so slow insertion speeds round badly (3 um/s would run at 3.91).
New Scale's own library (NstMotorCtrl ``SendCL_Speed``) raises *k* until the
registers are large enough; we raise it until the speed the registers produce
is within :data:`SPEED_PRECISION` of the request and the vendor's own
conditions hold too (``V`` > 7, cutoff and acceleration not zero).
The interval itself belongs to the stage (see ``drivers.newscale.stage_info``).
"""

from __future__ import annotations

import functools
import math

import msgspec

from drivers.newscale.codec import COUNTS_PER_UM, CodecError, hex_int, parse_hex

REGISTER_MAX_24 = (1 << 24) - 1
INTERVAL_COUNT_MAX = 0xFFFF

SPEED_PRECISION = 0.005
"""Largest relative error between the requested speed and the speed the registers produce."""
VENDOR_MIN_SPEED_REGISTER = 8
"""New Scale's library raises the interval count until V > 7."""


class SpeedRegisters(msgspec.Struct, frozen=True):
    """The four fields of the ``40`` command."""

    speed: int
    cutoff: int
    acceleration: int
    intervals: int = 1

    def args(self) -> tuple[str, str, str, str]:
        return (
            hex_int(self.speed, 6),
            hex_int(self.cutoff, 6),
            hex_int(self.acceleration, 6),
            hex_int(self.intervals, 4),
        )


@functools.lru_cache(maxsize=64)  # a rig moves at a handful of speeds; the search is a loop
def speed_registers(
    speed_um_s: float, accel_um_s2: float, cutoff_um_s: float, interval_s: float
) -> SpeedRegisters:
    """The registers for a closed-loop interval of ``interval_s``; refuses what cannot be met.

    The interval count grows from 1 until the register speed is within
    SPEED_PRECISION of ``speed_um_s``, V > 7 and the acceleration is not zero
    (as the vendor requires), with a cutoff of at least one register step and
    strictly below the speed (python-newscale refuses a cutoff at or above it).
    """
    for name, value in (
        ("speed", speed_um_s),
        ("acceleration", accel_um_s2),
        ("cutoff speed", cutoff_um_s),
        ("closed-loop interval", interval_s),
    ):
        if not (value > 0 and math.isfinite(value)):
            raise CodecError(f"{name} must be a positive number, got {value!r}")
    if cutoff_um_s >= speed_um_s:
        raise CodecError(f"cutoff speed {cutoff_um_s} um/s is not below the speed {speed_um_s}")
    speed_counts = speed_um_s * COUNTS_PER_UM
    cutoff_counts = cutoff_um_s * COUNTS_PER_UM
    for intervals in range(1, INTERVAL_COUNT_MAX + 1):
        period_s = interval_s * intervals
        v = round(speed_counts * 256 * period_s)
        if v > REGISTER_MAX_24:
            break  # only grows with the interval count
        c = round(cutoff_counts * 256 * period_s)
        a = round(v * period_s * accel_um_s2 / speed_um_s)
        if a > REGISTER_MAX_24:
            break
        produced = v / 256 / period_s
        precise = abs(produced - speed_counts) <= SPEED_PRECISION * speed_counts
        if precise and v >= VENDOR_MIN_SPEED_REGISTER and 1 <= c < v and a >= 1:
            return SpeedRegisters(speed=v, cutoff=c, acceleration=a, intervals=intervals)
    raise CodecError(
        f"speed {speed_um_s:g} um/s (acceleration {accel_um_s2:g} um/s^2) cannot be set "
        f"within {SPEED_PRECISION:.1%} on a {interval_s * 1e6:g} us closed-loop interval"
    )


def speed_from_registers(args: tuple[str, ...]) -> SpeedRegisters:
    """Parse the arguments of a ``40`` command (the simulated stage's side)."""
    if len(args) != 4:
        raise CodecError(f"command 40 takes 4 arguments, got {len(args)}")
    speed, cutoff, accel = (parse_hex(a, bits=24, signed=False) for a in args[:3])
    intervals = parse_hex(args[3], bits=16, signed=False)
    if speed == 0 or intervals == 0:
        raise CodecError("command 40 with a zero speed or interval count")
    return SpeedRegisters(speed=speed, cutoff=cutoff, acceleration=accel, intervals=intervals)


def registers_speed_um_s(regs: SpeedRegisters, interval_s: float) -> float:
    """The speed a stage with this closed-loop interval runs at for these registers."""
    counts_per_s = regs.speed / 256 / (regs.intervals * interval_s)
    return counts_per_s / COUNTS_PER_UM
