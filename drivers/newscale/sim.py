"""A simulated M3-USB bridge with three M3-LS stages, on a pty.

The driver is tested through its real transport: the simulator owns the
master side of a pty and the driver opens the slave path like a USB serial
port. It speaks the USB bridge's framing as New Scale's own library does:
bridge commands are frames with every byte's high bit set and nothing before
them; any other byte outside a frame (a plain ``TR`` prefix, the PoE box's
form) is recorded in ``violations`` and not answered, so tests can assert
there are none. It keeps the state bits a real stage reports (host control,
closed loop, running, on target), answers what New Scale's library asks a
stage at connect (model and motor, encoder, timer resolution, the closed-loop
interval in EEPROM), integrates closed-loop motion over real time at the speed
the ``40`` registers produce on the stage's own interval within 0..15 mm, and
records every frame it receives so tests can assert exact bytes. Faults (a dropped reply, garbage,
the device vanishing and coming back) are injected from tests in-process,
or from stdin when run as ``python -m drivers.newscale.sim``.

A pty's path changes when it is recreated, so the simulator can expose a
stable symlink (``link``) that it re-points on every (re)open, the way udev
gives a real bridge a stable ``/dev/newscale-<serial>`` name.
"""

from __future__ import annotations

import argparse
import logging

import msgspec
import trio

from drivers.newscale.codec import (
    COUNTS_PER_UM,
    TRAVEL_COUNTS,
    CodecError,
    Command,
    CommandDecoder,
    Frame,
    StageState,
    Status,
    Violation,
    encode_frame,
    encode_state,
    hex_int,
    parse_hex,
)
from drivers.newscale.speed import SpeedRegisters, registers_speed_um_s, speed_from_registers
from drivers.newscale.stage_info import EEPROM_PASSWORD, INTERVAL_EEPROM_ADDRESS
from drivers.pty_sim import (
    COMMON_VERBS,
    PtyDevice,
    Verb,
    common_verbs,
    run_simulator,
    simulator_arguments,
)

log = logging.getLogger(__name__)

DEFAULT_SPEED_UM_S = 1000.0
STAGE_ADDRESSES = (1, 2, 3)
TIMER_RESOLUTION_US = 3.2
INTERVAL_TICKS = 156
"""The simulated stages' closed-loop interval in timer ticks: 156 x 3.2 us = 499.2 us. Not the
1 ms python-newscale assumes, so a driver that assumed it would move at twice the speed."""


class Received(msgspec.Struct, frozen=True):
    """One frame the simulated device received: ``stage`` is None for bridge commands."""

    stage: int | None
    command: Command
    time: float

    @property
    def raw(self) -> bytes:
        return self.command.raw

    @property
    def frame(self) -> Frame:
        return self.command.frame


