"""A simulated Scientifica controller on a pty: firmware 2 or 3, a manipulator or a stage.

The driver is tested through its real transport: it opens the pty like a USB
serial port. The simulator answers at one baud rate only (it reads the rate
the driver set on the pty, and answers garbage at any other, as a real line
would), replies to the commands ephysd and the other public drivers use,
moves in real time at the ``TOP`` in force when a move starts (each axis at
that speed), reports ``S`` states (2 accelerating, 3 at speed, 5 stopping,
6 knobs turned), keeps moving briefly after ``STOP`` as a decelerating motor
does, answers ``E,3`` to anything it does not know, and records every
command it receives with the time, the baud rate and its status then.

Faults, from tests in-process or from stdin when run as
``python -m drivers.scientifica.sim``: the common ones of
:mod:`drivers.pty_sim` (dropped replies, garbage, silence, the cable pulled
and plugged back), the next reply an ``E,<n>``, reporting idle a little
before a move has settled, and someone turning the knobs.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass

import trio

from drivers.pty_sim import (
    COMMON_VERBS,
    PtyDevice,
    Verb,
    common_verbs,
    run_simulator,
    simulator_arguments,
)
from drivers.scientifica.protocol import CR, FACTORY_USTEP, FACTORY_UU, HELLO_REPLY, type_code

log = logging.getLogger(__name__)

VERSIONS = {2: "2.13", 3: "3.40"}
DEFAULT_TOP = {2: "20000", 3: "1500"}
"""The user's TOP: raw 20000 = 1562 µm/s on firmware 2 (UU 6.4), 1500 µm/s on firmware 3."""
DEFAULT_BAUD = {2: 9600, 3: 38400}
TRAVEL_UM = 10_000.0
"""Each axis stops at ±10 mm from the controller's zero (a limit switch)."""
STOP_TIME_S = 0.03
"""After STOP the motors run on this long (deceleration), reporting status 5."""
ACCELERATING_S = 0.05
GARBLED = b"\xf8\x80\x86\r"
"""What a reply at the wrong baud rate looks like on the driver's side."""


@dataclass(frozen=True)
class Received:
    """One command the controller got: its text, when, at which baud, and its ``S`` then."""

    command: str
    time: float
    baud: int | None
    status: int

    @property
    def word(self) -> str:
        return self.command.split(" ", 1)[0].upper() if self.command else ""


