"""Trio Engine.IO v4 server: HTTP long-polling and WebSocket on one port, with upgrade.

Each TCP connection is read by h11; a request is either a polling GET/POST,
a CORS preflight, or a WebSocket upgrade that hands the same stream to
wsproto. Sessions outlive connections: each runs the application's handler
in its own task and a heartbeat task, and is closed when the handler
returns. All protocol rules live in :mod:`protocol.engineio.session`; this
module only moves bytes, sleeps, and answers bad requests with clear errors.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence

import h11
import msgspec
import trio

from protocol.engineio.config import EngineIOConfig
from protocol.engineio.http import HTTPConnection, PageHandler, PayloadTooLarge, PeerGone
from protocol.engineio.packets import (
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)
from protocol.engineio.session import (
    POLLING,
    WEBSOCKET,
    EngineIOSession,
    Pong,
    SessionState,
    Upgrade,
)
from protocol.engineio.socket import ServerSocket
from protocol.engineio.websocket import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TRY_AGAIN_LATER,
    MessageTooBig,
    WebSocket,
    accept_key,
)
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.transport import CloseReason, EngineIOSocket, RequestInfo

log = logging.getLogger(__name__)

Handler = Callable[[EngineIOSocket], Awaitable[None]]
RequestCheck = Callable[[RequestInfo], str | None]

# Error codes and texts of the reference (Node.js) server, so clients that
# inspect them behave the same.
TRANSPORT_UNKNOWN = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
FORBIDDEN = 4
UNSUPPORTED_PROTOCOL_VERSION = 5
_MESSAGES = {
    TRANSPORT_UNKNOWN: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}
# A poll that arrives while an upgrade is between "3probe" and "5" waits this
# long for the "5" (which the client sent first) before being told "6".
_UPGRADE_RACE_GRACE_S = 0.1
# A poll that arrives while a WebSocket is attached but not yet read from
# waits this long for its reader, which may already hold "2probe" and "5" sent
# before the poll: Trio does not order two connections' tasks, and such a poll
# must be refused as upgraded. Short, because a client still polls while its
# probe is under way.
_PROBE_RACE_GRACE_S = 0.01
_TEXT = "text/plain; charset=UTF-8"
# Scheduler rounds a POST waits, after its messages were taken, before "ok".
_CATCH_UP_ROUNDS = 3
# After a WebSocket session closes, its last packets get this long to go out.
_CLOSE_FLUSH_S = 1.0


class _Refusal(Exception):
    """A request we answer with an HTTP error; the connection stays usable."""

    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        super().__init__(message or _MESSAGES.get(code, "Bad request"))
        self.status = status
        self.code = code
        self.text = message or _MESSAGES.get(code, "Bad request")


class _ErrorBody(msgspec.Struct):
    code: int
    message: str


class _Request(msgspec.Struct):
    """A parsed HTTP request head, with what routing needs."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    info: RequestInfo


