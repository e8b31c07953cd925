"""What the two HTTP platforms (Pathfinder MPM, Parallax) share.

Both vendor programs publish the whole rig's state on ``GET /`` and take JSON
commands on ``PUT /``. One :class:`StatePoller` per platform fetches that state
at the vendor's refresh rate and every manipulator reads the latest snapshot,
so any number of clients asking for positions costs the vendor software one
GET per refresh, never a request storm. PUTs go one at a time, a stop ahead
of any queued command. A platform only supplies a :class:`Dialect`: how to
read its state, how to spell its commands, how long its positions may stand
still while a stage moves, and whether a stop must be confirmed by its effect.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

import httpx
import msgspec
import numpy as np
import trio

from drivers.base import (
    DeviceError,
    DeviceLost,
    Manipulator,
    Platform,
    PlatformInfo,
    Vector,
)
from drivers.coordinates import AxisMap, NativeArray
from drivers.priority_lock import PriorityLock

log = logging.getLogger(__name__)

# httpx logs every request at INFO: at 30 polls a second that would bury the
# journal. Wire-level detail is ours to log (at DEBUG), unless someone configured httpx.
for _noisy in ("httpx", "httpcore"):
    if logging.getLogger(_noisy).level == logging.NOTSET:
        logging.getLogger(_noisy).setLevel(logging.WARNING)

Command = dict[str, object]

POLL_INTERVAL_S = 1 / 30
"""Pathfinder refreshes its state at ~30 Hz; polling faster gains nothing."""
REQUEST_TIMEOUT_S = 0.5
PUT_LIMIT_S = 2 * REQUEST_TIMEOUT_S
"""The most one PUT may take, connection and answer included."""
STALE_AFTER_S = 0.5
"""A snapshot older than this is not trusted: positions would be lies."""
STOP_DEADLINE_S = 2 * PUT_LIMIT_S
"""A stop may wait for the one PUT already on the wire, then takes its own."""
STILL_MM = 0.0001
"""Served positions closer than this are the same position."""
STALL_POLLS = 10
STALL_S = 1.0
COARSE_SPEED_THRESHOLD_MM_S = 0.1
INSERTION_RATE_LIMIT_UM_MIN = 9000.0


class ProbeState(msgspec.Struct, frozen=True):
    """One manipulator's state as the vendor reported it, already validated."""

    native_mm: tuple[float, ...]
    """The served values the dialect's AxisMap reads. The first ``axes_count``
    are the axes a position move targets; every one of them counts when the
    driver watches whether the stage moves."""
    angles: tuple[float, float, float]
    shank_count: int
    move_refusal: str = ""
    """Why a position move must not be sent now ("" when it may): the vendor
    would drop it, e.g. a stage it has no calibration for."""
    depth_refusal: str = ""
    """The same for a depth move."""


class ProbeFault(msgspec.Struct, frozen=True):
    """A manipulator the vendor lists with a state we cannot use (null positions, say).

    It fails the requests for that manipulator alone: one bad entry in the
    rig's state must not take every manipulator down with it.
    """

    reason: str


Snapshot = Mapping[str, ProbeState | ProbeFault]


class UnusableValue(Exception):
    """One manipulator's value cannot be used; the text says which value and why."""


