"""HTTP long-polling against the real server: the official suite's checks and more."""

from __future__ import annotations

import contextlib
import json

import trio

from protocol.engineio.config import EngineIOConfig
from tests.engineio.conftest import EIO, StartServer


async def test_a_polling_handshake_opens_a_session_with_exactly_the_five_keys(eio: EIO) -> None:
    response = await eio.get("EIO=4&transport=polling")
    assert response.status_code == 200
    assert response.text.startswith("0")
    value = json.loads(response.text[1:])
    assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(value["sid"], str)
    assert value["upgrades"] == ["websocket"]
    assert value["pingInterval"] == 300
    assert value["pingTimeout"] == 200
    assert value["maxPayload"] == 1000000


async def test_a_missing_or_invalid_eio_is_400_with_a_json_error(eio: EIO) -> None:
    for query in ("transport=polling", "EIO=abc&transport=polling", "EIO=3&transport=polling"):
        response = await eio.get(query)
        assert response.status_code == 400, query
        assert response.json() == {"code": 5, "message": "Unsupported protocol version"}


async def test_a_missing_or_unknown_transport_is_400(eio: EIO) -> None:
    for query in ("EIO=4", "EIO=4&transport=abc"):
        response = await eio.get(query)
        assert response.status_code == 400, query
        assert response.json() == {"code": 0, "message": "Transport unknown"}


async def test_a_post_or_put_without_a_session_is_400(eio: EIO) -> None:
    response = await eio.post("EIO=4&transport=polling", "")
    assert response.status_code == 400
    assert response.json()["code"] == 2
    response = await eio.http.put(f"{eio.url}?EIO=4&transport=polling")
    assert response.status_code == 400


async def test_an_unknown_sid_is_400(eio: EIO) -> None:
    response = await eio.poll("nope")
    assert response.status_code == 400
    assert response.json() == {"code": 1, "message": "Session ID unknown"}
    assert (await eio.push("nope", "4x")).status_code == 400


async def test_a_payload_with_one_text_packet_is_echoed(eio: EIO) -> None:
    sid = await eio.handshake()
    push = await eio.push(sid, "4hello")
    assert push.status_code == 200
    assert push.text == "ok"
    poll = await eio.poll(sid)
    assert poll.status_code == 200
    assert poll.text == "4hello"


async def test_queued_packets_go_out_in_one_response_joined_by_the_record_separator(
    eio: EIO,
) -> None:
    sid = await eio.handshake()
    assert (await eio.push(sid, "4test1\x1e4test2\x1e4test3")).text == "ok"
    assert (await eio.poll(sid)).text == "4test1\x1e4test2\x1e4test3"


async def test_binary_packets_travel_as_b_plus_base64_over_polling(eio: EIO) -> None:
    sid = await eio.handshake()
    assert (await eio.push(sid, "4hello\x1ebAQIDBA==")).text == "ok"
    assert (await eio.poll(sid)).text == "4hello\x1ebAQIDBA=="


async def test_an_invalid_payload_is_400_and_closes_the_session(eio: EIO) -> None:
    sid = await eio.handshake()
    assert (await eio.push(sid, "abc")).status_code == 400
    assert (await eio.poll(sid)).status_code == 400


async def test_a_ping_from_a_v4_client_is_a_protocol_error_that_closes_the_session(
    eio: EIO,
) -> None:
    sid = await eio.handshake()
    assert (await eio.push(sid, "2")).status_code == 400
    assert (await eio.poll(sid)).status_code == 400


async def test_a_duplicate_poll_is_400_the_first_gets_close_and_the_session_dies(eio: EIO) -> None:
    sid = await eio.handshake()
    responses: dict[str, int | str] = {}

    async def first() -> None:
        response = await eio.poll(sid)
        responses["first"] = response.status_code
        responses["first_body"] = response.text

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.sleep(0.05)
        second = await eio.get(f"EIO=4&transport=polling&sid={sid}&t=burst")
    assert second.status_code == 400
    assert responses == {"first": 200, "first_body": "1"}
    assert (await eio.poll(sid)).status_code == 400


async def test_a_cancelled_poll_closes_the_session(eio: EIO) -> None:
    sid = await eio.handshake()
    stream = await trio.open_tcp_stream("127.0.0.1", eio.port)
    request = f"GET /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"
    await stream.send_all(request.encode())
    await trio.sleep(0.05)
    await stream.aclose()
    await trio.sleep(0.05)
    assert (await eio.poll(sid)).status_code == 400


async def test_the_server_pings_over_polling_and_pongs_keep_the_session(eio: EIO) -> None:
    sid = await eio.handshake()
    for _ in range(3):
        poll = await eio.poll(sid)
        assert poll.status_code == 200
        assert poll.text == "2"
        assert (await eio.push(sid, "3")).status_code == 200


async def test_no_pong_within_ping_timeout_closes_the_session(eio: EIO) -> None:
    sid = await eio.handshake()
    await trio.sleep(0.3 + 0.2 + 0.01)
    assert (await eio.poll(sid)).status_code == 400


async def test_a_client_close_releases_the_pending_poll_with_noop_and_ends_the_session(
    eio: EIO,
) -> None:
    sid = await eio.handshake()
    polled: list[tuple[int, str]] = []

    async def poll() -> None:
        response = await eio.poll(sid)
        polled.append((response.status_code, response.text))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(0.02)
        assert (await eio.push(sid, "1")).status_code == 200
    assert polled == [(200, "6")]
    assert (await eio.poll(sid)).status_code == 400


async def test_a_path_other_than_the_configured_one_is_404(eio: EIO) -> None:
    response = await eio.http.get(f"http://127.0.0.1:{eio.port}/socket.io/?EIO=4&transport=polling")
    assert response.status_code == 404


async def test_garbage_http_gets_400_and_the_server_keeps_serving(eio: EIO) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", eio.port)
    await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
    with trio.fail_after(5):
        answer = await stream.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 400")
    await stream.aclose()
    assert (await eio.get("EIO=4&transport=polling")).status_code == 200


async def test_an_oversized_request_head_is_refused_with_431(eio: EIO) -> None:
    response = await eio.get("EIO=4&transport=polling", headers={"x-big": "a" * 40000})
    assert response.status_code == 431
    assert (await eio.get("EIO=4&transport=polling")).status_code == 200


async def test_keep_alive_carries_several_requests_on_one_connection(eio: EIO) -> None:
    sid = await eio.handshake()
    stream = await trio.open_tcp_stream("127.0.0.1", eio.port)
    query = f"/engine.io/?EIO=4&transport=polling&sid={sid}"
    post = f"POST {query} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n4ab"
    get = f"GET {query} HTTP/1.1\r\nHost: x\r\n\r\n"
    await stream.send_all((post + get).encode())
    received = b""
    with trio.fail_after(5):
        while not received.endswith(b"4ab"):
            received += await stream.receive_some(4096)
    assert received.count(b"HTTP/1.1 200") == 2
    await stream.aclose()


async def test_a_client_dripping_its_request_head_is_cut_off_at_the_deadline(
    start_server: StartServer,
) -> None:
    eio = await start_server(EngineIOConfig(path="/engine.io/", http_timeout_s=0.3))
    stream = await trio.open_tcp_stream("127.0.0.1", eio.port)
    started = trio.current_time()
    with trio.fail_after(5):
        try:
            for byte in b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nX-Slow: " * 10:
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.05)
        except trio.BrokenResourceError:
            pass
        with contextlib.suppress(trio.BrokenResourceError):
            assert await stream.receive_some(100) == b""
    assert trio.current_time() - started < 4
    await stream.aclose()
