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
from drivers.coordinates import AxisMap
from drivers.newscale.codec import (
    COUNTS_PER_MM,
    COUNTS_PER_UM,
    ILLEGAL_STATE,
    TRAVEL_COUNTS,
    CodecError,
    Frame,
    SpeedRegisters,
    StageState,
    Status,
    encode_bridge,
    encode_stage,
    move_absolute,
    parse_state,
    registers_speed_um_s,
    select_stage,
    speed_registers,
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

MIN_SPEED_MM_S = 0.002
"""The smallest speed the ``40`` register can express (one count/interval * 256 ~ 2 um/s)."""
MAX_SPEED_MM_S = 3.0
"""Faster requests are slowed to this (slower is always safe)."""
ACCEL_MM_S2 = 10.0
"""Our choice: full speed within 0.1 s at 1 mm/s."""
CUTOFF_MM_S = 0.02
"""Our choice of the ``40`` cutoff (minimum) speed; never above the requested speed."""

POLL_INTERVAL_S = 0.01
NO_PROGRESS_S = 1.0
MOVE_MARGIN_S = 2.0
HALT_BUDGET_S = 0.2
HALT_REPLY_TIMEOUT_S = 0.06
"""Per halt transaction. A dead stage costs one such timeout (its select or its halt), so
the stages that still answer (~1.3 ms a reply on the wire, a few ms over USB) are halted
within HALT_BUDGET_S even when two of three stages are dead."""
CLOSE_BUDGET_S = 0.5


class NewScaleManipulator(Manipulator):
    """Owns one port; used by exactly one actor (reads may run during a move)."""

    def __init__(
        self,
        manipulator_id: str,
        device: str,
        baud: int = 250000,
        *,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        super().__init__(manipulator_id)
        self.device = device
        self._link = SerialLink(device, baud, reply_timeout_s)
        self._lock = PriorityLock()
        self._selected: int | None = None

    def __repr__(self) -> str:
        return f"NewScaleManipulator({self.id!r}, {self.device!r})"

    # --- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        await self._link.close()
        self._selected = None
        try:
            await self._link.open()
            async with self._lock.hold(priority=True):
                firmware = await self._link.transact(encode_bridge("01"))
                if firmware.code != "01":
                    raise DeviceError(f"{self.device}: bridge refused firmware query ({firmware})")
                for address in STAGES:
                    await self._stage_locked(address, encode_stage("01"))  # host control
                    await self._stage_locked(address, encode_stage("20", "1"))  # closed loop
        except BaseException:
            await self._link.close()
            raise
        log.info(
            "manipulator %s ready on %s (bridge %s)", self.id, self.device, " ".join(firmware.args)
        )

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
        unified = np.asarray(target, dtype=np.float64)
        if unified.shape != (4,) or not np.all(np.isfinite(unified[:3])):
            raise DeviceError(f"target must be 4 finite numbers in mm, got {target!r}")
        native = AXIS_MAP.to_native(unified, len(STAGES))
        targets = {a: self._counts_within_travel(native[i], a) for i, a in enumerate(STAGES)}
        states = await self._move(targets, self._speed(speed_mm_s))
        return self._unified(states)

    async def move_depth(self, depth_mm: float, speed_mm_s: float) -> float:
        if not math.isfinite(depth_mm):
            raise DeviceError(f"depth must be a finite number in mm, got {depth_mm!r}")
        probe_mm = (depth_mm - AXIS_MAP.offset[3]) * AXIS_MAP.sign[3]
        targets = {Z_STAGE: self._counts_within_travel(probe_mm, Z_STAGE)}
        states = await self._move(targets, self._speed(speed_mm_s))
        z_mm = states[Z_STAGE].position / COUNTS_PER_MM
        return AXIS_MAP.offset[3] + AXIS_MAP.sign[3] * z_mm

    async def halt(self) -> None:
        async with self._lock.hold(priority=True):
            # Every stage gets its halt even if another one fails; a stage whose
            # halt (or select) went unanswered gets one more try, since a lost
            # reply may just mean a busy bridge and a stage still moving.
            pending = self._halt_order()
            errors: dict[int, DeviceError] = {}
            for _attempt in range(2):
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
            if errors:
                raise next(iter(errors.values()))
        log.info("manipulator %s halted", self.id)

    async def _move(self, targets: dict[int, int], regs: SpeedRegisters) -> dict[int, StageState]:
        try:
            start = await self._read_states(tuple(targets))
            distance = max(abs(targets[a] - s.position) for a, s in start.items())
            speed_counts_s = registers_speed_um_s(regs) * COUNTS_PER_UM
            budget = distance / speed_counts_s * 1.5 + MOVE_MARGIN_S
            log.info(
                "manipulator %s: move %s counts at %s (budget %.1f s)",
                self.id,
                targets,
                regs.args()[0],
                budget,
            )
            for address, counts in targets.items():
                await self._stage(address, encode_stage("40", *regs.args()))
                await self._stage(address, move_absolute(counts))
            with trio.move_on_after(budget):
                return await self._wait_on_target(targets)
            raise DeviceError(f"manipulator {self.id}: move did not finish within {budget:.1f} s")
        except BaseException:
            if self._link.is_open:  # a vanished port is closed: nothing to halt through
                await self._halt_shielded()
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

    async def _halt_shielded(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(HALT_BUDGET_S) as scope:
            try:
                await self.halt()
            except DeviceError as exc:
                log.error("manipulator %s: HALT FAILED: %s", self.id, exc)
        if scope.cancelled_caught:
            log.error("manipulator %s: HALT TIMED OUT after %.1f s", self.id, HALT_BUDGET_S)

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

    def _speed(self, speed_mm_s: float) -> SpeedRegisters:
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
        return speed_registers(
            speed_mm_s * 1000, ACCEL_MM_S2 * 1000, min(CUTOFF_MM_S, speed_mm_s) * 1000
        )

    def _unified(self, states: dict[int, StageState]) -> Vector:
        native = np.array([states[a].position for a in STAGES], dtype=np.float64) / COUNTS_PER_MM
        return AXIS_MAP.to_unified(native)

    async def _read_states(self, addresses: tuple[int, ...]) -> dict[int, StageState]:
        states = {}
        for address in addresses:
            reply = await self._stage(address, encode_stage("10"))
            try:
                states[address] = parse_state(reply)
            except CodecError as exc:
                raise DeviceError(f"manipulator {self.id}: bad status reply: {exc}") from exc
        return states

    async def _stage(self, address: int, command: bytes, *, priority: bool = False) -> Frame:
        async with self._lock.hold(priority=priority):
            return await self._stage_locked(address, command)

    async def _stage_locked(
        self, address: int, command: bytes, timeout_s: float | None = None
    ) -> Frame:
        """Select ``address`` if needed, then one transaction; the caller holds the lock."""
        try:
            if self._selected != address:
                self._selected = None
                stage = f"{address:02X}"
                reply = await self._link.transact(select_stage(address), timeout_s, (stage,))
                if reply.args[:2] != (stage, "1"):
                    raise DeviceError(
                        f"{self.device}: no stage at bridge address {address:02X} "
                        f"(bridge answered {reply.code} {' '.join(reply.args)})"
                    )
                self._selected = address
            reply = await self._link.transact(command, timeout_s)
        except BaseException:
            self._selected = None  # unknown after a failure: select again next time
            raise
        if reply.code == ILLEGAL_STATE and not reply.args:
            # Host control or closed loop was lost (stage power-cycled): reopen.
            raise DeviceLost(
                f"{self.device}: stage {address:02X} refused {command!r} (not under host control)"
            )
        if reply.is_error:
            raise DeviceError(f"{self.device}: stage {address:02X} rejected {command!r}")
        return reply
