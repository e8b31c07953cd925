"""One actor task per manipulator: the only code that touches its device.

The API never calls a driver. It sends a msgspec message carrying a one-shot
:class:`ReplySlot` down one of the actor's channels and awaits the slot:

- reads (position, angles, shank count) go to a small pool of reader tasks,
  so a read is answered while a move is running (the driver serialises its
  own transactions) and a slow read never holds up the others;
- control messages (moves, jackhammers, inside-brain) go through the actor's
  loop, which decides each one at once, in arrival order, and never waits on
  the device: a motion is claimed there (superseding the running one) and then
  driven in a child task;
- ``stop`` and ``abort_jackhammer`` have a channel of their own (below).

A motion (a move or a jackhammer run) runs inside a :class:`trio.CancelScope`
the actor keeps. ``stop`` comes in on a separate priority channel, so it never
queues behind other requests; it cancels that scope (the driver halts the
hardware as it unwinds) and commands a halt as well. ``abort_jackhammer`` does
the same, but only to a jackhammer. A new motion cancels the running one first
and waits for it to wind down, so the driver never sees two at once; the
superseded one's ack says so.

Every device wait is bounded; a :class:`~drivers.base.DeviceLost` takes the
manipulator offline (requests then fail at once) and a reconnect task reopens
it with exponential backoff until it is back. Nothing here starts a motion that
no request asked for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

import msgspec
import trio

from drivers.base import (
    DeviceError,
    DeviceLost,
    JackhammerPattern,
    Manipulator,
    PlatformInfo,
    Vector,
)
from ephysd import jackhammer
from ephysd.errors import DeviceTimeout, error_text
from ephysd.models import (
    INSIDE_BRAIN_REFUSAL,
    ClosedLoopReport,
    JackhammerOutcome,
    JackhammerRequest,
    Vector3,
    Vector4,
    vector4,
)
from protocol.deferred import Deferred
from protocol.stepping import Started, finish, start

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

AXIS_NAMES = ("x", "y", "z", "w")


# The one-shot answer an actor gives to a message: awaited by the API, or
# handed to a callback on the actor's task (reads; see ActorHandle.request_position).
ReplySlot = Deferred


class Result(msgspec.Struct, Generic[T], frozen=True):
    """An answer: ``error`` empty means success and ``value`` is set."""

    value: T | None = None
    error: str = ""


# --- Messages (API -> actor) -------------------------------------------------------


class GetPosition(msgspec.Struct, frozen=True):
    reply: ReplySlot[Result[Vector4]]


class GetAngles(msgspec.Struct, frozen=True):
    reply: ReplySlot[Result[Vector3]]


class GetShankCount(msgspec.Struct, frozen=True):
    reply: ReplySlot[Result[int]]


class MoveTo(msgspec.Struct, frozen=True):
    position: Vector4
    speed: float
    reply: ReplySlot[Result[Vector4]]


class MoveDepth(msgspec.Struct, frozen=True):
    depth: float
    speed: float
    reply: ReplySlot[Result[float]]


class SetInsideBrain(msgspec.Struct, frozen=True):
    inside: bool
    reply: ReplySlot[Result[bool]]


class Jackhammer(msgspec.Struct, frozen=True):
    """A jackhammer run. Its answer may carry an outcome *and* an error: a run
    that was stopped or superseded still says where the probe ended."""

    request: JackhammerRequest
    reply: ReplySlot[Result[JackhammerOutcome]]


class Stop(msgspec.Struct, frozen=True):
    reply: ReplySlot[Result[None]]


class AbortJackhammer(msgspec.Struct, frozen=True):
    """End the running jackhammer, if any; anything else (a move) runs on."""

    reply: ReplySlot[Result[None]]


# Reads go to a pool of reader tasks, in any order; control messages go through
# the actor's loop in arrival order (a move after set_inside_brain must see it);
# stops and aborts take the priority channel.
ReadRequest = GetPosition | GetAngles | GetShankCount
ControlRequest = MoveTo | MoveDepth | SetInsideBrain | Jackhammer
PriorityRequest = Stop | AbortJackhammer

# Each read's event name and how its timeout describes it.
_READS: dict[type[ReadRequest], tuple[str, str]] = {
    GetPosition: ("get_position", "a position read"),
    GetAngles: ("get_angles", "an angle read"),
    GetShankCount: ("get_shank_count", "a shank-count read"),
}


class ActorLimits(msgspec.Struct, frozen=True):
    """Deadlines and backoff of one actor; tests shrink them."""

    read_timeout_s: float = 5.0
    halt_timeout_s: float = 1.0
    open_timeout_s: float = 10.0
    # A move may take (full travel on every axis / speed) * factor + slack.
    move_time_factor: float = 2.0
    move_slack_s: float = 10.0
    send_timeout_s: float = 2.0
    # A jackhammer may take, per cycle, this much per step plus the slack
    # (a device call, a position read), plus move_slack_s for the whole run.
    jackhammer_step_s: float = 0.05
    jackhammer_cycle_slack_s: float = 1.0
    # Settling waits before a jackhammer reads the position (upstream's).
    jackhammer_settle_s: float = 0.5
    jackhammer_iteration_settle_s: float = 0.1
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    queue_size: int = 256
    # Reads served at once; one more waits until a reader is free. A hung
    # device ties up readers only until read_timeout_s.
    readers: int = 8


class ActorHandle:
    """The API's side of an actor: builds a message, sends it, awaits the reply."""

    def __init__(
        self,
        manipulator_id: str,
        reads: trio.MemorySendChannel[ReadRequest],
        control: trio.MemorySendChannel[ControlRequest],
        stops: trio.MemorySendChannel[PriorityRequest],
        send_timeout_s: float,
    ) -> None:
        self.id = manipulator_id
        self._reads = reads
        self._control = control
        self._stops = stops
        self._send_timeout_s = send_timeout_s
        # Replies still awaited: an actor that ends answers them all (see
        # ``shut_down``), so no API call waits forever on a dead actor.
        self._awaited: set[ReplySlot[Any]] = set()
        self._shut_down = False
        # The last error any request on this manipulator was answered with
        # (shown on the rig page; see ephysd.rig_state).
        self.last_error = ""

    def shut_down(self) -> None:
        """The actor has ended: answer every awaited reply, refuse new requests."""
        self._shut_down = True
        awaited, self._awaited = self._awaited, set()
        for slot in awaited:  # a callback slot leaves the set as it is answered
            slot.resolve(Result(error=self._shut_down_error()))

    def _shut_down_error(self) -> str:
        return error_text(DeviceError(f"Manipulator {self.id} is shut down."))

    async def _send(self, channel: trio.MemorySendChannel[Any], message: Any, slot: Any) -> None:
        """Hand ``message`` to the actor; if that fails, the failure is the slot's answer."""
        if self._shut_down:
            slot.resolve(Result(error=self._shut_down_error()))
            return
        try:
            try:
                channel.send_nowait(message)  # the usual case: room in the queue
            except trio.WouldBlock:
                with trio.fail_after(self._send_timeout_s):
                    await channel.send(message)
        except trio.TooSlowError:
            slot.resolve(Result(error=error_text(DeviceTimeout(f"Manipulator {self.id} is busy."))))
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            slot.resolve(Result(error=self._shut_down_error()))
            return
        if self._shut_down:  # the actor ended while we waited for room
            slot.resolve(Result(error=self._shut_down_error()))
            return
        if not slot.resolved:  # the actor may have answered while we waited for room
            self._awaited.add(slot)

    async def _ask(self, channel: trio.MemorySendChannel[Any], message: Any, slot: Any) -> Any:
        try:
            await self._send(channel, message, slot)
            result = await slot.wait()
        finally:
            self._awaited.discard(slot)
        if result.error:
            self.last_error = result.error
        return result

    def _callback_slot(self, on_reply: Callable[[Result[T]], None]) -> ReplySlot[Result[T]]:
        """A slot that answers ``on_reply`` on the actor's task and leaves the awaited set."""

        slot: ReplySlot[Result[T]] = ReplySlot()

        def answered(result: Result[T]) -> None:
            self._awaited.discard(slot)
            if result.error:
                self.last_error = result.error
            on_reply(result)

        slot.on_resolved(answered)
        return slot

    async def request_position(self, on_reply: Callable[[Result[Vector4]], None]) -> None:
        """Ask for the position; ``on_reply`` gets the answer exactly once, on the
        actor's task (or at once, here, if the request could not be delivered)."""
        slot = self._callback_slot(on_reply)
        await self._send(self._reads, GetPosition(slot), slot)

    async def request_angles(self, on_reply: Callable[[Result[Vector3]], None]) -> None:
        """As :meth:`request_position`, for the probe's angles."""
        slot = self._callback_slot(on_reply)
        await self._send(self._reads, GetAngles(slot), slot)

    async def request_shank_count(self, on_reply: Callable[[Result[int]], None]) -> None:
        """As :meth:`request_position`, for the shank count."""
        slot = self._callback_slot(on_reply)
        await self._send(self._reads, GetShankCount(slot), slot)

    async def get_position(self) -> Result[Vector4]:
        slot: ReplySlot[Result[Vector4]] = ReplySlot()
        result: Result[Vector4] = await self._ask(self._reads, GetPosition(slot), slot)
        return result

    async def move_to(self, position: Vector4, speed: float) -> Result[Vector4]:
        slot: ReplySlot[Result[Vector4]] = ReplySlot()
        result: Result[Vector4] = await self._ask(
            self._control, MoveTo(position, speed, slot), slot
        )
        return result

    async def move_depth(self, depth: float, speed: float) -> Result[float]:
        slot: ReplySlot[Result[float]] = ReplySlot()
        result: Result[float] = await self._ask(self._control, MoveDepth(depth, speed, slot), slot)
        return result

    async def set_inside_brain(self, inside: bool) -> Result[bool]:
        slot: ReplySlot[Result[bool]] = ReplySlot()
        result: Result[bool] = await self._ask(self._control, SetInsideBrain(inside, slot), slot)
        return result

    async def jackhammer(self, request: JackhammerRequest) -> Result[JackhammerOutcome]:
        slot: ReplySlot[Result[JackhammerOutcome]] = ReplySlot()
        result: Result[JackhammerOutcome] = await self._ask(
            self._control, Jackhammer(request, slot), slot
        )
        return result

    async def stop(self) -> Result[None]:
        slot: ReplySlot[Result[None]] = ReplySlot()
        result: Result[None] = await self._ask(self._stops, Stop(slot), slot)
        return result

    async def abort_jackhammer(self) -> Result[None]:
        slot: ReplySlot[Result[None]] = ReplySlot()
        result: Result[None] = await self._ask(self._stops, AbortJackhammer(slot), slot)
        return result


