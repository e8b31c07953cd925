"""Polling -> WebSocket upgrade: probe, pending poll released with noop, polling dead after."""

from __future__ import annotations

import trio

from protocol.engineio.session import WEBSOCKET
from protocol.transport import EngineIOSocket, SessionClosed
from tests.engineio.conftest import EIO, StartServer, closed_code, receive


async def test_a_session_upgrades_and_the_next_poll_gets_a_noop(eio: EIO) -> None:
    sid = await eio.handshake()
    async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
        await ws.send_message("2probe")
        assert await receive(ws) == "3probe"
        poll = await eio.poll(sid)
        assert (poll.status_code, poll.text) == (200, "6")
        await ws.send_message("5")
        await ws.send_message("4hello")
        assert await receive(ws) == "4hello"


async def test_a_pending_poll_is_released_with_a_noop_when_the_probe_succeeds(eio: EIO) -> None:
    sid = await eio.handshake()
    polled: list[tuple[int, str]] = []

    async def poll() -> None:
        response = await eio.poll(sid)
        polled.append((response.status_code, response.text))

    async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.02)
            await ws.send_message("2probe")
            assert await receive(ws) == "3probe"
        assert polled == [(200, "6")]
        await ws.send_message("5")
        await ws.send_message("4after")
        assert await receive(ws) == "4after"


async def test_polling_requests_after_the_upgrade_are_400(eio: EIO) -> None:
    sid = await eio.handshake()
    async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
        await ws.send_message("2probe")
        await receive(ws)
        await ws.send_message("5")
        assert (await eio.poll(sid)).status_code == 400
        assert (await eio.push(sid, "4x")).status_code == 400
        await ws.send_message("4hello")
        assert await receive(ws) == "4hello"


async def test_a_second_websocket_for_an_upgraded_sid_is_closed(eio: EIO) -> None:
    sid = await eio.handshake()
    async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
        await ws.send_message("2probe")
        await receive(ws)
        await ws.send_message("5")
        async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as second:
            assert await closed_code(second) == 1002
        await ws.send_message("4hello")
        assert await receive(ws) == "4hello"


async def test_a_second_websocket_during_an_upgrade_is_closed(eio: EIO) -> None:
    sid = await eio.handshake()
    async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
        await trio.sleep(0.02)
        async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as second:
            assert await closed_code(second) == 1002
        await ws.send_message("2probe")
        assert await receive(ws) == "3probe"


async def test_a_bad_probe_aborts_the_upgrade_and_the_session_stays_on_polling(eio: EIO) -> None:
    sid = await eio.handshake()
    async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
        await ws.send_message("4not a probe")
        with trio.fail_after(5):
            while True:
                try:
                    await ws.get_message()
                except Exception:
                    break
    assert (await eio.push(sid, "4still polling")).text == "ok"
    assert (await eio.poll(sid)).text == "4still polling"


async def test_messages_sent_during_the_upgrade_arrive_over_the_websocket(
    start_server: StartServer,
) -> None:
    probed = trio.Event()
    seen: list[str] = []

    async def handler(socket: EngineIOSocket) -> None:
        await probed.wait()
        await socket.send("queued while upgrading")
        try:
            while True:
                await socket.receive()
        except SessionClosed:
            seen.append(socket.transport)

    eio = await start_server(handler=handler)
    sid = await eio.handshake()
    async with eio.websocket(f"EIO=4&transport=websocket&sid={sid}") as ws:
        await ws.send_message("2probe")
        assert await receive(ws) == "3probe"
        probed.set()
        await trio.sleep(0.02)
        await ws.send_message("5")
        assert await receive(ws) == "4queued while upgrading"
        await ws.send_message("1")
        await trio.sleep(0.05)
    assert seen == [WEBSOCKET]
