"""One controller port, owned by one task: the bus that up to four drives share.

An MPC-200 / MPC-325 carries up to four drives on one serial port, and while
any of them moves nothing but ^C may be written to that port. The project's
rule is that one task alone owns a device; here that task is the **bus** (one
per port, started by the platform's ``run``). Each drive's
:class:`~drivers.sutter.drive.SutterDrive` is a thin client: it sends the bus
messages through a :class:`BusHandle` and never touches the port.

What the bus guarantees, and how:

- **Stop wins.** Stops arrive on their own channel, read by a listener task
  that never waits on the port. A stop of the drive that holds the port
  cancels the bus's wait (for the move's CR, or the pause inside ``S``) and ^C
  goes out at once; a stop of any other drive needs no byte at all (it is not
  moving) and is answered at once, so it never interrupts another drive's move.
  Each stop also retires every segment its drive still has queued.
- **Every drive is served.** A long move is a sequence of segments of at most
  ~0.5 s; between two segments the bus answers every pending position read
  (one ``C`` per drive, shared by all its waiting readers), then runs the
  oldest queued segment. Each drive has at most one segment queued, so
  segments of different drives alternate and no drive's moves starve
  another's reads, moves or stops.
- **Every wait is bounded**: replies by the link's deadline, a segment by its
  expected duration plus a margin, after which the drive is interrupted.
- **The user's drive comes back.** The active drive is shared with the
  ROE-200's knobs, so the bus selects again the drive the user had chosen
  as soon as it has nothing to do (only a move keeps its drive between
  segments, for at most ``RESTORE_AFTER_S``): clients that poll steadily never
  leave the knobs on a drive they read. It reads ``K`` before leaving the
  user's drive again, in case the user chose another one meanwhile.
- **A pulled cable** fails every queued and new request with
  :class:`DeviceLost` at once; the bus reopens the port with backoff and the
  drives' actors reopen through it.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
import trio

from drivers.base import DeviceError, DeviceLost
from drivers.sutter.codec import (
    DRIVE_STATUS,
    FIRMWARE,
    MIN_MOVE_USTEPS,
    MOVE_AT_SPEED,
    PAUSE_AFTER_S_S,
    POSITION,
    POSITION_REPLY_LEN,
    STATUS_REPLY_LEN,
    CodecError,
    USteps,
    move_body,
    parse_drive_status,
    parse_firmware,
    parse_position,
    parse_select,
    select,
)
from drivers.sutter.transport import BAUD, REPLY_TIMEOUT_S, SutterLink
from protocol.deferred import Deferred

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

RESTORE_AFTER_S = 0.3
"""How long a moving drive stays active after a segment, waiting for its move's next one,
before the user's ROE-200 drive is selected again (after anything else: at once)."""
PAUSE_MARGIN_S = 0.005
"""Added to the manual's 30 ms: 35 ms is what Sutter recommended to pyIVLS, and it leaves
room for a late scheduler or a USB frame without ever shortening the pause."""
INTERRUPT_REPLY_TIMEOUT_S = 0.2
SEGMENT_MARGIN_S = 0.5
RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 2.0
QUEUE_SIZE = 256


class Reply(msgspec.Struct, Generic[T], frozen=True):
    """The bus's answer: ``error`` set means the request failed."""

    value: T | None = None
    error: DeviceError | None = None


Slot = Deferred[Reply[T]]


class SegmentEnd(msgspec.Struct, frozen=True):
    """Where a segment left its drive, and whether a stop cut it short."""

    position: USteps
    interrupted: bool


# --- messages (drive -> bus) --------------------------------------------------------


class Attach(msgspec.Struct, frozen=True):
    """A drive's ``open``: answered once the port is up and the drive is connected."""

    drive: int
    reply: Slot[None]


class ReadPosition(msgspec.Struct, frozen=True):
    drive: int
    reply: Slot[USteps]


