"""Run the real ``ephysd`` as systemd would: a subprocess with a notify socket the test binds."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

_LISTENING = re.compile(r"listening on http://[^ ]*:(\d+)")


class DaemonProcess:
    """The daemon subprocess, its log lines and the notify datagrams it sent."""

    def __init__(self, process: trio.Process, notify: trio.socket.SocketType) -> None:
        self.process = process
        self.notify = notify
        self.lines: list[str] = []
        self.port = 0
        self.messages: list[str] = []
        self._listening = trio.Event()
        self._new_line = trio.Event()

    @property
    def pid(self) -> int:
        """The daemon's own process, even under a wrapper that forks it (strace)."""
        pid = self.process.pid
        for _ in range(5):  # the daemon starts no processes: it is the deepest one
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                break
            if not children:
                break
            pid = int(children[0])
        return pid

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    async def read_output(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                self._new_line.set()
                self._new_line = trio.Event()
                match = _LISTENING.search(line)
                if match and not self._listening.is_set():
                    self.port = int(match.group(1))
                    self._listening.set()

    async def next_notification(self, timeout_s: float = 20) -> str:
        with trio.fail_after(timeout_s):
            data = await self.notify.recv(4096)
        message = data.decode()
        self.messages.append(message)
        return message

    async def wait_for(self, field: str, timeout_s: float = 20) -> str:
        """The next notification containing the line ``field`` (e.g. "READY=1")."""
        with trio.fail_after(timeout_s):
            while True:
                message = await self.next_notification(timeout_s)
                if field in message.split("\n"):
                    return message

    async def wait_for_line(self, text: str, timeout_s: float = 10) -> str:
        """The first log line (already seen or yet to come) containing ``text``."""
        with trio.fail_after(timeout_s):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if text in line:
                        return line
                seen = len(self.lines)
                await self._new_line.wait()

    async def wait_listening(self, timeout_s: float = 20) -> int:
        with trio.fail_after(timeout_s):
            await self._listening.wait()
        return self.port

    async def wait_exit(self, timeout_s: float) -> int:
        with trio.fail_after(timeout_s):
            return await self.process.wait()

    def output(self) -> str:
        return "\n".join(self.lines)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@asynccontextmanager
async def run_daemon(
    tmp_path: Path,
    config: str,
    *,
    watchdog_usec: int | None = None,
    args: Sequence[str] = (),
    wrapper: Sequence[str] = (),
) -> AsyncIterator[DaemonProcess]:
    """Start ``ephysd --config`` under a fake systemd; SIGKILL it if the test leaves it running.

    ``wrapper`` is a command prefix that execs the daemon (a sandbox).
    """
    config_path = tmp_path / "ephysd.toml"
    config_path.write_text(config)
    notify_path = str(tmp_path / "notify")
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(notify_path)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    process = await trio.lowlevel.open_process(
        [*wrapper, sys.executable, "-m", "ephysd", "--config", str(config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    daemon = DaemonProcess(process, notify)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.read_output)
            try:
                yield daemon
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        notify.close()
        if process.returncode is None:
            process.kill()
