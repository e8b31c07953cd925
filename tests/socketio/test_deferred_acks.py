"""A handler may return a Deferred; the ack goes out when another task resolves it.

Checked over real sockets (WebSocket and long-polling): the ack carries the
resolved value, the handler's slot is free at once (a later event is answered
first), a Deferred resolved after its client left costs nothing, and a
failing callback never reaches the resolving task.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio

from protocol.engineio.socket import ServerSocket
from protocol.server import Deferred, ServerConfig, SocketIOServer
from tests.socketio.raw import RawSocket, http_client, open_polling_session, raw_socket

STEP_S = 5.0


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


class Pending:
    """The Deferreds handed out by ``later``, and a wake-up for each new one."""

    def __init__(self) -> None:
        self.deferreds: list[Deferred[str]] = []
        self.arrived = trio.Event()
        self.left = trio.Event()

    async def first(self) -> Deferred[str]:
        with trio.fail_after(STEP_S):
            await self.arrived.wait()
        return self.deferreds[0]


def _server(pending: Pending) -> SocketIOServer:
    """``later`` returns a Deferred the test resolves; ``now`` answers at once."""
    server = SocketIOServer(ServerConfig(max_concurrent_handlers=1))

    async def later(sid: str) -> Deferred[str]:
        answer: Deferred[str] = Deferred()
        pending.deferreds.append(answer)
        pending.arrived.set()
        return answer

    async def left(sid: str, reason: str) -> None:
        pending.left.set()

    server.on_disconnect(left)

    async def now(sid: str) -> str:
        return "now"

    server.on("later", later)
    server.on("now", now)
    return server


async def _port(server: SocketIOServer, nursery: trio.Nursery) -> int:
    _host, port = await nursery.start(server.serve, "127.0.0.1", 0)
    return int(port)


async def _ask_later(sock: RawSocket, pending: Pending) -> Deferred[str]:
    """Join, send ``later`` with ack id 1, and return the Deferred its handler gave."""
    await sock.handshake()
    await sock.join()
    await sock.send('421["later"]')
    return await pending.first()


async def test_a_deferred_ack_is_sent_when_another_task_resolves_it_over_websocket(
    nursery: trio.Nursery,
) -> None:
    pending = Pending()
    server = _server(pending)
    port = await _port(server, nursery)
    async with raw_socket(port) as sock:
        deferred = await _ask_later(sock, pending)
        sockets = [member.client.eio for member in server._members.values()]
        assert [eio.answers_pending() for eio in sockets if isinstance(eio, ServerSocket)] == [True]
        # With one handler slot, this is only answered if "later" freed it.
        await sock.send('422["now"]')
        with trio.fail_after(STEP_S):
            assert await sock.recv() == '432["now"]'

        async def resolver() -> None:
            deferred.resolve("resolved elsewhere")

        nursery.start_soon(resolver)
        with trio.fail_after(STEP_S):
            assert await sock.recv() == '431["resolved elsewhere"]'
        # Answered: the reader no longer yields to it before waiting for data.
        sockets = [member.client.eio for member in server._members.values()]
        assert [eio.answers_pending() for eio in sockets if isinstance(eio, ServerSocket)] == [
            False
        ]


async def test_a_deferred_ack_reaches_a_long_polling_client(nursery: trio.Nursery) -> None:
    pending = Pending()
    port = await _port(_server(pending), nursery)
    async with http_client(port) as http:
        sid = await open_polling_session(http)
        params = {"EIO": "4", "transport": "polling", "sid": sid}
        assert (await http.post("/socket.io/", params=params, content="40")).text == "ok"
        joined = await http.get("/socket.io/", params=params)
        assert joined.text.startswith("40{")
        assert (await http.post("/socket.io/", params=params, content='427["later"]')).text == "ok"
        deferred = await pending.first()
        deferred.resolve("via the outbox")
        polled = await http.get("/socket.io/", params=params)
        assert polled.text == '437["via the outbox"]'


async def test_a_deferred_resolved_after_its_client_left_is_dropped_quietly(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    pending = Pending()
    server = _server(pending)
    port = await _port(server, nursery)
    async with raw_socket(port) as sock:
        deferred = await _ask_later(sock, pending)
    with trio.fail_after(STEP_S):
        await pending.left.wait()
    with caplog.at_level(logging.DEBUG, logger="protocol"):
        deferred.resolve("too late")  # must not raise, nor break the server
    assert "left before its 'later' ack was ready" in caplog.text
    assert "callback failed" not in caplog.text
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.join()
        await sock.send('421["now"]')
        with trio.fail_after(STEP_S):
            assert await sock.recv() == '431["now"]'


def test_a_failing_callback_is_logged_and_not_raised_into_the_resolver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer: Deferred[int] = Deferred()
    seen: list[int] = []

    def broken(value: int) -> None:
        seen.append(value)
        raise RuntimeError("client side bug")

    answer.on_resolved(broken)
    with caplog.at_level(logging.ERROR):
        answer.resolve(7)
        answer.resolve(8)  # the first answer wins; later ones are ignored
    assert seen == [7]
    assert "a Deferred's callback failed" in caplog.text


async def test_a_deferred_can_be_awaited_and_given_its_callback_after_resolving() -> None:
    answer: Deferred[str] = Deferred()
    got: list[str] = []
    async with trio.open_nursery() as nursery:

        async def waiter() -> None:
            got.append(await answer.wait())

        nursery.start_soon(waiter)
        await trio.sleep(0.01)
        answer.resolve("x")
    answer.on_resolved(got.append)
    assert got == ["x", "x"]
