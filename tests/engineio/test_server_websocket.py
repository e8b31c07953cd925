"""WebSocket transport against the real server: handshake, echo, heartbeat, close, limits."""

from __future__ import annotations

import json
import logging

import pytest
import trio

from protocol.engineio.config import EngineIOConfig
from protocol.transport import CloseReason, EngineIOSocket, SessionClosed
from tests.engineio.conftest import EIO, StartServer, closed_code, receive, refused_status


async def test_a_websocket_handshake_opens_a_session_with_no_upgrades(eio: EIO) -> None:
    async with eio.websocket() as ws:
        data = await receive(ws)
        assert isinstance(data, str)
        assert data.startswith("0")
        value = json.loads(data[1:])
        assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
        assert value["upgrades"] == []
        assert (value["pingInterval"], value["pingTimeout"], value["maxPayload"]) == (
            300,
            200,
            1000000,
        )


async def test_a_websocket_with_missing_or_invalid_eio_is_refused(eio: EIO) -> None:
    assert await refused_status(eio, "transport=websocket") == 400
    assert await refused_status(eio, "EIO=abc&transport=websocket") == 400


async def test_a_websocket_with_missing_or_invalid_transport_is_refused(eio: EIO) -> None:
    assert await refused_status(eio, "EIO=4") == 400
    assert await refused_status(eio, "EIO=4&transport=abc") == 400


async def test_a_websocket_with_an_unknown_sid_is_refused(eio: EIO) -> None:
    assert await refused_status(eio, "EIO=4&transport=websocket&sid=nope") == 400


async def test_a_text_message_is_echoed_over_websocket(eio: EIO) -> None:
    async with eio.websocket() as ws:
        await receive(ws)
        await ws.send_message("4hello")
        assert await receive(ws) == "4hello"


async def test_a_binary_message_is_echoed_as_a_binary_frame(eio: EIO) -> None:
    async with eio.websocket() as ws:
        await receive(ws)
        await ws.send_message(bytes([1, 2, 3, 4]))
        assert await receive(ws) == bytes([1, 2, 3, 4])


async def test_an_invalid_packet_closes_the_websocket(eio: EIO) -> None:
    async with eio.websocket() as ws:
        await receive(ws)
        await ws.send_message("abc")
        assert await closed_code(ws) is not None


async def test_the_server_pings_over_websocket_and_pongs_keep_the_session(eio: EIO) -> None:
    async with eio.websocket() as ws:
        await receive(ws)
        for _ in range(3):
            assert await receive(ws) == "2"
            await ws.send_message("3")
        await ws.send_message("4still here")
        assert await receive(ws) == "4still here"


async def test_no_pong_closes_the_websocket_after_ping_timeout(eio: EIO) -> None:
    async with eio.websocket() as ws:
        with trio.fail_after(2):
            assert await closed_code(ws) is not None


async def test_a_client_close_packet_closes_the_websocket(eio: EIO) -> None:
    async with eio.websocket() as ws:
        await receive(ws)
        await ws.send_message("1")
        assert await closed_code(ws) == 1000


async def test_a_message_over_max_payload_closes_the_websocket_with_1009(
    start_server: StartServer,
) -> None:
    eio = await start_server(
        EngineIOConfig(path="/engine.io/", max_payload=1000, cors_allowed_origins=None)
    )
    async with eio.websocket() as ws:
        await receive(ws)
        await ws.send_message("4" + "x" * 999)
        assert await receive(ws) == "4" + "x" * 999
        await ws.send_message(b"\x00" * 200_000)
        assert await closed_code(ws) == 1009
    assert (await eio.get("EIO=4&transport=polling")).status_code == 200


async def test_the_conformance_limit_of_one_megabyte_is_enforced_over_websocket(eio: EIO) -> None:
    async with eio.websocket() as ws:
        await receive(ws)
        await ws.send_message("4" + "y" * 1_000_000)
        assert await closed_code(ws) == 1009


async def test_a_peer_that_stops_reading_is_cut_off_after_the_write_timeout(
    start_server: StartServer,
) -> None:
    outcome: list[CloseReason] = []
    done = trio.Event()

    async def flood(socket: EngineIOSocket) -> None:
        try:
            while True:
                await socket.send(b"\x00" * 256_000)
        except SessionClosed as exc:
            outcome.append(exc.reason)
            done.set()

    config = EngineIOConfig(
        path="/engine.io/", ping_interval_ms=60_000, http_timeout_s=0.3, send_queue_size=4
    )
    eio = await start_server(config, flood)
    stream = await trio.open_tcp_stream("127.0.0.1", eio.port)
    await stream.send_all(
        b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with trio.fail_after(10):
        await done.wait()
    assert outcome == [CloseReason.TRANSPORT_ERROR]
    await stream.aclose()


async def test_a_burst_of_messages_arrives_complete_and_in_order(
    start_server: StartServer,
) -> None:
    sizes = [10, 200_000, 3, 70_000, 1, 300_000, 5] * 6

    async def burst(socket: EngineIOSocket) -> None:
        await socket.receive()  # start once the WebSocket writer is running
        for i, size in enumerate(sizes):
            if i % 2:
                await socket.send(bytes([i % 256]) * size)
            else:
                await socket.send(f"{i}:" + "m" * size)
        await trio.sleep_forever()

    config = EngineIOConfig(path="/engine.io/", ping_interval_ms=60_000)
    eio = await start_server(config, burst)
    async with eio.websocket(max_message_size=1 << 20) as ws:
        await receive(ws)
        await ws.send_message("4go")
        for i, size in enumerate(sizes):
            got = await receive(ws)
            if i % 2:
                assert got == bytes([i % 256]) * size, i
            else:
                assert got == f"4{i}:" + "m" * size, i


async def test_debug_logging_shows_wire_packets_both_ways(
    eio: EIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="protocol.engineio")
    async with eio.websocket() as ws:
        await receive(ws)
        await ws.send_message("4traced")
        assert await receive(ws) == "4traced"
    wire = [r.getMessage() for r in caplog.records if "traced" in r.getMessage()]
    assert any("<-" in line for line in wire)
    assert any("->" in line for line in wire)
