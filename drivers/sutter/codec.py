"""The MPC-200 / MPC-325 binary protocol as bytes in, values out (no I/O, no clock).

A command is one byte, then little-endian binary arguments, with no
terminator; every reply ends with one CR. Replies are read by exact length,
never as lines, because a position may contain 0x0D. The driver (through its
bus) and the simulator both use this module, so the two cannot drift apart on
a byte layout.
"""

from __future__ import annotations

import math
import struct

import msgspec

CR = 0x0D
INTERRUPT = b"\x03"
"""^C: the only byte that may be written while a move runs."""

UM_PER_SPEED_STEP = 81.25
"""Speed byte n moves (n + 1) x 81.25 um/s along the longest axis."""
SPEED_BYTES = range(16)
PAUSE_AFTER_S_S = 0.03
"""The manual's pause between the ``S`` byte and the rest of the packet."""

DEFAULT_USTEPS_PER_UM = 16.0
TRAVEL_UM = 25000.0
MIN_MOVE_USTEPS = 16
"""A move whose every axis changes by less than this is ignored by the controller (no CR)."""

DRIVE_STATUS = b"U"
STATUS_REPLY_LEN = 6
FIRMWARE = b"K"
POSITION = b"C"
POSITION_REPLY_LEN = 14
SELECT = b"I"
MOVE_AT_SPEED = b"S"
NO_DRIVE = ord("E")

_POSITION = struct.Struct("<Biii")
_MOVE_BODY = struct.Struct("<Biii")

USteps = tuple[int, int, int]
"""A native position: x, y, z in microsteps."""


class CodecError(ValueError):
    """A reply that does not have the layout its command promises."""


class Firmware(msgspec.Struct, frozen=True):
    """What ``K`` says: the active drive and, on firmware 3+, the version."""

    drive: int
    version: str = "unknown"


def select(drive: int) -> bytes:
    if drive not in (1, 2, 3, 4):
        raise ValueError(f"drive must be 1..4, got {drive}")
    return SELECT + bytes([drive])


def move_body(speed_byte: int, target: USteps) -> bytes:
    """What follows ``S`` after the pause: the speed byte and x, y, z."""
    if speed_byte not in SPEED_BYTES:
        raise ValueError(f"speed byte must be 0..15, got {speed_byte}")
    if min(target) < 0:
        raise ValueError(f"negative target {target} must never be sent")
    return _MOVE_BODY.pack(speed_byte, *target)


def parse_move_body(body: bytes) -> tuple[int, USteps]:
    speed, x, y, z = _MOVE_BODY.unpack(body)
    return speed, (x, y, z)


MOVE_BODY_LEN = _MOVE_BODY.size


def _terminated(reply: bytes, length: int, what: str) -> bytes:
    if len(reply) != length or reply[-1] != CR:
        raise CodecError(f"{what} reply {reply.hex(' ')} is not {length} bytes ending in CR")
    return reply[:-1]


def parse_drive_status(reply: bytes) -> tuple[int, ...]:
    """``U`` -> the connected drives, in order."""
    count, *flags = _terminated(reply, STATUS_REPLY_LEN, "U")
    drives = tuple(d for d, flag in zip((1, 2, 3, 4), flags, strict=True) if flag == 1)
    if any(flag not in (0, 1) for flag in flags) or count != len(drives):
        raise CodecError(f"U reply {reply.hex(' ')} is inconsistent")
    return drives


def encode_drive_status(drives: tuple[int, ...]) -> bytes:
    return bytes([len(drives), *(1 if d in drives else 0 for d in (1, 2, 3, 4)), CR])


def parse_firmware(reply: bytes) -> Firmware:
    """``K`` -> 4 bytes (drive, minor BCD, major BCD, CR) on firmware 3+, else (drive, CR)."""
    if len(reply) == 2:
        body = _terminated(reply, 2, "K")
        return Firmware(drive=_drive(body[0], "K"))
    drive, minor, major = _terminated(reply, 4, "K")
    return Firmware(drive=_drive(drive, "K"), version=f"{major:x}.{minor:02x}")


def encode_firmware(drive: int, major: int, minor: int) -> bytes:
    return bytes([drive, int(str(minor), 16), int(str(major), 16), CR])


def parse_select(reply: bytes, drive: int) -> bool:
    """``I`` -> True when ``drive`` is now active, False when nothing is connected there (``E``).

    Firmware up to 1.05 answers a bare CR, which says nothing more than "done".
    """
    if reply == bytes([CR]):
        return True
    (echo,) = _terminated(reply, 2, "I")
    if echo == NO_DRIVE:
        return False
    if echo != drive:
        raise CodecError(f"I {drive} answered drive {echo}")
    return True


def parse_position(reply: bytes) -> tuple[int, USteps]:
    """``C`` -> (active drive, (x, y, z) microsteps)."""
    if len(reply) != POSITION_REPLY_LEN or reply[-1] != CR:
        raise CodecError(f"C reply of {len(reply)} bytes {reply.hex(' ')} is not 14 ending in CR")
    drive, x, y, z = _POSITION.unpack(reply[:-1])
    return _drive(drive, "C"), (x, y, z)


def encode_position(drive: int, position: USteps) -> bytes:
    return _POSITION.pack(drive, *position) + bytes([CR])


def _drive(value: int, what: str) -> int:
    if value not in (1, 2, 3, 4):
        raise CodecError(f"{what} reply names drive {value}")
    return value


# --- speeds -----------------------------------------------------------------------


def byte_speed_um_s(speed_byte: int) -> float:
    """The longest axis' speed at ``speed_byte``."""
    return (speed_byte + 1) * UM_PER_SPEED_STEP


def speed_byte_for(path_speed_um_s: float, path_factor: float) -> int | None:
    """The fastest byte whose path speed is not above the request; None below the slowest.

    The controller runs the longest axis at the byte's speed, so along a
    diagonal the probe travels ``path_factor`` (path length over the longest
    axis' distance, 1..sqrt(3)) times faster: that is the speed compared.
    """
    steps = math.floor(path_speed_um_s / (UM_PER_SPEED_STEP * path_factor) + 1e-9)
    if steps < 1:
        return None
    return min(steps, 16) - 1
