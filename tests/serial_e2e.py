"""What the serial platforms' tests share: a simulator's command line as ``make run``
starts it, faults injected while a move runs, and a real ``ephysd`` driven by a
python-socketio client the way Pinpoint drives it.

The client (``tests/daemon/clients/line_client.py``) runs in its own process,
since pytest runs Trio and python-socketio needs asyncio; it takes one request
a line on stdin and prints each answer as a line.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tty
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from drivers.base import DeviceLost, Manipulator, Vector
from drivers.pty_sim import PtyDevice

CLIENT = Path(__file__).parent / "daemon" / "clients" / "line_client.py"
LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:\d+)")


class Lines:
    """Line reader over a child's pipe, with a deadline on every wait."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = b""

    async def line(self, timeout_s: float = 20) -> bytes:
        """The next line, without its newline."""
        with trio.fail_after(timeout_s):
            while b"\n" not in self.buf:
                data = await self.stream.receive_some(4096)
                if not data:
                    raise EOFError("child exited")
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    async def until(self, pattern: re.Pattern[bytes], timeout_s: float = 20) -> re.Match[bytes]:
        """The first match of ``pattern`` in the lines from now on."""
        with trio.fail_after(timeout_s):
            while True:
                if match := pattern.search(await self.line(timeout_s)):
                    return match


# --- simulators -------------------------------------------------------------------


class SimulatorProcess:
    """``python -m drivers.<platform>.sim``: lines on its stdout, commands on its stdin."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._lines = Lines(process.stdout)

    async def line(self) -> str:
        """The next line it printed (``PTY <path>`` on every (re)open)."""
        return (await self._lines.line(10)).decode()

    async def command(self, text: str) -> None:
        await self._stdin.send_all(text.encode() + b"\n")


@asynccontextmanager
async def simulator_process(module: str, link: Path, *args: str) -> AsyncIterator[SimulatorProcess]:
    """``python -m module --link link *args`` for the block; what is left of it is ended."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                [sys.executable, "-m", module, "--link", str(link), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
            )
        )
        yield SimulatorProcess(process)


@asynccontextmanager
async def raw_pty(path: str) -> AsyncIterator[trio.lowlevel.FdStream]:
    """A simulator's pty opened raw (no echo, no line editing), for a test that speaks bytes."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    async with trio.lowlevel.FdStream(fd) as stream:
        yield stream


async def until_lost(device: Manipulator) -> None:
    """Read ``device`` until it is DeviceLost (its simulator's cable was pulled), within 2 s."""
    with trio.fail_after(2), pytest.raises(DeviceLost):
        while True:
            await device.position()
            await trio.sleep(0.01)


async def unplug_and_replug(sim: PtyDevice, device: Manipulator, timeout_s: float) -> Vector:
    """Pull ``sim``'s cable, see ``device`` lost and its reopening refused while unplugged
    (the actor backs off and retries), plug it back and reopen within ``timeout_s``.

    Returns the position ``device`` reads then.
    """
    sim.close_device()
    with pytest.raises(DeviceLost):
        await device.position()
    with trio.fail_after(1), pytest.raises(DeviceLost, match="cannot open"):
        await device.open()
    sim.reopen_device()
    with trio.fail_after(timeout_s):
        await sim.wait_open()
        await device.open()
        return await device.position()


@asynccontextmanager
async def fault_after(delay_s: float, fault: Callable[[], object]) -> AsyncIterator[None]:
    """Inject ``fault`` (pull the cable, drop a reply, ...) ``delay_s`` into the block."""

    async def inject() -> None:
        await trio.sleep(delay_s)
        fault()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(inject)
        yield


# --- the daemon and a Socket.IO client ----------------------------------------------


class Client:
    """``line_client.py``: requests out, answers back matched by id."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.stdin = process.stdin
        self.lines = Lines(process.stdout)
        self.answers: dict[int, dict[str, Any]] = {}
        self.next_id = 0

    async def send(self, event: str, data: Any) -> int:
        self.next_id += 1
        request = {"id": self.next_id, "event": event, "data": data}
        await self.stdin.send_all(json.dumps(request).encode() + b"\n")
        return self.next_id

    async def answer(self, request_id: int, timeout_s: float = 20) -> dict[str, Any]:
        with trio.fail_after(timeout_s):
            while request_id not in self.answers:
                match = await self.lines.until(re.compile(rb"^\{.*\}$"), timeout_s)
                reply = json.loads(match.group(0))
                self.answers[reply["id"]] = reply
        return self.answers.pop(request_id)

    async def call(self, event: str, data: Any, timeout_s: float = 20) -> Any:
        return (await self.answer(await self.send(event, data), timeout_s))["answer"]


@asynccontextmanager
async def connected_client(url: str) -> AsyncIterator[Client]:
    """A client process connected to ``url``, killed at the end of the block."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                [sys.executable, str(CLIENT), url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
            )
        )
        try:
            client = Client(process)
            await client.lines.until(re.compile(rb'"connected"'))
            yield client
        finally:
            process.kill()


@asynccontextmanager
async def daemon_and_client(flags: Sequence[str]) -> AsyncIterator[tuple[trio.Process, Client]]:
    """``ephysd *flags`` on a free loopback port, and a client connected to it."""
    async with trio.open_nursery() as nursery:
        daemon: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                [sys.executable, "-m", "ephysd", *flags, "--listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
        )
        assert daemon.stdout is not None
        url = (await Lines(daemon.stdout).until(LISTENING)).group(1).decode()
        nursery.start_soon(_drain, daemon.stdout)
        try:
            async with connected_client(url) as client:
                yield daemon, client
        finally:
            daemon.terminate()
            with trio.move_on_after(5):
                await daemon.wait()
            nursery.cancel_scope.cancel()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some(65536):
        pass


def move(manipulator: str, position: dict[str, float], speed: float) -> str:
    """A ``set_position`` request."""
    return json.dumps({"ManipulatorId": manipulator, "Position": position, "Speed": speed})


def depth(manipulator: str, value: float, speed: float) -> str:
    """A ``set_depth`` request."""
    return json.dumps({"ManipulatorId": manipulator, "Depth": value, "Speed": speed})