def number_value(value: object, name: str) -> float:
    """A finite JSON number as a float, or :class:`UnusableValue` saying what came instead."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if value is None:
        raise UnusableValue(f"{name} is null")
    shown = msgspec.json.encode(value).decode()
    if len(shown) > 40:
        shown = shown[:37] + "..."
    raise UnusableValue(f"{name} is {shown}, not a number")


class VendorStateError(ValueError):
    """The vendor answered a GET, but says or shows that it cannot be driven as it is
    (an error status, a version too old). The text follows the vendor's name in
    the error, e.g. "reports an error: ..."."""


class StopCheck(msgspec.Struct, frozen=True):
    """How a halt is confirmed by its effect, for a vendor that answers 200 to a
    command it dropped: only the served position can say whether a stop took."""

    settle_s: float
    """The served position must stop changing this soon after the stop..."""
    still_s: float
    """...and then stay unchanged this long to count as stopped."""
    attempts: int
    """Stop commands sent before the halt fails: the first and its retries."""
    limit_s: float
    """Every attempt is over by this long after the halt began."""


class Dialect(abc.ABC):
    """How one vendor's HTTP server reads and writes: data plus four command shapes."""

    label: str
    """Human name used in error text, e.g. "Pathfinder MPM"."""
    info: PlatformInfo
    axis_map: AxisMap
    poll_interval_s: float = POLL_INTERVAL_S
    """How often to GET the state: about as often as the vendor refreshes it."""
    still_s: float = STALL_S
    """A move whose served position has not changed for this long has ended
    (stopped short): longer than the vendor's slowest refresh, or a move that
    has not been noticed yet would pass for a stall."""
    stop_check: StopCheck | None = None
    """Set when the vendor's 200 does not mean a stop reached the stage."""

    def get_failure(self, status: int, body: bytes) -> str:
        """What a GET answered with ``status`` (not 200) means, after the vendor's name."""
        return f"answered HTTP {status} to GET"

    @abc.abstractmethod
    def parse_state(self, body: bytes) -> Snapshot:
        """Decode a GET body; raise ValueError saying what is wrong with it as a whole.

        A manipulator whose own entry is unusable is reported as a
        :class:`ProbeFault` instead, so the others stay usable.
        """

    @abc.abstractmethod
    def step_mode_command(self, manipulator_id: str, fine: bool) -> Command: ...

    @abc.abstractmethod
    def move_command(self, manipulator_id: str, native_mm: Sequence[float]) -> Command: ...

    @abc.abstractmethod
    def insertion_command(
        self, manipulator_id: str, distance_um: float, rate_um_min: float
    ) -> Command: ...

    @abc.abstractmethod
    def stop_command(self, manipulator_id: str) -> Command: ...


