"""A simulated MPC-200 / MPC-325 controller with 1-4 drives, on a pty.

It answers ``U``, ``K``, ``I``, ``C``, ``F``/``O`` and moves with ``S`` (and
``M``) in real time: the longest axis at (n + 1) x 81.25 um/s for speed byte
n, 16 microsteps per um, the CR when the move ends, ^C interrupting it. Like
the real controller it ignores a move under 16 microsteps on every axis (no
CR). It is also a referee: every protocol violation is counted in
``violations`` (anything but ^C written during a move, the body of an ``S``
packet less than 30 ms after the ``S`` byte, a negative or out-of-travel
target), so a test can assert that a whole session broke no rule.

Faults come from tests in-process or, as ``python -m drivers.sutter.sim``,
from stdin: the pty's common ones (dropped reply, garbage, cable pulled and
plugged back, silence) plus replies cut short or without their CR, and the
user turning the ROE-200 to another drive.
"""

from __future__ import annotations

import argparse
import collections
import logging

import msgspec
import trio

from drivers.pty_sim import (
    COMMON_VERBS,
    PtyDevice,
    Verb,
    common_verbs,
    run_simulator,
    simulator_arguments,
)
from drivers.sutter.codec import (
    CR,
    DEFAULT_USTEPS_PER_UM,
    INTERRUPT,
    MIN_MOVE_USTEPS,
    MOVE_BODY_LEN,
    NO_DRIVE,
    PAUSE_AFTER_S_S,
    TRAVEL_UM,
    USteps,
    byte_speed_um_s,
    encode_drive_status,
    encode_firmware,
    encode_position,
    parse_move_body,
)

log = logging.getLogger(__name__)

TRAVEL_USTEPS = round(TRAVEL_UM * DEFAULT_USTEPS_PER_UM)
FAST_UM_S = 4650.0
"""``M`` speed (ACQ4's measurement); ephysd never sends ``M``."""
MIDDLE = TRAVEL_USTEPS // 2


class Received(msgspec.Struct, frozen=True):
    """One command (or stray byte) the controller received, when, and on which drive."""

    time: float
    command: bytes
    drive: int
    during_move: bool = False


class SimMove(msgspec.Struct, frozen=True):
    time: float
    drive: int
    speed_byte: int | None  # None for ``M``
    target: USteps


class Motion:
    """A drive travelling in a straight line from ``start`` to ``target``."""

    def __init__(self, drive: int, start: USteps, target: USteps, axis_usteps_s: float) -> None:
        self.drive = drive
        self.start = start
        self.target = target
        self.began = trio.current_time()
        longest = max(abs(t - s) for t, s in zip(target, start, strict=True))
        self.ends = self.began + longest / axis_usteps_s

    def position_at(self, now: float) -> USteps:
        span = self.ends - self.began
        f = 1.0 if span <= 0 else min(1.0, max(0.0, (now - self.began) / span))
        x, y, z = (round(s + (t - s) * f) for s, t in zip(self.start, self.target, strict=True))
        return x, y, z


