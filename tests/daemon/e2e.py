"""Helpers for end-to-end tests: a real daemon in-process, real clients in subprocesses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from drivers.fake import FakePlatform
from ephysd.actor import ActorLimits
from ephysd.app import Daemon
from ephysd.config import Settings

HERE = Path(__file__).parent
PY_CLIENT = HERE / "clients" / "sio_steps.py"
SYNC_CLIENT = HERE / "clients" / "sync_client.py"
JS_CLIENT = HERE / "js" / "steps.js"
PINPOINT_ID = "1a2b3c4d"

REPO = Path(__file__).resolve().parents[2]
"""The checkout: where the banner's commands run, as after ``make run``."""


PROXY = HERE / "clients" / "relay_proxy.py"


@asynccontextmanager
async def running_daemon(
    platform: FakePlatform | None = None,
    reload_settings: Callable[[], Settings] | None = None,
    **settings: Any,
) -> AsyncIterator[Daemon]:
    """The whole daemon on an ephemeral loopback port, for the block's duration."""
    daemon = Daemon(
        Settings(listen="127.0.0.1:0", **settings),
        platform or FakePlatform(),
        limits=ActorLimits(),
        pinpoint_id=PINPOINT_ID,
        reload_settings=reload_settings,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        try:
            yield daemon
        finally:
            nursery.cancel_scope.cancel()


def url_of(daemon: Daemon) -> str:
    assert daemon.address is not None
    host, port = daemon.address
    return f"http://{host}:{port}"


def port_of(daemon: Daemon) -> int:
    assert daemon.address is not None
    return int(daemon.address[1])


def move(mid: str, x: float, speed: float) -> str:
    """A ``set_position`` request along x alone, from the fake rig's origin."""
    return json.dumps(
        {"ManipulatorId": mid, "Position": {"x": x, "y": 0, "z": 0, "w": 0}, "Speed": speed}
    )


def client_command(kind: str, url: str, steps: list[list[Any]]) -> list[str]:
    if kind == "python":
        return [sys.executable, str(PY_CLIENT), url, json.dumps(steps)]
    return ["node", str(JS_CLIENT), url, json.dumps(steps)]


async def run_client(
    kind: str, url: str, steps: list[list[Any]], timeout_s: float = 60
) -> list[Any]:
    """Run one client through ``steps``; its printed results, one per step."""
    with trio.fail_after(timeout_s):
        done = await trio.run_process(
            client_command(kind, url, steps),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = done.stdout.decode()
    assert done.returncode == 0, f"{kind} client failed:\n{out}\n{done.stderr.decode()}"
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def run_sync_client(
    url: str, transports: list[str] | None, timeout_s: float = 60
) -> dict[str, Any]:
    """python-socketio's blocking Client: connect, call get_version; what it printed."""
    with trio.fail_after(timeout_s):
        done = await trio.run_process(
            [sys.executable, str(SYNC_CLIENT), url, json.dumps(transports)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, f"sync client failed:\n{done.stdout!r}\n{done.stderr.decode()}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class LiveClient:
    """A child process we can read line by line, pause and kill."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._stream = process.stdout
        self._buffer = b""

    async def next_line(self, timeout_s: float = 20) -> str:
        with trio.fail_after(timeout_s):
            while b"\n" not in self._buffer:
                chunk = await self._stream.receive_some()
                if not chunk:
                    raise EOFError("child process exited")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def next_result(self, timeout_s: float = 20) -> Any:
        return json.loads(await self.next_line(timeout_s))


@asynccontextmanager
async def live_client(kind: str, url: str, steps: list[list[Any]]) -> AsyncIterator[LiveClient]:
    async with live_process(client_command(kind, url, steps)) as client:
        yield client


@asynccontextmanager
async def live_process(command: list[str]) -> AsyncIterator[LiveClient]:
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, command, stdout=-1, check=False)
        )
        try:
            yield LiveClient(process)
        finally:
            process.kill()


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes) -> bytes:
    """Everything a process wrote until ``marker`` appears; fails if it exits first."""
    seen = b""
    while marker not in seen:
        chunk = await stream.receive_some()
        assert chunk, seen
        seen += chunk
    return seen


async def run_as_shown(command: str) -> subprocess.CompletedProcess[bytes]:
    """A command the daemon's banner shows, run as its reader would: by bash, in the checkout."""
    return await trio.run_process(
        ["bash", "-c", command],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=REPO,
    )


async def devrig_example(*args: str) -> tuple[str, subprocess.CompletedProcess[bytes], int | None]:
    """``python -m ephysd.devrig *args``: run the command its banner shows (from the
    checkout, as ``make run``'s user would), then Ctrl-C it.

    Returns the banner, the one-liner's completed process and the rig's exit status.
    """
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ephysd.devrig", *args, "--listen", "127.0.0.1:0"],
            stdout=-1,
            stderr=-1,
        )
        try:
            assert process.stdout is not None
            text = (await read_until(process.stdout, b"Ctrl-C")).decode()
            command = next(
                line.strip()
                for line in text.splitlines()
                if line.strip().startswith(".venv/bin/python ")
            )
            done = await run_as_shown(command)
        finally:
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    return text, done, process.returncode


@asynccontextmanager
async def in_background(
    call: Callable[[], Awaitable[str]], under_way_s: float = 0.4, timeout_s: float = 10
) -> AsyncIterator[list[str]]:
    """Start ``call`` (a motion, say), enter the block once it is under way, and
    leave only when it has answered; the yielded list then holds its answer."""
    answers: list[str] = []

    async def run() -> None:
        answers.append(await call())

    with trio.fail_after(timeout_s):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.sleep(under_way_s)
            yield answers
