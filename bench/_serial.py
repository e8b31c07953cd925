"""Pieces the serial-platform benches share: simulator processes, a daemon, a raw client.

Each serial bench (``newscale.py`` and the ones after it) measures its driver
through a simulator on a pty and then through ``ephysd`` and Socket.IO; these
are the parts that do not depend on the platform.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio
from trio_websocket import WebSocketConnection, open_websocket_url


@contextlib.asynccontextmanager
async def simulators(
    module: str, count: int, workdir: Path, *extra: str
) -> AsyncIterator[list[str]]:
    """``count`` processes of ``python -m module --link ...``; yields their pty paths."""
    paths: list[str] = []
    async with trio.open_nursery() as nursery:
        for i in range(count):
            link = workdir / f"{module.rsplit('.', 2)[-2]}-{i}"
            process: trio.Process = await nursery.start(
                _run_sim, [sys.executable, "-m", module, "--link", str(link), *extra]
            )
            assert process.stdout is not None
            with trio.fail_after(20):
                line = b""
                while not line.endswith(b"\n"):
                    line += await process.stdout.receive_some(1)
            paths.append(line.decode().split(" ", 1)[1].strip())
        try:
            yield paths
        finally:
            nursery.cancel_scope.cancel()


async def _run_sim(
    command: list[str], *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
) -> None:
    await trio.run_process(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        check=False,
        task_status=task_status,
    )


async def start_daemon(
    nursery: trio.Nursery, flags: Sequence[str], log: list[bytes]
) -> tuple[trio.Process, str]:
    """``ephysd *flags`` on a free port; returns it and its WebSocket URL once it listens.

    Its output is collected in ``log`` (print it when a bench fails).
    """
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
    text = b""
    with trio.fail_after(30):
        while b"listening on http://" not in text:
            chunk = await daemon.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"ephysd exited: {text.decode(errors='replace')[-2000:]}")
            text += chunk
    port = int(text.split(b"listening on http://127.0.0.1:")[1].split(b"\n")[0].strip())
    log.append(text)
    nursery.start_soon(drain, daemon.stdout, log)
    return daemon, f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"


class RawSocketIO:
    """Just enough Engine.IO v4 / Socket.IO v5 text to send events and read acks."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.acks: dict[int, trio.Event] = {}
        self.answers: dict[int, object] = {}

    async def handshake(self) -> None:
        opening = await self.ws.get_message()
        assert isinstance(opening, str) and opening.startswith("0"), opening
        await self.ws.send_message("40")
        while not str(await self.ws.get_message()).startswith("40"):
            pass

    async def pump(self) -> None:
        while True:
            message = str(await self.ws.get_message())
            if message == "2":
                await self.ws.send_message("3")
            elif message.startswith("43"):
                digits = len(message) - len(message[2:].lstrip("0123456789"))
                ack_id = int(message[2:digits])
                self.answers[ack_id] = json.loads(message[digits:])
                self.acks.pop(ack_id).set()

    async def send(self, event: str, *args: object) -> int:
        self.next_id += 1
        self.acks[self.next_id] = trio.Event()
        await self.ws.send_message(f"42{self.next_id}" + json.dumps([event, *args]))
        return self.next_id

    async def answer(self, ack_id: int) -> object:
        event = self.acks.get(ack_id)
        if event is not None:
            with trio.fail_after(30):
                await event.wait()
        return self.answers.pop(ack_id)


@contextlib.asynccontextmanager
async def socketio_session(url: str) -> AsyncIterator[RawSocketIO]:
    """One session for the whole run: the daemon lets one controller in at a time."""
    async with trio.open_nursery() as nursery, open_websocket_url(url) as ws:
        client = RawSocketIO(ws)
        await client.handshake()
        nursery.start_soon(client.pump)
        yield client
        nursery.cancel_scope.cancel()


def process_cpu_s(pid: int) -> float:
    """User + system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(stream: trio.abc.ReceiveStream, keep: list[bytes]) -> None:
    while data := await stream.receive_some(65536):
        keep.append(bytes(data))
