"""Events and acks dispatched straight from the WebSocket reader keep the server's guarantees.

Over a real Engine.IO session, plain EVENTs and ACKs skip the receive loop
(see ``SocketIOServer._receive_now``); these tests check over real sockets
that order, concurrency, the handler bound and error handling are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.lowlevel

from protocol.server import ServerConfig, SocketIOServer
from tests.socketio.raw import RawSocket, raw_socket


async def _serve(server: SocketIOServer, nursery: trio.Nursery) -> int:
    _host, port = await nursery.start(server.serve, "127.0.0.1", 0)
    return int(port)


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def _joined(sock: RawSocket) -> str:
    await sock.handshake()
    return await sock.join()


async def test_an_event_sent_while_the_connected_hook_runs_waits_for_it(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig())
    hooks_done: list[str] = []

    async def on_connected(sid: str) -> None:
        await trio.sleep(0.05)
        hooks_done.append(sid)

    async def ping(sid: str) -> str:
        return "after the hooks" if sid in hooks_done else "too early"

    server.on_connected(on_connected)
    server.on("ping", ping)
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.send("40")
        answer = await sock.recv()
        assert isinstance(answer, str) and answer.startswith("40{")
        await sock.send('421["ping"]')  # while the connected hook still runs
        assert await sock.recv() == '431["after the hooks"]'


async def test_a_slow_handler_does_not_delay_stop_over_a_websocket(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig())
    release = trio.Event()

    async def move(sid: str) -> str:
        await release.wait()
        return "moved"

    async def stop(sid: str) -> str:
        release.set()
        return "stopped"

    server.on("move", move)
    server.on("stop", stop)
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await _joined(sock)
        await sock.send('421["move"]')
        await sock.send('422["stop"]')
        assert await sock.recv() == '432["stopped"]'
        assert await sock.recv() == '431["moved"]'


async def test_events_beyond_the_handler_bound_wait_and_are_all_answered_in_time(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig(max_concurrent_handlers=2))
    running = 0
    peak = 0
    release = trio.Event()

    async def slow(sid: str, n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return n

    server.on("slow", slow)
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await _joined(sock)
        for i in range(6):
            await sock.send(f'42{i}["slow",{i}]')
        await trio.sleep(0.05)
        assert running == 2
        release.set()
        acks = {await sock.recv() for _ in range(6)}
        assert acks == {f"43{i}[{i}]" for i in range(6)}
        assert peak == 2


async def test_a_malformed_event_still_closes_the_session_with_parse_error(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig())
    reasons: list[str] = []
    left = trio.Event()

    async def on_disconnect(sid: str, reason: str) -> None:
        reasons.append(reason)
        left.set()

    server.on_disconnect(on_disconnect)
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await _joined(sock)
        await sock.send('42["ping",')  # cut short
        await sock.wait_closed()
    with trio.fail_after(2):
        await left.wait()
    assert reasons == ["parse error"]


async def test_an_event_for_a_namespace_not_joined_closes_the_session(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig(namespaces=("/", "/admin")))
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await _joined(sock)
        await sock.send('42/admin,["ping"]')
        await sock.wait_closed()


async def test_a_client_ack_resolves_the_servers_call(nursery: trio.Nursery) -> None:
    server = SocketIOServer(ServerConfig())
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        sid = await _joined(sock)
        async with trio.open_nursery() as inner:
            result: list[Any] = []

            async def call() -> None:
                result.append(await server.call("hello", 1, to=sid, timeout=2))

            inner.start_soon(call)
            request = await sock.recv()
            assert isinstance(request, str) and request.startswith("42")
            ack_id = request[2 : request.index("[")]
            await sock.send(f"43{ack_id}" + json.dumps(["there"]))
        assert result == [["there"]]


async def test_binary_events_and_plain_events_interleave_in_order(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig())
    seen: list[Any] = []
    all_seen = trio.Event()

    async def record(sid: str, value: Any) -> None:
        seen.append(value)
        if len(seen) == 3:
            all_seen.set()

    server.on("record", record)
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await _joined(sock)
        await sock.send('42["record",1]')
        await sock.send('451-["record",{"_placeholder":true,"num":0}]')
        await sock.send(b"\x02")
        await sock.send('42["record",3]')
        with trio.fail_after(2):
            await all_seen.wait()
    assert seen == [1, b"\x02", 3]


async def test_a_blocked_handler_is_cancelled_before_the_disconnect_hook_runs(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig())
    log: list[str] = []
    hook_ran = trio.Event()
    started = trio.Event()

    async def move(sid: str) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.05)  # stopping the hardware takes a while
            log.append("move cancelled")

    async def on_disconnect(sid: str, reason: str) -> None:
        log.append("disconnect hook")
        hook_ran.set()

    server.on("move", move)
    server.on_disconnect(on_disconnect)
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await _joined(sock)
        for i in range(2):  # each blocks on the reader's task it started on
            await sock.send(f'42{i}["move"]')
        with trio.fail_after(2):
            await started.wait()
    with trio.fail_after(5):
        await hook_ran.wait()
    assert log == ["move cancelled"] * 2 + ["disconnect hook"]


async def test_quick_and_blocking_handlers_mixed_are_all_answered(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig())

    async def echo(sid: str, n: int) -> int:
        if n % 3 == 0:
            await trio.sleep(0.001 * (n % 5))
        return n

    server.on("echo", echo)
    port = await _serve(server, nursery)
    async with raw_socket(port) as sock:
        await _joined(sock)
        for i in range(60):
            await sock.send(f'42{i}["echo",{i}]')
        acks = {await sock.recv() for _ in range(60)}
        assert acks == {f"43{i}[{i}]" for i in range(60)}


async def test_a_handler_that_only_sends_still_lets_other_tasks_run(
    nursery: trio.Nursery,
) -> None:
    server = SocketIOServer(ServerConfig())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.lowlevel.checkpoint()
            ticks += 1

    async def flood(sid: str) -> int:
        before = ticks
        for i in range(200):  # write-through never waits on the socket
            await server.emit("item", i, to=sid)
        return ticks - before

    server.on("flood", flood)
    port = await _serve(server, nursery)
    nursery.start_soon(ticker)
    async with raw_socket(port) as sock:
        await _joined(sock)
        await sock.send('421["flood"]')
        for i in range(200):
            assert await sock.recv() == f'42["item",{i}]'
        answer = await sock.recv()
    assert isinstance(answer, str) and answer.startswith("431[")
    assert int(answer[4:-1]) > 0
