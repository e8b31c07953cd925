"""Our SocketIOClient: against our own server in-process, and against python-socketio."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from protocol.client import SocketIOClient
from protocol.engineio.config import EngineIOConfig
from protocol.server import ConnectRefused, Disconnected, ServerConfig, SocketIOServer
from protocol.transport import RequestInfo
from tests.drivers_http.harness import unused_port
from tests.socketio.subprocesses import HERE, PYTHON, child

FAST = ServerConfig(engineio=EngineIOConfig(ping_interval_ms=500, ping_timeout_ms=500))


def fast_client(port: int, **options: Any) -> SocketIOClient:
    options.setdefault("backoff_initial_s", 0.05)
    options.setdefault("backoff_max_s", 0.2)
    return SocketIOClient(f"http://127.0.0.1:{port}", **options)


@asynccontextmanager
async def serving(server: SocketIOServer, port: int = 0) -> AsyncIterator[tuple[int, trio.Nursery]]:
    async with trio.open_nursery() as nursery:
        _, bound = await nursery.start(partial(server.serve, "127.0.0.1", port))
        yield bound, nursery
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def running(client: SocketIOClient) -> AsyncIterator[SocketIOClient]:
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()


async def set_event(event: trio.Event) -> None:
    event.set()


# ------------------------------------------------------------------ against our server


async def test_client_calls_and_emits_with_acks_and_binary_against_our_server() -> None:
    server = SocketIOServer(FAST)
    received: list[tuple[Any, ...]] = []

    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    async def note(sid: str, *args: Any) -> None:
        received.append(args)

    server.on("echo", echo)
    server.on("note", note)
    async with serving(server) as (port, _), running(fast_client(port)) as client:
        await client.wait_connected(5)
        assert client.connected
        assert await client.call("echo", "a", {"b": [1]}, timeout=5) == ["a", {"b": [1]}]
        assert await client.call("echo", b"\x00\x01", timeout=5) == [b"\x00\x01"]
        await client.emit("note", 42)
        assert await client.call("echo", timeout=5) == []
        assert received == [(42,)]


async def test_server_calls_into_the_client_and_gets_its_handlers_ack() -> None:
    server = SocketIOServer(FAST)
    sids: list[str] = []

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        assert auth == {"token": "t"}
        sids.append(sid)

    server.on_connect(on_connect)

    async def question(*args: Any) -> tuple[Any, ...]:
        return ("answer", *args)

    async with serving(server) as (port, _):
        client = fast_client(port, auth={"token": "t"})
        client.on("question", question)
        async with running(client):
            await client.wait_connected(5)
            result = await server.call("question", b"\x07", to=sids[0], timeout=5)
            assert result == ["answer", b"\x07"]


async def test_client_hooks_see_connect_and_the_server_side_disconnect_reason() -> None:
    server = SocketIOServer(FAST)
    sids: list[str] = []
    events: list[str] = []
    gone = trio.Event()

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        sids.append(sid)

    async def client_connected() -> None:
        events.append("connect")

    async def client_disconnected(reason: str) -> None:
        events.append(reason)
        gone.set()

    server.on_connect(on_connect)
    async with serving(server) as (port, _):
        client = fast_client(port, reconnect=False)
        client.on_connect(client_connected)
        client.on_disconnect(client_disconnected)
        async with running(client):
            await client.wait_connected(5)
            await server.disconnect(sids[0])
            with trio.fail_after(5):
                await gone.wait()
            assert events == ["connect", "io server disconnect"]
            assert not client.connected
            with pytest.raises(Disconnected):
                await client.emit("anything")


async def test_a_refused_client_keeps_retrying_until_the_server_lets_it_in() -> None:
    server = SocketIOServer(FAST)
    attempts = 0

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectRefused("busy")

    server.on_connect(on_connect)
    async with serving(server) as (port, _), running(fast_client(port)) as client:
        await client.wait_connected(5)
        assert attempts == 3


async def test_client_reconnects_after_our_server_restarts_on_the_same_port() -> None:
    server = SocketIOServer(FAST)
    connects = 0

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        nonlocal connects
        connects += 1

    server.on_connect(on_connect)

    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    server.on("echo", echo)
    client: SocketIOClient | None = None
    async with trio.open_nursery() as outer:
        async with serving(server) as (port, _):
            client = fast_client(port)
            lost = trio.Event()
            client.on_disconnect(lambda reason: set_event(lost))
            await outer.start(client.run)
            await client.wait_connected(5)
        # The server is gone; the client notices and retries with backoff.
        with trio.fail_after(5):
            await lost.wait()
        assert not client.connected
        async with serving(server, port):
            await client.wait_connected(5)
            assert await client.call("echo", "again", timeout=5) == ["again"]
        outer.cancel_scope.cancel()
    assert connects == 2


async def test_wait_connected_times_out_when_nothing_listens() -> None:
    port = unused_port()
    async with running(fast_client(port)) as client:
        with pytest.raises(trio.TooSlowError):
            await client.wait_connected(0.3)
        with pytest.raises(Disconnected):
            await client.call("x", timeout=1)


async def first_connect_failure(url: str, caplog: pytest.LogCaptureFixture) -> str:
    """What the client logged after "cannot connect to URL: " on its one attempt."""
    with caplog.at_level(logging.WARNING, logger="protocol.client"), trio.fail_after(30):
        await SocketIOClient(url, reconnect=False, connect_timeout_s=10).run()
    (line,) = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert line.startswith("cannot connect to ws://"), line
    return line.split(": ", 1)[1]


async def test_a_connection_refused_by_the_host_is_logged_with_that_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = unused_port()
    reason = await first_connect_failure(f"http://127.0.0.1:{port}", caplog)
    assert "Connection refused" in reason, reason


async def test_a_name_that_does_not_resolve_is_logged_with_the_resolvers_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(OSError) as resolving:  # .invalid never resolves (RFC 6761)
        await trio.socket.getaddrinfo("proxy.invalid", 3000)
    words = resolving.value.strerror
    assert words
    assert await first_connect_failure("http://proxy.invalid:3000", caplog) == words


async def test_a_websocket_the_server_refuses_is_logged_with_its_status_and_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = SocketIOServer(FAST, check_request=lambda request: "Go away.")
    async with serving(server) as (port, _):
        reason = await first_connect_failure(f"http://127.0.0.1:{port}", caplog)
    assert reason == "the server refused the WebSocket (HTTP 403: Go away.)"


def test_client_rejects_a_url_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        SocketIOClient("ftp://example")
    with pytest.raises(ValueError, match="auth"):
        SocketIOClient("http://127.0.0.1:1", auth=["not", "a", "dict"])


# ------------------------------------------------------------------ against python-socketio


async def test_client_against_python_socketio_server_with_acks_binary_and_reconnect() -> None:
    script = str(HERE / "py" / "psio_server.py")
    welcomes: list[Any] = []
    echoed = trio.Event()
    echoed_args: list[Any] = []

    async def welcome(auth: Any) -> None:
        welcomes.append(auth)

    async def on_echoed(args: Any) -> None:
        echoed_args.append(args)
        echoed.set()

    async def question(text: str) -> str:
        return text.upper()

    async with child([PYTHON, script]) as upstream:
        port = int(await upstream.wait_for_line("PORT"))
        client = fast_client(port, auth={"rig": "A"})
        client.on("welcome", welcome)
        client.on("echoed", on_echoed)
        client.on("question", question)
        lost = trio.Event()
        client.on_disconnect(lambda reason: set_event(lost))
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            await client.wait_connected(10)
            assert await client.call("echo", "x", 1, timeout=5) == ["x", 1]
            assert await client.call("echo", b"\x01\x02", timeout=5) == [b"\x01\x02"]
            assert await client.call("ask_client", "hi", timeout=5) == ["HI"]
            await client.emit("echo_back", b"\xff", "s")
            with trio.fail_after(5):
                await echoed.wait()
            assert echoed_args == [[b"\xff", "s"]]
            assert welcomes == [{"rig": "A"}]

            # The upstream server dies and comes back on the same port.
            upstream.process.kill()
            with trio.fail_after(5):
                await lost.wait()
            async with child([PYTHON, script, str(port)]) as again:
                await again.wait_for_line("PORT")
                await client.wait_connected(10)
                assert await client.call("echo", "back", timeout=5) == ["back"]
                assert welcomes == [{"rig": "A"}, {"rig": "A"}]
            nursery.cancel_scope.cancel()


async def test_client_joins_a_custom_namespace() -> None:
    server = SocketIOServer(ServerConfig(namespaces=("/admin",)))

    async def whoami(sid: str) -> str:
        return "admin"

    server.on("whoami", whoami, namespace="/admin")
    async with (
        serving(server) as (port, _),
        running(fast_client(port, namespace="/admin")) as client,
    ):
        await client.wait_connected(5)
        assert await client.call("whoami", timeout=5) == ["admin"]


# ------------------------------------------------------------------ against a scripted server


@asynccontextmanager
async def scripted_server(
    script: Callable[[WebSocketConnection], Awaitable[None]],
) -> AsyncIterator[int]:
    """A bare WebSocket server that plays ``script`` to each connecting client."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            await script(ws)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, handler, "127.0.0.1", 0, None))
        yield server.port
        nursery.cancel_scope.cancel()


