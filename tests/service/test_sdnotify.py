"""The systemd notify protocol against a real datagram socket bound by the test."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ephysd.sdnotify import Notifier, watchdog_interval
from tests.service.datagrams import drain


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


async def test_ready_and_status_arrive_as_one_datagram(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert await notifier.ready("platform newscale, 2 manipulators,\n no client")
    assert sock.recv(4096) == b"READY=1\nSTATUS=platform newscale, 2 manipulators, no client"
    notifier.close()


async def test_abstract_socket_names_start_with_at() -> None:
    name = f"ephysd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert await notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()


async def test_without_notify_socket_every_call_does_nothing() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert not await notifier.ready("x")
    with trio.fail_after(1):
        await notifier.run_watchdog()  # returns at once: nobody to ping


async def test_a_vanished_notify_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not await notifier.notify("READY=1")
    notifier.close()


async def test_fields_must_be_single_key_value_lines(
    notify_socket: tuple[socket.socket, str],
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": notify_socket[1]})
    with pytest.raises(ValueError):
        await notifier.notify("READY=1\nMAINPID=1")
    with pytest.raises(ValueError):
        await notifier.notify("READY")
    notifier.close()


async def test_watchdog_pings_at_half_the_interval_from_the_trio_loop(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog_s == pytest.approx(0.1)
    sock.setblocking(False)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run_watchdog)
        await trio.sleep(0.45)
        nursery.cancel_scope.cancel()
    elapsed = trio.current_time() - start
    pings = []
    while True:
        try:
            pings.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert set(pings) == {b"WATCHDOG=1"}
    # Never faster than the half interval, and more than one ping per interval.
    assert 2 <= len(pings) <= elapsed / 0.1 + 1
    notifier.close()


async def test_an_unhealthy_daemon_withholds_its_watchdog_ping(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    sock.setblocking(False)
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run_watchdog, lambda: False)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
    notifier.close()


def test_watchdog_interval_honours_watchdog_pid_and_ignores_garbage() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "2"}, pid=2) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None


async def test_a_failing_health_check_withholds_the_ping_without_crashing(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    sock.setblocking(False)

    def broken() -> bool:
        raise RuntimeError("health check bug")

    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run_watchdog, broken)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
    notifier.close()


async def test_a_full_notify_queue_never_raises_nor_stalls_status_updates(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    # Nobody reads: the receiver's queue fills up (net.unix.max_dgram_qlen).
    results: list[bool] = []

    async def send(index: int) -> None:
        results.append(await notifier.notify(f"STATUS=message {index}", wait=False))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for index in range(500):
                nursery.start_soon(send, index)
    assert results.count(True) >= 1 and results.count(False) >= 1
    start = trio.current_time()
    assert not await notifier.status("dropped at once")
    assert trio.current_time() - start < 0.5
    # Important messages wait (bounded) for room: reading makes room.
    sock.setblocking(False)
    drained: list[bytes] = []
    sent: list[bool] = []

    async def stop() -> None:
        sent.append(await notifier.stopping())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop)
            await trio.sleep(0.05)
            while not sent:
                try:
                    drained.append(sock.recv(4096))
                except BlockingIOError:
                    await trio.sleep(0.01)
    drained.extend(drain(sock))
    assert sent == [True]
    assert b"STOPPING=1" in drained
    notifier.close()