class SutterSim(PtyDevice):
    """A controller with ``drives`` connected; run it with ``nursery.start(sim.run)``."""

    default_garbage = b"\x00\xff\rjunk"

    def __init__(
        self,
        *,
        link: str | None = None,
        announce: bool = False,
        drives: tuple[int, ...] = (1, 2),
        firmware: tuple[int, int] = (3, 15),
        start: USteps = (MIDDLE, MIDDLE, MIDDLE),
        user_drive: int | None = None,
    ) -> None:
        super().__init__(link=link, announce=announce)
        self.drives = drives
        self.firmware = firmware
        self.positions: dict[int, USteps] = {d: start for d in drives}
        self.active = user_drive or (drives[0] if drives else 1)
        self.received: list[Received] = []
        self.moves: list[SimMove] = []
        self.interrupts: list[float] = []
        self.violations: list[str] = []
        self.unknown: list[int] = []
        self.motion: Motion | None = None
        self._changed = trio.Event()
        self._command = b""
        self._need = 0
        self._s_arrived_after = 0.0
        self._s_chunk = 0
        self._chunk = 0
        self._corrupt: collections.deque[str] = collections.deque()

    # --- inspection -------------------------------------------------------------

    def position(self, drive: int) -> USteps:
        if self.motion is not None and self.motion.drive == drive:
            return self.motion.position_at(trio.current_time())
        return self.positions[drive]

    def position_um(self, drive: int) -> tuple[float, float, float]:
        x, y, z = (v / DEFAULT_USTEPS_PER_UM for v in self.position(drive))
        return x, y, z

    @property
    def moving(self) -> int | None:
        return self.motion.drive if self.motion is not None else None

    @property
    def awaiting_move_body(self) -> bool:
        """``S`` came and the rest of its packet has not (the manual's pause)."""
        return self._command == b"S"

    def commands(self, command: bytes) -> list[Received]:
        return [r for r in self.received if r.command[:1] == command]

    # --- faults -------------------------------------------------------------------

    def corrupt_next_replies(self, how: str, count: int = 1) -> None:
        """``short``: the next replies lose their CR; ``nocr``: their CR becomes 0x00."""
        if how not in ("short", "nocr"):
            raise ValueError(how)
        self._corrupt.extend([how] * count)

    def turn_knob(self, drive: int) -> None:
        """The user selects ``drive`` on the ROE-200."""
        if drive in self.drives and self.motion is None:
            self.active = drive

    async def reply(self, data: bytes | None) -> None:
        if data is not None and self._corrupt:
            how = self._corrupt.popleft()
            data = data[:-1] if how == "short" else data[:-1] + b"\x00"
        await super().reply(data)

    # --- the device -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._mover)
            path = await nursery.start(super().run)
            task_status.started(path)

    def power_up(self) -> None:
        """The USB link is back: the drives are where they were, any move has ended."""
        if self.motion is not None:
            self.positions[self.motion.drive] = self.motion.position_at(trio.current_time())
            self._set_motion(None)
        self._command, self._need = b"", 0
        self._corrupt.clear()

    async def on_data(self, data: bytes) -> None:
        now = trio.current_time()
        self._chunk += 1
        for byte in data:
            await self._byte(byte, now)

    async def _byte(self, byte: int, now: float) -> None:
        if self.motion is not None:
            self.received.append(Received(now, bytes([byte]), self.motion.drive, True))
            if bytes([byte]) == INTERRUPT:
                self.interrupts.append(now)
                self._stop(now)
                await self.reply(bytes([CR]))
            else:
                self.violations.append(f"0x{byte:02x} written during a move")
            return
        if self._need:
            if self._command == b"S":
                self._check_pause(now)
            self._command += bytes([byte])
            self._need -= 1
            if not self._need:
                command, self._command = self._command, b""
                self.received.append(Received(now, command, self.active))
                await self.reply(self._complete(command, now))
            return
        command = bytes([byte])
        if command in (b"I", b"S", b"M"):
            self._command = command
            self._need = {b"I": 1, b"S": MOVE_BODY_LEN, b"M": 12}[command]
            self._s_arrived_after = self.listening_since
            self._s_chunk = self._chunk
            return
        self.received.append(Received(now, command, self.active))
        await self.reply(self._simple(command))

    def _check_pause(self, now: float) -> None:
        """The first body byte of ``S`` must come 30 ms after the ``S`` byte.

        Judged from what the simulator can be sure of on a loaded machine: ``S``
        arrived after the read loop last began to wait, however late it was
        read, so a pause shorter even than that is a violation; and a whole
        packet in one write always is.
        """
        if self._chunk == self._s_chunk:
            self.violations.append("S packet written at once, without the pause after S")
            return
        longest_possible = now - self._s_arrived_after
        if longest_possible < PAUSE_AFTER_S_S:
            self.violations.append(
                f"S body at most {longest_possible * 1000:.1f} ms after S (< 30 ms)"
            )

    def _simple(self, command: bytes) -> bytes | None:
        if command == b"U":
            return encode_drive_status(self.drives)
        if command == b"K":
            return encode_firmware(self.active, *self.firmware)
        if command == b"C":
            return encode_position(self.active, self.positions.get(self.active, (0, 0, 0)))
        if command in (b"F", b"O", INTERRUPT):
            if command == INTERRUPT:
                self.interrupts.append(trio.current_time())
            return bytes([CR])  # ^C with nothing moving: CR (the manuals do not say)
        self.unknown.append(command[0])
        return None

    def _complete(self, command: bytes, now: float) -> bytes | None:
        if command[:1] == b"I":
            drive = command[1]
            if drive not in self.drives:
                return bytes([NO_DRIVE, CR])
            self.active = drive
            return bytes([drive, CR])
        if command[:1] == b"S":
            speed_byte, target = parse_move_body(command[1:])
            if not 0 <= speed_byte <= 15:
                self.violations.append(f"speed byte {speed_byte}")
                return bytes([CR])
            return self._start(speed_byte, target, byte_speed_um_s(speed_byte), now)
        x, y, z = (int.from_bytes(command[i : i + 4], "little", signed=True) for i in (1, 5, 9))
        return self._start(None, (x, y, z), FAST_UM_S, now)

    def _start(
        self, speed_byte: int | None, target: USteps, speed_um_s: float, now: float
    ) -> bytes | None:
        self.moves.append(SimMove(now, self.active, speed_byte, target))
        if min(target) < 0:
            self.violations.append(f"negative target {target}")
            return bytes([CR])
        if max(target) > TRAVEL_USTEPS:
            self.violations.append(f"target {target} beyond the travel")
            return bytes([CR])
        here = self.positions[self.active]
        if all(abs(t - h) < MIN_MOVE_USTEPS for t, h in zip(target, here, strict=True)):
            return None  # the controller ignores it and never answers
        self._set_motion(Motion(self.active, here, target, speed_um_s * DEFAULT_USTEPS_PER_UM))
        return None  # the CR comes when the move ends

    def _stop(self, now: float) -> None:
        if self.motion is not None:
            self.positions[self.motion.drive] = self.motion.position_at(now)
            self._set_motion(None)

    def _set_motion(self, motion: Motion | None) -> None:
        self.motion = motion
        self._changed.set()
        self._changed = trio.Event()

    async def _mover(self) -> None:
        """Ends each move on time with its CR."""
        while True:
            changed, motion = self._changed, self.motion
            if motion is None:
                await changed.wait()
                continue
            with trio.move_on_at(motion.ends) as timer:
                await changed.wait()
            if timer.cancelled_caught and self.motion is motion:
                self.positions[motion.drive] = motion.target
                self._set_motion(None)
                await self.reply(bytes([CR]))


