"""The per-session object handed to the layer above (satisfies ``EngineIOSocket``).

It glues the sans-IO :class:`EngineIOSession` to Trio: a bounded queue of
incoming messages for ``receive``, a bounded outbox that whichever transport is
active drains (a long-poll response or the WebSocket writer), and a wake-up
lot every waiter parks on. Over WebSocket, a message sent while nothing is
queued is written straight from the sender's task (``direct``), which saves a
task switch per message; and a message received while nothing is queued may
be taken by the layer above straight from the reader's task (``on_message``),
even run inline there (``Suspended``), which saves the rest. Transports come
and go (polling, then WebSocket); this object is the one thing that lives as
long as the session.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import trio

from protocol.engineio.packets import RECORD_SEPARATOR, Packet, PacketType
from protocol.engineio.session import (
    POLLING,
    Close,
    EngineIOSession,
    Event,
    Message,
    Ping,
    SessionState,
)
from protocol.errors import LocalProtocolError
from protocol.stepping import finish
from protocol.transport import CloseReason, RequestInfo, SessionClosed

log = logging.getLogger(__name__)


class Suspended:
    """A coroutine started inline on the reader's task that has yielded to Trio.

    Whatever it registered before yielding (parked on a lot, entered a cancel
    scope) belongs to the task that stepped it, so it must finish on that very
    task: the reader hands reading over to a fresh task and drives this one to
    its end.
    """

    __slots__ = ("coro", "scope", "trap")

    def __init__(self, coro: Coroutine[Any, Any, None], trap: object) -> None:
        self.coro = coro
        self.trap = trap
        # The cancel scope around the reader task that finishes the run (set
        # by the transport): the layer above cancels the run through it.
        self.scope: trio.CancelScope | None = None

    @property
    def done(self) -> bool:
        return inspect.getcoroutinestate(self.coro) == inspect.CORO_CLOSED

    def cancel(self) -> None:
        if self.scope is not None:
            self.scope.cancel()


# What the layer above's fast path returns: True (taken), False (queue it for
# ``receive``), or a Suspended inline run.
MessageHook = Callable[[str | bytes, bool], "bool | Suspended"]


class ServerSocket:
    """One Engine.IO session as seen by the application; transport-independent."""

    def __init__(
        self,
        core: EngineIOSession,
        request: RequestInfo,
        on_closed: Callable[[ServerSocket], None],
    ) -> None:
        self.core = core
        self._request = request
        self._on_closed = on_closed
        size = core.config.send_queue_size
        self._incoming_send, self._incoming_recv = trio.open_memory_channel[str | bytes](size)
        self._out: deque[Packet] = deque()
        self._out_messages = 0
        self._capacity = size
        self._lot = trio.lowlevel.ParkingLot()
        self.closed_event = trio.Event()
        self._sends = 0
        # Messages put in the incoming queue and not yet taken by ``receive``.
        self._queued = 0
        # Optional fast path set by the layer above: called from the reader's
        # task with a message, it consumes it synchronously and returns True,
        # or returns False to have it queued for ``receive`` instead. Used only
        # while nothing is queued, so messages are still seen in order; it saves
        # the wake-up of the task waiting in ``receive`` on every message. When
        # its second argument is True it may also run work inline and return a
        # Suspended run if that work blocked (see ``deliver``).
        self.on_message: MessageHook | None = None
        self._in_hook = False
        self._hook_sends = 0
        # Set by the WebSocket transport while it carries the session: writes a
        # message at once when nothing is queued, or returns False.
        self.direct: Callable[[str | bytes], bool] | None = None
        # Answers the layer above has promised and another task will send
        # (deferred acks); the WebSocket reader yields to them before it waits.
        self.deferred_answers = 0
        # Set by the transports, read by the HTTP router.
        self.poll_active = False
        self.post_active = False

    def answers_pending(self) -> bool:
        return self.deferred_answers > 0

    # -- EngineIOSocket ---------------------------------------------------------
    @property
    def sid(self) -> str:
        return self.core.sid

    @property
    def transport(self) -> str:
        return self.core.transport

    @property
    def request(self) -> RequestInfo:
        return self._request

    @property
    def close_reason(self) -> CloseReason:
        return self.core.close_reason or CloseReason.SERVER

    async def receive(self) -> str | bytes:
        try:
            message = await self._incoming_recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise SessionClosed(self.close_reason) from None
        self._queued -= 1
        return message

    def _check_outgoing(self, message: str | bytes) -> None:
        if not isinstance(message, str | bytes):
            raise LocalProtocolError(f"messages are str or bytes, not {type(message).__name__}")
        if isinstance(message, str) and RECORD_SEPARATOR in message and self.transport == POLLING:
            raise LocalProtocolError("a message sent over polling cannot contain \\x1e")

    def send_nowait(self, message: str | bytes) -> bool:
        """Write or queue ``message`` without waiting; False if the outbox is full.

        For answers produced on a task that must never wait on a client (a
        device's actor resolving a deferred ack): on False the caller sends
        it from a task of its own with ``send`` instead.
        """
        self._check_outgoing(message)
        if self.core.closed:
            raise SessionClosed(self.close_reason)
        if self._out_messages >= self._capacity:
            return False
        if self.direct is not None and not self._out and self.direct(message):
            return True
        self._out.append(Packet(PacketType.MESSAGE, message))
        self._out_messages += 1
        self._lot.unpark_all()
        return True

    async def send(self, message: str | bytes) -> None:
        self._check_outgoing(message)
        # Not a checkpoint on every call (the writer is woken and runs as soon
        # as the caller next waits, and a scheduler pass per message is a
        # measurable cost), but on every 32nd, so a producer that never waits
        # cannot starve the other tasks while the kernel keeps taking data.
        # Work run inline by the reader's fast path gets 32 sends free (the
        # reader checkpoints on every read, and a yield there costs a hand-off).
        if self._in_hook:
            self._hook_sends += 1
            if self._hook_sends > 32:
                await trio.lowlevel.checkpoint()
        else:
            self._sends += 1
            if not self._sends & 31:
                await trio.lowlevel.checkpoint()
        while self._out_messages >= self._capacity and not self.core.closed:
            await self._lot.park()
        if self.core.closed:
            raise SessionClosed(self.close_reason)
        if self.direct is not None and not self._out and self.direct(message):
            return  # written straight to the socket (see WebSocket.try_send_now)
        self._out.append(Packet(PacketType.MESSAGE, message))
        self._out_messages += 1
        self._lot.unpark_all()

    async def close(self, reason: CloseReason = CloseReason.SERVER) -> None:
        self.close_now(reason)
        await trio.lowlevel.checkpoint()

    # -- used by the transports ---------------------------------------------------
    def close_now(self, reason: CloseReason) -> None:
        """Synchronous close, usable from cleanup paths that must not block."""
        self.apply(self.core.close(reason))

    def apply(self, events: list[Event]) -> None:
        """Act on state-machine events that need no waiting (everything but Message)."""
        for event in events:
            if isinstance(event, Ping):
                self._push_control(Packet(PacketType.PING))
            elif isinstance(event, Close):
                self._finish(event.reason)
            elif isinstance(event, Message):
                raise LocalProtocolError("messages go through deliver()")
        # Upgrade progress changes what a pending poll should do: wake it.
        self._lot.unpark_all()

    async def deliver(
        self,
        events: list[Event],
        hand_off: Callable[[], None] | None = None,
        reader_scope: trio.CancelScope | None = None,
    ) -> bool:
        """Act on events from a received packet; waits while the incoming queue is full.

        ``hand_off`` (the WebSocket reader passes one) starts another reader
        task; with it the fast path may run work inline on this task. If that
        work blocks, reading is handed off, this task finishes the work (the
        layer above can cancel it through ``reader_scope``, a cancel scope
        around this whole task), and False tells the caller it is no longer
        the reader. True otherwise.
        """
        for index, event in enumerate(events):
            if isinstance(event, Message):
                hook = self.on_message
                if hook is not None and not self._queued and not self.core.closed:
                    self._in_hook = True
                    self._hook_sends = 0
                    try:
                        taken = hook(event.data, hand_off is not None)
                    finally:
                        self._in_hook = False
                    if taken is True:
                        continue
                    if taken is not False:
                        assert hand_off is not None and isinstance(taken, Suspended)
                        # Nothing may wait on this task between the inline step
                        # and handing its trap to Trio: no checkpoint here. (A
                        # message is its packet's only event; apply any other.)
                        self.apply(events[index + 1 :])
                        taken.scope = reader_scope
                        hand_off()
                        await finish(taken.coro, taken.trap)
                        return False
                self._queued += 1
                try:
                    try:
                        # Fast path without a scheduler pass; wait only when full.
                        self._incoming_send.send_nowait(event.data)
                    except trio.WouldBlock:
                        await self._incoming_send.send(event.data)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    self._queued -= 1
                    return True
                except BaseException:
                    self._queued -= 1  # cancelled while waiting: nothing was queued
                    raise
            else:
                self.apply([event])
        return True

    @property
    def incoming_buffered(self) -> int:
        """Messages received but not yet taken by ``receive``."""
        return self._incoming_send.statistics().current_buffer_used

    @property
    def has_undelivered(self) -> bool:
        return bool(self._out)

    def notify(self) -> None:
        self._lot.unpark_all()

    async def wait_changed(self) -> None:
        await self._lot.park()

    def _push_control(self, packet: Packet) -> None:
        # Control packets bypass the message bound: the protocol limits them to
        # one ping per interval plus the final close.
        self._out.append(packet)

    def _finish(self, reason: CloseReason) -> None:
        if reason is CloseReason.CLIENT:
            # The peer is leaving; nothing we still had for it matters.
            self._out.clear()
        else:
            self._out.append(Packet(PacketType.CLOSE))
        self._out_messages = 0
        self._incoming_send.close()
        self.closed_event.set()
        self._lot.unpark_all()
        self._on_closed(self)
        log.info("session %s closed: %s", self.sid, reason.value)

    async def take_for_poll(self) -> list[Packet]:
        """Wait for what a long-poll GET should return: queued packets, or a noop.

        A noop answers a poll that must end without data: the session closed at
        the client's request, or an upgrade probe succeeded and the client is
        pausing polling.
        """
        while True:
            if self._out:
                return self._take_all()
            if self.core.closed or self.core.state is SessionState.UPGRADING:
                return [Packet(PacketType.NOOP)]
            if self.core.transport != POLLING:
                return [Packet(PacketType.NOOP)]
            await self._lot.park()

    def take_nowait(self) -> list[Packet]:
        """Everything queued for the peer, possibly nothing."""
        return self._take_all() if self._out else []

    def _take_all(self) -> list[Packet]:
        packets = list(self._out)
        self._out.clear()
        self._out_messages = 0
        self._lot.unpark_all()
        return packets
