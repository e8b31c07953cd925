"""The plumbing bundle: one READY, status updates only on change, signals and watchdog wired."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import trio

from ephysd.sdnotify import Notifier
from ephysd.service import Service, status_line
from tests.service.datagrams import drain


def test_status_line_says_platform_manipulators_and_client() -> None:
    assert status_line("newscale", ["1", "2"], None) == "newscale: 2 manipulators (1, 2); no client"
    assert (
        status_line("fake", ["A"], "127.0.0.1:5555")
        == "fake: 1 manipulator (A); client 127.0.0.1:5555 connected"
    )


async def test_service_reports_ready_once_pings_and_stops_on_sigterm(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.setblocking(False)
        service = Service(
            Notifier.from_environ(
                {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "100000"}
            )
        )
        stopped: list[str] = []

        async def stop_motion() -> None:
            stopped.append("halted")

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: service.run(
                        stop_motion=stop_motion,
                        shutdown=nursery.cancel_scope.cancel,
                        task_status=task_status,
                    )
                )
                await service.ready("fake: 0 manipulators (none); no client")
                await service.ready("fake: 0 manipulators (none); no client")
                await service.status("fake: 0 manipulators (none); client x connected")
                await trio.sleep(0.15)
                os.kill(os.getpid(), signal.SIGTERM)
                await trio.sleep_forever()
        messages = drain(sock)
    assert stopped == ["halted"]
    assert messages[0] == b"WATCHDOG=1"
    others = [m for m in messages if m != b"WATCHDOG=1"]
    assert others[0] == b"READY=1\nSTATUS=fake: 0 manipulators (none); no client"
    assert others[1] == b"STATUS=fake: 0 manipulators (none); client x connected"
    assert others[2].startswith(b"STOPPING=1")
    assert len(others) == 3
    assert messages.count(b"WATCHDOG=1") >= 2
