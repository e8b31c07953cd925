"""Start helper programs (other Socket.IO implementations) as subprocesses, with deadlines."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

HERE = Path(__file__).parent
REPO = HERE.parent.parent
PYTHON = sys.executable


class Child:
    """A running helper program whose stdout we read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""
        self.output: list[str] = []

    async def readline(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        while b"\n" not in self._buffer:
            chunk = await stdout.receive_some(4096)
            if not chunk:
                raise EOFError(f"child exited; output so far: {self.output!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        text = line.decode("utf-8", "replace")
        self.output.append(text)
        return text

    async def wait_for_line(self, prefix: str, within: float = 20.0) -> str:
        """The first stdout line starting with ``prefix`` (others are kept in ``output``)."""
        with trio.fail_after(within):
            while True:
                line = await self.readline()
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()


@asynccontextmanager
async def child(args: Sequence[str]) -> AsyncIterator[Child]:
    """Run ``args``; kill it on exit whatever happened."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=env
    )
    try:
        yield Child(process)
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()
