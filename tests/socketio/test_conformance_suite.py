"""Every check of the official socket.io-protocol test suite, against our conformance server.

Each test mirrors one ``it(...)`` of socketio/socket.io-protocol
``test-suite/test-suite.js`` (32 in all: 16 Engine.IO-level, 16 Socket.IO-level),
written afresh with trio-websocket and httpx. The server runs in-process on an
ephemeral port with the suite's timers (ping 300/200 ms, connect timeout 1 s).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial

import msgspec
import pytest
import trio

from protocol.conformance.socketio_server import AUTH_ECHO_DELAY_S, CONFIG, build_server
from tests.socketio.raw import (
    STEP_S,
    connected_socket,
    http_client,
    open_polling_session,
    raw_socket,
)

PING_INTERVAL_MS = 300
PING_TIMEOUT_MS = 200
HANDSHAKE_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        _, bound = await nursery.start(partial(build_server().serve, "127.0.0.1", 0))
        yield bound
        nursery.cancel_scope.cancel()


@pytest.fixture
async def heartbeat_port() -> AsyncIterator[int]:
    """The suite's server, but with a connect timeout the heartbeat checks cannot race.

    Three 300 ms ping rounds end just before the 1 s connect timeout; on a busy
    machine that margin is too thin for a deterministic test of the heartbeat.
    """
    config = msgspec.structs.replace(CONFIG, connect_timeout_ms=10_000)
    async with trio.open_nursery() as nursery:
        _, bound = await nursery.start(partial(build_server(config).serve, "127.0.0.1", 0))
        yield bound
        nursery.cancel_scope.cancel()


def polling(sid: str | None = None) -> dict[str, str]:
    params = {"EIO": "4", "transport": "polling"}
    if sid is not None:
        params["sid"] = sid
    return params


# ============================================================== Engine.IO: handshake


async def test_polling_handshake_opens_a_session_with_exactly_the_five_fields(port: int) -> None:
    async with http_client(port) as http:
        response = await http.get("/socket.io/", params=polling())
    assert response.status_code == 200
    assert response.text.startswith("0")
    value = json.loads(response.text[1:])
    assert set(value) == HANDSHAKE_KEYS
    assert isinstance(value["sid"], str)
    assert value["upgrades"] == ["websocket"]
    assert (value["pingInterval"], value["pingTimeout"]) == (PING_INTERVAL_MS, PING_TIMEOUT_MS)
    assert value["maxPayload"] == 1_000_000


@pytest.mark.parametrize(
    "query", [{"transport": "polling"}, {"EIO": "abc", "transport": "polling"}]
)
async def test_polling_handshake_fails_with_a_missing_or_invalid_eio(
    port: int, query: dict[str, str]
) -> None:
    async with http_client(port) as http:
        assert (await http.get("/socket.io/", params=query)).status_code == 400


@pytest.mark.parametrize("query", [{"EIO": "4"}, {"EIO": "4", "transport": "abc"}])
async def test_polling_handshake_fails_with_a_missing_or_unknown_transport(
    port: int, query: dict[str, str]
) -> None:
    async with http_client(port) as http:
        assert (await http.get("/socket.io/", params=query)).status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_polling_handshake_fails_with_post_or_put_without_a_session(
    port: int, method: str
) -> None:
    async with http_client(port) as http:
        response = await http.request(method, "/socket.io/", params=polling())
    assert response.status_code == 400


async def test_websocket_handshake_opens_a_session_without_upgrades(port: int) -> None:
    async with raw_socket(port) as sock:
        value = await sock.handshake()
    assert set(value) == HANDSHAKE_KEYS
    assert isinstance(value["sid"], str)
    assert value["upgrades"] == []
    assert (value["pingInterval"], value["pingTimeout"]) == (PING_INTERVAL_MS, PING_TIMEOUT_MS)
    assert value["maxPayload"] == 1_000_000


@pytest.mark.parametrize(
    "query", ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4", "EIO=4&transport=abc"]
)
async def test_websocket_with_invalid_eio_or_transport_is_refused_or_closed(
    port: int, query: str
) -> None:
    # The suite only requires that such a socket ends: refused at the HTTP
    # upgrade, or closed right after it.
    try:
        async with raw_socket(port, query) as sock:
            await sock.wait_closed()
    except Exception as exc:  # trio-websocket reports a refused upgrade as an error
        assert "400" in repr(exc) or "reject" in repr(exc).lower() or isinstance(exc, OSError)


# ============================================================== Engine.IO: heartbeat


async def test_polling_session_is_pinged_every_interval_and_answered_pongs_keep_it(
    heartbeat_port: int,
) -> None:
    async with http_client(heartbeat_port) as http:
        sid = await open_polling_session(http)
        for _ in range(3):
            poll = await http.get("/socket.io/", params=polling(sid))
            assert (poll.status_code, poll.text) == (200, "2")
            push = await http.post("/socket.io/", params=polling(sid), content=b"3")
            assert push.status_code == 200


async def test_polling_session_without_pong_is_closed_after_ping_timeout(port: int) -> None:
    async with http_client(port) as http:
        sid = await open_polling_session(http)
        # The suite sleeps exactly interval + timeout; leave room for a busy machine.
        await trio.sleep((PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000 + 0.3)
        poll = await http.get("/socket.io/", params=polling(sid))
    assert poll.status_code == 400


async def test_websocket_session_is_pinged_every_interval(heartbeat_port: int) -> None:
    async with raw_socket(heartbeat_port) as sock:
        await sock.handshake()
        for _ in range(3):
            assert await sock.recv() == "2"
            await sock.send("3")


async def test_websocket_session_without_pong_is_closed(port: int) -> None:
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.wait_closed(within=STEP_S)


# ============================================================== Engine.IO: close


async def test_polling_close_packet_releases_the_pending_poll_with_noop_and_ends_the_session(
    port: int,
) -> None:
    async with http_client(port) as http:
        sid = await open_polling_session(http)
        results: dict[str, tuple[int, str]] = {}

        async def poll() -> None:
            response = await http.get("/socket.io/", params=polling(sid))
            results["poll"] = (response.status_code, response.text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.05)
            push = await http.post("/socket.io/", params=polling(sid), content=b"1")
            assert push.status_code == 200
        assert results["poll"] == (200, "6")
        after = await http.get("/socket.io/", params=polling(sid))
    assert after.status_code == 400


async def test_websocket_close_packet_closes_the_connection(port: int) -> None:
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.send("1")
        await sock.wait_closed()


# ============================================================== Engine.IO: upgrade


async def test_polling_session_upgrades_to_websocket_with_probe(port: int) -> None:
    async with http_client(port) as http:
        sid = await open_polling_session(http)
        async with raw_socket(port, f"EIO=4&transport=websocket&sid={sid}") as sock:
            await sock.send("2probe")
            assert await sock.recv() == "3probe"
            await sock.send("5")


async def test_polling_requests_on_an_upgraded_session_fail(port: int) -> None:
    async with http_client(port) as http:
        sid = await open_polling_session(http)
        async with raw_socket(port, f"EIO=4&transport=websocket&sid={sid}") as sock:
            await sock.send("2probe")
            await sock.send("5")
            assert await sock.recv() == "3probe"
            await trio.sleep(0.05)
            poll = await http.get("/socket.io/", params=polling(sid))
    assert poll.status_code == 400


async def test_a_second_websocket_on_an_upgraded_sid_is_closed(port: int) -> None:
    async with http_client(port) as http:
        sid = await open_polling_session(http)
        query = f"EIO=4&transport=websocket&sid={sid}"
        async with raw_socket(port, query) as sock:
            await sock.send("2probe")
            await sock.send("5")
            assert await sock.recv() == "3probe"
            await trio.sleep(0.05)
            try:
                async with raw_socket(port, query) as second:
                    await second.wait_closed()
            except Exception as exc:
                assert "400" in repr(exc) or isinstance(exc, OSError)


# ============================================================== Socket.IO: connect


@pytest.mark.parametrize(
    ("connect", "prefix", "auth"),
    [
        ("40", "40", '42["auth",{}]'),
        ('40{"token":"123"}', "40", '42["auth",{"token":"123"}]'),
        ("40/custom,", "40/custom,", '42/custom,["auth",{}]'),
        ('40/custom,{"token":"abc"}', "40/custom,", '42/custom,["auth",{"token":"abc"}]'),
    ],
    ids=["main", "main-with-payload", "custom", "custom-with-payload"],
)
async def test_connect_is_answered_with_only_a_sid_then_the_auth_payload_is_echoed(
    port: int, connect: str, prefix: str, auth: str
) -> None:
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.send(connect)
        answer = await sock.recv()
        assert isinstance(answer, str) and answer.startswith(prefix)
        handshake = json.loads(answer[len(prefix) :])
        assert set(handshake) == {"sid"} and isinstance(handshake["sid"], str)
        assert await sock.recv() == auth


async def test_the_auth_echo_is_written_apart_from_the_connect_answer(port: int) -> None:
    # The suite's Node.js harness loses the second of two frames read together.
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.send("40")
        await sock.recv()
        answered = trio.current_time()
        assert await sock.recv() == '42["auth",{}]'
        assert trio.current_time() - answered >= AUTH_ECHO_DELAY_S / 2


async def test_connect_to_an_unknown_namespace_is_refused_with_invalid_namespace(
    port: int,
) -> None:
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.send("40/random")
        assert await sock.recv_packet() == '44/random,{"message":"Invalid namespace"}'


async def test_an_invalid_handshake_closes_the_connection(port: int) -> None:
    async with raw_socket(port) as sock:
        await sock.handshake()
        await sock.send("4abc")
        await sock.wait_closed()


async def test_a_connection_that_never_connects_is_closed_by_the_connect_timeout(
    port: int,
) -> None:
    async with raw_socket(port) as sock:
        await sock.handshake()
        # Answer pings so only the 1 s connect timeout can close it.
        started = trio.current_time()
        with trio.fail_after(STEP_S):
            while (message := await sock.recv_or_close()) is not None:
                assert message in ("2", "1")  # pings, then possibly a CLOSE packet
                if message == "2":
                    await sock.send("3")
        assert trio.current_time() - started >= 0.9


# ============================================================== Socket.IO: disconnect


async def test_disconnect_from_the_main_namespace_keeps_the_engineio_session(port: int) -> None:
    async with connected_socket(port) as sock:
        await sock.send("41")
        assert await sock.recv() == "2"


async def test_leaving_a_custom_namespace_keeps_the_main_one_working(port: int) -> None:
    async with connected_socket(port) as sock:
        await sock.send("40/custom")
        answer = await sock.recv_packet()
        assert isinstance(answer, str) and answer.startswith("40/custom,")
        assert await sock.recv_packet() == '42/custom,["auth",{}]'
        await sock.send("41/custom")
        await sock.send('42["message","message to main namespace"]')
        assert await sock.recv_packet() == '42["message-back","message to main namespace"]'


# ============================================================== Socket.IO: message


async def test_a_plain_text_event_is_echoed_as_message_back(port: int) -> None:
    async with connected_socket(port) as sock:
        await sock.send('42["message",1,"2",{"3":[true]}]')
        assert await sock.recv_packet() == '42["message-back",1,"2",{"3":[true]}]'


async def test_a_binary_event_is_echoed_with_its_attachments(port: int) -> None:
    async with connected_socket(port) as sock:
        await sock.send(
            '452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
        )
        await sock.send(bytes([1, 2, 3]))
        await sock.send(bytes([4, 5, 6]))
        assert [await sock.recv_packet() for _ in range(3)] == [
            '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
            bytes([1, 2, 3]),
            bytes([4, 5, 6]),
        ]


async def test_a_plain_text_event_with_an_ack_is_acked_with_its_arguments(port: int) -> None:
    async with connected_socket(port) as sock:
        await sock.send('42456["message-with-ack",1,"2",{"3":[false]}]')
        assert await sock.recv_packet() == '43456[1,"2",{"3":[false]}]'


async def test_a_binary_event_with_an_ack_gets_a_binary_ack(port: int) -> None:
    async with connected_socket(port) as sock:
        await sock.send(
            '452-789["message-with-ack",{"_placeholder":true,"num":0},'
            '{"_placeholder":true,"num":1}]'
        )
        await sock.send(bytes([1, 2, 3]))
        await sock.send(bytes([4, 5, 6]))
        assert [await sock.recv_packet() for _ in range(3)] == [
            '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
            bytes([1, 2, 3]),
            bytes([4, 5, 6]),
        ]


@pytest.mark.parametrize(
    "bad",
    ["4abc", "42{}", '42abc["message-with-ack",1,"2",{"3":[false]}]'],
    ids=["unknown-packet-type", "invalid-payload", "invalid-ack-id"],
)
async def test_an_invalid_packet_closes_the_connection(port: int, bad: str) -> None:
    async with connected_socket(port) as sock:
        await sock.send(bad)
        await sock.wait_closed()
