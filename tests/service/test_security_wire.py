"""The daemon's access rules over real sockets: origin, allow list, token, payload, churn."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
import trio.lowlevel

from tests.service.daemon import fd_count, rss_kib, run_daemon
from tests.service.sio import (
    Refused,
    open_and_drop,
    sio_client,
    sio_client_when_free,
    websocket,
)

FAKE_RIG = 'platform = "fake"\nlisten = "127.0.0.1:0"\n'
PINPOINT_WEB = "https://pinpoint.allenneuraldynamics.org"


async def test_websocket_from_a_foreign_web_page_is_refused(tmp_path: Path) -> None:
    config = FAKE_RIG + f'allow_origin = ["{PINPOINT_WEB}"]\n'
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        for origin in ("https://evil.example", "http://localhost:8000", "null"):
            with pytest.raises(Refused) as refused:
                async with websocket(port, origin=origin):
                    pass
            assert refused.value.status == 403, origin
        # The allowed web origin and a native client (no Origin) get in.
        async with websocket(port, origin=PINPOINT_WEB):
            pass
        async with sio_client(port) as client:
            assert await client.call("get_version")


async def test_polling_from_a_foreign_web_page_is_refused(tmp_path: Path) -> None:
    async with run_daemon(tmp_path, FAKE_RIG) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(timeout=10) as http:
            foreign = await http.get(url, headers={"Origin": "https://evil.example"})
            native = await http.get(url)
    assert foreign.status_code == 403
    assert native.status_code == 200 and native.text.startswith("0{")


async def test_a_client_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    config = FAKE_RIG + 'allow = ["10.0.0.0/8"]\n'
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        with pytest.raises(Refused) as refused:
            async with websocket(port):
                pass
        assert refused.value.status == 403
        assert "allow" in daemon.output()


async def test_a_wrong_or_missing_token_is_refused_and_the_right_one_connects(
    tmp_path: Path,
) -> None:
    config = FAKE_RIG + 'token = "correct horse battery staple"\n'
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        for auth in ({"token": "correct horse battery stapl"}, None, {"tok": 1}):
            with pytest.raises(Refused) as refused:
                async with sio_client(port, auth=auth):
                    pass
            assert refused.value.reason == "Invalid token."
        async with sio_client(port, auth={"token": "correct horse battery staple"}) as client:
            assert await client.call("get_version")


async def test_a_10_mb_payload_is_refused_without_the_daemon_growing(tmp_path: Path) -> None:
    async with run_daemon(tmp_path, FAKE_RIG) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        before = rss_kib(daemon.pid)
        huge = "42" + '["get_position","' + "x" * (10 << 20) + '"]'
        async with sio_client(port) as client:
            await client.ws.send_message(huge)
            with trio.fail_after(10):
                await client.closed.wait()
        url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(timeout=30) as http:
            handshake = await http.get(url)
            sid = handshake.text.split('"sid":"')[1].split('"')[0]
            post = await http.post(f"{url}&sid={sid}", content=huge.encode())
        assert post.status_code == 413
        grown = rss_kib(daemon.pid) - before
        print(f"RSS {before} KiB, grew {grown} KiB after two 10 MB payloads")
        assert grown < 5 * 1024, f"RSS grew by {grown} KiB"
        # Still serving.
        async with sio_client_when_free(port) as client:
            assert await client.call("get_version")


async def test_a_thousand_connections_opened_and_dropped_leak_nothing(tmp_path: Path) -> None:
    config = FAKE_RIG + "ping_interval_ms = 300\nping_timeout_ms = 300\n"
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        # Warm up (first connection allocates lazily), then measure.
        async with sio_client(port) as client:
            await client.call("get_manipulators")
        await trio.sleep(0.5)
        fds_before, rss_before = fd_count(daemon.pid), rss_kib(daemon.pid)

        async def churn(worker: int) -> None:
            for index in range(worker, 1000, 20):
                kind = index % 4
                if kind == 0:  # TCP connect and vanish
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.aclose()
                elif kind == 1:  # Engine.IO session, dropped without a close frame
                    await open_and_drop(port)
                else:  # Socket.IO client (joined or refused as second), then gone
                    try:
                        async with sio_client(port) as client:
                            if kind == 2:
                                await client.call("get_version")
                    except Refused:
                        pass

        async with trio.open_nursery() as nursery:
            for worker in range(20):
                nursery.start_soon(churn, worker)
        # Abandoned sessions end by ping timeout (0.6 s here).
        await trio.sleep(2)
        fds_after, rss_after = fd_count(daemon.pid), rss_kib(daemon.pid)
        print(f"fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB")
        assert fds_after <= fds_before, (fds_before, fds_after)
        assert rss_after - rss_before < 5 * 1024, (rss_before, rss_after)
        # Control was released every time: a new client gets it.
        async with sio_client_when_free(port) as client:
            assert await client.call("get_version")


async def test_hostile_packets_cost_the_sender_its_session_and_nothing_else(
    tmp_path: Path,
) -> None:
    hostile = [
        '42["get_position",' + "[" * 30000 + "]" * 30000 + "]",  # nesting bomb
        '42["get_position",' + '{"a":' * 10000 + "1" + "}" * 10000 + "]",
        '42["get_position","' + "\\ud800" * 5000 + '"]',  # invalid UTF-16
        "42[" + ",".join(["1"] * 20000) + "]",  # event name not a string
        "4" + "9" * 5000,  # absurd packet id
    ]
    async with run_daemon(tmp_path, FAKE_RIG) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        before = rss_kib(daemon.pid)
        for packet in hostile:
            # The previous round's client may still be being released.
            async with sio_client_when_free(port) as client:
                await client.ws.send_message(packet)
                with trio.move_on_after(2):
                    await client.closed.wait()
            async with sio_client_when_free(port) as client:
                assert await client.call("get_version"), packet[:40]
        assert rss_kib(daemon.pid) - before < 5 * 1024
        assert "Traceback" not in daemon.output()


async def test_sessions_beyond_the_connection_limit_are_refused_until_one_ends(
    tmp_path: Path,
) -> None:
    config = FAKE_RIG + "[limits]\nmax_connections = 3\n"
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        async with websocket(port), websocket(port), websocket(port):
            with pytest.raises(Refused) as refused:
                async with websocket(port):
                    pass
            assert refused.value.status == 503
        # The three sessions closed; room again.
        with trio.fail_after(10):
            while True:
                try:
                    async with sio_client(port) as client:
                        assert await client.call("get_version")
                        break
                except Refused:
                    await trio.sleep(0.1)