class EngineIOServer:
    """Engine.IO server that runs ``handler(socket)`` once per session.

    Requests for other paths go to ``pages`` (if given) after the same checks
    as an Engine.IO request (Origin, ``check_request``, body limit), so an
    application can serve a page next to its socket on one port without the
    protocol layer knowing what the page is.
    """

    def __init__(
        self,
        config: EngineIOConfig,
        handler: Handler,
        check_request: RequestCheck | None = None,
        pages: PageHandler | None = None,
    ) -> None:
        self.config = config
        self._handler = handler
        self._check_request = check_request
        self._pages = pages
        self._sessions: dict[str, ServerSocket] = {}
        self._nursery: trio.Nursery | None = None
        self._connections = 0

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0 picks a free port) until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        await self.serve_listeners(listeners, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: Sequence[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on already-open listeners; reports the first one's address when ready."""
        sockname = listeners[0].socket.getsockname()
        bound = (str(sockname[0]), int(sockname[1]))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(
                functools.partial(
                    trio.serve_listeners,
                    self._serve_connection,
                    list(listeners),
                    handler_nursery=nursery,
                )
            )
            log.info("engine.io listening on %s:%d%s", bound[0], bound[1], self.config.path)
            task_status.started(bound)

    # -- connections -------------------------------------------------------------
    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        limit = self.config.max_connections * 4 + 16
        if self._connections >= limit:
            log.warning("refusing connection: %d open connections", self._connections)
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await stream.aclose()
            return
        self._connections += 1
        conn = HTTPConnection(stream, self.config.http_timeout_s, self.config.max_header_bytes)
        try:
            await self._serve_requests(conn)
        except PeerGone:
            pass
        except h11.RemoteProtocolError as exc:
            log.debug("bad HTTP from client: %s", exc)
            if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                with contextlib.suppress(PeerGone, h11.LocalProtocolError):
                    await conn.respond(status, b"Bad HTTP request", [], close=True)
        except Exception:
            # A bug must cost one connection, never the server.
            log.exception("connection from %s:%d failed", *conn.peer)
        finally:
            self._connections -= 1
            await conn.aclose()

    async def _serve_requests(self, conn: HTTPConnection) -> None:
        while True:
            event = await conn.next_event()
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or anything else: we are done
            keep_going = await self._serve_request(conn, event)
            if not keep_going:
                return
            if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                await conn.linger_close()
                return
            conn.h11.start_next_cycle()

    async def _serve_request(self, conn: HTTPConnection, event: h11.Request) -> bool:
        """Answer one request; False when the connection must not be reused."""
        request = self._parse(conn, event)
        origin = request.headers.get("origin")
        cors = self._cors_headers(origin, request.headers)
        try:
            return await self._route(conn, request, cors)
        except _Refusal as refusal:
            log.debug("refused %s %s: %d %s", request.method, request.path, refusal.status, refusal)
            if request.method == "OPTIONS":
                # A refused preflight grants nothing, so no Access-Control-*
                # header on it may read as a grant.
                cors = []
            if refusal.status == 403 and refusal.code == -1:
                body, ctype = refusal.text.encode("utf-8"), _TEXT
            else:
                body = msgspec.json.encode(_ErrorBody(refusal.code, refusal.text))
                ctype = "application/json"
            close = conn.h11.their_state is not h11.DONE
            await conn.respond(refusal.status, body, [("content-type", ctype), *cors], close=close)
            return True
        except PayloadTooLarge:
            await conn.respond(
                413, b"Payload Too Large", [("content-type", _TEXT), *cors], close=True
            )
            return True

    def _parse(self, conn: HTTPConnection, event: h11.Request) -> _Request:
        target = event.target.decode("latin-1")
        path, _, query_string = target.partition("?")
        query = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True))
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        info = RequestInfo(
            remote_host=conn.peer[0],
            remote_port=conn.peer[1],
            path=path,
            query=query,
            headers=headers,
        )
        return _Request(event.method.decode("latin-1").upper(), path, query, headers, info)

    # -- policy ----------------------------------------------------------------------
    def _origin_allowed(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser, or a same-origin GET
        allowed = self.config.cors_allowed_origins
        if allowed is None or origin in allowed:
            return True
        return host is not None and origin in (f"http://{host}", f"https://{host}")

    def _cors_headers(self, origin: str | None, headers: dict[str, str]) -> list[tuple[str, str]]:
        allowed = self.config.cors_allowed_origins
        if origin is None or allowed == () or (allowed is not None and origin not in allowed):
            return []
        return [
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
            ("vary", "Origin"),
        ]

    # -- routing -------------------------------------------------------------------------
    async def _route(
        self, conn: HTTPConnection, request: _Request, cors: list[tuple[str, str]]
    ) -> bool:
        path = self.config.path
        engineio = request.path in (path, path.rstrip("/"))
        if not engineio and self._pages is None:
            raise _Refusal(404, BAD_REQUEST, "Not found")
        if not self._origin_allowed(request.headers.get("origin"), request.headers.get("host")):
            raise _Refusal(403, FORBIDDEN)
        # Read a POST body first (bounded) so any refusal below leaves the
        # connection clean for the next request; a preflight's (empty) one
        # too, so the browser may reuse the connection after it.
        limit = self.config.max_payload
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > limit:
            raise PayloadTooLarge
        body = await conn.read_body(limit)
        # A preflight gets the verdict of the request it announces, from the
        # same hook at request time (the rules may change while we run).
        if self._check_request is not None:
            verdict = self._check_request(request.info)
            if verdict is not None:
                raise _Refusal(403, -1, verdict)
        if not engineio:
            await self._serve_page(conn, request)
            return True
        if request.method == "OPTIONS":
            await self._preflight(conn, request, cors)
            return True
        transport = request.query.get("transport")
        if transport not in (POLLING, WEBSOCKET):
            raise _Refusal(400, TRANSPORT_UNKNOWN)
        if request.query.get("EIO") != "4":
            raise _Refusal(400, UNSUPPORTED_PROTOCOL_VERSION)
        is_upgrade = "websocket" in request.headers.get("upgrade", "").lower()
        if transport == WEBSOCKET:
            if not is_upgrade or request.method != "GET":
                raise _Refusal(400, BAD_REQUEST, "Expected a WebSocket upgrade")
            await self._websocket(conn, request)
            return False
        if is_upgrade:
            raise _Refusal(400, BAD_REQUEST, "WebSocket upgrade with transport=polling")
        sid = request.query.get("sid")
        if sid is None:
            if request.method != "GET":
                raise _Refusal(400, BAD_HANDSHAKE_METHOD)
            await self._polling_handshake(conn, request, cors)
            return True
        sock = self._session(sid)
        if sock.transport != POLLING:
            raise _Refusal(400, BAD_REQUEST, "Session is not on polling")
        if sock.core.closed and request.method != "GET":
            raise _Refusal(400, UNKNOWN_SID)
        if request.method == "GET":
            return await self._poll(conn, sock, cors)
        if request.method == "POST":
            await self._post(conn, sock, body, cors)
            return True
        raise _Refusal(400, BAD_REQUEST, "Method not allowed")

    async def _serve_page(self, conn: HTTPConnection, request: _Request) -> None:
        assert self._pages is not None  # checked by the router
        response = await self._pages(request.method, request.info)
        if response is None:
            raise _Refusal(404, BAD_REQUEST, "Not found")
        await conn.respond(response.status, response.body, list(response.headers))

    async def _preflight(
        self, conn: HTTPConnection, request: _Request, cors: list[tuple[str, str]]
    ) -> None:
        headers = list(cors)
        if cors:
            wanted = request.headers.get("access-control-request-headers", "content-type")
            headers += [
                ("access-control-allow-methods", "GET, POST, OPTIONS"),
                ("access-control-allow-headers", wanted),
                ("access-control-max-age", "86400"),
            ]
        await conn.respond(204, b"", headers)

    # -- sessions -----------------------------------------------------------------------
    def _new_session(self, request: _Request, transport: str) -> ServerSocket:
        if len(self._sessions) >= self.config.max_connections:
            raise _Refusal(503, BAD_REQUEST, "Server full")
        if self._nursery is None:
            raise RuntimeError("server is not running")
        sid = secrets.token_urlsafe(15)
        core = EngineIOSession(sid, self.config, transport, trio.current_time())
        sock = ServerSocket(core, request.info, self._forget)
        self._sessions[sid] = sock
        log.info(
            "session %s opened over %s from %s:%d",
            sid,
            transport,
            request.info.remote_host,
            request.info.remote_port,
        )
        self._nursery.start_soon(self._run_session, sock)
        return sock

    def _session(self, sid: str) -> ServerSocket:
        """The live session for ``sid``, its heartbeat brought up to date first.

        Applying the heartbeat on arrival makes a request that comes after the
        ping deadline see a closed session even if the heartbeat task has not
        woken up yet on a busy machine.
        """
        sock = self._sessions.get(sid)
        if sock is not None:
            sock.apply(sock.core.tick(trio.current_time()))
            sock = self._sessions.get(sid)
        if sock is None:
            raise _Refusal(400, UNKNOWN_SID)
        return sock

    def _forget(self, sock: ServerSocket) -> None:
        lingering = (
            sock.close_reason is CloseReason.SERVER
            and sock.transport == POLLING
            and not sock.poll_active
            and sock.has_undelivered
        )
        if lingering and self._nursery is not None:
            # The server ended a polling session between two polls: keep the
            # sid answerable for one more poll so the last messages and the
            # close packet still reach the client.
            self._nursery.start_soon(self._forget_when_drained, sock)
        elif self._sessions.get(sock.sid) is sock:
            del self._sessions[sock.sid]

    async def _forget_when_drained(self, sock: ServerSocket) -> None:
        config = self.config
        with trio.move_on_after((config.ping_interval_ms + config.ping_timeout_ms) / 1000):
            while sock.has_undelivered:
                await sock.wait_changed()
        if self._sessions.get(sock.sid) is sock:
            del self._sessions[sock.sid]

    async def _run_session(self, sock: ServerSocket) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeat, sock)
            try:
                await self._handler(sock)
            except Exception:
                log.exception("handler of session %s failed", sock.sid)
            finally:
                sock.close_now(CloseReason.SERVER)
                nursery.cancel_scope.cancel()

    async def _heartbeat(self, sock: ServerSocket) -> None:
        core = sock.core
        while not core.closed:
            await trio.sleep_until(core.next_deadline())
            sock.apply(core.tick(trio.current_time()))

    async def _feed(
        self,
        sock: ServerSocket,
        packets: list[Packet],
        hand_off: Callable[[], None] | None = None,
        reader_scope: trio.CancelScope | None = None,
    ) -> bool:
        """Hand received packets to the state machine; a bad one closes the session.

        False when this task handed reading to another one (see ``deliver``).
        """
        for packet in packets:
            if sock.core.closed:
                return True
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s <- %r", sock.sid, packet)
            try:
                events = sock.core.receive(packet, trio.current_time())
            except RemoteProtocolError as exc:
                log.info("session %s: protocol error: %s", sock.sid, exc)
                sock.close_now(CloseReason.PARSE_ERROR)
                raise
            if not await sock.deliver(events, hand_off, reader_scope):
                return False
        return True

    # -- polling ------------------------------------------------------------------------
    async def _polling_handshake(
        self, conn: HTTPConnection, request: _Request, cors: list[tuple[str, str]]
    ) -> None:
        sock = self._new_session(request, POLLING)
        body = encode_payload([sock.core.open_packet()])
        await conn.respond(200, body, [("content-type", _TEXT), *cors])

    async def _poll(
        self, conn: HTTPConnection, sock: ServerSocket, cors: list[tuple[str, str]]
    ) -> bool:
        if sock.poll_active:
            sock.close_now(CloseReason.TRANSPORT_ERROR)
            raise _Refusal(400, BAD_REQUEST, "Overlapping poll requests")
        packets: list[Packet] | None
        if sock.core.state is SessionState.PROBING:
            with trio.move_on_after(_PROBE_RACE_GRACE_S):
                while sock.core.state is SessionState.PROBING:
                    await sock.wait_changed()
            if sock.core.transport != POLLING:
                raise _Refusal(400, BAD_REQUEST, "Session was upgraded")
        if sock.core.state is SessionState.UPGRADING:
            packets = await self._poll_during_upgrade(sock)
        else:
            sock.poll_active = True
            try:
                packets = await self._hold_poll(conn, sock)
            finally:
                sock.poll_active = False
            if packets is None:
                return False  # the client hung up; the session is closed
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %r", sock.sid, packets)
        await conn.respond(200, encode_payload(packets), [("content-type", _TEXT), *cors])
        return True

    async def _hold_poll(self, conn: HTTPConnection, sock: ServerSocket) -> list[Packet] | None:
        """Wait for packets; a client that hangs up meanwhile closes the session."""
        packets: list[Packet] | None = None
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                await conn.watch_for_eof(self.config.max_header_bytes)
                sock.close_now(CloseReason.TRANSPORT_CLOSE)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            packets = await sock.take_for_poll()
            nursery.cancel_scope.cancel()
        return packets

    async def _poll_during_upgrade(self, sock: ServerSocket) -> list[Packet]:
        with trio.move_on_after(_UPGRADE_RACE_GRACE_S):
            while sock.core.state is SessionState.UPGRADING:
                await sock.wait_changed()
        if sock.core.transport != POLLING:
            raise _Refusal(400, BAD_REQUEST, "Session was upgraded")
        return [Packet(PacketType.NOOP)]

    async def _post(
        self, conn: HTTPConnection, sock: ServerSocket, body: bytes, cors: list[tuple[str, str]]
    ) -> None:
        if sock.post_active:
            sock.close_now(CloseReason.TRANSPORT_ERROR)
            raise _Refusal(400, BAD_REQUEST, "Overlapping POST requests")
        sock.post_active = True
        try:
            try:
                packets = decode_payload(body)
            except RemoteProtocolError as exc:
                log.info("session %s: bad payload: %s", sock.sid, exc)
                sock.close_now(CloseReason.PARSE_ERROR)
                raise _Refusal(400, BAD_REQUEST, "Invalid payload") from exc
            try:
                with trio.fail_after(self.config.http_timeout_s):
                    await self._feed(sock, packets)
            except RemoteProtocolError as exc:
                raise _Refusal(400, BAD_REQUEST, "Invalid packet") from exc
            except trio.TooSlowError as exc:
                sock.close_now(CloseReason.TRANSPORT_ERROR)
                raise _Refusal(503, BAD_REQUEST, "Session is not reading") from exc
        finally:
            sock.post_active = False
        await self._let_application_catch_up(sock, len(packets))
        await conn.respond(200, b"ok", [("content-type", "text/html"), *cors])

    @staticmethod
    async def _let_application_catch_up(sock: ServerSocket, delivered: int) -> None:
        """Give the application a few scheduler rounds to take what a POST delivered.

        The reference server hands a POST's messages to the application before
        it answers "ok", so an immediate reply is already queued when the
        client polls next (the official suite relies on it). Here the
        application runs in its own task; yielding until it has drained the
        queue, plus a few rounds for its own hops, gives the same ordering.
        Bounded, and polling only.
        """
        for _ in range(2 * delivered + 2):
            if sock.incoming_buffered == 0:
                break
            await trio.lowlevel.cancel_shielded_checkpoint()
        for _ in range(_CATCH_UP_ROUNDS):
            await trio.lowlevel.cancel_shielded_checkpoint()

    # -- websocket ----------------------------------------------------------------------
    async def _websocket(self, conn: HTTPConnection, request: _Request) -> None:
        key = request.headers.get("sec-websocket-key")
        if key is None or request.headers.get("sec-websocket-version") != "13":
            raise _Refusal(400, BAD_REQUEST, "Bad WebSocket handshake")
        sid = request.query.get("sid")
        upgrading: ServerSocket | None = None
        refusal: str | None = None
        if sid is not None:
            upgrading = self._session(sid)
            try:
                upgrading.core.start_upgrade()
            except RemoteProtocolError as exc:
                # Like the reference server: a known sid that is already upgraded
                # (or upgrading) gets its WebSocket accepted and closed at once.
                refusal = str(exc)
                upgrading = None
        elif len(self._sessions) >= self.config.max_connections:
            raise _Refusal(503, BAD_REQUEST, "Server full")
        try:
            await conn.send(
                h11.InformationalResponse(
                    status_code=101,
                    headers=[
                        (b"upgrade", b"websocket"),
                        (b"connection", b"Upgrade"),
                        (b"sec-websocket-accept", accept_key(key.encode("latin-1"))),
                    ],
                )
            )
        except BaseException:
            if upgrading is not None:
                upgrading.apply(upgrading.core.abort_upgrade())
            raise
        trailing, _closed = conn.h11.trailing_data
        ws = WebSocket(conn.stream, trailing, self.config.max_payload, self.config.http_timeout_s)
        try:
            if refusal is not None:
                log.info("websocket for session %s closed: %s", sid, refusal)
                await ws.close(CLOSE_PROTOCOL_ERROR, "session cannot be upgraded")
            elif upgrading is None:
                try:
                    sock = self._new_session(request, WEBSOCKET)
                except _Refusal:  # filled up while we were answering the handshake
                    await ws.close(CLOSE_TRY_AGAIN_LATER, "server full")
                    return
                with trio.move_on_after(self.config.http_timeout_s) as opening:
                    await ws.send_many([encode_packet(sock.core.open_packet())])
                if opening.cancelled_caught:
                    sock.close_now(CloseReason.TRANSPORT_ERROR)
                    return
                await self._run_websocket(ws, sock)
            elif await self._probe(ws, upgrading):
                log.info("session %s upgraded to websocket", upgrading.sid)
                await self._run_websocket(ws, upgrading)
        except (trio.BrokenResourceError, trio.ClosedResourceError, MessageTooBig):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await ws.close()
            await conn.linger_close()

    async def _probe(self, ws: WebSocket, sock: ServerSocket) -> bool:
        """Run the upgrade handshake on a new WebSocket; True once ``5`` arrived."""
        upgraded = False
        try:
            with trio.move_on_after(self.config.upgrade_timeout_ms / 1000):
                async with trio.open_nursery() as nursery:

                    async def stop_on_close() -> None:
                        await sock.closed_event.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(stop_on_close)
                    upgraded = await self._probe_loop(ws, sock)
                    nursery.cancel_scope.cancel()
        except MessageTooBig:
            pass
        if not upgraded:
            sock.apply(sock.core.abort_upgrade())
            await ws.close(CLOSE_PROTOCOL_ERROR)
        return upgraded

    async def _probe_loop(self, ws: WebSocket, sock: ServerSocket) -> bool:
        while True:
            frame = await ws.receive()
            if frame is None:
                return False
            try:
                events = sock.core.receive_upgrade(decode_packet(frame), trio.current_time())
            except ProtocolError as exc:
                log.info("session %s: upgrade refused: %s", sock.sid, exc)
                return False
            for event in events:
                if isinstance(event, Pong):
                    await ws.send_many([encode_packet(Packet(PacketType.PONG, event.data))])
                elif isinstance(event, Upgrade):
                    sock.apply([event])
                    return True
            sock.apply(events)

    async def _run_websocket(self, ws: WebSocket, sock: ServerSocket) -> None:
        """Carry a session over a WebSocket until either side ends it."""
        async with trio.open_nursery() as nursery:

            def hand_off() -> None:
                nursery.start_soon(read)

            async def read() -> None:
                # One task reads at a time. Work the layer above runs inline on
                # it may block; then a new reader takes over and this one ends
                # once that work is done.
                reason = CloseReason.TRANSPORT_CLOSE
                scope = trio.CancelScope()  # once per reader task
                try:
                    with scope:
                        while True:
                            frame = await ws.receive()
                            if frame is None:
                                break
                            packets = [decode_packet(frame)]
                            if not await self._feed(sock, packets, hand_off, scope):
                                return
                except RemoteProtocolError as exc:
                    log.info("session %s: protocol error: %s", sock.sid, exc)
                    reason = CloseReason.PARSE_ERROR
                except MessageTooBig:
                    reason = CloseReason.TRANSPORT_ERROR
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    reason = CloseReason.TRANSPORT_ERROR
                if scope.cancelled_caught:
                    return  # the layer above cancelled work it ran inline here
                sock.close_now(reason)

            async def watchdog() -> None:
                # Bounds every write without a deadline per message: a write
                # stuck on a peer that does not read, or the final flush after
                # the session closed, is cut off after the write timeout.
                timeout = self.config.http_timeout_s
                closed_at: float | None = None
                while True:
                    with trio.move_on_after(min(timeout / 4, 1.0)):
                        await sock.closed_event.wait()
                    now = trio.current_time()
                    if ws.write_stalled(now):
                        log.info("session %s: websocket write stalled", sock.sid)
                        sock.close_now(CloseReason.TRANSPORT_ERROR)
                        nursery.cancel_scope.cancel()
                        return
                    if sock.core.closed:
                        closed_at = now if closed_at is None else closed_at
                        if now - closed_at >= _CLOSE_FLUSH_S:
                            nursery.cancel_scope.cancel()
                            return
                        await trio.sleep(_CLOSE_FLUSH_S)

            nursery.start_soon(read)
            nursery.start_soon(watchdog)
            ws.on_pending = sock.notify
            ws.answers_pending = sock.answers_pending
            sock.direct = functools.partial(self._write_through, ws, sock.sid)
            try:
                await self._write_websocket(ws, sock)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                sock.close_now(CloseReason.TRANSPORT_ERROR)
            finally:
                sock.direct = None
                ws.on_pending = None
                ws.answers_pending = None
            nursery.cancel_scope.cancel()

    @staticmethod
    def _write_through(ws: WebSocket, sid: str, message: str | bytes) -> bool:
        """Send a message from the caller's task, skipping the writer task when idle."""
        if ws.try_send_now("4" + message if isinstance(message, str) else message):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %r", sid, message)
            return True
        return False

    async def _write_websocket(self, ws: WebSocket, sock: ServerSocket) -> None:
        """Send what the session queues (and write-through leftovers) until it is closed."""
        while True:
            if ws.has_pending:
                await ws.flush()
                continue
            packets = sock.take_nowait()
            if packets:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s -> %r", sock.sid, packets)
                await ws.send_many([encode_packet(p) for p in packets])
            elif sock.core.closed:
                return
            else:
                await sock.wait_changed()