class StatePoller:
    """Fetches the rig state at the vendor's refresh rate and hands out the latest one."""

    def __init__(
        self,
        dialect: Dialect,
        url: str,
        client: httpx.AsyncClient,
        *,
        interval: float | None = None,
        stale_after: float = STALE_AFTER_S,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._dialect = dialect
        self._url = url
        self._client = client
        self._interval = dialect.poll_interval_s if interval is None else interval
        self._stale_after = stale_after
        self._request_timeout = request_timeout
        self._snapshot: Snapshot = {}
        self._faults: dict[str, str] = {}
        self._snapshot_time = -math.inf
        self._last_error: DeviceError | None = None
        self._tick = trio.Event()
        # The vendor may run PUTs side by side and mix them up (Parallax fills
        # one shared command per kind before it forwards it), so they go one at
        # a time; a stop waits only for the one already on the wire.
        self._puts = PriorityLock()
        self.name = f"{dialect.label} at {url}"

    async def fetch(self) -> Snapshot:
        """One GET, validated. DeviceLost when nobody answers, DeviceError for nonsense."""
        try:
            with trio.fail_after(self._request_timeout * 2):
                response = await self._client.get(self._url, timeout=self._request_timeout)
        except httpx.ConnectError:
            raise DeviceLost(
                f"{self.name} is not answering (connection refused: "
                f"is {self._dialect.label} running?)"
            ) from None
        except (httpx.TimeoutException, trio.TooSlowError):
            raise DeviceLost(
                f"{self.name} is not answering (no reply within {self._request_timeout:g} s)"
            ) from None
        except httpx.HTTPError as exc:
            raise DeviceLost(
                f"{self.name} is not answering ({type(exc).__name__}: {exc})"
            ) from None
        if response.status_code != 200:
            failure = self._dialect.get_failure(response.status_code, response.content)
            raise DeviceError(f"{self.name} {failure}")
        try:
            return self._dialect.parse_state(response.content)
        except VendorStateError as exc:
            raise DeviceError(f"{self.name} {exc}") from None
        except ValueError as exc:
            raise DeviceError(f"{self.name} answered nonsense: {exc}") from None

    def accept(self, snapshot: Snapshot) -> None:
        if self._last_error is not None:
            log.warning("%s is answering again", self.name)
        self._log_faults(snapshot)
        self._snapshot = snapshot
        self._snapshot_time = trio.current_time()
        self._last_error = None
        self._wake()

    def _log_faults(self, snapshot: Snapshot) -> None:
        """One line when a manipulator's state becomes unusable, one when it is usable again."""
        faults = {
            manipulator_id: entry.reason
            for manipulator_id, entry in snapshot.items()
            if isinstance(entry, ProbeFault)
        }
        if faults == self._faults:
            return
        for manipulator_id, reason in faults.items():
            if self._faults.get(manipulator_id) != reason:
                log.warning("%s", self._fault_text(manipulator_id, reason))
        for manipulator_id in self._faults.keys() - faults.keys():
            if manipulator_id in snapshot:
                log.warning(
                    "%s reports manipulator %s with a usable state again", self.name, manipulator_id
                )
        self._faults = faults

    def _fault_text(self, manipulator_id: str, reason: str) -> str:
        return f"{self.name} reports manipulator {manipulator_id} without a usable state: {reason}"

    def _reject(self, error: DeviceError) -> None:
        if self._last_error is None or str(self._last_error) != str(error):
            log.error("%s", error)
        self._last_error = error
        self._wake()

    def _wake(self) -> None:
        self._tick.set()
        self._tick = trio.Event()

    async def run(self) -> NoReturn:
        """Poll forever on a fixed cadence; failures are recorded, never raised."""
        next_at = trio.current_time()
        while True:
            try:
                snapshot = await self.fetch()
            except DeviceError as exc:
                self._reject(exc)
            else:
                self.accept(snapshot)
            next_at = max(next_at + self._interval, trio.current_time())
            await trio.sleep_until(next_at)

    def probe(self, manipulator_id: str) -> ProbeState:
        """The latest state of one manipulator, or the reason it cannot be trusted."""
        entry = self._entry(manipulator_id)
        if isinstance(entry, ProbeFault):
            raise DeviceError(self._fault_text(manipulator_id, entry.reason))
        return entry

    def _entry(self, manipulator_id: str) -> ProbeState | ProbeFault:
        """One manipulator's entry in a fresh snapshot, usable or not."""
        age = trio.current_time() - self._snapshot_time
        if age > self._stale_after:
            if self._last_error is not None:
                raise type(self._last_error)(str(self._last_error))
            raise DeviceLost(f"{self.name} is not answering (no state for {age:.1f} s)")
        try:
            return self._snapshot[manipulator_id]
        except KeyError:
            raise DeviceError(
                f"{self.name} no longer reports manipulator {manipulator_id}"
            ) from None

    async def next_probe(self, manipulator_id: str) -> ProbeState:
        """Wait for the next poll (bounded), then read."""
        await self._next_tick()
        return self.probe(manipulator_id)

    async def next_listing(self, manipulator_id: str) -> None:
        """Wait for the next poll (bounded); raise unless it lists the manipulator.

        A listed manipulator whose state is unusable passes: the vendor is
        answering and knows it, and its requests fail on their own until its
        state is sound again.
        """
        await self._next_tick()
        self._entry(manipulator_id)

    async def _next_tick(self) -> None:
        with trio.move_on_after(self._stale_after):
            await self._tick.wait()

    async def put(self, command: Command, *, urgent: bool = False) -> None:
        """Send one command; an ``urgent`` one (a stop) goes ahead of every queued one.

        Once on the wire a PUT is not abandoned, only bounded: the vendor may
        still carry out a command whose answer nobody waits for, and a stop
        sent meanwhile could then arrive before the move it was meant to end.
        """
        body = msgspec.json.encode(command)
        async with self._puts.hold(priority=urgent):
            with trio.CancelScope(shield=True):
                response = await self._send_put(body)
        if not response.is_success:
            raise DeviceError(
                f"{self.name} refused command {body.decode()} (HTTP {response.status_code})"
            )
        log.debug("%s <- PUT %s", self.name, body.decode())

    async def _send_put(self, body: bytes) -> httpx.Response:
        try:
            with trio.fail_after(self._request_timeout * 2):
                return await self._client.put(
                    self._url,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=self._request_timeout,
                )
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            raise DeviceLost(
                f"{self.name} did not take command {body.decode()} "
                f"({type(exc).__name__}: {exc or 'timed out'})"
            ) from None


Done = Callable[[ProbeState], bool]


class _Stillness:
    """How long a manipulator's served values have stayed where they are."""

    def __init__(self, values: Sequence[float], now: float) -> None:
        self._anchor = np.asarray(values, dtype=np.float64)
        self.since = now

    def moved(self, values: Sequence[float], now: float) -> bool:
        """True (and the clock restarts) when ``values`` differ from the last ones."""
        current = np.asarray(values, dtype=np.float64)
        if np.max(np.abs(current - self._anchor)) <= STILL_MM:
            return False
        self._anchor, self.since = current, now
        return True


class HttpManipulator(Manipulator):
    """A manipulator whose reads come from the shared poller and whose moves are PUTs."""

    def __init__(self, manipulator_id: str, dialect: Dialect, poller: StatePoller) -> None:
        super().__init__(manipulator_id)
        self._dialect = dialect
        self._poller = poller
        self._tolerance = dialect.info.tolerance_mm
        self._halts = 0

    def _unified(self, probe: ProbeState) -> Vector:
        return self._dialect.axis_map.to_unified(probe.native_mm)

    async def open(self) -> None:
        # Not next_probe: a manipulator listed with an unusable state (null
        # positions, say) must not stop the daemon from starting its neighbours.
        await self._poller.next_listing(self.id)

    async def close(self) -> None:
        return None

    async def position(self) -> Vector:
        return self._unified(self._poller.probe(self.id))

    async def angles(self) -> tuple[float, float, float]:
        return self._poller.probe(self.id).angles

    async def shank_count(self) -> int:
        return self._poller.probe(self.id).shank_count

    async def halt(self) -> None:
        self._halts += 1
        check = self._dialect.stop_check
        if check is None:
            await self._put_stop()
        else:
            await self._confirmed_halt(check)

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        unified = np.asarray(target, dtype=np.float64)
        _check_motion_args(unified[:3], speed_mm_s)
        native_target = self._dialect.axis_map.to_native(unified, 3)
        probe = self._poller.probe(self.id)
        if probe.move_refusal:
            raise DeviceError(f"Manipulator {self.id} cannot move: {probe.move_refusal}")
        start = np.asarray(probe.native_mm[:3])
        distance = float(np.max(np.abs(native_target - start)))
        limit = 10.0 + 3.0 * distance / speed_mm_s

        def arrived(probe: ProbeState) -> bool:
            error = np.abs(np.asarray(probe.native_mm[:3]) - native_target)
            return bool(np.all(error <= self._tolerance))

        halts = self._halts
        try:
            fine = speed_mm_s <= COARSE_SPEED_THRESHOLD_MM_S
            await self._poller.put(self._dialect.step_mode_command(self.id, fine))
            await self._poller.put(self._dialect.move_command(self.id, native_target.tolist()))
            final = await self._wait(arrived, limit, halts)
        except BaseException:
            await self._stop_shielded()
            raise
        return self._unified(final)

    async def move_depth(self, depth_mm: float, speed_mm_s: float) -> float:
        """Drive along the probe with the vendor's insertion command."""
        _check_motion_args(np.array([depth_mm]), speed_mm_s)
        probe = self._poller.probe(self.id)
        if probe.depth_refusal:
            raise DeviceError(f"Manipulator {self.id} cannot move: {probe.depth_refusal}")
        current = float(self._unified(probe)[3])
        distance_um = (depth_mm - current) * 1000.0
        if abs(distance_um) <= self._tolerance * 1000.0:
            return current
        rate_um_min = min(speed_mm_s * 60_000.0, INSERTION_RATE_LIMIT_UM_MIN)
        limit = 10.0 + 3.0 * abs(distance_um) / (rate_um_min / 60.0)

        def arrived(probe: ProbeState) -> bool:
            return abs(float(self._unified(probe)[3]) - depth_mm) <= self._tolerance

        halts = self._halts
        try:
            await self._poller.put(
                self._dialect.insertion_command(self.id, round(distance_um, 3), rate_um_min)
            )
            final = await self._wait(arrived, limit, halts)
        except BaseException:
            await self._stop_shielded()
            raise
        return float(self._unified(final)[3])

    async def _wait(self, arrived: Done, limit_s: float, halts: int) -> ProbeState:
        """Until arrived, halted, or stalled (then stopped); bounded by ``limit_s``.

        A stall is the served position unchanged for STALL_POLLS polls and the
        dialect's ``still_s``: the vendor may take a refresh or two to show
        that a move began.
        """
        try:
            with trio.fail_after(limit_s):
                probe = self._poller.probe(self.id)
                stillness = _Stillness(probe.native_mm, trio.current_time())
                still_polls = 0
                while True:
                    probe = await self._poller.next_probe(self.id)
                    if arrived(probe) or self._halts != halts:
                        return probe
                    now = trio.current_time()
                    if stillness.moved(probe.native_mm, now):
                        still_polls = 0
                        continue
                    still_polls += 1
                    still_for = now - stillness.since
                    if still_polls >= STALL_POLLS and still_for >= self._dialect.still_s:
                        log.warning(
                            "%s manipulator %s stopped short of its target",
                            self._poller.name,
                            self.id,
                        )
                        # Stood still as served, which need not mean still: a vendor
                        # whose own view froze (Parallax 1.5-1.15 stops polling after
                        # one failure) serves a moving stage as still. Nothing may
                        # keep moving once the move has been answered.
                        await self._stop_shielded()
                        return probe
        except trio.TooSlowError:
            raise DeviceError(
                f"Manipulator {self.id} did not finish its move within {limit_s:.0f} s"
            ) from None

    async def _put_stop(self) -> None:
        await self._poller.put(self._dialect.stop_command(self.id), urgent=True)

    async def _stop_shielded(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_DEADLINE_S):
            try:
                await self._put_stop()
            except DeviceError as exc:
                log.error("could not stop manipulator %s: %s", self.id, exc)

    async def _confirmed_halt(self, check: StopCheck) -> None:
        """Stop, watch the stage go still, and stop again if it does not.

        The vendor answers 200 even to a stop it dropped, so a halt is only
        over once the served position has stopped changing. The halt fails,
        naming the manipulator, when no attempt got that far.
        """
        give_up_at = trio.current_time() + check.limit_s
        reason = ""
        for attempt in range(1, check.attempts + 1):
            try:
                await self._put_stop()
            except DeviceLost:
                raise
            except DeviceError as exc:
                reason = str(exc)
            else:
                if await self._goes_still(check, give_up_at):
                    if attempt > 1:
                        log.warning(
                            "%s manipulator %s stopped after stop command %d",
                            self._poller.name,
                            self.id,
                            attempt,
                        )
                    return
                reason = (
                    f"{self._poller.name} took the stop, but the stage's position did not "
                    f"stand still for {check.still_s:g} s within {check.settle_s:g} s"
                )
            if attempt < check.attempts:
                log.warning(
                    "manipulator %s did not stop (%s); sending the stop again", self.id, reason
                )
        raise DeviceError(
            f"Manipulator {self.id} did not stop after {check.attempts} stop commands: {reason}"
        )

    async def _goes_still(self, check: StopCheck, give_up_at: float) -> bool:
        """True once the served position has stood still for ``still_s``; False if it
        changes later than ``settle_s`` after the stop, or at ``give_up_at``."""
        stopped_at = trio.current_time()
        stillness = _Stillness(self._poller.probe(self.id).native_mm, stopped_at)
        while True:
            probe = await self._poller.next_probe(self.id)
            now = trio.current_time()
            if stillness.moved(probe.native_mm, now):
                if now - stopped_at > check.settle_s:
                    return False
            elif now - stillness.since >= check.still_s:
                return True
            if now >= give_up_at:
                return False


def _check_motion_args(target: NativeArray, speed_mm_s: float) -> None:
    if not (math.isfinite(speed_mm_s) and speed_mm_s > 0):
        raise DeviceError(f"Speed must be a positive number of mm/s, not {speed_mm_s!r}")
    if not np.all(np.isfinite(target)):
        raise DeviceError("Target position must be finite numbers")


class HttpPlatform(Platform):
    """A rig behind one vendor HTTP server: discover from one GET, then poll forever."""

    def __init__(
        self,
        dialect: Dialect,
        url: str,
        *,
        interval: float | None = None,
        stale_after: float = STALE_AFTER_S,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.info = dialect.info
        self.url = url
        self._dialect = dialect
        self._interval = interval
        self._stale_after = stale_after
        self._request_timeout = request_timeout

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        # trust_env=False: a proxy from the environment must never sit between us and the rig.
        async with httpx.AsyncClient(trust_env=False) as client:
            poller = StatePoller(
                self._dialect,
                self.url,
                client,
                interval=self._interval,
                stale_after=self._stale_after,
                request_timeout=self._request_timeout,
            )
            snapshot = await poller.fetch()
            poller.accept(snapshot)
            manipulators: list[Manipulator] = [
                HttpManipulator(manipulator_id, self._dialect, poller)
                for manipulator_id in snapshot
            ]
            if manipulators:
                log.info("%s reports manipulators %s", poller.name, ", ".join(snapshot))
            else:
                log.warning("%s reports no manipulators", poller.name)
            task_status.started(manipulators)
            await poller.run()
