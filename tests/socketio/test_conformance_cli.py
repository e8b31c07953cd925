"""``python -m protocol.conformance engineio|socketio --port N`` starts the right server."""

from __future__ import annotations

import re

import pytest

from tests.socketio.raw import raw_socket
from tests.socketio.subprocesses import PYTHON, child


def bound_port(line: str) -> int:
    match = re.search(r":(\d+)", line)
    assert match, line
    return int(match.group(1))


async def test_socketio_mode_serves_the_socketio_conformance_server() -> None:
    args = [PYTHON, "-m", "protocol.conformance", "socketio", "--port", "0", "--host", "127.0.0.1"]
    async with child(args) as server:
        line = await server.wait_for_line("", within=20)
        while "socketio conformance server listening" not in line:
            line = await server.wait_for_line("", within=20)
        async with raw_socket(bound_port(line.rsplit("http://", 1)[1])) as sock:
            await sock.handshake()
            await sock.join("/custom,")
            assert await sock.recv_packet() == '42/custom,["auth",{}]'


async def test_engineio_mode_serves_an_echo_server() -> None:
    async with child([PYTHON, "-m", "protocol.conformance", "engineio", "--port", "0"]) as server:
        line = await server.wait_for_line("", within=20)
        while "listening on" not in line:
            line = await server.wait_for_line("", within=20)
        port = bound_port(line.rsplit("listening on", 1)[1])
        async with raw_socket(port, "EIO=4&transport=websocket", path="/engine.io/") as sock:
            await sock.handshake()
            await sock.send("4hello")
            assert await sock.recv_packet() == "4hello"


@pytest.mark.parametrize("argv", [[], ["mqtt"], ["socketio", "--port", "x"]])
async def test_bad_arguments_exit_with_usage(argv: list[str]) -> None:
    async with child([PYTHON, "-m", "protocol.conformance", *argv]) as cli:
        line = await cli.wait_for_line("usage:", within=20)
        assert "protocol.conformance" in line
