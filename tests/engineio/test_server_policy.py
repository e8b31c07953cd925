"""Limits and policy: 413, CORS and preflight, request checks, session caps, the socket API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from protocol.engineio.config import EngineIOConfig
from protocol.engineio.server import EngineIOServer
from protocol.errors import LocalProtocolError
from protocol.transport import CloseReason, EngineIOSocket, RequestInfo, SessionClosed
from tests.engineio.conftest import EIO, StartServer, closed_code, receive, refused_status

SMALL = EngineIOConfig(path="/engine.io/", max_payload=1000, cors_allowed_origins=None)


async def test_a_post_declaring_more_than_max_payload_is_413(start_server: StartServer) -> None:
    eio = await start_server(SMALL)
    sid = await eio.handshake()
    response = await eio.push(sid, "4" + "x" * 5000)
    assert response.status_code == 413
    assert (await eio.push(sid, "4small")).text == "ok"
    assert (await eio.poll(sid)).text == "4small"


async def test_a_chunked_post_is_counted_as_it_streams_and_refused_with_413(
    start_server: StartServer,
) -> None:
    eio = await start_server(SMALL)
    sid = await eio.handshake()

    async def body() -> AsyncIterator[bytes]:
        yield b"4"
        for _ in range(200):
            yield b"z" * 1000

    response = await eio.http.post(f"{eio.url}?EIO=4&transport=polling&sid={sid}", content=body())
    assert response.status_code == 413
    assert (await eio.get("EIO=4&transport=polling")).status_code == 200


async def test_the_conformance_server_refuses_a_post_over_one_megabyte(eio: EIO) -> None:
    sid = await eio.handshake()
    assert (await eio.push(sid, "4" + "x" * 1_000_000)).status_code == 413


async def test_any_origin_is_echoed_back_when_cors_allows_all(eio: EIO) -> None:
    response = await eio.get("EIO=4&transport=polling", headers={"Origin": "https://pinpoint.x"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://pinpoint.x"
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_a_preflight_from_an_allowed_origin_is_answered_with_204(eio: EIO) -> None:
    response = await eio.http.options(
        f"{eio.url}?EIO=4&transport=polling",
        headers={
            "Origin": "https://pinpoint.x",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://pinpoint.x"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_with_an_allowlist_only_listed_origins_get_cors_and_others_are_refused(
    start_server: StartServer,
) -> None:
    config = EngineIOConfig(path="/engine.io/", cors_allowed_origins=("https://ok.example",))
    eio = await start_server(config)
    good = await eio.get("EIO=4&transport=polling", headers={"Origin": "https://ok.example"})
    assert good.headers["access-control-allow-origin"] == "https://ok.example"
    bad = await eio.get("EIO=4&transport=polling", headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403
    assert "access-control-allow-origin" not in bad.headers
    preflight = await eio.http.options(eio.url, headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 403
    evil = [(b"origin", b"https://evil.example")]
    assert await refused_status(eio, "EIO=4&transport=websocket", extra_headers=evil) == 403


async def test_without_cors_no_headers_are_sent_and_foreign_origins_are_refused(
    start_server: StartServer,
) -> None:
    eio = await start_server(EngineIOConfig(path="/engine.io/"))
    plain = await eio.get("EIO=4&transport=polling")
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers
    same = f"http://127.0.0.1:{eio.port}"
    same_origin = await eio.get("EIO=4&transport=polling", headers={"Origin": same})
    assert same_origin.status_code == 200
    assert "access-control-allow-origin" not in same_origin.headers
    foreign = await eio.get("EIO=4&transport=polling", headers={"Origin": "https://x.example"})
    assert foreign.status_code == 403
    bad = [(b"origin", b"https://x.example")]
    assert await refused_status(eio, "EIO=4&transport=websocket", extra_headers=bad) == 403


async def test_check_request_refuses_with_403_and_its_text(start_server: StartServer) -> None:
    seen: list[RequestInfo] = []

    def check(info: RequestInfo) -> str | None:
        seen.append(info)
        return None if info.query.get("token") == "s3cret" else "bad token"

    eio = await start_server(check_request=check)
    refused = await eio.get("EIO=4&transport=polling")
    assert (refused.status_code, refused.text) == (403, "bad token")
    assert (await eio.get("EIO=4&transport=polling&token=s3cret")).status_code == 200
    assert await refused_status(eio, "EIO=4&transport=websocket") == 403
    assert seen[0].remote_host == "127.0.0.1"
    assert seen[0].path == "/engine.io/"


async def test_handshakes_beyond_max_connections_get_503(start_server: StartServer) -> None:
    eio = await start_server(
        EngineIOConfig(path="/engine.io/", max_connections=2, cors_allowed_origins=None)
    )
    await eio.handshake()
    await eio.handshake()
    assert (await eio.get("EIO=4&transport=polling")).status_code == 503
    assert await refused_status(eio, "EIO=4&transport=websocket") == 503


async def test_returning_from_the_handler_closes_the_session_after_its_last_message(
    start_server: StartServer,
) -> None:
    async def handler(socket: EngineIOSocket) -> None:
        await socket.send("bye")

    eio = await start_server(handler=handler)
    sid = await eio.handshake()
    assert (await eio.poll(sid)).text == "4bye\x1e1"
    assert (await eio.poll(sid)).status_code == 400
    async with eio.websocket() as ws:
        await receive(ws)
        assert await receive(ws) == "4bye"
        assert await receive(ws) == "1"
        assert await closed_code(ws) == 1000


async def test_a_failing_handler_closes_its_session_and_the_server_keeps_serving(
    start_server: StartServer,
) -> None:
    async def handler(socket: EngineIOSocket) -> None:
        raise RuntimeError("boom")

    eio = await start_server(handler=handler)
    sid = await eio.handshake()
    assert (await eio.poll(sid)).text == "1"
    assert (await eio.get("EIO=4&transport=polling")).status_code == 200


async def test_the_socket_reports_sid_transport_request_and_the_close_reason(
    start_server: StartServer,
) -> None:
    facts: list[object] = []

    async def handler(socket: EngineIOSocket) -> None:
        facts.extend([socket.sid, socket.transport, socket.request.query.get("x")])
        with pytest.raises(SessionClosed) as info:
            while True:
                await socket.receive()
        facts.append(info.value.reason)
        with pytest.raises(SessionClosed):
            await socket.send("too late")

    eio = await start_server(handler=handler)
    sid = await eio.handshake()
    await eio.push(sid, "1")
    await trio.sleep(0.05)
    assert facts == [sid, "polling", None, CloseReason.CLIENT]


async def test_the_close_reason_is_ping_timeout_when_no_pong_arrives(
    start_server: StartServer,
) -> None:
    reasons: list[CloseReason] = []

    async def handler(socket: EngineIOSocket) -> None:
        try:
            await socket.receive()
        except SessionClosed as exc:
            reasons.append(exc.reason)

    config = EngineIOConfig(path="/engine.io/", ping_interval_ms=50, ping_timeout_ms=50)
    eio = await start_server(config, handler)
    await eio.handshake()
    await trio.sleep(0.3)
    assert reasons == [CloseReason.PING_TIMEOUT]


async def test_send_waits_when_the_bounded_queue_is_full_until_a_poll_drains_it(
    start_server: StartServer,
) -> None:
    sent: list[int] = []

    async def handler(socket: EngineIOSocket) -> None:
        for i in range(3):
            await socket.send(str(i))
            sent.append(i)
        await trio.sleep_forever()

    config = EngineIOConfig(path="/engine.io/", send_queue_size=2, ping_interval_ms=60000)
    eio = await start_server(config, handler)
    sid = await eio.handshake()
    await trio.sleep(0.05)
    assert sent == [0, 1]
    assert (await eio.poll(sid)).text == "40\x1e41"
    await trio.sleep(0.05)
    assert sent == [0, 1, 2]
    assert (await eio.poll(sid)).text == "42"


async def test_a_text_message_with_the_record_separator_cannot_go_over_polling(
    start_server: StartServer,
) -> None:
    errors: list[Exception] = []

    async def handler(socket: EngineIOSocket) -> None:
        try:
            await socket.send("a\x1eb")
        except LocalProtocolError as exc:
            errors.append(exc)

    eio = await start_server(handler=handler)
    await eio.handshake()
    await trio.sleep(0.05)
    assert len(errors) == 1


async def test_cancelling_serve_ends_live_sessions_and_connections_promptly(
    http: httpx.AsyncClient,
) -> None:
    ended: list[str] = []

    async def handler(socket: EngineIOSocket) -> None:
        try:
            await trio.sleep_forever()
        finally:
            ended.append(socket.transport)

    server = EngineIOServer(EngineIOConfig(path="/engine.io/"), handler)
    async with trio.open_nursery() as outer:
        with trio.CancelScope() as serving:
            async with trio.open_nursery() as nursery:
                _host, port = await nursery.start(server.serve, "127.0.0.1", 0)
                eio = EIO(http, port)
                sid = await eio.handshake()

                async def pending_poll() -> None:
                    with contextlib.suppress(httpx.HTTPError):
                        await eio.poll(sid)

                outer.start_soon(pending_poll)
                await trio.sleep(0.02)
                async with eio.websocket() as ws:
                    await receive(ws)
                    started = trio.current_time()
                    serving.cancel()
        assert trio.current_time() - started < 3
        outer.cancel_scope.cancel()
    assert sorted(ended) == ["polling", "websocket"]
