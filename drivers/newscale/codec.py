"""Sans-IO framing of the New Scale M3-LS serial protocol (stages and the M3-USB bridge).

No I/O, no clock: bytes in, frames out, so the framing is testable with byte
strings and fuzzable, and the driver and the simulator share one definition of
the wire format. Malformed input only ever raises :class:`CodecError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator

import msgspec

FRAME_START = ord("<")
FRAME_END = b">\r"
MAX_FRAME_BYTES = 96
"""Longest frame we accept; anything longer is garbage (the longest real reply is ~40 bytes)."""

MAX_BUFFER_BYTES = 4096
"""Bound on undecoded input kept between ``receive_data`` calls."""

HIGH_BIT = 0x80
BRIDGE_FRAME_START = FRAME_START | HIGH_BIT
BRIDGE_FRAME_END = ord("\r") | HIGH_BIT

COUNTS_PER_MM = 2000
COUNTS_PER_UM = 2
TRAVEL_COUNTS = 30000
"""M3-LS-3.4-15: 15 mm of travel, 0 .. 30000 encoder counts."""

_CODE = re.compile(rb"[0-9A-F]{2}")
_ARG = re.compile(rb"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable, no '<' or '>'


class CodecError(ValueError):
    """Bytes that are not a valid frame, or a value that cannot be encoded."""


class Status(enum.IntFlag):
    """Status flag bits of the ``10`` reply (bit 0 = least significant)."""

    FORWARD = 1 << 1
    RUNNING = 1 << 2
    DRIVER_NOT_RESPONSIVE = 1 << 3
    BURST_MODE = 1 << 4
    TIMED_RUN = 1 << 5
    MULTIPLEXED_AXIS = 1 << 6
    HOST_CONTROL = 1 << 7
    FORWARD_LIMIT = 1 << 9
    REVERSE_LIMIT = 1 << 10
    MODE_BURST = 1 << 11
    BACKGROUND_JOB = 1 << 15
    ENCODER_ERROR = 1 << 16
    ZERO_REFERENCE = 1 << 17
    ON_TARGET = 1 << 18
    MOVING_TO_TARGET = 1 << 19
    MAINTENANCE_MODE = 1 << 20
    CLOSED_LOOP = 1 << 21
    ACCELERATING = 1 << 22
    STALLED = 1 << 23


class Frame(msgspec.Struct, frozen=True):
    """One ``<CC ARG ARG>`` message: a command we send or a reply we receive."""

    code: str
    args: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        """``<23>`` or ``<24>``, with or without arguments (the code alone decides, as in
        New Scale's library; python-newscale notes ``<24>`` may carry arguments)."""
        return self.code in ERROR_MEANINGS

    def describe_error(self) -> str:
        """``error 24 (invalid command in this state)``: names the code and what it means."""
        return f"error {self.code} ({ERROR_MEANINGS.get(self.code, 'unknown')})"


class Command(msgspec.Struct, frozen=True):
    """A frame as received by a device: plain (for the selected stage) or for the bridge."""

    frame: Frame
    bridge: bool
    raw: bytes


class Violation(msgspec.Struct, frozen=True):
    """Bytes a device received that are not a command in the USB bridge's framing.

    A plain ``TR`` before a bridge command is one: that prefix is the PoE
    box's form, and what a stage link does with it is undocumented.
    """

    raw: bytes
    reason: str


class StageState(msgspec.Struct, frozen=True):
    """The decoded ``10`` reply."""

    flags: Status
    position: int
    error: int

    @property
    def running(self) -> bool:
        return Status.RUNNING in self.flags

    @property
    def on_target(self) -> bool:
        return Status.ON_TARGET in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & (Status.STALLED | Status.ENCODER_ERROR))


ILLEGAL_FORMAT = "23"
ILLEGAL_STATE = "24"
ERROR_MEANINGS = {
    ILLEGAL_FORMAT: "invalid parameter or command format",
    ILLEGAL_STATE: "invalid command in this state",
}


# --- encoding ---------------------------------------------------------------