class RunSegment(msgspec.Struct, frozen=True):
    """Move ``drive`` to ``target`` with ``S`` at ``speed_byte``; one bounded piece of a move.

    ``epoch`` is the drive's stop count when the segment was asked for: a
    segment older than the drive's latest stop never starts.
    """

    drive: int
    target: USteps
    speed_byte: int
    duration_s: float
    epoch: int
    reply: Slot[SegmentEnd]


class Interrupt(msgspec.Struct, frozen=True):
    """Stop ``drive``: ^C if it holds the port, nothing to send otherwise."""

    drive: int
    reply: Slot[None]


Work = Attach | ReadPosition | RunSegment


class BusHandle:
    """A drive's side of the bus: builds a message, sends it, awaits the reply (bounded)."""

    def __init__(
        self,
        device: str,
        work: trio.MemorySendChannel[Work],
        stops: trio.MemorySendChannel[Interrupt],
    ) -> None:
        self.device = device
        self._work = work
        self._stops = stops
        self._epochs: collections.Counter[int] = collections.Counter()

    def epoch(self, drive: int) -> int:
        return self._epochs[drive]

    async def attach(self, drive: int, timeout_s: float) -> None:
        slot: Slot[None] = Deferred()
        await self._ask(self._work, Attach(drive, slot), slot, timeout_s, "opening")

    async def position(self, drive: int, timeout_s: float) -> USteps:
        slot: Slot[USteps] = Deferred()
        reply = await self._ask(self._work, ReadPosition(drive, slot), slot, timeout_s, "a read")
        assert reply is not None
        return reply

    async def segment(
        self, drive: int, target: USteps, speed_byte: int, duration_s: float, timeout_s: float
    ) -> SegmentEnd:
        slot: Slot[SegmentEnd] = Deferred()
        message = RunSegment(drive, target, speed_byte, duration_s, self._epochs[drive], slot)
        reply = await self._ask(self._work, message, slot, timeout_s, "a move segment")
        assert reply is not None
        return reply

    async def stop(self, drive: int, timeout_s: float) -> None:
        """Every segment asked for before this call is retired, and a running one interrupted."""
        self._epochs[drive] += 1
        slot: Slot[None] = Deferred()
        await self._ask(self._stops, Interrupt(drive, slot), slot, timeout_s, "a stop")

    async def _ask(
        self,
        channel: trio.MemorySendChannel[Any],
        message: Any,
        slot: Slot[T],
        timeout_s: float,
        what: str,
    ) -> T | None:
        try:
            with trio.fail_after(timeout_s):
                try:
                    channel.send_nowait(message)
                except trio.WouldBlock:
                    await channel.send(message)
                reply = await slot.wait()
        except trio.TooSlowError:
            raise DeviceError(f"{self.device}: no answer to {what} within {timeout_s} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise DeviceLost(f"{self.device}: the bus has stopped") from None
        if reply.error is not None:
            raise reply.error
        return reply.value


class SutterBus:
    """The task that alone owns one controller's port; run it with ``nursery.start(bus.run)``."""

    def __init__(
        self, device: str, *, baud: int = BAUD, reply_timeout_s: float = REPLY_TIMEOUT_S
    ) -> None:
        self.device = device
        self.link = SutterLink(device, baud, reply_timeout_s)
        work_send, self._work = trio.open_memory_channel[Work](QUEUE_SIZE)
        stops_send, self._stops = trio.open_memory_channel[Interrupt](QUEUE_SIZE)
        self.handle = BusHandle(device, work_send, stops_send)
        self.drives: tuple[int, ...] = ()
        self.firmware = "unknown"
        self._online = False
        self._lost_reason = ""
        self._user_drive: int | None = None
        self._active: int | None = None
        """The drive we know to be active; None when the ROE-200 may have changed it."""
        self._reads: dict[int, list[ReadPosition]] = {}
        self._segments: collections.deque[RunSegment] = collections.deque()
        self._moving: int | None = None
        """The drive holding the port: from ``S`` written until its segment is over."""
        self._stopping: list[Interrupt] = []
        """Stops of the moving drive, answered once its ^C is out and answered."""
        self._interruptible: trio.CancelScope | None = None
        self._segment_due = False
        """A round of reads was served: the oldest queued segment goes next."""
        self._restore_at = -math.inf
        """When an idle bus gives the ROE-200 the user's drive back: at once, or a little
        after a segment that ran to its end (its move's next segment is due)."""

    @property
    def online(self) -> bool:
        return self._online

    @property
    def moving_drive(self) -> int | None:
        return self._moving

    # --- life -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[tuple[int, ...]]) -> None:
        """Open the port and find the drives (failing here is a start-up error), then serve."""
        try:
            await self._connect()
            if not self.drives:
                raise DeviceError(f"{self.device}: the controller reports no connected drive")
            task_status.started(self.drives)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen_stops)
                await self._serve()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                await self._shut_down()
            self._work.close()  # later requests fail at once instead of waiting out a deadline
            self._stops.close()

    async def _shut_down(self) -> None:
        if self.link.is_open:
            try:
                if self._moving is not None:
                    await self.link.send_interrupt()
                    await self.link.settle()
                await self._restore_user_drive()
            except DeviceError as exc:
                log.warning("%s: on shutdown: %s", self.device, exc)
        await self.link.close()

    async def _connect(self) -> None:
        await self.link.open()
        try:
            await self.link.settle()  # whatever a previous owner left on the line
            self.drives = parse_drive_status(
                await self.link.transact(DRIVE_STATUS, (STATUS_REPLY_LEN,))
            )
            firmware = parse_firmware(await self.link.transact(FIRMWARE, (2, 4)))
        except CodecError as exc:
            await self.link.close()
            raise DeviceError(f"{self.device}: {exc}") from exc
        except BaseException:
            await self.link.close()
            raise
        self.firmware = firmware.version
        self._user_drive = self._active = firmware.drive
        self._online = True
        log.info(
            "%s: Sutter controller firmware %s, drives %s, ROE-200 on drive %d",
            self.device,
            firmware.version,
            ", ".join(map(str, self.drives)) or "none",
            firmware.drive,
        )

    def _lose(self, exc: DeviceLost) -> None:
        self._online = False
        self._lost_reason = str(exc)
        self._active = None
        log.warning("%s lost: %s; reconnecting", self.device, exc)
        lost = self._lost_error()
        for waiting in self._reads.values():
            for read in waiting:
                read.reply.resolve(Reply(error=lost))
        self._reads.clear()
        for segment in self._segments:
            segment.reply.resolve(Reply(error=lost))
        self._segments.clear()
        self._answer_stops(lost)

    def _lost_error(self) -> DeviceLost:
        return DeviceLost(f"{self.device} is offline ({self._lost_reason}); reconnecting")

    async def _reconnect(self) -> None:
        """Refuse work at once while the port is gone; reopen it with backoff."""
        delay = RECONNECT_FIRST_S
        while True:
            with trio.move_on_after(delay):
                async for message in self._work:
                    message.reply.resolve(Reply(error=self._lost_error()))
            try:
                await self._connect()
            except DeviceError as exc:
                log.info("%s: reopen failed: %s", self.device, exc)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            log.warning("%s back online", self.device)
            return

    # --- stops ----------------------------------------------------------------

    async def _listen_stops(self) -> None:
        """The bus's priority input; never waits on the port."""
        async for stop in self._stops:
            if not self._online:
                stop.reply.resolve(Reply(error=self._lost_error()))
            elif stop.drive == self._moving:
                self._stopping.append(stop)
                if self._interruptible is not None:
                    self._interruptible.cancel()
            else:
                stop.reply.resolve(Reply())  # not moving: nothing to interrupt

    def _answer_stops(self, error: DeviceError | None = None) -> None:
        stopping, self._stopping = self._stopping, []
        for stop in stopping:
            stop.reply.resolve(Reply(error=error))

    # --- the work loop ------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            if not self._online:
                await self._reconnect()
                continue
            self._take_arrivals()
            try:
                if self._segments and (self._segment_due or not self._reads):
                    self._segment_due = False
                    await self._run_segment(self._segments.popleft())
                elif self._reads:
                    self._segment_due = True  # reads never hold a queued segment back twice
                    await self._serve_reads()
                else:
                    await self._idle()
            except DeviceLost as exc:
                await self.link.close()
                self._lose(exc)

    def _take_arrivals(self) -> None:
        while True:
            try:
                message = self._work.receive_nowait()
            except trio.WouldBlock:
                return
            self._accept(message)

    def _accept(self, message: Work) -> None:
        match message:
            case ReadPosition():
                self._reads.setdefault(message.drive, []).append(message)
            case RunSegment():
                self._segments.append(message)
            case Attach():
                if message.drive in self.drives:
                    message.reply.resolve(Reply())
                else:
                    error = DeviceError(f"{self.device}: drive {message.drive} is not connected")
                    message.reply.resolve(Reply(error=error))

    async def _idle(self) -> None:
        """Wait for work, the ROE-200 back on the user's drive (see ``_restore_at``)."""
        with trio.move_on_at(self._restore_at):
            self._accept(await self._work.receive())
            return
        try:
            await self._restore_user_drive()
        except DeviceLost:
            raise
        except DeviceError as exc:  # a drive unplugged from the controller, say
            log.warning("%s: could not give the ROE-200 its drive back: %s", self.device, exc)
        self._accept(await self._work.receive())
        self._active = None  # the user may have turned to another drive meanwhile

    async def _restore_user_drive(self) -> None:
        if self._user_drive is not None and self._active not in (None, self._user_drive):
            await self._select(self._user_drive)
            log.debug("%s: drive %d is active again", self.device, self._user_drive)

    async def _serve_reads(self) -> None:
        # The active drive first (or the user's, likely active again): its read needs no ``I``.
        first = self._user_drive if self._active is None else self._active
        for drive in sorted(self._reads, key=lambda d: d != first):
            readers = self._reads.pop(drive)
            try:
                position = await self._read(drive)
            except DeviceLost:
                self._reads[drive] = readers  # failed with everything else by _lose
                raise
            except DeviceError as exc:
                for read in readers:
                    read.reply.resolve(Reply(error=exc))
            else:
                for read in readers:
                    read.reply.resolve(Reply(value=position))

    # --- transactions ---------------------------------------------------------

    async def _know_active(self) -> None:
        if self._active is None:
            firmware = self._parsed(parse_firmware, await self.link.transact(FIRMWARE, (2, 4)))
            self._user_drive = self._active = firmware.drive

    async def _select(self, drive: int) -> None:
        await self._know_active()
        if self._active == drive:
            return
        self._active = None
        if not self._parsed(parse_select, await self.link.transact(select(drive), (1, 2)), drive):
            raise DeviceError(f"{self.device}: drive {drive} is not connected")
        self._active = drive

    async def _read(self, drive: int) -> USteps:
        if not (self._active is None and drive == self._user_drive):
            await self._select(drive)
        # else the user's drive is most likely still active, and C names the active drive:
        # no K needed to find out.
        reported, position = self._parsed(
            parse_position, await self.link.transact(POSITION, (POSITION_REPLY_LEN,))
        )
        if reported == drive:
            self._active = drive
        else:
            # Someone turned the ROE-200 to another drive since we selected ours.
            log.info("%s: the ROE-200 switched to drive %d", self.device, reported)
            self._user_drive = self._active = reported
            await self._select(drive)
            reported, position = self._parsed(
                parse_position, await self.link.transact(POSITION, (POSITION_REPLY_LEN,))
            )
            if reported != drive:
                raise DeviceError(f"{self.device}: asked for drive {drive}, C answered {reported}")
        return position

    def _parsed(self, parse: Callable[..., R], reply: bytes, *args: Any) -> R:
        try:
            return parse(reply, *args)
        except CodecError as exc:
            raise DeviceError(f"{self.device}: {exc}") from exc

    # --- moves ----------------------------------------------------------------

    def _retired(self, segment: RunSegment) -> bool:
        return segment.epoch != self.handle.epoch(segment.drive)

    async def _run_segment(self, segment: RunSegment) -> None:
        drive = segment.drive
        try:
            if self._retired(segment):
                raise DeviceError(f"drive {drive}: stopped before the segment started")
            start = await self._read(drive)
            if _under_one_um(segment.target, start):
                segment.reply.resolve(Reply(value=SegmentEnd(start, interrupted=False)))
                return  # the controller would ignore it and never answer
            await self.link.prepare_command()
            if self._retired(segment):  # a stop came in while we read
                raise DeviceError(f"drive {drive}: stopped before the segment started")
            self._moving = drive  # no checkpoint since the epoch check: a stop now sees it
            try:
                interrupted = await self._move(segment, start)
            except DeviceLost as exc:
                self._answer_stops(exc)  # no ^C, or no answer to it: the stop is not confirmed
                raise
            finally:
                self._moving = None
                self._answer_stops()
            position = await self._read(drive)
        except DeviceLost as exc:
            segment.reply.resolve(Reply(error=exc))
            raise
        except DeviceError as exc:
            segment.reply.resolve(Reply(error=exc))
            return
        if not interrupted:  # the move goes on: keep its drive active for the next segment
            self._restore_at = trio.current_time() + RESTORE_AFTER_S
        segment.reply.resolve(Reply(value=SegmentEnd(position, interrupted)))

    async def _move(self, segment: RunSegment, start: USteps) -> bool:
        """``S``, the pause, the body, the CR; True when a stop interrupted it.

        Once ``S`` is written the controller waits for the rest of the packet,
        so the pause and the body are shielded from cancellation: a half packet
        would take the next command's bytes as a target. A stop during the
        pause completes the packet with the drive's own position (no motion)
        and then interrupts, so the drive never starts.
        """
        with trio.CancelScope(shield=True):
            await self.link.write(MOVE_AT_SPEED)
            body_due = trio.current_time() + PAUSE_AFTER_S_S + PAUSE_MARGIN_S
            stopped = await self._until_stopped(trio.sleep_until, body_due)
            if stopped:
                await trio.sleep_until(body_due)
            target = start if stopped else segment.target
            try:
                await self.link.write(move_body(segment.speed_byte, target))
            except DeviceError:
                if self.link.is_open:
                    await self._interrupt()
                raise
        if not stopped:
            budget = segment.duration_s * 1.5 + SEGMENT_MARGIN_S
            try:
                stopped = await self._until_stopped(self._await_end, budget)
            except BaseException:
                if self.link.is_open:
                    with trio.CancelScope(shield=True):
                        await self._interrupt()
                raise
            if not stopped:
                return False
        log.info("%s: drive %d interrupted", self.device, segment.drive)
        await self._interrupt()
        return True

    async def _until_stopped(self, wait: Any, *args: Any) -> bool:
        """Run ``wait``; True when a stop of the moving drive cut it short."""
        with trio.CancelScope() as scope:
            self._interruptible = scope
            if self._stopping:
                scope.cancel()
            try:
                await wait(*args)
            finally:
                self._interruptible = None
        return scope.cancelled_caught

    async def _await_end(self, budget_s: float) -> None:
        if not await self.link.wait_for_cr(budget_s):
            raise DeviceError(f"{self.device}: a move did not end within {budget_s:.1f} s")

    async def _interrupt(self) -> None:
        """^C, its CR (bounded), then drop whatever else comes."""
        await self.link.send_interrupt()
        if not await self.link.wait_for_cr(INTERRUPT_REPLY_TIMEOUT_S):
            log.warning("%s: no CR after ^C", self.device)
        await self.link.settle()


def _under_one_um(target: USteps, start: USteps) -> bool:
    return all(abs(t - s) < MIN_MOVE_USTEPS for t, s in zip(target, start, strict=True))


def segment_duration_s(start: USteps, target: USteps, speed_byte_usteps_s: float) -> float:
    """How long the longest axis takes at the byte's speed."""
    longest = max(abs(t - s) for t, s in zip(target, start, strict=True))
    return longest / speed_byte_usteps_s if speed_byte_usteps_s > 0 else math.inf
