"""Signals drive an orderly stop or a reload; checked with real signals to this process."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ephysd.sdnotify import Notifier
from ephysd.signals import handle_signals, stop_everything
from tests.service.datagrams import drain


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Notifier]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.setblocking(False)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    yield sock, notifier
    notifier.close()
    sock.close()


class Rig:
    """Records the order in which the daemon's callbacks ran."""

    def __init__(self, stop_delay: float = 0.0) -> None:
        self.events: list[str] = []
        self.stop_delay = stop_delay
        self.reload_error: Exception | None = None
        self.reloaded = trio.Event()

    async def stop_motion(self) -> None:
        self.events.append("stop_motion")
        await trio.sleep(self.stop_delay)
        self.events.append("stopped")

    async def reload(self) -> None:
        self.events.append("reload")
        self.reloaded.set()
        if self.reload_error is not None:
            raise self.reload_error


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_sends_stopping_halts_every_motion_then_shuts_down(
    signum: signal.Signals, notify_socket: tuple[socket.socket, Notifier]
) -> None:
    sock, notifier = notify_socket
    rig = Rig()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            def shutdown() -> None:
                rig.events.append("shutdown")
                nursery.cancel_scope.cancel()

            await nursery.start(
                lambda task_status: handle_signals(
                    stop_motion=rig.stop_motion,
                    shutdown=shutdown,
                    notifier=notifier,
                    task_status=task_status,
                )
            )
            os.kill(os.getpid(), signum)
            await trio.sleep_forever()
    assert rig.events == ["stop_motion", "stopped", "shutdown"]
    (message,) = drain(sock)
    assert message.startswith(b"STOPPING=1\nSTATUS=stopping (")


async def test_a_hung_stop_is_bounded_and_shutdown_still_happens() -> None:
    rig = Rig(stop_delay=60)
    shut = trio.Event()
    start = trio.current_time()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: handle_signals(
                    stop_motion=rig.stop_motion,
                    shutdown=shut.set,
                    stop_timeout=0.2,
                    task_status=task_status,
                )
            )
            os.kill(os.getpid(), signal.SIGTERM)
            await shut.wait()
            nursery.cancel_scope.cancel()
    assert rig.events == ["stop_motion"]
    assert trio.current_time() - start < 4


async def test_manipulators_that_did_not_stop_are_logged_by_name_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stop_motion() -> str:
        return "Manipulator SN47520 did not stop after 2 stop commands"

    with caplog.at_level("INFO", logger="ephysd.signals"):
        assert not await stop_everything("SIGTERM", stop_motion, Notifier(None))
    messages = [record.getMessage() for record in caplog.records]
    assert "some manipulators did not stop: Manipulator SN47520 did not stop" in messages[-1]
    assert "every motion stopped" not in messages


async def test_sighup_reloads_and_the_daemon_keeps_running(
    notify_socket: tuple[socket.socket, Notifier],
) -> None:
    sock, notifier = notify_socket
    rig = Rig()
    rig.reload_error = ValueError("allow_origin: 'bad' is not an http(s) origin")
    shut = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: handle_signals(
                    stop_motion=rig.stop_motion,
                    shutdown=shut.set,
                    reload=rig.reload,
                    notifier=notifier,
                    task_status=task_status,
                )
            )
            os.kill(os.getpid(), signal.SIGHUP)  # fails: logged, old settings kept
            await rig.reloaded.wait()
            rig.reload_error = None
            rig.reloaded = trio.Event()
            os.kill(os.getpid(), signal.SIGHUP)
            await rig.reloaded.wait()
            await trio.sleep(0.05)
            assert not shut.is_set()
            nursery.cancel_scope.cancel()
    assert rig.events == ["reload", "reload"]
    assert drain(sock) == [b"RELOADING=1", b"READY=1"] * 2
