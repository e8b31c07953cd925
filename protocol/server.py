"""The Trio Socket.IO v5 server the daemon talks through.

It sits on Engine.IO sessions (one :class:`EngineIOSocket` per client, whatever
the transport) and never sees HTTP or WebSocket. Per client it runs one
receive loop that decodes packets in order (joins, leaves and acks are handled
right there, so they never race the events after them), and runs each event
on a task of the client's own handler pool, so a slow handler (a probe move
that acks when it ends) never delays that client's other events, such as
``stop``. Over WebSocket, a plain event is started inline on the reader's
task instead (no task switch for a handler that answers at once); if it
blocks, a new task takes over reading, so the same guarantee holds. A bound
on concurrent handlers per client keeps a flood from growing without limit:
when it is reached the receive loop simply stops reading until one finishes.
When the session ends, its in-flight handlers are cancelled.

Handler contract, everywhere: the handler's return value is the ack. ``None``
acks with no arguments, a tuple with several, anything else with one. The ack
is only sent if the client asked for one. A handler whose answer comes from
another task may return a :class:`Deferred` instead: the ack is then written
by the task that resolves it, at once, without a hand-off back to a handler.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import trio

from protocol.deferred import Deferred
from protocol.engineio.config import EngineIOConfig
from protocol.engineio.http import PageHandler
from protocol.engineio.server import EngineIOServer
from protocol.engineio.socket import ServerSocket, Suspended
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.socketio.acks import AckTable, Disconnected, ack_args
from protocol.socketio.packets import (
    DEFAULT_MAX_ATTACHMENTS,
    Decoder,
    Packet,
    PacketType,
    ack_packet,
    decode_text,
    encode,
    event_packet,
)
from protocol.socketio.pool import HandlerPool
from protocol.socketio.sync import SendGate
from protocol.transport import CloseReason, EngineIOSocket, RequestInfo, SessionClosed

__all__ = [
    "ConnectRefused",
    "Deferred",
    "Disconnected",
    "ServerConfig",
    "SocketIOServer",
    "ack_args",
]

log = logging.getLogger(__name__)

EventHandler = Callable[..., Awaitable[Any]]
ConnectHandler = Callable[[str, Any, RequestInfo], Awaitable[None]]
ConnectedHandler = Callable[[str], Awaitable[None]]
DisconnectHandler = Callable[[str, str], Awaitable[None]]
CheckRequest = Callable[[RequestInfo], str | None]

# How long on_disconnect hooks may run when the server itself is being shut down.
_SHUTDOWN_HOOK_GRACE_S = 2.0
_INVALID_NAMESPACE = "Invalid namespace"
# A handler that blocked this many times in a row when run inline goes to the
# handler pool from then on (a hand-off costs more than a worker's wake-up).
_INLINE_AFTER_BLOCKS = 2
# ... and is tried inline again after this many events on the pool.
_INLINE_RETRY_EVERY = 16


class ConnectRefused(Exception):
    """Raised by a connect hook to refuse a client; the message goes out in CONNECT_ERROR."""


class ServerConfig(msgspec.Struct, frozen=True):
    """Socket.IO server settings (Engine.IO ones nested)."""

    engineio: EngineIOConfig = msgspec.field(default_factory=EngineIOConfig)
    # A session that has joined no namespace this long after opening is closed.
    connect_timeout_ms: int = 45000
    # Namespaces clients may join; None lets them join any.
    namespaces: tuple[str, ...] | None = ("/",)
    # Default deadline of ``call`` when the caller gives none.
    ack_timeout_s: float = 10.0
    # Event handlers running at once for one client before its reads pause.
    max_concurrent_handlers: int = 64
    # Binary attachments one packet may carry.
    max_attachments: int = DEFAULT_MAX_ATTACHMENTS


class _NamespaceHandlers:
    __slots__ = ("any", "connect", "connected", "disconnect", "events")

    def __init__(self) -> None:
        self.events: dict[str, EventHandler] = {}
        self.any: EventHandler | None = None
        self.connect: ConnectHandler | None = None
        self.connected: ConnectedHandler | None = None
        self.disconnect: DisconnectHandler | None = None


class _Client:
    """One Engine.IO session: the socket, its send lock and its namespaces."""

    def __init__(self, eio: EngineIOSocket, max_handlers: int) -> None:
        self.eio = eio
        self.send_gate = SendGate()
        self.members: dict[str, _Member] = {}
        self.max_handlers = max_handlers
        self.pool: HandlerPool[tuple[_Member, Packet]] | None = None
        # The session's nursery, for sending a deferred ack that cannot be
        # written at once; None once the session is over.
        self.nursery: trio.Nursery | None = None
        self.connect_timer = trio.CancelScope()
        # True while the receive loop holds a message it has not finished
        # dispatching; the synchronous fast path must not overtake it then.
        self.dispatching = True
        # Event handlers that blocked when run inline and finish on former
        # reader tasks of the transport (finished ones are pruned lazily).
        self.suspended: list[Suspended] = []

    def cancel_inline(self) -> None:
        for suspended in self.suspended:
            suspended.cancel()

    async def send_parts(self, parts: list[str | bytes]) -> None:
        # The lock keeps a binary packet's text part and attachments contiguous.
        await self.send_gate.acquire()
        try:
            for part in parts:
                await self.eio.send(part)
        finally:
            self.send_gate.release()


class _Member:
    """One client joined to one namespace; ``sid`` names this pair."""

    __slots__ = ("acks", "client", "namespace", "sid")

    def __init__(self, sid: str, namespace: str, client: _Client) -> None:
        self.sid = sid
        self.namespace = namespace
        self.client = client
        self.acks = AckTable()


class _ProtocolViolation(Exception):
    """A well-formed packet that is illegal in the client's current state."""


