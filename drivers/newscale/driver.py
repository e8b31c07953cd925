"""One New Scale manipulator: an M3-USB bridge on one serial port with stages 01, 02, 03.

Safety rules this driver keeps, because a wrong move drives a probe into a
brain: targets outside the stages' travel are refused, never clamped; every
transaction has a deadline; a move that stalls, reports an encoder error or
stops making progress is halted and reported; and a cancelled move (stop)
always leaves the stages halted, with halt going ahead of queued reads.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import trio

from drivers.base import DeviceError, DeviceLost, Manipulator, Vector
from drivers.coordinates import AxisMap, checked_target
from drivers.halting import halt_shielded
from drivers.newscale.codec import (
    COUNTS_PER_MM,
    COUNTS_PER_UM,
    ILLEGAL_STATE,
    TRAVEL_COUNTS,
    CodecError,
    Frame,
    StageState,
    Status,
    encode_bridge,
    encode_stage,
    move_absolute,
    parse_state,
    select_stage,
    shown,
)
from drivers.newscale.speed import SpeedRegisters, registers_speed_um_s, speed_registers
from drivers.newscale.stage_info import (
    EEPROM_PASSWORD,
    INTERVAL_EEPROM_ADDRESS,
    INTERVAL_EEPROM_BYTES,
    eeprom_read_args,
    interval_refusal,
    parse_eeprom,
    parse_encoder,
    parse_firmware,
    parse_timer_resolution_us,
)
from drivers.newscale.transport import REPLY_TIMEOUT_S, SerialLink
from drivers.priority_lock import PriorityLock

log = logging.getLogger(__name__)

STAGES = (1, 2, 3)
"""Bridge addresses of the x, y and z stages; z is the probe axis."""
Z_STAGE = 3

TRAVEL_MM = TRAVEL_COUNTS / COUNTS_PER_MM
TOLERANCE_MM = 0.01
TOLERANCE_COUNTS = round(TOLERANCE_MM * COUNTS_PER_MM)
"""An "on target" status farther than this from our target is stale (from before ``08``)."""

AXIS_MAP = AxisMap(
    # unified x = 15 - sx; y = sz; z = sy; w (depth) = 15 - sz
    source=(0, 2, 1, 2),
    sign=(-1.0, 1.0, 1.0, -1.0),
    offset=(TRAVEL_MM, 0.0, 0.0, TRAVEL_MM),
)

MIN_SPEED_MM_S = 0.001
"""Slower requests are refused (the speed registers are exact to 0.5% down to here)."""
MAX_SPEED_MM_S = 3.0
"""Faster requests are slowed to this (slower is always safe)."""
ACCEL_MM_S2 = 10.0
"""Our choice: full speed within 0.1 s at 1 mm/s."""
CUTOFF_MM_S = 0.02
"""Our choice of the ``40`` cutoff (minimum) speed; half the speed below 0.04 mm/s, since the
cutoff must stay below the speed (python-newscale refuses it otherwise)."""
DEFAULT_INTERVAL_US = 1000.0
"""Closed-loop interval of a stage that does not report its own (python-newscale's value);
``closed_loop_interval_us`` in the manipulator's config table overrides it."""

POLL_INTERVAL_S = 0.01
NO_PROGRESS_S = 1.0
MOVE_MARGIN_S = 2.0
HALT_REPLY_TIMEOUT_S = 0.06
"""Per halt transaction (New Scale's library waits 100 ms). A dead stage costs one such
timeout per try (its select or its halt); the stages that answer (~1.3 ms a reply on the
wire, a few ms over USB) are halted in the first round, before any stage is tried again."""
HALT_TRIES = 3
"""``<03>`` goes to a stage that did not answer up to this often in all, as the library
re-sends an unanswered command: a lost reply may only mean a busy bridge."""
HALT_BUDGET_S = 0.6
"""The whole halt, every try included: under the actor's 1 s halt deadline, and room for
HALT_TRIES rounds of three stages that all time out."""
CLOSE_BUDGET_S = 0.9
"""Halt, then release host control of each stage; under the actor's 1 s close deadline."""


class NewScaleManipulator(Manipulator):
    """Owns one port; used by exactly one actor (reads may run during a move)."""

    def __init__(
        self,
        manipulator_id: str,
        device: str,
        baud: int = 250000,
        *,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
        default_interval_us: float = DEFAULT_INTERVAL_US,
    ) -> None:
        super().__init__(manipulator_id)
        self.device = device
        self._link = SerialLink(device, baud, reply_timeout_s)
        self._lock = PriorityLock()
        self._selected: int | None = None
        self._default_interval_us = default_interval_us
        self.intervals_us = dict.fromkeys(STAGES, default_interval_us)
        """Each stage's closed-loop interval, as read at open; the speed registers depend on it."""

    def __repr__(self) -> str:
        return f"NewScaleManipulator({self.id!r}, {self.device!r})"

    # --- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        await self._link.close()
        self._selected = None
        self.intervals_us = dict.fromkeys(STAGES, self._default_interval_us)
        try:
            await self._link.open()
            async with self._lock.hold(priority=True):
                firmware = await self._link.transact(encode_bridge("01"))
                if firmware.code != "01":
                    raise DeviceError(f"{self.device}: bridge refused firmware query ({firmware})")
                models = [await self._open_stage(address) for address in STAGES]
        except BaseException:
            await self._link.close()
            raise
        intervals = "/".join(f"{self.intervals_us[a]:g}" for a in STAGES)
        log.info(
            "manipulator %s ready on %s (bridge %s; stages %s; closed-loop interval %s us)",
            self.id,
            self.device,
            " ".join(firmware.args),
            ", ".join(sorted(set(models))),
            intervals,
        )

    async def _open_stage(self, address: int) -> str:
        """Take host control in closed loop and check the stage is one we can drive right.

        Sends what New Scale's library reads at connect (see ``stage_info``) and
        nothing that moves. Returns the stage's model.
        """
        firmware = parse_firmware(await self._stage_locked(address, encode_stage("01")))
        if refusal := firmware.refusal():
            raise DeviceError(f"{self.device}: stage {address:02X} {refusal}")
        await self._stage_locked(address, encode_stage("20", "1"))  # closed loop
        await self._check_encoder(address)
        self.intervals_us[address] = await self._read_interval_us(address)
        await self._read_state_locked(address)  # a position outside travel is refused here
        return firmware.model

    async def _check_encoder(self, address: int) -> None:
        reply = await self._query_locked(address, encode_stage("44"))
        if reply is None:
            log.info("%s: stage %02X does not report its encoder", self.device, address)
            return
        try:
            encoder = parse_encoder(reply)
        except CodecError as exc:
            log.warning("%s: stage %02X: encoder not read: %s", self.device, address, exc)
            return
        if refusal := encoder.refusal():
            raise DeviceError(f"{self.device}: stage {address:02X} {refusal}")

    async def _read_interval_us(self, address: int) -> float:
        """The closed-loop interval as the library reads it: timer ticks x timer resolution."""
        timer = await self._query_locked(address, encode_stage("52"))
        unlocked = await self._query_locked(address, encode_stage("16", EEPROM_PASSWORD))
        word = None
        if unlocked is not None:
            read = eeprom_read_args(INTERVAL_EEPROM_ADDRESS, INTERVAL_EEPROM_BYTES)
            word = await self._query_locked(address, encode_stage("12", *read))
        try:
            if timer is None:
                raise CodecError("it refused <52>")
            if word is None:
                raise CodecError("it refused the EEPROM read")
            ticks = parse_eeprom(word, INTERVAL_EEPROM_BYTES)
            if ticks == 0:
                raise CodecError("EEPROM holds 0")
            interval_us = ticks * parse_timer_resolution_us(timer)
        except CodecError as exc:
            log.warning(
                "%s: stage %02X does not report its closed-loop interval (%s); using %g us",
                self.device,
                address,
                exc,
                self._default_interval_us,
            )
            return self._default_interval_us
        if refusal := interval_refusal(interval_us):
            raise DeviceError(f"{self.device}: stage {address:02X} {refusal}")
        return interval_us

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_BUDGET_S):
                if self._link.is_open:
                    try:
                        await self.halt()
                    except DeviceError as exc:
                        log.warning("manipulator %s: halt on close failed: %s", self.id, exc)
                    for address in STAGES:
                        try:
                            await self._stage(address, encode_stage("02"), priority=True)
                        except DeviceError as exc:
                            log.warning("manipulator %s: release failed: %s", self.id, exc)
                            if not self._link.is_open:
                                break
            await self._link.close()
            self._selected = None

    # --- reads --------------------------------------------------------------

    async def position(self) -> Vector:
        states = await self._read_states(STAGES)
        return self._unified(states)

    # --- moves --------------------------------------------------------------

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        unified = checked_target(target)
        native = AXIS_MAP.to_native(unified, len(STAGES))
        targets = {a: self._counts_within_travel(native[i], a) for i, a in enumerate(STAGES)}
        states = await self._move(targets, self._registers(speed_mm_s, targets))
        return self._unified(states)

    async def move_depth(self, depth_mm: float, speed_mm_s: float) -> float:
        if not math.isfinite(depth_mm):
            raise DeviceError(f"depth must be a finite number in mm, got {depth_mm!r}")
        probe_mm = (depth_mm - AXIS_MAP.offset[3]) * AXIS_MAP.sign[3]
        targets = {Z_STAGE: self._counts_within_travel(probe_mm, Z_STAGE)}
        states = await self._move(targets, self._registers(speed_mm_s, targets))
        z_mm = states[Z_STAGE].position / COUNTS_PER_MM
        return AXIS_MAP.offset[3] + AXIS_MAP.sign[3] * z_mm

    async def halt(self) -> None:
        with trio.move_on_after(HALT_BUDGET_S) as budget:
            async with self._lock.hold(priority=True):
                errors = await self._halt_locked()
        if budget.cancelled_caught:
            raise DeviceError(f"manipulator {self.id}: halt unfinished after {HALT_BUDGET_S} s")
        if errors:
            stages = ", ".join(f"{a:02X}" for a in errors)
            raise DeviceError(
                f"manipulator {self.id}: stage {stages} did not confirm the halt in "
                f"{HALT_TRIES} tries: {next(iter(errors.values()))}"
            )
        log.info("manipulator %s halted", self.id)

    async def _halt_locked(self) -> dict[int, DeviceError]:
        """Every stage gets its ``<03>`` before any stage gets a second one.

        A stage whose halt (or select) went unanswered is tried again, up to
        HALT_TRIES in all; the errors of the stages still unanswered are returned.
        """
        pending = self._halt_order()
        errors: dict[int, DeviceError] = {}
        for attempt in range(1, HALT_TRIES + 1):
            if attempt > 1:
                log.warning(
                    "manipulator %s: stage(s) %s did not confirm the halt; sending <03> again "
                    "(try %d of %d)",
                    self.id,
                    ", ".join(f"{a:02X}" for a in pending),
                    attempt,
                    HALT_TRIES,
                )
            errors = {}
            for address in pending:
                try:
                    await self._stage_locked(
                        address, encode_stage("03"), timeout_s=HALT_REPLY_TIMEOUT_S
                    )
                except DeviceError as exc:
                    if not self._link.is_open:
                        raise  # the port is gone: no stage can hear us
                    errors[address] = exc
            pending = list(errors)
            if not pending:
                break
        return errors

    async def _move(
        self, targets: dict[int, int], regs: dict[int, SpeedRegisters]
    ) -> dict[int, StageState]:
        try:
            start = await self._read_states(tuple(targets))
            budget = MOVE_MARGIN_S + 1.5 * max(
                abs(targets[a] - s.position)
                / (registers_speed_um_s(regs[a], self.intervals_us[a] / 1e6) * COUNTS_PER_UM)
                for a, s in start.items()
            )
            log.info("manipulator %s: move %s counts (budget %.1f s)", self.id, targets, budget)
            for address, counts in targets.items():
                await self._stage(address, encode_stage("40", *regs[address].args()))
                await self._stage(address, move_absolute(counts))
            with trio.move_on_after(budget):
                return await self._wait_on_target(targets)
            raise DeviceError(f"manipulator {self.id}: move did not finish within {budget:.1f} s")
        except BaseException:
            if self._link.is_open:  # a vanished port is closed: nothing to halt through
                await halt_shielded(self, HALT_BUDGET_S)
            raise

    async def _wait_on_target(self, targets: dict[int, int]) -> dict[int, StageState]:
        best = {a: math.inf for a in targets}
        last_progress = trio.current_time()
        while True:
            await trio.sleep(POLL_INTERVAL_S)
            states = await self._read_states(tuple(targets))
            for address, state in states.items():
                if state.failed:
                    what = "stalled" if Status.STALLED in state.flags else "encoder error"
                    raise DeviceError(
                        f"manipulator {self.id}: stage {address:02X} {what} at "
                        f"{state.position / COUNTS_PER_MM:.4f} mm"
                    )
            if all(
                s.on_target and not s.running and abs(targets[a] - s.position) <= TOLERANCE_COUNTS
                for a, s in states.items()
            ):
                return states
            now = trio.current_time()
            for address, state in states.items():
                remaining = abs(targets[address] - state.position)
                if remaining < best[address]:
                    best[address] = remaining
                    last_progress = now
            if now - last_progress > NO_PROGRESS_S:
                raise DeviceError(
                    f"manipulator {self.id}: no progress towards the target for {NO_PROGRESS_S} s"
                )

    # --- helpers ------------------------------------------------------------

    def _halt_order(self) -> list[int]:
        """The selected stage first: it needs no select, so it stops soonest."""
        return sorted(STAGES, key=lambda a: a != self._selected)

    def _counts_within_travel(self, native_mm: float, address: int) -> int:
        counts = round(native_mm * COUNTS_PER_MM)
        if not 0 <= counts <= TRAVEL_COUNTS:
            raise DeviceError(
                f"manipulator {self.id}: target puts stage {address:02X} at {native_mm:.4f} mm, "
                f"outside its 0..{TRAVEL_MM:g} mm travel"
            )
        return counts

    def _registers(self, speed_mm_s: float, targets: dict[int, int]) -> dict[int, SpeedRegisters]:
        """Each moving stage's ``40`` registers for its own closed-loop interval.

        Computed before anything is sent, so a speed that cannot be set is
        refused with nothing moved.
        """
        if not math.isfinite(speed_mm_s) or speed_mm_s < MIN_SPEED_MM_S:
            raise DeviceError(f"speed must be at least {MIN_SPEED_MM_S} mm/s, got {speed_mm_s!r}")
        if speed_mm_s > MAX_SPEED_MM_S:
            log.warning(
                "manipulator %s: speed %.3g mm/s slowed to the stage maximum %.3g mm/s",
                self.id,
                speed_mm_s,
                MAX_SPEED_MM_S,
            )
            speed_mm_s = MAX_SPEED_MM_S
        cutoff_mm_s = min(CUTOFF_MM_S, speed_mm_s / 2)
        try:
            return {
                a: speed_registers(
                    speed_mm_s * 1000,
                    ACCEL_MM_S2 * 1000,
                    cutoff_mm_s * 1000,
                    self.intervals_us[a] / 1e6,
                )
                for a in targets
            }
        except CodecError as exc:
            raise DeviceError(f"manipulator {self.id}: {exc}") from exc

    def _unified(self, states: dict[int, StageState]) -> Vector:
        native = np.array([states[a].position for a in STAGES], dtype=np.float64) / COUNTS_PER_MM
        return AXIS_MAP.to_unified(native)

    async def _read_states(self, addresses: tuple[int, ...]) -> dict[int, StageState]:
        states = {}
        for address in addresses:
            async with self._lock.hold():
                states[address] = await self._read_state_locked(address)
        return states

    async def _read_state_locked(self, address: int) -> StageState:
        """The ``10`` status; a position outside the travel is a fault, not a position.

        An M3-LS in absolute mode reports 0..30000 counts. ``<07>`` (New Scale's
        "Zero") toggles it into relative mode with zero wherever it stood, and
        nothing reports the mode; a count outside the travel is the one sign of it.
        """
        reply = await self._stage_locked(address, encode_stage("10"))
        try:
            state = parse_state(reply)
        except CodecError as exc:
            raise DeviceError(f"manipulator {self.id}: bad status reply: {exc}") from exc
        if not 0 <= state.position <= TRAVEL_COUNTS:
            raise DeviceError(
                f"{self.device}: stage {address:02X} reports position {state.position} counts, "
                f"outside its 0..{TRAVEL_COUNTS} travel (left in relative mode by other software?)"
            )
        return state

    async def _stage(self, address: int, command: bytes, *, priority: bool = False) -> Frame:
        async with self._lock.hold(priority=priority):
            return await self._stage_locked(address, command)

    async def _query_locked(self, address: int, command: bytes) -> Frame | None:
        """A query the stage may refuse: its reply, or None for ``<23>``/``<24>``."""
        reply = await self._stage_locked(address, command, refusal_ok=True)
        if reply.is_error:
            log.debug(
                "%s: stage %02X answered %s to %s",
                self.device,
                address,
                reply.describe_error(),
                shown(command),
            )
            return None
        return reply

    async def _stage_locked(
        self,
        address: int,
        command: bytes,
        timeout_s: float | None = None,
        *,
        refusal_ok: bool = False,
    ) -> Frame:
        """Select ``address`` if needed, then one transaction; the caller holds the lock.

        An error reply raises (naming its code) unless ``refusal_ok``.
        """
        try:
            if self._selected != address:
                self._selected = None
                stage = f"{address:02X}"
                reply = await self._link.transact(select_stage(address), timeout_s, (stage,))
                if reply.is_error:
                    raise DeviceError(
                        f"{self.device}: bridge answered {reply.describe_error()} "
                        f"to the select of stage {address:02X}"
                    )
                if not _present(reply, stage):
                    raise DeviceError(
                        f"{self.device}: no stage at bridge address {address:02X} "
                        f"(bridge answered {reply.code} {' '.join(reply.args)})"
                    )
                self._selected = address
            reply = await self._link.transact(command, timeout_s)
        except BaseException:
            self._selected = None  # unknown after a failure: select again next time
            raise
        if not reply.is_error or refusal_ok:
            return reply
        refused = f"{self.device}: stage {address:02X} answered {reply.describe_error()}"
        if reply.code == ILLEGAL_STATE:
            # Host control or closed loop was lost (stage power-cycled): reopen.
            raise DeviceLost(f"{refused} to {shown(command)}: not under host control")
        raise DeviceError(f"{refused} to {shown(command)}")


def _present(select_reply: Frame, stage: str) -> bool:
    """``<A0 XX P>``: a stage is at XX when P is not 0 (New Scale's library reads it so)."""
    args = select_reply.args
    return len(args) >= 2 and args[0] == stage and args[1].isdigit() and int(args[1]) != 0