# What a motion is, as its messages name it.
MOVE = "move"
JACKHAMMER = "jackhammer"


class _Move:
    """The one running (or about to run) motion of an actor: a move or a jackhammer."""

    __slots__ = ("aborted", "done", "kind", "previous", "scope", "superseded_by")

    def __init__(self, kind: str, previous: _Move | None) -> None:
        self.kind = kind
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        # The kind of request that superseded this motion, if one did.
        self.superseded_by = ""
        # Ended by abort_jackhammer (a jackhammer only).
        self.aborted = False
        # The motion this one replaced; it must have wound down before we drive.
        self.previous = previous


class Actor:
    """Owns one :class:`Manipulator` for the daemon's lifetime."""

    def __init__(
        self, manipulator: Manipulator, info: PlatformInfo, limits: ActorLimits | None = None
    ) -> None:
        self.manipulator = manipulator
        self.id = manipulator.id
        self._info = info
        self._limits = limits or ActorLimits()
        size = self._limits.queue_size
        self._reads_send, self._reads = trio.open_memory_channel[ReadRequest](size)
        self._control_send, self._control = trio.open_memory_channel[ControlRequest](size)
        self._stops_send, self._stops = trio.open_memory_channel[PriorityRequest](size)
        self.handle = ActorHandle(
            self.id,
            self._reads_send,
            self._control_send,
            self._stops_send,
            self._limits.send_timeout_s,
        )
        self._move: _Move | None = None
        manipulator.platform_name = info.name
        self._inside_brain = False
        self._online = True
        self._lost_reason = ""
        self._nursery: trio.Nursery | None = None
        # Device calls under way, and an event set each time that drops to 0.
        self._in_flight = 0
        self._idle = trio.Event()
        # The latest position the device reported to anyone (a client's read,
        # the end of a move, the rig page's own refresh) and when (Trio time):
        # the rig_state publisher shows it rather than read again while a
        # client polls anyway.
        self.last_position: Vector | None = None
        self.last_read_at = -math.inf

    @property
    def online(self) -> bool:
        return self._online

    @property
    def moving(self) -> bool:
        return self._move is not None

    @property
    def lost_reason(self) -> str:
        """Why the device went offline ("" while online)."""
        return "" if self._online else self._lost_reason

    @property
    def inside_brain(self) -> bool:
        return self._inside_brain

    def _saw(self, position: Vector) -> Vector:
        self.last_position = position
        self.last_read_at = trio.current_time()
        return position

    async def run(
        self, *, task_status: trio.TaskStatus[ActorHandle] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the device, report the handle, then serve messages until cancelled.

        A device that cannot be opened at start is a startup error (raised as
        DeviceError), so a wrong ``--port`` ends the daemon with one line.
        """
        try:
            try:
                with trio.fail_after(self._limits.open_timeout_s):
                    await self.manipulator.open()
            except trio.TooSlowError:
                raise DeviceError(
                    f"Manipulator {self.id} did not answer within {self._limits.open_timeout_s} s."
                ) from None
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._serve_stops)
                for _ in range(self._limits.readers):
                    nursery.start_soon(self._serve_reads)
                log.info("manipulator %s ready", self.id)
                task_status.started(self.handle)
                async for message in self._control:
                    self._dispatch_control(message, nursery)
        finally:
            self.handle.shut_down()
            with trio.CancelScope(shield=True), trio.move_on_after(self._limits.halt_timeout_s):
                await self.manipulator.close()

    # --- plumbing --------------------------------------------------------------

    def _offline_error(self) -> str:
        return error_text(
            DeviceLost(f"Manipulator {self.id} is offline ({self._lost_reason}); reconnecting.")
        )

    def _go_offline(self, exc: DeviceLost) -> None:
        if not self._online:
            return
        self._online = False
        self._lost_reason = str(exc) or type(exc).__name__
        log.warning("manipulator %s lost: %s; reconnecting", self.id, self._lost_reason)
        if self._move is not None:
            self._move.scope.cancel()
        assert self._nursery is not None
        self._nursery.start_soon(self._reconnect)

    async def _reconnect(self) -> None:
        # Let calls still inside the driver (each bounded) fail first, so the
        # driver never sees open() racing a read of the old connection.
        if self._in_flight:
            await self._idle.wait()
        delay = self._limits.reconnect_initial_s
        attempt = 0
        while True:
            await trio.sleep(delay)
            attempt += 1
            with trio.move_on_after(self._limits.halt_timeout_s):
                await self.manipulator.close()
            try:
                with trio.fail_after(self._limits.open_timeout_s):
                    await self.manipulator.open()
            except (DeviceError, trio.TooSlowError) as exc:
                log.info(
                    "manipulator %s reopen attempt %d failed: %s", self.id, attempt, error_text(exc)
                )
                delay = min(delay * 2, self._limits.reconnect_max_s)
                continue
            self._online = True
            log.warning("manipulator %s back online after %d attempt(s)", self.id, attempt)
            return

    async def _device(
        self,
        call: Callable[[], Coroutine[Any, Any, T]],
        timeout_s: float,
        what: str,
        bound: trio.CancelScope | None = None,
    ) -> T:
        """One bounded device call; a lost device takes the actor offline.

        With ``bound`` (a reader's own scope, see ``_serve_reads``) the deadline
        is set on that scope, and only if the call waits: an answer that needs
        no waiting (a simulated device, a cached value) needs no deadline, and
        a fresh cancel scope per call would cost more than the call. When that
        deadline fires, Cancelled leaves here and ``_serve_reads`` answers.
        """
        self._in_flight += 1
        try:
            if bound is None:
                with trio.fail_after(timeout_s):
                    return await call()
            coro = call()
            try:
                return start(coro)
            except Started as waiting:
                bound.deadline = trio.current_time() + timeout_s
                try:
                    return await finish(coro, waiting.trap)
                finally:
                    bound.deadline = math.inf
        except trio.TooSlowError:
            raise DeviceTimeout(
                f"Manipulator {self.id} did not answer {what} within {timeout_s} s."
            ) from None
        except DeviceLost as exc:
            self._go_offline(exc)
            raise
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
                self._idle = trio.Event()

    def _failure(self, what: str, exc: Exception) -> str:
        text = error_text(exc)
        if isinstance(exc, DeviceError | TimeoutError):
            log.error("manipulator %s %s failed: %s", self.id, what, text)
        else:
            log.exception("manipulator %s %s failed with an unexpected error", self.id, what)
        return text

    async def _read_position(self) -> Vector:
        return self._saw(
            await self._device(
                self.manipulator.position, self._limits.read_timeout_s, _READS[GetPosition][1]
            )
        )

    # --- message handlers ------------------------------------------------------

    async def _serve_reads(self) -> None:
        """One reader: answers reads until the channel closes.

        It runs inside a cancel scope of its own whose deadline is set only
        while a device read waits (see ``_device``). When that deadline fires
        the scope ends: the read in hand gets the timeout as its answer, and a
        new scope serves the next one.
        """
        timeout_s = self._limits.read_timeout_s
        while True:
            current: ReadRequest | None = None
            with trio.CancelScope() as bound:
                async for current in self._reads:
                    if not self._online:
                        current.reply.resolve(Result(error=self._offline_error()))
                    else:
                        await self._answer_read(current, bound)
                    current = None
                return
            if current is not None:  # nothing but a read's deadline cancels ``bound``
                event, what = _READS[type(current)]
                late = DeviceTimeout(
                    f"Manipulator {self.id} did not answer {what} within {timeout_s} s."
                )
                current.reply.resolve(Result(error=self._failure(event, late)))

    def _dispatch_control(self, message: ControlRequest, nursery: trio.Nursery) -> None:
        """Decide on a control message at once, in arrival order; never waits."""
        if isinstance(message, SetInsideBrain):
            self._inside_brain = message.inside
            log.info("manipulator %s inside brain: %s", self.id, message.inside)
            message.reply.resolve(Result(value=message.inside))
            return
        if not self._online:
            message.reply.resolve(Result(error=self._offline_error()))
            return
        if isinstance(message, MoveTo):
            if self._inside_brain:
                log.error("manipulator %s set_position refused: %s", self.id, INSIDE_BRAIN_REFUSAL)
                message.reply.resolve(Result(error=INSIDE_BRAIN_REFUSAL))
                return
            nursery.start_soon(self._move_to, message, self._claim_move(MOVE))
        elif isinstance(message, MoveDepth):
            nursery.start_soon(self._move_depth, message, self._claim_move(MOVE))
        else:
            refusal = self._jackhammer_refusal(message.request)
            if refusal:
                message.reply.resolve(Result(error=refusal))
                return
            nursery.start_soon(self._jackhammer, message, self._claim_move(JACKHAMMER))

    def _claim_move(self, kind: str) -> _Move:
        """Make a new motion the current one; the running one is superseded now."""
        previous = self._move
        move = self._move = _Move(kind, previous)
        if previous is not None:
            previous.superseded_by = "set_position or set_depth" if kind == MOVE else kind
            previous.scope.cancel()
        return move

    async def _answer_read(self, message: ReadRequest, bound: trio.CancelScope) -> None:
        """Read what ``message`` asks for from the device, bounded by ``bound``, and answer."""
        event, what = _READS[type(message)]
        timeout_s = self._limits.read_timeout_s
        try:
            match message:
                case GetPosition():
                    position = await self._device(self.manipulator.position, timeout_s, what, bound)
                    message.reply.resolve(Result(value=vector4(self._saw(position))))
                case GetAngles():
                    yaw, pitch, roll = await self._device(
                        self.manipulator.angles, timeout_s, what, bound
                    )
                    angles = Vector3(float(yaw), float(pitch), float(roll))
                    message.reply.resolve(Result(value=angles))
                case GetShankCount():
                    count = await self._device(self.manipulator.shank_count, timeout_s, what, bound)
                    message.reply.resolve(Result(value=int(count)))
        except Exception as exc:
            message.reply.resolve(Result(error=self._failure(event, exc)))

    def _move_deadline_s(self, speed: float) -> float:
        travel = sum(self._info.dimensions_mm)
        seconds = travel / speed * self._limits.move_time_factor + self._limits.move_slack_s
        return seconds if math.isfinite(seconds) else math.inf

    async def _run_move(
        self, move: _Move, drive: Callable[[], Coroutine[Any, Any, T]], deadline_s: float
    ) -> tuple[T | None, str]:
        """Run ``drive`` as ``move`` once the motion it superseded has wound down;
        bounded and stoppable. Returns (driver result or None, error); a motion
        that was stopped returns (None, "")."""
        try:
            if move.previous is not None:
                await move.previous.done.wait()
                move.previous = None
            result: T | None = None
            error = ""
            with move.scope:
                try:
                    result = await self._device(drive, deadline_s, f"the end of a {move.kind}")
                except Exception as exc:
                    error = self._failure(move.kind, exc)
            if move.superseded_by:
                return None, (
                    f"Manipulator {self.id} {move.kind} was superseded by a newer "
                    f"{move.superseded_by} request."
                )
            if move.scope.cancelled_caught:
                ended = "aborted" if move.aborted else "stopped"
                log.info("manipulator %s %s %s", self.id, move.kind, ended)
                result = None
            return result, error
        finally:
            if self._move is move:
                self._move = None
            move.done.set()

    async def _move_to(self, message: MoveTo, move: _Move) -> None:
        target = message.position.as_tuple()
        log.info("manipulator %s move to %s at %s mm/s", self.id, message.position, message.speed)
        final, error = await self._run_move(
            move,
            lambda: self.manipulator.move_to(target, message.speed),
            self._move_deadline_s(message.speed),
        )
        if error:
            message.reply.resolve(Result(error=error))
            return
        try:
            reached = self._saw(final) if final is not None else await self._read_position()
        except Exception as exc:
            message.reply.resolve(Result(error=self._failure("position read after move", exc)))
            return
        reached_v = vector4(reached)
        tolerance = self._info.tolerance_mm
        for axis in range(self._info.axes_count):
            if abs(reached[axis] - target[axis]) > tolerance:
                text = (
                    f"Manipulator {self.id} did not reach target position on axis "
                    f"{AXIS_NAMES[axis]}. Requested: {message.position}, got: {reached_v}."
                )
                log.error("%s", text)
                message.reply.resolve(Result(error=text))
                return
        message.reply.resolve(Result(value=reached_v))

    async def _move_depth(self, message: MoveDepth, move: _Move) -> None:
        log.info("manipulator %s depth to %s at %s mm/s", self.id, message.depth, message.speed)
        final, error = await self._run_move(
            move,
            lambda: self.manipulator.move_depth(message.depth, message.speed),
            self._move_deadline_s(message.speed),
        )
        if error:
            message.reply.resolve(Result(error=error))
            return
        try:
            depth = final if final is not None else float((await self._read_position())[3])
        except Exception as exc:
            message.reply.resolve(Result(error=self._failure("position read after move", exc)))
            return
        if abs(depth - message.depth) > self._info.tolerance_mm:
            text = (
                f"Manipulator {self.id} did not reach target depth."
                f" Requested: {message.depth}, got: {depth}."
            )
            log.error("%s", text)
            message.reply.resolve(Result(error=text))
            return
        message.reply.resolve(Result(value=depth))

    async def _serve_stops(self) -> None:
        async for message in self._stops:
            # Cancel here, in order, before anything can wait; halt in a child.
            move = self._move
            if isinstance(message, AbortJackhammer):
                if move is None or move.kind != JACKHAMMER:
                    message.reply.resolve(Result(value=None))  # nothing to abort, nothing kept
                    continue
                move.aborted = True
            if move is not None:
                move.scope.cancel()
            assert self._nursery is not None
            self._nursery.start_soon(self._halt, message)

    async def _halt(self, message: PriorityRequest) -> None:
        if not self._online:
            message.reply.resolve(Result(error=self._offline_error()))
            return
        try:
            # A platform may need longer than the default to halt (see PlatformInfo).
            timeout_s = max(self._limits.halt_timeout_s, self._info.halt_budget_s)
            await self._device(self.manipulator.halt, timeout_s, "a halt")
        except Exception as exc:
            message.reply.resolve(Result(error=self._failure("stop", exc)))
        else:
            log.info("manipulator %s stopped", self.id)
            message.reply.resolve(Result(value=None))

    # --- jackhammer ------------------------------------------------------------

    def _jackhammer_refusal(self, request: JackhammerRequest) -> str:
        """Why this jackhammer must not start ("" if it may), decided before it
        claims the manipulator: a refused request leaves a running move alone."""
        try:
            self.manipulator.check_jackhammer()
        except DeviceError as exc:
            return self._failure("jackhammer", exc)
        count = self._info.axes_count
        depth = jackhammer.depth_axis(count)
        axis = self._jackhammer_axis(request)
        if axis >= count:
            text = f"Manipulator {self.id} has no axis {axis}; its axes are 0 to {count - 1}."
        elif self._inside_brain and axis != depth:
            text = (
                f"Cannot jackhammer manipulator {self.id} on axis {axis} while inside the brain."
                f" Only its depth axis ({depth}) may be used."
            )
        else:
            return ""
        log.error("manipulator %s jackhammer refused: %s", self.id, text)
        return text

    def _jackhammer_axis(self, request: JackhammerRequest) -> int:
        """The native axis asked for; -1 is the depth axis."""
        return jackhammer.depth_axis(self._info.axes_count) if request.axis == -1 else request.axis

    def _jackhammer_deadline_s(
        self, cycles: int, pattern: JackhammerPattern, settle: float
    ) -> float:
        limits = self._limits
        cycle = pattern.steps * limits.jackhammer_step_s + limits.jackhammer_cycle_slack_s
        return cycles * (cycle + settle) + limits.jackhammer_settle_s + limits.move_slack_s

    async def _jackhammer(self, message: Jackhammer, move: _Move) -> None:
        request = message.request
        axis = self._jackhammer_axis(request)
        pattern = JackhammerPattern(
            request.phase1_steps, request.phase1_pulses, request.phase2_steps, request.phase2_pulses
        )
        limits = self._limits
        progress = jackhammer.Progress()
        drive: Callable[[], Coroutine[Any, Any, tuple[Vector, ClosedLoopReport | None]]]
        if request.closed_loop:
            log.info(
                "manipulator %s closed-loop jackhammer on axis %d to %s um, at most %d cycles",
                self.id,
                axis,
                request.target_um,
                request.max_iterations,
            )
            settle = limits.jackhammer_iteration_settle_s
            deadline = self._jackhammer_deadline_s(request.max_iterations, pattern, settle)

            async def drive() -> tuple[Vector, ClosedLoopReport | None]:
                return await jackhammer.closed_loop(
                    self.manipulator,
                    axis,
                    pattern,
                    request.target_um,
                    request.max_iterations,
                    settle,
                    progress,
                )
        else:
            log.info(
                "manipulator %s jackhammer on axis %d, %d cycles", self.id, axis, request.iterations
            )
            deadline = self._jackhammer_deadline_s(request.iterations, pattern, 0.0)

            async def drive() -> tuple[Vector, ClosedLoopReport | None]:
                final = await jackhammer.open_loop(
                    self.manipulator, axis, request.iterations, pattern, limits.jackhammer_settle_s
                )
                return final, None

        ran, error = await self._run_move(move, drive, deadline)
        if ran is not None:
            final, report = ran
            message.reply.resolve(Result(value=JackhammerOutcome(vector4(final), report)))
            return
        if error and not move.superseded_by:
            message.reply.resolve(Result(error=error))  # a failure: upstream's bare answer
            return
        # Ended early (aborted, stopped, superseded): say where the probe is now.
        try:
            position = await self._read_position()
        except Exception as exc:
            message.reply.resolve(
                Result(error=self._failure("position read after jackhammer", exc))
            )
            return
        if not error and not move.aborted:
            error = f"Manipulator {self.id} jackhammer was stopped."
        elif not error and not request.closed_loop:
            # An open loop has no StopReason to tell an abort by.
            error = f"Manipulator {self.id} jackhammer was aborted by abort_jackhammer."
        report = progress.report("aborted", position) if request.closed_loop else None
        message.reply.resolve(
            Result(value=JackhammerOutcome(vector4(position), report), error=error)
        )
