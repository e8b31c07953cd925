"""What a stage says about itself at open, and what the driver accepts.

The driver converts millimetres to counts at 0.5 um and checks targets against
15 mm of travel, so a stage that is anything but an M3-LS with a 0.5 um encoder
would be driven to the wrong place: it is refused at open. New Scale's own
library (NstMotorCtrl ``QueryAxisDesc``/``QueryAxis``) reads the same facts
from every stage when it connects, with the same commands:

- ``<01>`` -> ``<01 M HHHH VERSION MODEL>``: M = 1 when a motor is present
  (the library reads the character after ``<01 ``), then the firmware version
  and the controller model (the library looks for "M3-LS" in it).
- ``<44>`` -> ``<44 VENDOR,RES,UNITS>``: the encoder; RES may be ``num/den``;
  missing units mean nm, as in the library (which also reads unknown units as
  nm; we refuse units that are not a length rather than guess).
- ``<52>`` -> ``<52 3.2 USEC>``: the timer resolution in us.
- ``<16 piezoq>`` then ``<12 082 02>`` -> ``<12 VVVV>``: EEPROM word 0x82, the
  closed-loop interval in timer ticks. (The library sends the password to
  every stage before its EEPROM reads; it never writes EEPROM on connect,
  and neither do we.)

Pure functions, no I/O: the driver asks, these read the answers.
"""

from __future__ import annotations

import math

import msgspec

from drivers.newscale.codec import CodecError, Frame, parse_hex

MODEL = "M3-LS"
ENCODER_UM = 0.5
EEPROM_PASSWORD = "piezoq"
INTERVAL_EEPROM_ADDRESS = 0x82
INTERVAL_EEPROM_BYTES = 2
INTERVAL_RANGE_US = (50.0, 20000.0)
"""A closed-loop interval outside this is a misread (the library falls back to 500 us, python-
newscale assumes 1000 us); speeds scale with it, so such a stage is refused, not guessed at."""

_UNITS_UM = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "mm": 1e3, "in": 25400.0}


class Firmware(msgspec.Struct, frozen=True):
    """The ``<01>`` reply of a stage."""

    motor_present: bool
    version: str
    model: str

    def refusal(self) -> str | None:
        """Why the driver must not drive this stage, or None."""
        if not self.motor_present:
            return "reports no motor"
        if not self.model:
            return f"does not name its model (expected an {MODEL})"
        if MODEL not in self.model:
            return f"is a {self.model}, not an {MODEL}"
        return None


class Encoder(msgspec.Struct, frozen=True):
    """The ``<44>`` reply: resolution in ``units`` per count."""

    vendor: str
    resolution: float
    units: str

    @property
    def resolution_um(self) -> float | None:
        """Micrometres per count, or None for units that are not a length."""
        scale = _UNITS_UM.get(self.units.lower())
        return None if scale is None else self.resolution * scale

    def refusal(self) -> str | None:
        um = self.resolution_um
        if um is None:
            return f"reports its encoder in {self.units!r}, not a length"
        if not math.isclose(um, ENCODER_UM, rel_tol=1e-6):
            return f"has a {um:g} um encoder, not {ENCODER_UM:g} um"
        return None


def parse_firmware(frame: Frame) -> Firmware:
    args = frame.args
    return Firmware(
        motor_present=bool(args) and args[0] == "1",
        version=args[2] if len(args) > 2 else "",
        model=" ".join(args[3:]),
    )


def parse_encoder(frame: Frame) -> Encoder:
    """``<44 VENDOR,RES,UNITS>``; CodecError when it cannot be read."""
    parts = [p.strip() for p in " ".join(frame.args).split(",")]
    if len(parts) < 2:
        raise CodecError(f"encoder reply without a resolution: {frame}")
    numerator, slash, denominator = parts[1].partition("/")
    try:
        resolution = float(numerator) / (float(denominator) if slash else 1.0)
    except (ValueError, ZeroDivisionError):
        raise CodecError(f"encoder resolution {parts[1]!r} is not a number") from None
    if not (resolution > 0 and math.isfinite(resolution)):
        raise CodecError(f"encoder resolution {parts[1]!r} is not positive")
    units = parts[2] if len(parts) > 2 and parts[2] else "nm"
    return Encoder(vendor=parts[0], resolution=resolution, units=units)


def parse_timer_resolution_us(frame: Frame) -> float:
    """``<52 3.2 USEC>`` -> 3.2."""
    try:
        value = float(frame.args[0])
    except (IndexError, ValueError):
        raise CodecError(f"timer resolution reply without a number: {frame}") from None
    if not (value > 0 and math.isfinite(value)):
        raise CodecError(f"timer resolution {value!r} is not positive")
    return value


def parse_eeprom(frame: Frame, byte_count: int) -> int:
    """``<12 VVVV>``: the value read, exactly ``2 * byte_count`` hex digits."""
    if not frame.args or len(frame.args[0]) != 2 * byte_count:
        raise CodecError(f"EEPROM reply is not {byte_count} bytes: {frame}")
    return parse_hex(frame.args[0], bits=8 * byte_count, signed=False)


def eeprom_read_args(address: int, byte_count: int) -> tuple[str, str]:
    """``<12 AAA NN>``: a 3-digit address and a 2-digit byte count, as the library sends them."""
    return f"{address:03X}", f"{byte_count:02X}"


def interval_refusal(interval_us: float) -> str | None:
    low, high = INTERVAL_RANGE_US
    if not low <= interval_us <= high:
        return f"reports a closed-loop interval of {interval_us:g} us, outside {low:g}..{high:g} us"
    return None
