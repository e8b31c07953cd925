"""One Scientifica manipulator (IVM, PatchStar, MicroStar): one controller on one serial port.

Safety rules this driver keeps, because a wrong move drives a probe into a
brain: targets outside the configured travel are refused, never clamped; a
controller that is not a manipulator is refused at open; every transaction
has a deadline; a move never starts while the controller is moving (a knob,
a previous move), it stops and settles first; and a cancelled move (stop)
always sends ``STOP`` before anything else, even between the steps of a slow
move, then waits (bounded) until the controller reports it idle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import trio

from drivers.base import DeviceError, DeviceLost, Manipulator, NotSupported, Vector
from drivers.coordinates import checked_target
from drivers.halting import halt_shielded
from drivers.priority_lock import PriorityLock
from drivers.scientifica.geometry import Counts, Geometry
from drivers.scientifica.protocol import (
    BAUD_RATES,
    FACTORY_USTEP,
    FACTORY_UU,
    HELLO,
    HELLO_REPLY,
    ControllerError,
    Generation,
    Model,
    SpeedScale,
    is_error,
    model_of,
    parse_ack,
    parse_float,
    parse_position,
    parse_status,
    parse_text,
    parse_version,
)
from drivers.scientifica.settings import ManipulatorSettings
from drivers.scientifica.transport import REPLY_TIMEOUT_S, NoReply, ScientificaLink

log = logging.getLogger(__name__)

T = TypeVar("T")

HELLO_TIMEOUTS_S = (0.2, 1.0)
"""The handshake at one baud rate: a short try, then (after a drain) a patient one, since
bytes sent at another rate may have left the controller's input garbled."""
TOLERANCE_UM = 0.5
"""A move that ends this close to its target has reached it (ACQ4's threshold)."""
RECHECK_S = 0.1
"""Controllers report idle slightly before they settle: look again after this long."""
POLL_S = 0.02
"""Status polling interval during moves."""
STEP_INTERVAL_S = 0.2
"""A slow move takes one step this often (or as fast as the steps complete)."""
APPROACH_STEP_UM = 10.0
"""Along the approach direction x and z move in steps no longer than this, so the tip
never strays further than this from the probe's axis."""
MOVE_MARGIN_S = 2.0
SETTLE_S = 0.5
"""How long a controller may take to report idle after ``STOP`` (ACQ4 allows 150 ms)."""
HALT_BUDGET_S = 0.9
CLOSE_BUDGET_S = 1.0
MIN_SPEED_MM_S = 0.0005
"""Half a µm/s: slower requests are refused (a typo, not an insertion)."""

DEFAULT_SETTINGS = ManipulatorSettings()