class SocketIOServer:
    """Socket.IO server: register handlers, then ``await serve(host, port)``."""

    def __init__(
        self,
        config: ServerConfig,
        check_request: CheckRequest | None = None,
        pages: PageHandler | None = None,
    ) -> None:
        self._config = config
        self._check_request = check_request
        # Plain HTTP requests outside the Socket.IO path (see EngineIOServer).
        self._pages = pages
        self._handlers: dict[str, _NamespaceHandlers] = {}
        self._members: dict[str, _Member] = {}
        self._by_namespace: dict[str, dict[str, _Member]] = {}
        # Handlers (None: events without one) and how many times in a row they
        # blocked when run inline; see ``_receive_now``.
        self._blocked: dict[EventHandler | None, int] = {}

    @property
    def config(self) -> ServerConfig:
        return self._config

    # ------------------------------------------------------------------ registration

    def _ns(self, namespace: str) -> _NamespaceHandlers:
        handlers = self._handlers.get(namespace)
        if handlers is None:
            handlers = self._handlers[namespace] = _NamespaceHandlers()
        return handlers

    def on(self, event: str, handler: EventHandler, namespace: str = "/") -> None:
        """``await handler(sid, *args)`` for each ``event``; its return value is the ack."""
        self._ns(namespace).events[event] = handler

    def on_any(self, handler: EventHandler, namespace: str = "/") -> None:
        """``await handler(sid, event, *args)`` for events that have no handler of their own."""
        self._ns(namespace).any = handler

    def on_connect(self, handler: ConnectHandler, namespace: str = "/") -> None:
        """``await handler(sid, auth, request)`` before a join is answered; raise ConnectRefused."""
        self._ns(namespace).connect = handler

    def on_connected(self, handler: ConnectedHandler, namespace: str = "/") -> None:
        """``await handler(sid)`` right after a join was answered, before later packets.

        The place to greet a client: emits from here reach it after its CONNECT.
        """
        self._ns(namespace).connected = handler

    def on_disconnect(self, handler: DisconnectHandler, namespace: str = "/") -> None:
        """``await handler(sid, reason)`` once when a joined client leaves the namespace."""
        self._ns(namespace).disconnect = handler

    # ------------------------------------------------------------------ outgoing

    def connected(self, namespace: str = "/") -> list[str]:
        """The sids currently joined to ``namespace``."""
        return list(self._by_namespace.get(namespace, {}))

    async def emit(
        self, event: str, *args: Any, to: str | None = None, namespace: str = "/"
    ) -> None:
        """Send an event to one sid (its own namespace) or, with ``to=None``, to all in one.

        Emitting to a sid that is gone is not an error: clients may leave at any time.
        """
        if to is None:
            targets = list(self._by_namespace.get(namespace, {}).values())
            if not targets:
                return
            parts = encode(event_packet(event, args, namespace))
        else:
            member = self._members.get(to)
            if member is None:
                log.debug("emit %r to unknown sid %s dropped", event, to)
                return
            targets = [member]
            parts = encode(event_packet(event, args, member.namespace))
        for member in targets:
            try:
                await member.client.send_parts(parts)
            except SessionClosed:
                log.debug("emit %r to %s dropped: session closed", event, member.sid)

    async def call(
        self,
        event: str,
        *args: Any,
        to: str,
        timeout: float | None = None,  # noqa: ASYNC109 (the API's contract)
        namespace: str = "/",
    ) -> list[Any]:
        """Emit with an ack id and return the ack's arguments.

        Raises :class:`trio.TooSlowError` after ``timeout`` seconds (default:
        ``config.ack_timeout_s``) and :class:`Disconnected` if the client is or
        goes away first.
        """
        member = self._members.get(to)
        if member is None:
            raise Disconnected(f"sid {to} is not connected")
        ns = member.namespace

        async def send(ack_id: int) -> None:
            try:
                await member.client.send_parts(encode(event_packet(event, args, ns, ack_id)))
            except SessionClosed as exc:
                raise Disconnected(f"sid {to} session closed") from exc

        deadline = self._config.ack_timeout_s if timeout is None else timeout
        return await member.acks.call(send, deadline)

    async def disconnect(self, sid: str, namespace: str = "/") -> None:
        """Make a client leave its namespace (it gets a DISCONNECT packet); no-op if gone."""
        member = self._members.get(sid)
        if member is None:
            return
        self._forget(member)
        with contextlib.suppress(SessionClosed):
            await member.client.send_parts(encode(Packet(PacketType.DISCONNECT, member.namespace)))
        await self._run_disconnect_hook(member, CloseReason.SERVER.value)

    # ------------------------------------------------------------------ serving

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``task_status.started((host, bound_port))`` once listening."""
        await self._engine().serve(host, port, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: Sequence[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on already-open listeners (e.g. IPv4 and IPv6 loopback on one port)."""
        await self._engine().serve_listeners(listeners, task_status=task_status)

    def _engine(self) -> EngineIOServer:
        return EngineIOServer(
            self._config.engineio, self.handle_session, self._check_request, self._pages
        )

    async def handle_session(self, eio: EngineIOSocket) -> None:
        """Run one Engine.IO session to its end (the Engine.IO server's per-session task).

        When the session ends, that client's in-flight handlers are cancelled,
        then each namespace's disconnect hook runs, without a time limit (the
        daemon's clean-up, such as stopping motion, must not be cut short).
        Only if the server itself is shutting down do the hooks get a short,
        shielded grace period instead.
        """
        client = _Client(eio, self._config.max_concurrent_handlers)
        reason = CloseReason.TRANSPORT_CLOSE.value
        try:
            async with trio.open_nursery() as nursery:
                client.nursery = nursery
                client.pool = HandlerPool(nursery, client.max_handlers, self._run_event)
                nursery.start_soon(self._enforce_connect_timeout, client)
                reason = await self._receive_loop(client)
                client.nursery = None
                nursery.cancel_scope.cancel()
                client.cancel_inline()
            await client.pool.wait_inline()
            await self._leave_all(client, reason)
        except Exception:
            # A bug here must cost one client, never the whole server.
            log.exception("sid=%s session handler failed", eio.sid)
            reason = CloseReason.TRANSPORT_ERROR.value
        finally:
            with trio.CancelScope(shield=True):
                if client.members:  # cancelled or failed before the hooks ran
                    with trio.move_on_after(_SHUTDOWN_HOOK_GRACE_S):
                        client.cancel_inline()
                        if client.pool is not None:
                            await client.pool.wait_inline()
                        await self._leave_all(client, reason)
                with trio.move_on_after(_SHUTDOWN_HOOK_GRACE_S):
                    await eio.close(CloseReason.SERVER)

    async def _leave_all(self, client: _Client, reason: str) -> None:
        for member in list(client.members.values()):
            self._forget(member)
            await self._run_disconnect_hook(member, reason)

    async def _enforce_connect_timeout(self, client: _Client) -> None:
        with client.connect_timer:
            await trio.sleep(self._config.connect_timeout_ms / 1000)
            if not client.members:
                log.info("sid=%s joined no namespace in time; closing", client.eio.sid)
                await client.eio.close(CloseReason.SERVER)

    async def _receive_loop(self, client: _Client) -> str:
        """Decode and dispatch until the session ends; return the disconnect reason."""
        eio = client.eio
        decoder = Decoder(self._config.max_attachments, self._config.engineio.max_payload)
        fast = eio if isinstance(eio, ServerSocket) else None
        if fast is not None:
            fast.on_message = functools.partial(self._receive_now, client, decoder)
        try:
            while True:
                client.dispatching = False
                try:
                    message = await eio.receive()
                except SessionClosed as exc:
                    return exc.reason.value
                finally:
                    client.dispatching = True
                try:
                    packet = decoder.receive(message)
                    if packet is not None:
                        await self._dispatch(client, packet)
                except (RemoteProtocolError, _ProtocolViolation) as exc:
                    log.warning("sid=%s protocol error, closing: %s", eio.sid, exc)
                    await eio.close(CloseReason.PARSE_ERROR)
                    return CloseReason.PARSE_ERROR.value
                except SessionClosed as exc:
                    return exc.reason.value
        finally:
            if fast is not None:
                fast.on_message = None

    def _receive_now(
        self, client: _Client, decoder: Decoder, message: str | bytes, inline: bool
    ) -> bool | Suspended:
        """Dispatch a plain EVENT or ACK from the transport's reader task, if it is simple.

        Called by the Engine.IO socket before it queues a message, while the
        receive loop is idle and nothing is queued, so order is kept. Handing
        the message over here saves waking the receive loop (a scheduler pass
        per message). Anything else, anything malformed, and an event that
        would have to wait for a handler slot return False and take the
        receive loop's path, which reports errors and applies backpressure.

        With ``inline``, an event whose handler has not been seen blocking runs
        right here, on the reader's task: a handler that returns without
        waiting is answered with no task switch at all. One that does wait is
        returned Suspended; the reader then hands reading to a new task and
        finishes it, so it still never holds up the client's other events.
        """
        if client.dispatching or decoder.awaiting_attachments or not isinstance(message, str):
            return False
        first = message[:1]
        if first != "2" and first != "3":
            return False
        try:
            packet = decode_text(message, self._config.max_attachments)
        except RemoteProtocolError:
            return False  # the receive loop decodes it again and reports the error
        member = client.members.get(packet.namespace)
        if member is None:
            return False
        if packet.type is PacketType.EVENT:
            pool = client.pool
            if pool is None:
                return False
            if inline:
                handlers = self._handlers.get(packet.namespace)
                key: EventHandler | None = None
                if handlers is not None:
                    key = handlers.events.get(packet.data[0]) or handlers.any
                blocked = self._blocked
                score = blocked.get(key, 0)
                if score >= _INLINE_AFTER_BLOCKS:
                    # Demoted to the pool; now and then it gets another chance.
                    retry = score >= _INLINE_AFTER_BLOCKS + _INLINE_RETRY_EVERY
                    blocked[key] = _INLINE_AFTER_BLOCKS - 1 if retry else score + 1
                else:
                    coro = pool.inline((member, packet))
                    if coro is not None:
                        try:
                            trap = coro.send(None)
                        except StopIteration:
                            if key in blocked:
                                del blocked[key]
                            return True
                        blocked[key] = score + 1
                        suspended = Suspended(coro, trap)
                        client.suspended = [s for s in client.suspended if not s.done]
                        client.suspended.append(suspended)
                        return suspended
            return pool.try_submit((member, packet))
        assert packet.id is not None  # the decoder guarantees it for ACK
        if not member.acks.resolve(packet.id, packet.data):
            log.debug("sid=%s ack %d matches no call (late?)", member.sid, packet.id)
        return True

    async def _dispatch(self, client: _Client, packet: Packet) -> None:
        t = packet.type
        if t is PacketType.CONNECT:
            await self._join(client, packet)
            return
        member = client.members.get(packet.namespace)
        if member is None:
            raise _ProtocolViolation(f"{t.name} for namespace {packet.namespace!r} not joined")
        if t is PacketType.EVENT:
            assert client.pool is not None  # set before the receive loop starts
            await client.pool.submit((member, packet))
        elif t is PacketType.ACK:
            assert packet.id is not None  # the decoder guarantees it
            if not member.acks.resolve(packet.id, packet.data):
                log.debug("sid=%s ack %d matches no call (late?)", member.sid, packet.id)
        elif t is PacketType.DISCONNECT:
            self._forget(member)
            await self._run_disconnect_hook(member, CloseReason.CLIENT.value)
        else:
            raise _ProtocolViolation(f"clients may not send {t.name}")

    async def _join(self, client: _Client, packet: Packet) -> None:
        ns = packet.namespace
        if ns in client.members:
            raise _ProtocolViolation(f"second CONNECT to {ns!r}")
        allowed = self._config.namespaces
        if allowed is not None and ns not in allowed:
            log.info("sid=%s refused: unknown namespace %r", client.eio.sid, ns)
            await self._refuse(client, ns, _INVALID_NAMESPACE)
            return
        sid = secrets.token_urlsafe(15)
        auth = packet.data if packet.data is not None else {}
        handlers = self._handlers.get(ns)
        if handlers is not None and handlers.connect is not None:
            try:
                await handlers.connect(sid, auth, client.eio.request)
            except ConnectRefused as exc:
                log.info("sid=%s refused on %s: %s", sid, ns, exc)
                await self._refuse(client, ns, str(exc))
                return
            except Exception:
                log.exception("connect hook failed for %s on %s", sid, ns)
                await self._refuse(client, ns, "Internal server error")
                return
        member = _Member(sid, ns, client)
        client.members[ns] = member
        self._members[sid] = member
        self._by_namespace.setdefault(ns, {})[sid] = member
        client.connect_timer.cancel()
        log.info("sid=%s joined %s (session %s)", sid, ns, client.eio.sid)
        await client.send_parts(encode(Packet(PacketType.CONNECT, ns, {"sid": sid})))
        if handlers is not None and handlers.connected is not None:
            try:
                await handlers.connected(sid)
            except Exception:
                log.exception("connected hook failed for %s on %s", sid, ns)

    async def _refuse(self, client: _Client, namespace: str, message: str) -> None:
        packet = Packet(PacketType.CONNECT_ERROR, namespace, {"message": message})
        await client.send_parts(encode(packet))

    def _forget(self, member: _Member) -> None:
        client = member.client
        if client.members.get(member.namespace) is member:
            del client.members[member.namespace]
        self._members.pop(member.sid, None)
        in_ns = self._by_namespace.get(member.namespace)
        if in_ns is not None:
            in_ns.pop(member.sid, None)
            if not in_ns:
                del self._by_namespace[member.namespace]
        member.acks.close()

    async def _run_disconnect_hook(self, member: _Member, reason: str) -> None:
        log.info("sid=%s left %s: %s", member.sid, member.namespace, reason)
        handlers = self._handlers.get(member.namespace)
        if handlers is None or handlers.disconnect is None:
            return
        try:
            await handlers.disconnect(member.sid, reason)
        except Exception:
            log.exception("disconnect hook failed for %s", member.sid)

    async def _run_event(self, job: tuple[_Member, Packet]) -> None:
        member, packet = job
        client = member.client
        try:
            event: str = packet.data[0]
            args = packet.data[1:]
            handlers = self._handlers.get(member.namespace)
            handler = handlers.events.get(event) if handlers is not None else None
            if handler is not None:
                result = await handler(member.sid, *args)
            elif handlers is not None and handlers.any is not None:
                result = await handlers.any(member.sid, event, *args)
            else:
                log.info("sid=%s event %r has no handler; not acked", member.sid, event)
                return
            if packet.id is None:
                return
            if isinstance(result, Deferred):
                eio = client.eio
                counted = not result.resolved and isinstance(eio, ServerSocket)
                if counted and isinstance(eio, ServerSocket):
                    eio.deferred_answers += 1
                result.on_resolved(
                    functools.partial(self._ack_later, member, packet.id, event, counted)
                )
                return
            if client.members.get(member.namespace) is not member:
                log.debug("sid=%s left before its %r ack was ready", member.sid, event)
                return
            await client.send_parts(
                encode(ack_packet(ack_args(result), packet.id, member.namespace))
            )
        except SessionClosed:
            pass
        except LocalProtocolError as exc:
            log.error("sid=%s cannot ack %r: %s", member.sid, packet.data[0], exc)
        except Exception:
            log.exception("sid=%s handler for %r failed", member.sid, packet.data[0])

    def _ack_later(
        self, member: _Member, ack_id: int, event: str, counted: bool, result: Any
    ) -> None:
        """Send a deferred ack from the task that resolved it, never waiting there.

        The usual case writes it straight to the socket; a full outbox or a
        send in progress hands it to a task of the session instead.
        """
        client = member.client
        eio = client.eio
        if counted and isinstance(eio, ServerSocket):
            eio.deferred_answers -= 1
        if client.members.get(member.namespace) is not member:
            log.debug("sid=%s left before its %r ack was ready", member.sid, event)
            return
        try:
            parts = encode(ack_packet(ack_args(result), ack_id, member.namespace))
        except LocalProtocolError as exc:
            log.error("sid=%s cannot ack %r: %s", member.sid, event, exc)
            return
        if len(parts) == 1 and not client.send_gate.busy and isinstance(eio, ServerSocket):
            try:
                if eio.send_nowait(parts[0]):
                    return
            except SessionClosed:
                return
        nursery = client.nursery
        if nursery is None:
            log.debug("sid=%s session ended before its %r ack was sent", member.sid, event)
            return
        try:
            nursery.start_soon(self._send_late, client, parts)
        except RuntimeError:  # the nursery is closing: the session is over
            log.debug("sid=%s session ended before its %r ack was sent", member.sid, event)

    @staticmethod
    async def _send_late(client: _Client, parts: list[str | bytes]) -> None:
        with contextlib.suppress(SessionClosed):
            await client.send_parts(parts)