class SimStage:
    """One closed-loop stage; position in encoder counts, integrated lazily over time.

    ``position`` and ``target`` are absolute counts; in relative mode (``<07>``)
    the stage reports and takes counts from ``zero_at`` instead.
    """

    def __init__(self, address: int, position_counts: int) -> None:
        self.address = address
        self.host_control = False
        self.closed_loop = False
        self.position = float(position_counts)
        self.target = position_counts
        self.speed_counts_s = DEFAULT_SPEED_UM_S * COUNTS_PER_UM
        self.registers: SpeedRegisters | None = None
        """The last ``40`` registers the stage took."""
        self.motor_present = True
        self.model = "M3-LS-3.4-15"
        self.encoder: str | None = "MicroE,500,nm"
        """The ``<44>`` reply's text; None: the stage refuses ``<44>`` (older firmware)."""
        self.timer_resolution_us = TIMER_RESOLUTION_US
        self.eeprom = {INTERVAL_EEPROM_ADDRESS: INTERVAL_TICKS}
        self.reports_interval = True
        """False: ``<52>`` and ``<12>`` are refused, as a stage that cannot say would."""
        self.unlocked = False
        self.zero_at: int | None = None
        self.running = False
        self.on_target = False
        self.forward = True
        self.stalled = False
        self.frozen = False
        self.mute = False
        """Fault: the stage stops answering (the bridge still sees it)."""
        self.lose_replies = 0
        """Fault: the stage's next N replies are lost (it still does what it was told)."""
        self._stale = False
        self.limit = Status(0)
        self.start_delay_s = 0.0
        """Fault: after ``08`` the stage keeps reporting its old state this long (stale status)."""
        self._starts_at = 0.0
        self._last = trio.current_time()

    def advance(self, now: float) -> None:
        dt, self._last = now - max(self._last, self._starts_at), now
        if not self.running or self.stalled or self.frozen or dt <= 0:
            return
        step = self.speed_counts_s * dt
        remaining = self.target - self.position
        if abs(remaining) <= step:
            self.position = float(self.target)
            self.running = False
            self.on_target = True
        else:
            self.position += step if remaining > 0 else -step

    @property
    def interval_s(self) -> float:
        """The closed-loop interval the stage runs on, whether or not it reports it."""
        return self.eeprom[INTERVAL_EEPROM_ADDRESS] * self.timer_resolution_us / 1e6

    def set_speed(self, regs: SpeedRegisters) -> None:
        self.registers = regs
        self.speed_counts_s = registers_speed_um_s(regs, self.interval_s) * COUNTS_PER_UM

    def toggle_relative(self) -> None:
        """``<07>``: absolute -> relative with zero here; relative -> absolute."""
        self.zero_at = round(self.position) if self.zero_at is None else None

    def move_to(self, counts: int) -> None:
        counts += self.zero_at or 0
        self.limit = Status(0)
        if counts > TRAVEL_COUNTS:
            counts, self.limit = TRAVEL_COUNTS, Status.FORWARD_LIMIT
        elif counts < 0:
            counts, self.limit = 0, Status.REVERSE_LIMIT
        self.target = counts
        self.forward = counts >= self.position
        self._starts_at = trio.current_time() + self.start_delay_s
        self._stale = self.on_target
        self.on_target = False
        self.running = not self.stalled
        if round(self.position) == counts:
            self.position = float(counts)
            self.running = False
            self.on_target = True

    def halt(self) -> None:
        self.running = False
        self.target = round(self.position)

    def state(self) -> StageState:
        flags = self.limit
        stale = self.running and trio.current_time() < self._starts_at
        for on, bit in (
            (self.forward, Status.FORWARD),
            (self.running and not stale, Status.RUNNING | Status.MOVING_TO_TARGET),
            (self.host_control, Status.HOST_CONTROL),
            ((self.on_target and not self.running) or (stale and self._stale), Status.ON_TARGET),
            (self.closed_loop, Status.CLOSED_LOOP),
            (self.stalled, Status.STALLED),
        ):
            if on:
                flags |= bit
        pos = round(self.position)
        zero = self.zero_at or 0
        return StageState(flags=flags, position=pos - zero, error=self.target - pos)


