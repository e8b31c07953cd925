"""A Trio Socket.IO v5 client over Engine.IO v4 WebSocket, for the daemon's proxy mode.

Proxy mode keeps one connection to an upstream server alive for as long as the
daemon runs, so :meth:`SocketIOClient.run` is a loop: connect, serve the
connection until it drops, wait an exponentially growing, jittered delay (so a
fleet of rigs does not reconnect in lockstep), and try again. Every step has a
deadline: the TCP/WebSocket/Socket.IO handshakes share ``connect_timeout_s``,
and a server that stops pinging for pingInterval + pingTimeout is presumed dead.

Handlers follow the server's convention: an event handler's return value is
the ack (``None``: no arguments, a tuple: several, anything else: one), and each
event runs in its own task so a slow one never delays the next.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from protocol.engineio.packets import Packet as EIOPacket
from protocol.engineio.packets import PacketType as EIOType
from protocol.engineio.packets import decode_packet, encode_packet
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.socketio.acks import AckTable, Disconnected, ack_args
from protocol.socketio.packets import (
    Decoder,
    Packet,
    PacketType,
    ack_packet,
    encode,
    event_packet,
)
from protocol.socketio.pool import HandlerPool
from protocol.socketio.sync import SendGate

__all__ = ["ConnectRefused", "Disconnected", "SocketIOClient"]

log = logging.getLogger(__name__)

EventHandler = Callable[..., Awaitable[Any]]
ConnectHandler = Callable[[], Awaitable[None]]
DisconnectHandler = Callable[[str], Awaitable[None]]

_PONG = encode_packet(EIOPacket(EIOType.PONG))
# Largest frame accepted from the server unless its handshake says otherwise.
_DEFAULT_MAX_PAYLOAD = 1_000_000


class ConnectRefused(Exception):
    """The server answered our CONNECT with CONNECT_ERROR."""


def connect_failure(exc: BaseException) -> str:
    """Why a connection attempt failed, in words, never empty.

    trio-websocket wraps the socket's error (``Name or service not known``,
    ``Connection refused``) in a HandshakeError with no message of its own,
    and a refused upgrade's text is a tuple of status, headers and body.
    """
    if isinstance(exc, ConnectionRejected):
        body = (exc.body or b"").decode("utf-8", "replace").strip()[:200]
        return (
            f"the server refused the WebSocket (HTTP {exc.status_code}{': ' if body else ''}{body})"
        )
    if isinstance(exc, ConnectionTimeout | trio.TooSlowError):
        return "no answer in time"
    if isinstance(exc, OSError):
        if exc.strerror:
            return exc.strerror
        # Trio's "all attempts to connect to HOST:PORT failed", each attempt's
        # error in the group it was raised from.
        causes = _leaves(exc.__cause__) if exc.__cause__ is not None else []
        words = dict.fromkeys(c.strerror for c in causes if isinstance(c, OSError) and c.strerror)
        text = str(exc) or type(exc).__name__
        return f"{text} ({', '.join(words)})" if words else text
    if isinstance(exc, ConnectionClosed):
        reason = exc.reason
        return f"closed during the handshake ({reason.name if reason else 'no reason'})"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return connect_failure(cause)
    return str(exc) or type(exc).__name__


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class _Handshake(msgspec.Struct, rename="camel"):
    sid: str
    ping_interval: int
    ping_timeout: int
    max_payload: int = _DEFAULT_MAX_PAYLOAD


class _Lost(Exception):
    """The connection ended; ``reason`` is the Socket.IO disconnect reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SocketIOClient:
    """Socket.IO client with automatic reconnection; ``await run()`` drives it."""

    def __init__(
        self,
        url: str,
        *,
        auth: Any = None,
        namespace: str = "/",
        reconnect: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        jitter: float = 0.5,
        connect_timeout_s: float = 5.0,
        ack_timeout_s: float = 10.0,
        max_concurrent_handlers: int = 64,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "ws") or not parts.hostname:
            raise ValueError(f"expected http://host:port, got {url!r}")
        if auth is not None and not isinstance(auth, dict):
            raise ValueError("auth must be a dict (a Socket.IO CONNECT payload is an object)")
        port = parts.port or 80
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.url = f"ws://{host}:{port}/socket.io/?EIO=4&transport=websocket"
        self.namespace = namespace
        self._auth = auth
        self._reconnect = reconnect
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._jitter = jitter
        self._connect_timeout_s = connect_timeout_s
        self._ack_timeout_s = ack_timeout_s
        self._max_handlers = max_concurrent_handlers
        self._events: dict[str, EventHandler] = {}
        self._any: EventHandler | None = None
        self._on_connect: ConnectHandler | None = None
        self._on_disconnect: DisconnectHandler | None = None
        self._ws: WebSocketConnection | None = None
        self._send_gate = SendGate()
        self._acks = AckTable()
        self._acks.close()
        self._connected_event = trio.Event()
        self.sid: str | None = None

    # ------------------------------------------------------------------ registration

    def on(self, event: str, handler: EventHandler) -> None:
        """``await handler(*args)`` for each ``event`` from the server; its return is the ack."""
        self._events[event] = handler

    def on_any(self, handler: EventHandler) -> None:
        """``await handler(event, *args)`` for events without a handler of their own."""
        self._any = handler

    def on_connect(self, handler: ConnectHandler) -> None:
        """``await handler()`` after each successful (re)connection."""
        self._on_connect = handler

    def on_disconnect(self, handler: DisconnectHandler) -> None:
        """``await handler(reason)`` after each connection ends."""
        self._on_disconnect = handler

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109 (API contract)
        """Return once connected; :class:`trio.TooSlowError` after ``timeout`` seconds."""
        with trio.fail_after(timeout):
            await self._connected_event.wait()

    # ------------------------------------------------------------------ outgoing

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event; :class:`Disconnected` if not connected right now."""
        await self._send(encode(event_packet(event, args, self.namespace)))

    async def call(self, event: str, *args: Any, timeout: float | None = None) -> list[Any]:  # noqa: ASYNC109
        """Emit with an ack id and return the ack's arguments.

        :class:`trio.TooSlowError` after ``timeout`` seconds (default
        ``ack_timeout_s``); :class:`Disconnected` if not connected or the
        connection drops first.
        """

        async def send(ack_id: int) -> None:
            await self._send(encode(event_packet(event, args, self.namespace, ack_id)))

        deadline = self._ack_timeout_s if timeout is None else timeout
        return await self._acks.call(send, deadline)

    async def _send(self, parts: list[str | bytes]) -> None:
        ws = self._ws
        if ws is None:
            raise Disconnected("not connected")
        try:
            await self._send_gate.acquire()
            try:
                for part in parts:
                    await ws.send_message(encode_packet(EIOPacket(EIOType.MESSAGE, part)))
            finally:
                self._send_gate.release()
        except ConnectionClosed as exc:
            raise Disconnected("connection closed while sending") from exc

    # ------------------------------------------------------------------ the loop

    def _backoff(self, attempt: int) -> float:
        base = min(self._backoff_max_s, self._backoff_initial_s * 2 ** min(attempt, 30))
        spread = base * self._jitter * random.uniform(-1.0, 1.0)
        delay: float = max(0.0, min(self._backoff_max_s, base + spread))
        return delay

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect with backoff; runs until cancelled.

        With ``reconnect=False`` it returns after the first connection ends
        or the first attempt fails.
        """
        task_status.started()
        attempt = 0
        while True:
            try:
                await self._connect_and_serve()
                attempt = 0  # a connection was made; start the backoff afresh
            except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as exc:
                log.warning("cannot connect to %s: %s", self.url, connect_failure(exc))
            except (ConnectRefused, RemoteProtocolError, _Lost) as exc:
                log.warning("connection to %s failed: %s", self.url, exc)
            except Exception:
                # Whatever went wrong, proxy mode must keep trying.
                log.exception("connection to %s failed unexpectedly", self.url)
            if not self._reconnect:
                return
            delay = self._backoff(attempt)
            attempt += 1
            log.info("reconnecting to %s in %.2f s", self.url, delay)
            await trio.sleep(delay)

    async def _connect_and_serve(self) -> None:
        """One connection's life; raises if it cannot be established, returns when it ends."""
        async with open_websocket_url(
            self.url,
            connect_timeout=self._connect_timeout_s,
            disconnect_timeout=1.0,
            max_message_size=_DEFAULT_MAX_PAYLOAD * 4,
        ) as ws:
            decoder = Decoder()
            with trio.fail_after(self._connect_timeout_s):
                handshake = await self._engineio_open(ws)
                early = await self._socketio_connect(ws, decoder)
            reason = "transport close"
            try:
                async with trio.open_nursery() as nursery:
                    self._ws = ws
                    self._acks = AckTable()
                    self._connected_event.set()
                    log.info("connected to %s as %s", self.url, self.sid)
                    if self._on_connect is not None:
                        nursery.start_soon(self._run_hook, self._on_connect)
                    pool = HandlerPool(nursery, self._max_handlers, self._run_event)
                    for packet in early:
                        await pool.submit(packet)
                    try:
                        await self._receive_loop(ws, decoder, handshake, pool)
                    except _Lost as lost:
                        reason = lost.reason
                    nursery.cancel_scope.cancel()
            finally:
                self._ws = None
                self._acks.close()
                self._connected_event = trio.Event()
                log.info("disconnected from %s: %s", self.url, reason)
            if self._on_disconnect is not None:
                await self._run_hook(self._on_disconnect, reason)

    async def _engineio_open(self, ws: WebSocketConnection) -> _Handshake:
        packet = decode_packet(await ws.get_message())
        if packet.type is not EIOType.OPEN or not isinstance(packet.data, str):
            raise RemoteProtocolError(f"expected an Engine.IO OPEN packet, got {packet!r}")
        try:
            return msgspec.json.decode(packet.data, type=_Handshake)
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"bad Engine.IO handshake {packet.data!r}: {exc}") from exc

    async def _socketio_connect(self, ws: WebSocketConnection, decoder: Decoder) -> list[Packet]:
        """Join the namespace; return the events that arrived before the answer.

        Some servers (python-socketio) send what their connect handler emits
        before the CONNECT answer; like the reference client, we hold those
        events back and deliver them once connected.
        """
        connect = encode(Packet(PacketType.CONNECT, self.namespace, self._auth))
        await ws.send_message(encode_packet(EIOPacket(EIOType.MESSAGE, connect[0])))
        early: list[Packet] = []
        while True:
            packet = await self._next_packet(ws, decoder)
            if packet is None or packet.namespace != self.namespace:
                continue
            if packet.type is PacketType.CONNECT and isinstance(packet.data, dict):
                self.sid = str(packet.data.get("sid"))
                return early
            if packet.type is PacketType.CONNECT_ERROR:
                data = packet.data
                message = data.get("message", data) if isinstance(data, dict) else data
                raise ConnectRefused(f"server refused the connection: {message}")
            if packet.type is PacketType.EVENT and len(early) < self._max_handlers:
                early.append(packet)
                continue
            raise RemoteProtocolError(f"expected CONNECT answer, got {packet!r}")

    async def _next_packet(self, ws: WebSocketConnection, decoder: Decoder) -> Packet | None:
        """Read one frame; answer pings; return the Socket.IO packet it completes, if any."""
        frame = await ws.get_message()
        eio = decode_packet(frame)
        if eio.type is EIOType.PING:
            await ws.send_message(_PONG)
            return None
        if eio.type is EIOType.CLOSE:
            raise _Lost("transport close")
        if eio.type is not EIOType.MESSAGE:
            return None  # NOOP and friends carry nothing for us
        return decoder.receive(eio.data)

    async def _receive_loop(
        self,
        ws: WebSocketConnection,
        decoder: Decoder,
        handshake: _Handshake,
        pool: HandlerPool[Packet],
    ) -> None:
        silence_limit = (handshake.ping_interval + handshake.ping_timeout) / 1000
        while True:
            with trio.move_on_after(silence_limit) as watchdog:
                try:
                    packet = await self._next_packet(ws, decoder)
                except ConnectionClosed:
                    raise _Lost("transport close") from None
                except RemoteProtocolError as exc:
                    log.warning("protocol error from %s: %s", self.url, exc)
                    raise _Lost("parse error") from None
            if watchdog.cancelled_caught:
                raise _Lost("ping timeout")
            if packet is None or packet.namespace != self.namespace:
                continue
            if packet.type is PacketType.EVENT:
                await pool.submit(packet)
            elif packet.type is PacketType.ACK:
                assert packet.id is not None
                if not self._acks.resolve(packet.id, packet.data):
                    log.debug("ack %d matches no call (late?)", packet.id)
            elif packet.type is PacketType.DISCONNECT:
                raise _Lost("io server disconnect")
            else:
                log.debug("ignoring %s packet after connect", packet.type.name)

    async def _run_event(self, packet: Packet) -> None:
        event: str = packet.data[0]
        try:
            handler = self._events.get(event)
            if handler is not None:
                result = await handler(*packet.data[1:])
            elif self._any is not None:
                result = await self._any(event, *packet.data[1:])
            else:
                log.info("event %r has no handler; not acked", event)
                return
            if packet.id is not None:
                await self._send(encode(ack_packet(ack_args(result), packet.id, self.namespace)))
        except Disconnected:
            pass
        except LocalProtocolError as exc:
            log.error("cannot ack %r: %s", event, exc)
        except Exception:
            log.exception("handler for %r failed", event)

    async def _run_hook(self, hook: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await hook(*args)
        except Exception:
            log.exception("client hook %r failed", hook)