# --- command line -----------------------------------------------------------

_HELP = f"commands: {COMMON_VERBS} | short [N] | nocr [N] | knob DRIVE | violations"


def _verbs(sim: SutterSim) -> dict[str, Verb]:
    def corrupt(how: str) -> Verb:
        return lambda rest: sim.corrupt_next_replies(how, int(rest[0]) if rest else 1)

    def violations(rest: list[str]) -> None:
        print(f"VIOLATIONS {len(sim.violations)}", *sim.violations, sep="\n", flush=True)

    return {
        **common_verbs(sim),
        "short": corrupt("short"),
        "nocr": corrupt("nocr"),
        "knob": lambda rest: sim.turn_knob(int(rest[0])),
        "violations": violations,
    }


def _drives(text: str) -> tuple[int, ...]:
    drives = tuple(sorted({int(d) for d in text.split(",") if d.strip()}))
    if not drives or not set(drives) <= {1, 2, 3, 4}:
        raise argparse.ArgumentTypeError(f"drives must be 1..4, got {text!r}")
    return drives


def _build(args: argparse.Namespace) -> SutterSim:
    return SutterSim(link=args.link, announce=True, drives=args.drives)


def main(argv: list[str] | None = None) -> None:
    parser = simulator_arguments(
        "python -m drivers.sutter.sim",
        "Simulated Sutter MPC-200 / MPC-325 with 1-4 drives on a pty. " + _HELP,
    )
    parser.add_argument("--drives", type=_drives, default=(1, 2), help="connected drives: 1,2")
    sim = run_simulator(parser.parse_args(argv), _build, _verbs, _HELP)
    if sim is not None and sim.violations:
        log.warning("%d protocol violation(s): %s", len(sim.violations), sim.violations)


if __name__ == "__main__":
    main()