class NewScaleSim(PtyDevice):
    """A bridge with stages at ``addresses``; run it with ``nursery.start(sim.run)``."""

    default_garbage = b"\x00\xff<1\r>>garbage<"

    def __init__(
        self,
        *,
        link: str | None = None,
        announce: bool = False,
        addresses: tuple[int, ...] = STAGE_ADDRESSES,
        start_mm: tuple[float, float, float] = (7.5, 7.5, 7.5),
    ) -> None:
        super().__init__(link=link, announce=announce)
        self.addresses = addresses
        self._start_counts = [round(mm * 1000 * COUNTS_PER_UM) for mm in start_mm]
        self.stages: dict[int, SimStage] = {}
        self.received: list[Received] = []
        self.violations: list[Violation] = []
        """Bytes that broke the USB bridge's framing (a ``TR`` prefix, say); never answered."""
        self.selected: int | None = None
        self._decoder = CommandDecoder()

    # --- inspection -------------------------------------------------------------

    def stage_position_mm(self, address: int) -> float:
        stage = self.stages[address]
        stage.advance(trio.current_time())
        return stage.position / 1000 / COUNTS_PER_UM

    def raw_frames(self) -> list[bytes]:
        return [r.raw for r in self.received]

    def stages_that_received(self, raw: bytes) -> set[int | None]:
        return {r.stage for r in self.received if r.raw == raw}

    # --- the device ---------------------------------------------------------

    def power_up(self) -> None:
        starts = dict(enumerate(self._start_counts, start=1))
        self.stages = {a: SimStage(a, starts.get(a, TRAVEL_COUNTS // 2)) for a in self.addresses}
        self.selected = None
        self._decoder = CommandDecoder()

    async def on_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)
        while True:
            try:
                command = self._decoder.next_command()
            except CodecError as exc:
                log.debug("sim: malformed command: %s", exc)
                await self.reply(encode_frame("23"))
                continue
            if command is None:
                return
            if isinstance(command, Violation):
                log.warning("sim: protocol violation, %s: %r", command.reason, command.raw)
                self.violations.append(command)
                continue
            await self.reply(self._handle(command))

    def _handle(self, command: Command) -> bytes | None:
        now = trio.current_time()
        for stage in self.stages.values():
            stage.advance(now)
        self.received.append(
            Received(stage=None if command.bridge else self.selected, command=command, time=now)
        )
        try:
            if command.bridge:
                return self._bridge(command.frame)
            target = self.stages.get(self.selected) if self.selected is not None else None
            if target is None or target.mute:
                return None  # nobody on the bus answers
            reply = _stage_command(target, command.frame)
            if target.lose_replies:
                target.lose_replies -= 1
                return None
            return reply
        except CodecError:
            return encode_frame("23")

    def _bridge(self, frame: Frame) -> bytes:
        if frame.code == "01" and not frame.args:
            return encode_frame("01", "M3-USB-SIM", "1.0.0")
        if frame.code == "A0" and len(frame.args) == 1:
            address = parse_hex(frame.args[0], bits=8, signed=False)
            self.selected = address
            present = "1" if address in self.stages else "0"
            return encode_frame("A0", f"{address:02X}", present)
        return encode_frame("23")


def _stage_command(stage: SimStage, frame: Frame) -> bytes:
    code, args = frame.code, frame.args
    if code == "01":
        stage.host_control = True
        return encode_frame("01", "1" if stage.motor_present else "0", "0001", "2.3.0", stage.model)
    if not stage.host_control:
        return encode_frame("24")
    reply = _identity_command(stage, code, args)
    if reply is not None:
        return reply
    if code == "02" and not args:
        stage.host_control = False
        return encode_frame("02")
    if code == "03" and not args:
        stage.halt()
        return encode_frame("03")
    if code == "07" and not args:
        stage.toggle_relative()
        return encode_frame("07")
    if code == "08" and not args:
        return encode_frame("08", hex_int(stage.target - (stage.zero_at or 0), 8))
    if code == "08" and len(args) == 1 and len(args[0]) == 8:
        if not stage.closed_loop:
            return encode_frame("24")
        stage.move_to(parse_hex(args[0], bits=32, signed=True))
        return encode_frame("08", *args)
    if code == "10" and not args:
        return encode_state(stage.state())
    if code == "19" and not args:
        return encode_frame("19", hex_int(int(stage.state().flags) & 0xFFFF, 4))
    if code == "20" and args in (("0",), ("1",)):
        stage.closed_loop = args == ("1",)
        return encode_frame("20", *args)
    if code == "20" and args == ("R",):
        return encode_frame("20", "1" if stage.closed_loop else "0")
    if code == "40" and len(args) == 4:
        stage.set_speed(speed_from_registers(args))
        return encode_frame("40", *args)
    return encode_frame("23")


def _identity_command(stage: SimStage, code: str, args: tuple[str, ...]) -> bytes | None:
    """What New Scale's library asks at connect: encoder, timer, password, EEPROM reads."""
    if code == "44" and not args:
        return encode_frame("23") if stage.encoder is None else encode_frame("44", stage.encoder)
    if code == "52" and not args:
        if not stage.reports_interval:
            return encode_frame("23")
        return encode_frame("52", f"{stage.timer_resolution_us:g}", "USEC")
    if code == "16" and args == (EEPROM_PASSWORD,):
        stage.unlocked = True
        return encode_frame("16")
    if code == "12" and len(args) == 2:
        address = parse_hex(args[0], bits=12, signed=False)
        count = parse_hex(args[1], bits=8, signed=False)
        if not stage.unlocked:
            return encode_frame("24")
        if not stage.reports_interval or address not in stage.eeprom or count not in (1, 2, 4):
            return encode_frame("23")
        return encode_frame("12", hex_int(stage.eeprom[address], 2 * count))
    return None


# --- command line -----------------------------------------------------------

_HELP = f"commands: {COMMON_VERBS} | stall ADDR"


def _verbs(sim: NewScaleSim) -> dict[str, Verb]:
    def stall(rest: list[str]) -> None:
        sim.stages[int(rest[0])].stalled = True

    return {**common_verbs(sim), "stall": stall}


def _build(args: argparse.Namespace) -> NewScaleSim:
    return NewScaleSim(link=args.link, announce=True)


def main(argv: list[str] | None = None) -> None:
    parser = simulator_arguments(
        "python -m drivers.newscale.sim",
        "Simulated New Scale M3-USB bridge with three M3-LS stages on a pty. " + _HELP,
    )
    run_simulator(parser.parse_args(argv), _build, _verbs, _HELP)


if __name__ == "__main__":
    main()
