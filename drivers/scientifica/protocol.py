"""The Scientifica controller protocol, sans-IO: ASCII commands and one-line replies.

A command is ASCII text ending in CR; the controller answers with one line
ending in CR (no LF, no echo), or ``E,<n>`` when it refuses. Replies carry no
command name, so the only defence against a stale or garbled line is to check
that it has the shape the command expects: every parser here raises
:class:`CorruptReply` for anything else, and the transport drains and asks
again. Nothing here does I/O or reads a clock.

The facts and the choices made where sources disagree are in
``../shared/reference/scientifica-serial.md``; the ones worth repeating:
the generation comes from ``VER`` (never the baud rate), ``TYPE`` names the
model, and speeds are µm/s on firmware 3 but "raw" units scaled by the X
axis's ``UUX`` on firmware 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from drivers.base import DeviceError

CR = b"\r"
HELLO = "scientifica"
HELLO_REPLY = "Y519"
ACK = "A"
MAX_LINE = 128
"""Longer than any reply (a position is three integers); more without a CR is garbage."""

BAUD_RATES = (9600, 38400)
"""The rates controllers use; without a configured rate ephysd tries them in this order."""

MIN_CONTINUOUS_UM_S = 100.0
"""Slower moves are stepped: older controllers cannot move this slowly (ACQ4's default)."""
FACTORY_UU = 6.4
"""|UUX| of PatchStar, MicroStar and IVM on firmware 2 (0.1 µm counts); ACQ4's vendor table."""
FACTORY_USTEP = 10240 / FACTORY_UU
"""The same on firmware 3 (``USTEP X``; ACQ4: the firmware 3 value is 10240 / the UU value)."""
RAW_TOP_RANGE = (1000, 50000)
"""Firmware 2 accepts ``TOP`` raw values in this range only."""


class CorruptReply(ValueError):
    """A reply without the shape its command expects (stale, garbled or cut short)."""


class ControllerError(DeviceError):
    """The controller answered ``E,<n>``: it refused the command."""

    def __init__(self, device: str, command: str, code: int | None) -> None:
        what = f"error {code}" if code is not None else "an error"
        meaning = " (unknown command or parameter)" if code == 3 else ""
        super().__init__(f"{device}: controller answered {what}{meaning} to {command!r}")
        self.code = code


def encode(command: str) -> bytes:
    """``command`` as the bytes to write; refuses what would break the line framing."""
    if not command or "\r" in command or "\n" in command or not command.isascii():
        raise ValueError(f"not a Scientifica command: {command!r}")
    return command.encode("ascii") + CR


class LineDecoder:
    """Bytes in, reply lines out (CR-terminated, LF ignored); any chunking, bounded memory."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> str | None:
        """The next complete line, decoded; undecodable bytes become U+FFFD (and fail parsing)."""
        end = self._buffer.find(CR)
        if end < 0:
            if len(self._buffer) > MAX_LINE:  # no CR in sight: garbage, keep only the tail
                del self._buffer[:-MAX_LINE]
            return None
        raw = bytes(self._buffer[:end]).replace(b"\n", b"")
        del self._buffer[: end + 1]
        return raw.decode("ascii", errors="replace").strip()

    def clear(self) -> bytes:
        """Forget everything buffered; returns it (for the debug log)."""
        dropped = bytes(self._buffer)
        self._buffer.clear()
        return dropped


def is_error(line: str) -> bool:
    """``E,<n>`` (or a bare ``E``): the controller refused the command."""
    return line == "E" or line.startswith("E,")


def error_number(line: str) -> int | None:
    """The n of an ``E,<n>`` reply; None when it has none."""
    try:
        return int(line[2:].strip())
    except ValueError:
        return None


def parse_ack(line: str) -> None:
    if line != ACK:
        raise CorruptReply(f"expected {ACK!r}, got {line!r}")


def parse_int(line: str) -> int:
    try:
        return int(line)
    except ValueError:
        raise CorruptReply(f"expected an integer, got {line!r}") from None


def parse_float(line: str) -> float:
    try:
        value = float(line)
    except ValueError:
        raise CorruptReply(f"expected a number, got {line!r}") from None
    if not math.isfinite(value):
        raise CorruptReply(f"expected a finite number, got {line!r}")
    return value


def parse_position(line: str) -> tuple[int, int, int]:
    """``P``: exactly three integers (TAB-separated; any whitespace is accepted)."""
    fields = line.split()
    if len(fields) != 3:
        raise CorruptReply(f"expected three integers, got {line!r}")
    try:
        x, y, z = (int(f) for f in fields)
    except ValueError:
        raise CorruptReply(f"expected three integers, got {line!r}") from None
    return x, y, z


def parse_status(line: str) -> int:
    """``S``: one digit, 0 idle; 1-5 a move (5 stopping), 6 the knobs, 7 a velocity jog."""
    if len(line) != 1 or not line.isdigit():
        raise CorruptReply(f"expected a status digit, got {line!r}")
    return int(line)


def parse_text(line: str) -> str:
    if "\ufffd" in line:
        raise CorruptReply(f"expected text, got {line!r}")
    return line


# --- generations ------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    """What ``VER`` implies: position units and how ``TOP`` is expressed."""

    version: float
    text: str = ""
    """``VER`` as the controller wrote it (``3.40``), for people."""

    @property
    def modern(self) -> bool:
        """Firmware 3 (Motion Card 2): 0.01 µm counts and speeds in µm/s."""
        return self.version >= 3

    @property
    def counts_per_um(self) -> int:
        return 100 if self.modern else 10


def parse_version(line: str) -> Generation:
    """``VER`` replies a number such as ``2.13`` or ``3.40``."""
    return Generation(parse_float(line), line)


@dataclass(frozen=True)
class SpeedScale:
    """Speeds in µm/s <-> ``TOP`` values of one controller.

    Firmware 3 takes µm/s. Firmware 2 takes raw = µm/s x 2 x |UUX|, and only
    1000..50000, which puts its slowest continuous move near 80 µm/s.
    """

    generation: Generation
    uux: float = FACTORY_UU

    def top(self, um_s: float) -> int:
        if self.generation.modern:
            return max(1, round(um_s))
        return round(um_s * 2 * abs(self.uux))

    def um_s(self, top: float) -> float:
        return top if self.generation.modern else top / (2 * abs(self.uux))

    @property
    def slowest_um_s(self) -> float:
        """The slowest speed a single move may use; slower requests are stepped."""
        if self.generation.modern:
            return MIN_CONTINUOUS_UM_S
        return max(MIN_CONTINUOUS_UM_S, math.ceil(self.um_s(RAW_TOP_RANGE[0])))

    @property
    def fastest_um_s(self) -> float:
        return math.inf if self.generation.modern else math.floor(self.um_s(RAW_TOP_RANGE[1]))


# --- models ------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    key: str
    """ACQ4's name for the type (``ivm_manipulator``), for logs and cross-reference."""
    name: str
    """What people call it."""
    manipulator: bool


_MODELS_BY_SUFFIX: dict[str, Model] = {
    "01": Model("linear", "linear stage", False),
    "02": Model("ums", "UMS stage", False),
    "03": Model("mmtp", "MMTP platform", False),
    "04": Model("slicemaster", "SliceMaster", False),
    "05": Model("patchstar", "PatchStar", True),
    "06": Model("mmsp", "MMSP stage", False),
    "07": Model("mmsp_z", "MMSP+Z stage", False),
    "08": Model("microstar", "MicroStar", True),
    "09": Model("ums", "UMS stage", False),
    "10": Model("imtp", "IMTP platform", False),
    "11": Model("slicescope", "SliceScope", False),
    "12": Model("condenser", "condenser", False),
    "13": Model("mmbp", "MMBP platform", False),
    "14": Model("ivm_manipulator", "IVM", True),
}
_MODELS_FIRMWARE_3: dict[str, Model] = {
    "15": Model("custom", "custom device", False),
    "16": Model("extended_patchstar", "Extended PatchStar", True),
    "17": Model("ivm_mini", "IVM Mini", True),
    "18": Model("slicescope_2", "SliceScope 2", False),
    "19": Model("ivm_3000_rotary", "IVM 3000 Rotary", True),
    "20": Model("patchscope_pro", "PatchScope Pro", False),
    "21": Model("patchscope_pro_turret", "PatchScope Pro turret", False),
    "22": Model("ivm_3000", "IVM 3000", True),
}
# Before the 1.xx / 3.xx codes, firmware answered a bare integer.
_MODELS_OLD: dict[str, Model] = {
    "1": _MODELS_BY_SUFFIX["01"],
    "2": _MODELS_BY_SUFFIX["02"],
    "3": _MODELS_BY_SUFFIX["03"],
    "4": _MODELS_BY_SUFFIX["04"],
    "5": _MODELS_BY_SUFFIX["05"],
    "6": _MODELS_BY_SUFFIX["06"],
    "7": _MODELS_BY_SUFFIX["07"],
}


def model_of(type_reply: str) -> Model | None:
    """``TYPE`` -> the model, or None for a code no source lists."""
    code = type_reply.strip()
    if code in _MODELS_OLD:
        return _MODELS_OLD[code]
    major, dot, suffix = code.partition(".")
    if not dot:
        return None
    if major == "1" or (major == "3" and suffix in _MODELS_BY_SUFFIX):
        return _MODELS_BY_SUFFIX.get(suffix)
    if major == "3":
        return _MODELS_FIRMWARE_3.get(suffix)
    return None


def type_code(model_key: str, modern: bool) -> str:
    """The ``TYPE`` reply of a model (the simulator answers with it)."""
    for table in (_MODELS_BY_SUFFIX, _MODELS_FIRMWARE_3):
        for suffix, model in table.items():
            if model.key == model_key and (modern or table is _MODELS_BY_SUFFIX):
                return f"{3 if modern else 1}.{suffix}"
    raise KeyError(f"no TYPE code for {model_key!r} on firmware {3 if modern else 2}")