class ScientificaSim(PtyDevice):
    """One controller; run it with ``await nursery.start(sim.run)``."""

    def __init__(
        self,
        *,
        link: str | None = None,
        announce: bool = False,
        firmware: int = 3,
        model: str = "ivm_manipulator",
        baud: int | None = None,
        angle_deg: float = 30.0,
        description: str = "",
        start_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        super().__init__(link=link, announce=announce)
        if firmware not in VERSIONS:
            raise ValueError(f"firmware must be 2 or 3, not {firmware}")
        self.firmware = firmware
        self.type_code = type_code(model, firmware == 3)
        self.baud = DEFAULT_BAUD[firmware] if baud is None else baud
        self.angle = angle_deg
        self.approach = 0
        self.description = description or f"{model} sim"
        self.counts_per_um = 100 if firmware == 3 else 10
        self.top = DEFAULT_TOP[firmware]
        self.position = [v * self.counts_per_um for v in start_um]
        self.target = list(self.position)
        self.received: list[Received] = []
        self.next_error: int | None = None
        """Fault: the next command is answered ``E,<n>``."""
        self.refuse: dict[str, int] = {}
        """Fault: commands starting with one of these words are answered ``E,<n>``."""
        self.early_idle_s = 0.0
        """Fault: ``S`` says 0 this long before a move has really arrived."""
        self._mode = "idle"  # idle | move | knob | stopping
        self._speed = 0.0  # counts/s of the motion under way
        self._started = 0.0
        self._stop_at = 0.0
        self._last = 0.0
        self._buffer = b""

    # --- inspection -------------------------------------------------------------

    def position_um(self) -> tuple[float, float, float]:
        self._advance()
        x, y, z = (v / self.counts_per_um for v in self.position)
        return x, y, z

    def commands(self, word: str | None = None) -> list[str]:
        """Every command received (only those starting with ``word``), in order."""
        return [r.command for r in self.received if word is None or r.word == word.upper()]

    @property
    def moving(self) -> bool:
        return self.status() != 0 or self._mode != "idle"

    # --- the controller -------------------------------------------------------

    def power_up(self) -> None:
        """Plugged back in: the position is kept (the zero survives power cycles), motion is not."""
        self._advance()
        self._mode = "idle"
        self.target = list(self.position)
        self._buffer = b""

    def turn_knobs(self, dx_um: float, dy_um: float, dz_um: float, speed_um_s: float) -> None:
        """Someone drives the manipulator by hand: status 6 until it gets there (or STOP)."""
        self._start(
            [
                p + d * self.counts_per_um
                for p, d in zip(self.position, (dx_um, dy_um, dz_um), strict=True)
            ]
        )
        self._speed = speed_um_s * self.counts_per_um
        self._mode = "knob"

    def status(self) -> int:
        now = self._advance()
        if self._mode == "idle":
            return 0
        if self._mode == "stopping":
            return 5
        if self._mode == "knob":
            return 6
        remaining_s = (
            max(abs(t - p) for t, p in zip(self.target, self.position, strict=True)) / self._speed
        )
        if remaining_s <= self.early_idle_s:
            return 0
        return 2 if now - self._started < ACCELERATING_S else 3

    async def on_data(self, data: bytes) -> None:
        self._buffer += data
        while CR in self._buffer:
            raw, self._buffer = self._buffer.split(CR, 1)
            command = raw.replace(b"\n", b"").decode("ascii", errors="replace").strip()
            baud = self.driver_baud()
            self.received.append(Received(command, trio.current_time(), baud, self.status()))
            if baud != self.baud:
                await self.reply(GARBLED)  # the controller heard noise and answered at its rate
                continue
            answer = self._answer(command)
            if answer is not None:
                await self.reply(answer.encode("ascii") + CR)

    def _answer(self, command: str) -> str | None:
        if self.next_error is not None:
            code, self.next_error = self.next_error, None
            return f"E,{code}"
        word, _, rest = command.partition(" ")
        word, args = word.upper(), rest.split()
        if word in self.refuse:
            return f"E,{self.refuse[word]}"
        try:
            if args:
                return self._set(word, args)
            return self._query(word)
        except (ValueError, KeyError):
            return "E,3"

    def _query(self, word: str) -> str | None:
        axes = {"X": 0, "Y": 1, "Z": 2}
        if word == "SCIENTIFICA":
            return HELLO_REPLY
        if word in ("P", "POS"):
            self._advance()
            return "\t".join(str(round(v)) for v in self.position)
        if word in ("PX", "PY", "PZ"):
            self._advance()
            return str(round(self.position[axes[word[1]]]))
        if word == "S":
            return str(self.status())
        if word == "STOP":
            self._stop()
            return "A"
        if word in ("UUX", "UUY", "UUZ") and self.firmware == 2:
            return f"{-FACTORY_UU:g}"
        replies = {
            "VER": VERSIONS[self.firmware],
            "TYPE": self.type_code,
            "DESC": self.description,
            "DATE": f"SIM {VERSIONS[self.firmware]}\t2025-01-01",
            "TOP": self.top,
            "FIRST": "1000" if self.firmware == 2 else "50",
            "ACC": "500" if self.firmware == 2 else "10000",
            "ANGLE": f"{self.angle:g}",
            "APPROACH": str(self.approach),
            "LIMITS": str(self._limits()),
        }
        return replies[word]

    def _set(self, word: str, args: list[str]) -> str | None:
        if word in ("ABS", "REL") and len(args) == 3:
            values = [int(a) for a in args]
            if word == "REL":
                values = [round(p) + v for p, v in zip(self.position, values, strict=True)]
            self._start([float(v) for v in values])
            return "A"
        if word == "TOP" and len(args) == 1:
            top = float(args[0])
            if self.firmware == 2 and not 1000 <= top <= 50000:
                return "E,3"
            if top <= 0:
                return "E,3"
            self.top = args[0]
            return "A"
        if word == "USTEP" and len(args) == 1 and self.firmware == 3:
            return f"{-FACTORY_USTEP:g}"
        if word in ("ANGLE", "APPROACH", "DESC") and args:
            if word == "ANGLE":
                self.angle = float(args[0])
            elif word == "APPROACH":
                self.approach = int(args[0])
            else:
                self.description = " ".join(args)
            return "A"
        if word in ("PX", "PY", "PZ") and len(args) == 1 and self.status() == 0:
            axis = "XYZ".index(word[1])
            self.position[axis] = self.target[axis] = float(int(args[0]))
            return "A"
        if word == "BAUD" and args in (["96"], ["38"]):
            self.baud = 9600 if args == ["96"] else 38400
            return None  # the controller switches at once and answers nothing
        return "E,3"

    def _speed_counts_s(self) -> float:
        top = float(self.top)
        um_s = top if self.firmware == 3 else top / (2 * FACTORY_UU)
        return um_s * self.counts_per_um

    def _start(self, target: list[float]) -> None:
        now = self._advance()
        limit = TRAVEL_UM * self.counts_per_um
        self.target = [min(limit, max(-limit, t)) for t in target]
        self._speed = self._speed_counts_s()
        self._mode = "move"
        self._started = now

    def _stop(self) -> None:
        now = self._advance()
        if self._mode in ("move", "knob"):
            self._mode = "stopping"
            self._stop_at = now + STOP_TIME_S

    def _advance(self) -> float:
        """Integrate motion up to now; returns now."""
        now = trio.current_time()
        if self._mode != "idle":
            end = min(now, self._stop_at) if self._mode == "stopping" else now
            step = self._speed * max(0.0, end - self._last)
            arrived = True
            for axis, (t, p) in enumerate(zip(self.target, self.position, strict=True)):
                if abs(t - p) <= step:
                    self.position[axis] = t
                else:
                    self.position[axis] = p + math.copysign(step, t - p)
                    arrived = False
            if arrived or (self._mode == "stopping" and now >= self._stop_at):
                self._mode = "idle"
                self.target = list(self.position)
        self._last = now
        return now

    def _limits(self) -> int:
        limit = TRAVEL_UM * self.counts_per_um
        bits = 0
        for axis, p in enumerate(self.position):
            if p <= -limit:
                bits |= 1 << (2 * axis)
            if p >= limit:
                bits |= 2 << (2 * axis)
        return bits


# --- command line -----------------------------------------------------------

_HELP = f"commands: {COMMON_VERBS} | error N | knobs DX DY DZ (µm, at 100 µm/s)"


def _verbs(sim: ScientificaSim) -> dict[str, Verb]:
    def error(rest: list[str]) -> None:
        sim.next_error = int(rest[0])

    def knobs(rest: list[str]) -> None:
        dx, dy, dz = (float(v) for v in rest[:3])
        sim.turn_knobs(dx, dy, dz, 100.0)

    return {**common_verbs(sim), "error": error, "knobs": knobs}


def _build(args: argparse.Namespace) -> ScientificaSim:
    return ScientificaSim(
        link=args.link, announce=True, firmware=args.firmware, model=args.model, baud=args.baud
    )


def main(argv: list[str] | None = None) -> None:
    parser = simulator_arguments(
        "python -m drivers.scientifica.sim", "Simulated Scientifica controller on a pty. " + _HELP
    )
    parser.add_argument("--firmware", type=int, choices=(2, 3), default=3)
    parser.add_argument(
        "--model",
        default="ivm_manipulator",
        help="ivm_manipulator (default), patchstar, microstar, ivm_mini, ... or a stage"
        " such as slicescope or condenser (which ephysd refuses)",
    )
    parser.add_argument(
        "--baud", type=int, choices=(9600, 38400), help="default: 9600 (firmware 2), 38400 (3)"
    )
    run_simulator(parser.parse_args(argv), _build, _verbs, _HELP)


if __name__ == "__main__":
    main()