async def open_and_accept(ws: WebSocketConnection, ping_ms: int = 100) -> None:
    handshake = {"sid": "s", "upgrades": [], "pingInterval": ping_ms, "pingTimeout": ping_ms}
    await ws.send_message("0" + json.dumps(handshake))
    assert await ws.get_message() == "40"
    await ws.send_message('40{"sid":"x"}')


@pytest.mark.parametrize(
    ("after_connect", "reason"),
    [
        ([], "ping timeout"),  # the server goes silent
        (["4abc"], "parse error"),
        (["1"], "transport close"),  # Engine.IO close
        (["41"], "io server disconnect"),
    ],
)
async def test_client_reports_why_the_connection_ended(
    after_connect: list[str], reason: str
) -> None:
    async def script(ws: WebSocketConnection) -> None:
        await open_and_accept(ws)
        for frame in after_connect:
            await ws.send_message(frame)
        await trio.sleep_forever()

    reasons: list[str] = []
    gone = trio.Event()

    async def on_disconnect(why: str) -> None:
        reasons.append(why)
        gone.set()

    async with scripted_server(script) as port:
        client = fast_client(port, reconnect=False)
        client.on_disconnect(on_disconnect)
        async with running(client):
            with trio.fail_after(5):
                await gone.wait()
    assert reasons == [reason]


async def test_client_answers_pings_and_buffers_events_sent_before_the_connect_answer() -> None:
    pongs: list[str | bytes] = []
    got_event = trio.Event()
    got_pong = trio.Event()

    async def script(ws: WebSocketConnection) -> None:
        handshake = {"sid": "s", "upgrades": [], "pingInterval": 100, "pingTimeout": 100}
        await ws.send_message("0" + json.dumps(handshake))
        assert await ws.get_message() == '40{"k":1}'
        await ws.send_message('42["early",1]')
        await ws.send_message('40{"sid":"x"}')
        await ws.send_message("2")
        pongs.append(await ws.get_message())
        got_pong.set()
        await trio.sleep_forever()

    async def early(value: int) -> None:
        assert value == 1
        got_event.set()

    async with scripted_server(script) as port:
        client = fast_client(port, auth={"k": 1})
        client.on("early", early)
        async with running(client):
            with trio.fail_after(5):
                await got_event.wait()
                await got_pong.wait()
            assert client.sid == "x"
    assert pongs == ["3"]