class ScientificaManipulator(Manipulator):
    """Owns one port; used by exactly one actor (reads may run during a move)."""

    def __init__(
        self,
        manipulator_id: str,
        device: str,
        settings: ManipulatorSettings = DEFAULT_SETTINGS,
        *,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        super().__init__(manipulator_id)
        self.device = device
        self.settings = settings
        self._link = ScientificaLink(device, reply_timeout_s)
        self._lock = PriorityLock()
        self.model: Model | None = None
        self.generation: Generation | None = None
        self.angle_deg: float | None = None
        self._scale = SpeedScale(Generation(3.0))
        self._geometry = Geometry(settings, 100, 0.0)
        self._user_top = ""
        self._top_changed = False
        """TOP may hold a move's speed instead of the user's (a move failed or was stopped)."""
        self._identity = ""

    def __repr__(self) -> str:
        return f"ScientificaManipulator({self.id!r}, {self.device!r})"

    def identity(self) -> str:
        return self._identity

    # --- lifecycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Find the baud rate, identify the controller, refuse anything but a manipulator."""
        await self._link.close()
        self._identity = ""
        try:
            async with self._lock.hold(priority=True):
                await self._connect()
                await self._identify()
        except BaseException:
            await self._link.close()
            raise

    async def _connect(self) -> None:
        configured = self.settings.baud
        rates = [configured] if configured else []
        rates += [rate for rate in BAUD_RATES if rate != configured]
        answers: list[str] = []
        for baud in rates:
            await self._link.open(baud)
            for timeout_s in HELLO_TIMEOUTS_S:
                try:
                    line = await self._link.exchange(HELLO, timeout_s)
                except NoReply:
                    line = ""
                if line == HELLO_REPLY:
                    return
                if line and not is_error(line):
                    answers.append(line)
                await self._link.drain()
        await self._link.close()
        legible = [a for a in answers if "\ufffd" not in a]  # noise means a wrong rate, not a type
        if legible:
            raise DeviceError(
                f"{self.device} is not a Scientifica controller: it answered {legible[-1]!r}"
                f" to {HELLO!r} (expected {HELLO_REPLY!r})"
            )
        tried = " or ".join(str(rate) for rate in rates)
        heard = " (only noise: is it set to another baud rate?)" if answers else ""
        raise DeviceError(
            f"{self.device}: no Scientifica controller answered at {tried} baud{heard}"
        )

    async def _identify(self) -> None:
        generation = await self._link.transact("VER", parse_version)
        type_reply = await self._link.transact("TYPE", parse_text)
        model = model_of(type_reply)
        if model is None or not model.manipulator:
            what = f"a {model.name}" if model else "a device of unknown type"
            raise DeviceError(
                f"{self.device}: the Scientifica controller there drives {what} (TYPE"
                f" {type_reply}), not a manipulator; ephysd drives PatchStar, MicroStar and IVM"
            )
        description = await self._optional("DESC", parse_text)
        scales: list[float | None]
        if generation.modern:
            scales = [await self._optional(f"USTEP {axis}", parse_float) for axis in "XYZ"]
            uux = FACTORY_UU
        else:
            scales = [await self._link.transact(f"UU{axis}", parse_float) for axis in "XYZ"]
            uux = scales[0] or FACTORY_UU
        factory = FACTORY_USTEP if generation.modern else FACTORY_UU
        if any(scale is not None and abs(scale) != factory for scale in scales):
            log.warning(
                "manipulator %s: axis scales %s differ from the usual factory %g of these"
                " models; if they were changed, positions are not in %s µm counts",
                self.id,
                scales,
                factory,
                "0.01" if generation.modern else "0.1",
            )
        self._user_top = await self._link.transact("TOP", parse_text)
        angle = await self._optional("ANGLE", parse_float)
        approach = await self._optional("APPROACH", parse_text)
        if self.settings.depth_axis == "approach" and angle is None:
            raise DeviceError(
                f"{self.device}: depth_axis is 'approach' but the controller reports no ANGLE"
            )
        self.model, self.generation, self.angle_deg = model, generation, angle
        self._scale = SpeedScale(generation, uux)
        self._geometry = Geometry(self.settings, generation.counts_per_um, angle)
        firmware = f"firmware {generation.text}"
        self._identity = f"Scientifica {model.name} (TYPE {type_reply}, {firmware})"
        log.info(
            "manipulator %s: %s on %s at %d baud, description %r, axis scales %s,"
            " approach angle %s° (approach mode %s), TOP %s",
            self.id,
            self._identity,
            self.device,
            self._link.baud,
            description,
            scales,
            angle,
            approach,
            self._user_top,
        )

    async def _optional(self, command: str, parse: Callable[[str], T]) -> T | None:
        """A query some firmware may not know: ``E,n`` (or no answer) means "not reported"."""
        try:
            return await self._link.transact(command, parse)
        except ControllerError as exc:
            log.debug("manipulator %s: %s", self.id, exc)
        except DeviceLost as exc:
            if not self._link.is_open:
                raise  # the port is gone, not just this query unknown
            log.warning("manipulator %s: %s; going on without it", self.id, exc)
        return None

    async def close(self) -> None:
        if self._link.is_open:
            await halt_shielded(self, CLOSE_BUDGET_S)
        await self._link.close()

    # --- reads ------------------------------------------------------------------

    async def position(self) -> Vector:
        return self._geometry.to_unified(await self._counts())

    async def angles(self) -> tuple[float, float, float]:
        raise NotSupported("Scientifica controllers do not report probe angles.")

    async def shank_count(self) -> int:
        raise NotSupported("Scientifica controllers do not report a shank count.")

    # --- moves ------------------------------------------------------------------

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        counts = self._geometry.target(checked_target(target))
        final = await self._move(counts, self._speed_um_s(speed_mm_s))
        return self._geometry.to_unified(final)

    async def move_depth(self, depth_mm: float, speed_mm_s: float) -> float:
        if not math.isfinite(depth_mm):
            raise DeviceError(f"depth must be a finite number in mm, got {depth_mm!r}")
        speed_um_s = self._speed_um_s(speed_mm_s)
        along_probe = self._geometry.depth_axis == "approach"

        def plan(start: Counts) -> Counts:
            return self._geometry.depth_target(start, depth_mm)

        final = await self._move(
            plan, speed_um_s, max_step_um=APPROACH_STEP_UM if along_probe else None
        )
        return self._geometry.depth(final)

    async def halt(self) -> None:
        """``STOP`` now (ahead of queued reads), then wait until the controller is idle."""
        await self._command("STOP", parse_ack, priority=True, urgent=True)
        log.info("manipulator %s: STOP sent", self.id)
        await self._wait_stopped()

    async def _move(
        self,
        target: Counts | Callable[[Counts], Counts],
        speed_um_s: float,
        *,
        max_step_um: float | None = None,
    ) -> Counts:
        try:
            start = await self._settled()
            goal = target(start) if callable(target) else target
            if speed_um_s < self._scale.slowest_um_s or max_step_um is not None:
                await self._stepped(start, goal, speed_um_s, max_step_um)
            else:
                await self._drive(start, goal, speed_um_s)
            return await self._confirm(goal)
        except BaseException:
            if self._link.is_open:  # a vanished port is closed: nothing to stop through
                await halt_shielded(self, HALT_BUDGET_S)
                await self._restore_top_shielded()
            raise

    async def _settled(self) -> Counts:
        """The position to start from; a controller still moving is stopped first."""
        status = await self._command("S", parse_status)
        if status != 0:
            log.warning(
                "manipulator %s is moving (status %d) before a new move: stopping it first",
                self.id,
                status,
            )
            await self.halt()
        return await self._counts()

    async def _drive(
        self, start: Counts, goal: Counts, speed_um_s: float, *, step: bool = False
    ) -> None:
        """One ``ABS`` at ``speed_um_s``, then wait until the controller is idle (bounded)."""
        distance_um = _distance_um(start, goal, self._counts_per_um)
        budget = distance_um / speed_um_s * 1.5 + MOVE_MARGIN_S
        top = str(self._scale.top(speed_um_s))
        log.log(
            logging.DEBUG if step else logging.INFO,
            "manipulator %s: ABS %s at %.1f µm/s (TOP %s, budget %.1f s)",
            self.id,
            goal,
            speed_um_s,
            top,
            budget,
        )
        # TOP applies to the next move only, and the knobs use it too: put the
        # user's value back straight after ABS (a running move keeps its speed).
        if top != self._user_top:
            self._top_changed = True
            await self._command(f"TOP {top}", parse_ack)
        await self._command("ABS {} {} {}".format(*goal), parse_ack)
        if self._top_changed:
            await self._command(f"TOP {self._user_top}", parse_ack)
            self._top_changed = False
        with trio.move_on_after(budget):
            await self._wait_idle()
            return
        raise DeviceError(f"manipulator {self.id}: move did not finish within {budget:.1f} s")

    async def _stepped(
        self, start: Counts, goal: Counts, speed_um_s: float, max_step_um: float | None
    ) -> None:
        """Short moves along the straight line, each to where the probe should be by now.

        Each step is a continuous move at the slowest speed the controller
        allows (or the requested one, if faster), aimed at the point the
        requested speed has reached, so the average matches it however long
        the steps take. A stop cancels whatever is awaited, a step or the
        pause before the next, and ``STOP`` goes out at once.
        """
        origin = np.asarray(start, dtype=np.float64)
        path = np.asarray(goal, dtype=np.float64) - origin
        length_um = float(np.linalg.norm(path)) / self._counts_per_um
        if length_um == 0:
            return
        duration = length_um / speed_um_s
        step_um = speed_um_s * STEP_INTERVAL_S
        longest = 1.0 if max_step_um is None else max_step_um / length_um
        step_um = step_um if max_step_um is None else min(step_um, max_step_um)
        step_speed = max(speed_um_s, self._scale.slowest_um_s)
        log.info(
            "manipulator %s: stepped move to %s at %.2f µm/s (%.1f s, steps of %.1f µm at"
            " %.0f µm/s)",
            self.id,
            goal,
            speed_um_s,
            duration,
            step_um,
            step_speed,
        )
        began = trio.current_time()
        done, here = 0.0, start
        while done < 1.0:
            due = min(1.0, done + step_um / length_um)
            await trio.sleep_until(began + due * duration)
            reached = min(1.0, (trio.current_time() - began) / duration, done + longest)
            x, y, z = (round(v) for v in (origin + path * reached).tolist())
            await self._drive(here, (x, y, z), step_speed, step=True)
            done, here = reached, (x, y, z)

    async def _confirm(self, goal: Counts) -> Counts:
        """Where the move ended; when off target, look again once the controller settled."""
        position = await self._counts()
        with trio.move_on_after(MOVE_MARGIN_S):
            while _distance_um(position, goal, self._counts_per_um) > TOLERANCE_UM:
                await trio.sleep(RECHECK_S)
                moving = await self._command("S", parse_status) != 0
                if moving:  # it reported idle too early
                    await self._wait_idle()
                position = await self._counts()
                if not moving:
                    break
            return position
        raise DeviceError(f"manipulator {self.id}: still moving {MOVE_MARGIN_S} s after its move")

    async def _wait_idle(self) -> None:
        while True:
            await trio.sleep(POLL_S)
            if await self._command("S", parse_status) == 0:
                return

    async def _wait_stopped(self) -> None:
        with trio.move_on_after(SETTLE_S):
            while True:
                if await self._command("S", parse_status, priority=True) == 0:
                    return
                await trio.sleep(POLL_S)
        raise DeviceError(f"manipulator {self.id}: still moving {SETTLE_S} s after STOP")

    async def _restore_top_shielded(self) -> None:
        """Give the knobs back the user's speed after a move that ended early."""
        if not self._top_changed:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(HALT_BUDGET_S):
            try:
                await self._command(f"TOP {self._user_top}", parse_ack)
                self._top_changed = False
            except DeviceError as exc:
                log.warning(
                    "manipulator %s: could not restore TOP %s: %s", self.id, self._user_top, exc
                )

    # --- helpers ------------------------------------------------------------------

    @property
    def _counts_per_um(self) -> int:
        return self.generation.counts_per_um if self.generation else 100

    def _speed_um_s(self, speed_mm_s: float) -> float:
        if not math.isfinite(speed_mm_s) or speed_mm_s < MIN_SPEED_MM_S:
            raise DeviceError(f"speed must be at least {MIN_SPEED_MM_S} mm/s, got {speed_mm_s!r}")
        fastest_um_s = min(self.settings.max_speed_mm_s * 1000, self._scale.fastest_um_s)
        if speed_mm_s * 1000 > fastest_um_s:
            log.warning(
                "manipulator %s: speed %.3g mm/s slowed to %.3g mm/s",
                self.id,
                speed_mm_s,
                fastest_um_s / 1000,
            )
            return fastest_um_s
        return speed_mm_s * 1000

    async def _counts(self) -> Counts:
        return await self._command("P", parse_position)

    async def _command(
        self,
        command: str,
        parse: Callable[[str], T],
        *,
        priority: bool = False,
        urgent: bool = False,
    ) -> T:
        async with self._lock.hold(priority=priority):
            return await self._link.transact(command, parse, urgent=urgent)


def _distance_um(a: Counts, b: Counts, counts_per_um: int) -> float:
    return math.dist(a, b) / counts_per_um
