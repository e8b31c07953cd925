"""A daemon on the fake platform never loads numpy.

numpy is for the coordinate transforms inside the real drivers; the contract
between actor and driver is four plain floats. Importing numpy costs about
12 MiB of resident memory, which counts against issue 3's idle-RSS target, so a
daemon whose platform has no transform must not load it, not even to serve a
move. The tests look at what the running daemon has mapped (/proc/PID/maps):
importing numpy always maps its compiled core from the numpy package.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.daemon.e2e import run_client

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="reads a process's memory map from /proc"
)

LISTENING = re.compile(rb"listening on (http://\S+)")


def numpy_is_mapped(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return any("/numpy/" in line for line in maps.splitlines())


@asynccontextmanager
async def python_child(*args: str) -> AsyncIterator[tuple[trio.Process, trio.abc.ReceiveStream]]:
    """``python ARGS`` with stdin open (so it can wait on it) and its output readable."""
    process = await trio.lowlevel.open_process(
        [sys.executable, *args], stdin=-1, stdout=-1, stderr=subprocess.STDOUT
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout
    finally:
        process.kill()
        with trio.move_on_after(10):
            await process.wait()


async def read_match(stream: trio.abc.ReceiveStream, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
    """Read until ``pattern`` matches the output so far; fails if the process exits first."""
    seen = b""
    while (match := pattern.search(seen)) is None:
        chunk = await stream.receive_some()
        assert chunk, seen.decode(errors="replace")
        seen += chunk
    return match


async def test_a_fake_daemon_that_has_served_a_move_has_not_loaded_numpy() -> None:
    with trio.fail_after(60):
        async with python_child(
            "-m", "ephysd", "--platform", "fake", "--listen", "127.0.0.1:0"
        ) as (daemon, output):
            url = (await read_match(output, LISTENING)).group(1).decode()
            move = {"ManipulatorId": "1", "Position": {"x": 1, "y": 2, "z": 0, "w": 0}, "Speed": 10}
            _, moved, position, _ = await run_client(
                "python",
                url,
                [
                    ["connect"],
                    ["call", "set_position", json.dumps(move)],
                    ["call", "get_position", "1"],
                    ["disconnect"],
                ],
            )
            expected = {"Position": {"x": 1.0, "y": 2.0, "z": 0.0, "w": 0.0}, "Error": ""}
            assert json.loads(moved) == json.loads(position) == expected
            assert daemon.returncode is None
            assert not numpy_is_mapped(daemon.pid)


async def test_the_memory_map_check_sees_numpy_in_a_process_that_imports_it() -> None:
    with trio.fail_after(30):
        async with python_child(
            "-c", "import sys, numpy; print('imported', flush=True); sys.stdin.read()"
        ) as (child, output):
            await read_match(output, re.compile(rb"imported"))
            assert numpy_is_mapped(child.pid)
