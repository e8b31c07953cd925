"""The Socket.IO server's behaviour, packet by packet, over an in-memory Engine.IO session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from protocol.server import ConnectRefused, Disconnected, ServerConfig, SocketIOServer
from protocol.transport import CloseReason, RequestInfo
from tests.socketio.fake_engineio import FakeEngineIOSocket


class Harness:
    def __init__(self, server: SocketIOServer, nursery: trio.Nursery) -> None:
        self.server = server
        self.nursery = nursery

    def open(self, sid: str = "eio-1") -> FakeEngineIOSocket:
        eio = FakeEngineIOSocket(sid)
        self.nursery.start_soon(self.server.handle_session, eio)
        return eio

    async def joined(self, namespace: str = "/", auth: str = "") -> tuple[FakeEngineIOSocket, str]:
        eio = self.open()
        prefix = "" if namespace == "/" else namespace + ","
        await eio.push(f"0{prefix}{auth}")
        answer = await eio.expect()
        assert isinstance(answer, str) and answer.startswith(f"0{prefix}{{")
        sid: str = json.loads(answer[1 + len(prefix) :])["sid"]
        return eio, sid


def make_server(**config: Any) -> SocketIOServer:
    return SocketIOServer(ServerConfig(**config))


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with trio.open_nursery() as nursery:
        yield Harness(make_server(namespaces=("/", "/admin")), nursery)
        nursery.cancel_scope.cancel()


async def test_connect_is_answered_with_a_fresh_sid_after_the_connect_hook_sees_auth(
    harness: Harness,
) -> None:
    seen: list[tuple[str, Any, RequestInfo]] = []

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        seen.append((sid, auth, request))

    harness.server.on_connect(on_connect)
    eio, sid = await harness.joined(auth='{"token":"123"}')
    assert seen == [(sid, {"token": "123"}, eio.request)]
    assert harness.server.connected() == [sid]


async def test_connect_without_payload_gives_the_hook_an_empty_auth(harness: Harness) -> None:
    auths: list[Any] = []

    async def on_connect(sid: str, auth: Any, request: RequestInfo) -> None:
        auths.append(auth)

    harness.server.on_connect(on_connect)
    await harness.joined()
    assert auths == [{}]


async def test_emits_from_the_connected_hook_follow_the_connect_answer(harness: Harness) -> None:
    async def greet(sid: str) -> None:
        await harness.server.emit("hello", sid, to=sid)

    harness.server.on_connected(greet, "/admin")
    eio, sid = await harness.joined("/admin")
    assert await eio.expect() == f'2/admin,["hello","{sid}"]'


async def test_refused_connect_sends_connect_error_with_the_message(harness: Harness) -> None:
    async def refuse(sid: str, auth: Any, request: RequestInfo) -> None:
        raise ConnectRefused("Another client is in control.")

    harness.server.on_connect(refuse)
    eio = harness.open()
    await eio.push("0")
    assert await eio.expect() == '4{"message":"Another client is in control."}'
    assert harness.server.connected() == []
    assert eio.close_reason is None


async def test_unknown_namespace_is_refused_and_the_session_stays_open(harness: Harness) -> None:
    eio = harness.open()
    await eio.push("0/random")
    assert await eio.expect() == '4/random,{"message":"Invalid namespace"}'
    await eio.push("0")
    assert str(await eio.expect()).startswith('0{"sid":')


async def test_any_namespace_is_allowed_when_the_config_lists_none() -> None:
    async with trio.open_nursery() as nursery:
        harness = Harness(make_server(namespaces=None), nursery)
        _, sid = await harness.joined("/whatever")
        assert harness.server.connected("/whatever") == [sid]
        nursery.cancel_scope.cancel()


async def test_a_session_that_joins_nothing_is_closed_after_the_connect_timeout() -> None:
    async with trio.open_nursery() as nursery:
        harness = Harness(make_server(connect_timeout_ms=200), nursery)
        idle = harness.open()
        joined_eio, _ = await harness.joined()
        with trio.fail_after(2):
            await idle.closed.wait()
        assert idle.close_reason is CloseReason.SERVER
        await trio.sleep(0.25)  # well past the timeout of the session that joined
        assert joined_eio.close_reason is None
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("result", "ack"),
    [(None, "[]"), ("ok", '["ok"]'), ((1, "two"), '[1,"two"]'), ([1, 2], "[[1,2]]")],
)
async def test_the_handlers_return_value_is_the_ack(
    harness: Harness, result: Any, ack: str
) -> None:
    async def handler(sid: str, *args: Any) -> Any:
        return result

    harness.server.on("get", handler)
    eio, _ = await harness.joined()
    await eio.push('27["get","x"]')
    assert await eio.expect() == f"37{ack}"


async def test_no_ack_is_sent_when_the_client_asked_for_none(harness: Harness) -> None:
    calls: list[tuple[Any, ...]] = []

    async def handler(sid: str, *args: Any) -> str:
        calls.append((sid, *args))
        return "ignored"

    harness.server.on("note", handler)
    eio, sid = await harness.joined()
    await eio.push('2["note",1,{"a":null}]')
    await eio.expect_nothing()
    assert calls == [(sid, 1, {"a": None})]


async def test_catch_all_handler_gets_events_without_their_own_handler(harness: Harness) -> None:
    async def any_handler(sid: str, event: str, *args: Any) -> str:
        return f"{event}:{len(args)}"

    harness.server.on_any(any_handler)
    eio, _ = await harness.joined()
    await eio.push('21["mystery",1,2]')
    assert await eio.expect() == '31["mystery:2"]'


async def test_event_without_any_handler_is_not_acked_and_the_client_stays(
    harness: Harness,
) -> None:
    eio, _ = await harness.joined()
    await eio.push('21["mystery"]')
    await eio.expect_nothing()
    assert eio.close_reason is None


async def test_a_slow_handler_does_not_block_the_same_clients_other_events(
    harness: Harness,
) -> None:
    release = trio.Event()

    async def slow(sid: str) -> str:
        await release.wait()
        return "moved"

    async def fast(sid: str) -> str:
        return "stopped"

    harness.server.on("move", slow)
    harness.server.on("stop", fast)
    eio, _ = await harness.joined()
    await eio.push('21["move"]', '22["stop"]')
    assert await eio.expect() == '32["stopped"]'
    release.set()
    assert await eio.expect() == '31["moved"]'


async def test_concurrent_handlers_per_client_are_bounded() -> None:
    running = 0
    peak = 0
    release = trio.Event()

    async def slow(sid: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    async with trio.open_nursery() as nursery:
        harness = Harness(make_server(max_concurrent_handlers=2), nursery)
        harness.server.on("slow", slow)
        eio, _ = await harness.joined()
        await eio.push(*[f'2{i}["slow"]' for i in range(5)])
        await trio.sleep(0.05)
        assert running == 2
        release.set()
        acks = {await eio.expect() for _ in range(5)}
        assert acks == {f"3{i}[]" for i in range(5)}
        assert peak == 2
        nursery.cancel_scope.cancel()


async def test_a_failing_handler_is_logged_and_the_connection_survives(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(sid: str) -> None:
        raise ValueError("boom")

    async def fine(sid: str) -> str:
        return "ok"

    harness.server.on("broken", broken)
    harness.server.on("fine", fine)
    eio, _ = await harness.joined()
    await eio.push('21["broken"]', '22["fine"]')
    assert await eio.expect() == '32["ok"]'
    assert "boom" in caplog.text
    assert eio.close_reason is None


async def test_binary_arguments_and_binary_acks_round_trip(harness: Harness) -> None:
    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        return (*args, b"\xff")

    harness.server.on("echo", echo)
    eio, _ = await harness.joined()
    await eio.push('51-9["echo",{"_placeholder":true,"num":0}]', b"\x01\x02")
    assert await eio.expect() == (
        '62-9[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    )
    assert await eio.expect() == b"\x01\x02"
    assert await eio.expect() == b"\xff"


async def test_emit_to_none_broadcasts_to_every_client_of_the_namespace_only(
    harness: Harness,
) -> None:
    a, _ = await harness.joined()
    b, _ = await harness.joined()
    other, _ = await harness.joined("/admin")
    await harness.server.emit("tick", 1)
    assert await a.expect() == '2["tick",1]'
    assert await b.expect() == '2["tick",1]'
    await other.expect_nothing()


async def test_emit_to_a_departed_sid_is_silently_dropped(harness: Harness) -> None:
    await harness.server.emit("tick", to="nobody")


async def test_call_returns_the_clients_ack_arguments(harness: Harness) -> None:
    eio, sid = await harness.joined()
    async with trio.open_nursery() as nursery:
        results: list[list[Any]] = []

        async def caller() -> None:
            results.append(await harness.server.call("ask", 1, to=sid, timeout=2))

        nursery.start_soon(caller)
        assert await eio.expect() == '20["ask",1]'
        await eio.push('30["yes",2]')
    assert results == [["yes", 2]]


async def test_call_times_out_with_too_slow_error(harness: Harness) -> None:
    eio, sid = await harness.joined()
    with pytest.raises(trio.TooSlowError):
        await harness.server.call("ask", to=sid, timeout=0.05)
    assert await eio.expect() == '20["ask"]'
    # A late ack is ignored.
    await eio.push('30["late"]')
    await eio.expect_nothing()


async def test_call_fails_with_disconnected_when_the_client_leaves_first(
    harness: Harness,
) -> None:
    eio, sid = await harness.joined()

    async def leave() -> None:
        await eio.expect()
        await eio.hang_up()

    harness.nursery.start_soon(leave)
    with pytest.raises(Disconnected):
        await harness.server.call("ask", to=sid, timeout=2)
    with pytest.raises(Disconnected):
        await harness.server.call("ask", to=sid, timeout=2)


async def test_client_namespace_disconnect_reports_its_reason_and_keeps_the_session(
    harness: Harness,
) -> None:
    reasons: list[tuple[str, str]] = []

    async def on_disconnect(sid: str, reason: str) -> None:
        reasons.append((sid, reason))

    harness.server.on_disconnect(on_disconnect)
    eio, sid = await harness.joined()
    await eio.push("1")
    await eio.expect_nothing()
    assert reasons == [(sid, "client namespace disconnect")]
    assert eio.close_reason is None
    assert harness.server.connected() == []


async def test_server_disconnect_sends_disconnect_and_reports_its_reason(
    harness: Harness,
) -> None:
    reasons: list[str] = []

    async def on_disconnect(sid: str, reason: str) -> None:
        reasons.append(reason)

    harness.server.on_disconnect(on_disconnect, "/admin")
    eio, sid = await harness.joined("/admin")
    await harness.server.disconnect(sid)
    assert await eio.expect() == "1/admin,"
    assert reasons == ["server namespace disconnect"]
    await harness.server.disconnect(sid)  # idempotent
    assert reasons == ["server namespace disconnect"]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (CloseReason.TRANSPORT_CLOSE, "transport close"),
        (CloseReason.PING_TIMEOUT, "ping timeout"),
    ],
)
async def test_session_end_disconnects_every_namespace_with_the_transport_reason(
    harness: Harness, reason: CloseReason, expected: str
) -> None:
    reasons: list[str] = []

    async def on_disconnect(sid: str, why: str) -> None:
        reasons.append(why)

    harness.server.on_disconnect(on_disconnect)
    harness.server.on_disconnect(on_disconnect, "/admin")
    eio, _ = await harness.joined()
    await eio.push("0/admin,")
    await eio.expect()
    await eio.hang_up(reason)
    await trio.testing.wait_all_tasks_blocked()
    assert reasons == [expected, expected]


@pytest.mark.parametrize(
    "bad",
    [
        "abc",  # unknown packet type
        "2{}",  # invalid payload
        '2abc["x"]',  # invalid ack id
        '2/admin,["x"]',  # event to a namespace not joined
        "0",  # second CONNECT to the same namespace
        '4{"message":"x"}',  # clients do not send CONNECT_ERROR
        "1/admin,",  # leaving a namespace never joined
        b"\x00",  # attachment without a binary packet
    ],
)
async def test_an_invalid_packet_closes_the_connection_with_parse_error(
    harness: Harness, bad: str | bytes
) -> None:
    reasons: list[str] = []

    async def on_disconnect(sid: str, reason: str) -> None:
        reasons.append(reason)

    harness.server.on_disconnect(on_disconnect)
    eio, _ = await harness.joined()
    await eio.push(bad)
    with trio.fail_after(2):
        await eio.closed.wait()
    assert eio.close_reason is CloseReason.PARSE_ERROR
    await trio.testing.wait_all_tasks_blocked()
    assert reasons == ["parse error"]


async def test_disconnect_hook_runs_to_completion_however_long_it_takes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("protocol.server._SHUTDOWN_HOOK_GRACE_S", 0.01)
    finished = trio.Event()

    async def slow_cleanup(sid: str, reason: str) -> None:
        await trio.sleep(0.1)  # e.g. halting every stage
        finished.set()

    harness.server.on_disconnect(slow_cleanup)
    eio, _ = await harness.joined()
    await eio.hang_up()
    with trio.fail_after(2):
        await finished.wait()


async def test_a_clients_in_flight_handlers_are_cancelled_when_its_session_ends(
    harness: Harness,
) -> None:
    started = trio.Event()
    cancelled = trio.Event()

    async def forever(sid: str) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    harness.server.on("forever", forever)
    eio, _ = await harness.joined()
    await eio.push('21["forever"]')
    with trio.fail_after(2):
        await started.wait()
    await eio.hang_up()
    with trio.fail_after(2):
        await cancelled.wait()


async def test_concurrent_binary_acks_keep_each_packets_parts_together(harness: Harness) -> None:
    async def blob(sid: str, n: int) -> tuple[bytes, bytes]:
        await trio.lowlevel.checkpoint()
        return bytes([n]), bytes([n, n])

    harness.server.on("blob", blob)
    eio, _ = await harness.joined()
    await eio.push(*[f'2{i}["blob",{i}]' for i in range(6)])
    frames = [await eio.expect() for _ in range(18)]
    for start in range(0, 18, 3):
        head, first, second = frames[start : start + 3]
        assert isinstance(head, str) and head.startswith("62-")
        n = int(head[3 : head.index("[")])
        assert (first, second) == (bytes([n]), bytes([n, n]))