def _ascii(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise CodecError(f"{text!r} is not ASCII") from None


def encode_frame(code: str, *args: str) -> bytes:
    """``<CC A B>\\r``; refuses anything that would not parse back identically."""
    raw_code = _ascii(code)
    if not _CODE.fullmatch(raw_code):
        raise CodecError(f"command code must be two upper-case hex digits, got {code!r}")
    parts = [raw_code]
    for arg in args:
        raw_arg = _ascii(arg)
        if not _ARG.fullmatch(raw_arg):
            raise CodecError(f"argument {arg!r} of command {code} is not printable ASCII")
        parts.append(raw_arg)
    frame = b"<" + b" ".join(parts) + FRAME_END
    if len(frame) > MAX_FRAME_BYTES:
        raise CodecError(f"command {code} is {len(frame)} bytes, over {MAX_FRAME_BYTES}")
    return frame


def encode_stage(code: str, *args: str) -> bytes:
    """A command for the currently selected stage."""
    return encode_frame(code, *args)


def encode_bridge(code: str, *args: str) -> bytes:
    """A command for the USB bridge itself: the frame with every byte's high bit set.

    Nothing goes before it: New Scale's library and python-newscale send no
    ``TR`` on USB (``TR<..>`` in plain text is the PoE box's form, which
    ephysd does not speak).
    """
    return bytes(b | HIGH_BIT for b in encode_frame(code, *args))


def shown(command: bytes) -> str:
    """A command as text for a message: ``<40 000200 ...>``, bridge commands' high bits cleared."""
    return bytes(b & ~HIGH_BIT for b in command).decode("ascii", "replace").rstrip("\r")


def hex_int(value: int, digits: int) -> str:
    """Two's complement, upper-case, zero-padded hex of ``digits`` digits."""
    bits = 4 * digits
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        raise CodecError(f"{value} does not fit in {bits} bits")
    return f"{value & ((1 << bits) - 1):0{digits}X}"


def parse_hex(text: str, *, bits: int, signed: bool) -> int:
    if not text or len(text) > bits // 4 or not re.fullmatch(r"[0-9A-Fa-f]+", text):
        raise CodecError(f"{text!r} is not a {bits}-bit hex number")
    value = int(text, 16)
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def select_stage(address: int) -> bytes:
    """``<A0 XX>`` (high bits set): the following stage commands go to the stage at ``address``."""
    return encode_bridge("A0", f"{address:02X}")


def move_absolute(counts: int) -> bytes:
    """``<08 PPPPPPPP>``: closed-loop move to an absolute encoder count."""
    return encode_stage("08", hex_int(counts, 8))


# --- replies ----------------------------------------------------------------


def parse_frame(raw: bytes) -> Frame:
    """``<CC A B>\\r`` (or without the ``\\r``) -> Frame."""
    body = raw.removesuffix(b"\r")
    if not (body.startswith(b"<") and body.endswith(b">")) or len(body) < 4:
        raise CodecError(f"not a frame: {raw!r}")
    parts = body[1:-1].split(b" ")
    code, args = parts[0], parts[1:]
    if not _CODE.fullmatch(code):
        raise CodecError(f"bad command code in {raw!r}")
    if not all(_ARG.fullmatch(a) for a in args):
        raise CodecError(f"bad argument in {raw!r}")
    return Frame(code.decode("ascii"), tuple(a.decode("ascii") for a in args))


def parse_state(frame: Frame) -> StageState:
    """The ``<10 SSSSSS PPPPPPPP EEEEEEEE>`` reply."""
    if frame.code != "10" or len(frame.args) != 3:
        raise CodecError(f"not a status reply: {frame!r}")
    flags = parse_hex(frame.args[0], bits=24, signed=False)
    position = parse_hex(frame.args[1], bits=32, signed=True)
    error = parse_hex(frame.args[2], bits=32, signed=True)
    return StageState(flags=Status(flags), position=position, error=error)


def encode_state(state: StageState) -> bytes:
    """Simulator side of :func:`parse_state`."""
    return encode_frame(
        "10", hex_int(int(state.flags), 6), hex_int(state.position, 8), hex_int(state.error, 8)
    )


class ReplyDecoder:
    """Incremental decoder of a reply stream: bytes in any chunking -> frames.

    Garbage before a ``<`` is dropped; a second ``<`` inside a frame restarts
    the frame there (resynchronisation after a bridge reset); a frame longer
    than :data:`MAX_FRAME_BYTES` is dropped. A complete but malformed frame is
    consumed and reported by :meth:`next_frame` raising :class:`CodecError`, so
    the caller can log it and carry on.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    def receive_data(self, data: bytes | bytearray) -> None:
        self._buf += data
        if len(self._buf) > MAX_BUFFER_BYTES:
            # Keep only the tail that may still hold a frame start.
            cut = len(self._buf) - MAX_FRAME_BYTES
            self.discarded += cut
            del self._buf[:cut]

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame (bounded by MAX_BUFFER_BYTES)."""
        return len(self._buf)

    def clear(self) -> None:
        self.discarded += len(self._buf)
        self._buf.clear()

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None when more bytes are needed."""
        raw = self._next_raw()
        return None if raw is None else parse_frame(raw)

    def frames(self) -> Iterator[Frame]:
        """Every complete frame buffered so far; stops at the first malformed one (raises)."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def _next_raw(self) -> bytes | None:
        buf = self._buf
        while True:
            start = buf.find(b"<")
            if start < 0:
                self.discarded += len(buf)
                buf.clear()
                return None
            if start:
                self.discarded += start
                del buf[:start]
            end = buf.find(b"\r")
            restart = buf.find(b"<", 1)
            if restart >= 0 and (end < 0 or restart < end):
                # A new frame starts before this one ended: the first was a fragment.
                self.discarded += restart
                del buf[:restart]
                continue
            if end < 0:
                if len(buf) > MAX_FRAME_BYTES:
                    self.discarded += len(buf)
                    buf.clear()
                return None
            raw = bytes(buf[: end + 1])
            del buf[: end + 1]
            if len(raw) > MAX_FRAME_BYTES:
                self.discarded += len(raw)
                raise CodecError(f"frame of {len(raw)} bytes is too long")
            return raw


class CommandDecoder:
    """Device side: the host's byte stream -> stage commands, bridge commands and violations.

    Used by the simulator. A stage command is plain ``<..>\r``; a bridge
    command has every byte's high bit set, ``\r`` included, and nothing before
    it. Anything else (bytes outside a frame such as a ``TR`` prefix, a bridge
    frame with a plain byte in it, a frame cut short by the next one) comes out
    as a :class:`Violation`; a well-delimited frame whose content does not
    parse raises :class:`CodecError` (a stage answers that with ``<23>``).
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def receive_data(self, data: bytes | bytearray) -> None:
        self._buf += data
        if len(self._buf) > MAX_BUFFER_BYTES:
            del self._buf[: len(self._buf) - MAX_FRAME_BYTES]

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a command (bounded by MAX_BUFFER_BYTES)."""
        return len(self._buf)

    def next_command(self) -> Command | Violation | None:
        """The next command or violation, or None when more bytes are needed."""
        buf = self._buf
        if not buf:
            return None
        if buf[0] not in (FRAME_START, BRIDGE_FRAME_START):
            starts = [i for i in (buf.find(b"<"), buf.find(bytes([BRIDGE_FRAME_START]))) if i > 0]
            return self._take_violation(min(starts, default=len(buf)), "bytes outside a frame")
        bridge = buf[0] == BRIDGE_FRAME_START
        end_byte = BRIDGE_FRAME_END if bridge else ord("\r")
        for i in range(1, min(len(buf), MAX_FRAME_BYTES + 1)):
            byte = buf[i]
            if byte == end_byte:
                return self._take_command(i + 1, bridge)
            if bridge and not byte & HIGH_BIT:
                return self._take_violation(i, "bridge command with a byte without its high bit")
            if not bridge and (byte == FRAME_START or byte & HIGH_BIT):
                return self._take_violation(i, "command cut short by another")
        if len(buf) > MAX_FRAME_BYTES:
            return self._take_violation(MAX_FRAME_BYTES + 1, "command too long")
        return None

    def _take_violation(self, length: int, reason: str) -> Violation:
        raw = bytes(self._buf[:length])
        del self._buf[:length]
        return Violation(raw=raw, reason=reason)

    def _take_command(self, length: int, bridge: bool) -> Command:
        raw = bytes(self._buf[:length])
        del self._buf[:length]
        body = bytes(b & ~HIGH_BIT for b in raw) if bridge else raw
        return Command(frame=parse_frame(body), bridge=bridge, raw=raw)
