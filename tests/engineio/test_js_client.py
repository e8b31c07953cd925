"""The official JavaScript engine.io-client against our conformance echo server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trio

from tests.engineio.conftest import EIO

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "echo_client.cjs"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "engine.io-client").is_dir(),
    reason="needs node and node_modules (make test installs them)",
)


async def run_client(eio: EIO, transports: str) -> dict[str, object]:
    assert NODE is not None
    with trio.fail_after(20):
        done = await trio.run_process(
            [NODE, str(SCRIPT), f"http://127.0.0.1:{eio.port}", transports, "800"],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
        )
    result: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("transports", "final"),
    [("polling", "polling"), ("websocket", "websocket"), ("polling,websocket", "websocket")],
)
async def test_engine_io_client_exchanges_text_and_binary_and_survives_heartbeats(
    eio: EIO, transports: str, final: str
) -> None:
    result = await run_client(eio, transports)
    assert result["error"] is None
    assert result["opened"] is True
    assert result["transport"] == final
    echoes = result["echoes"]
    assert isinstance(echoes, list)
    assert sorted(echoes[:2], key=str) == sorted(["hello µm", [1, 2, 3, 250]], key=str)
    assert echoes[2] == "still here"


async def test_a_poll_sent_right_after_the_upgrade_frames_is_refused_as_upgraded(
    eio: EIO,
) -> None:
    """The official suite's race: "2probe" and "5" go out on the WebSocket, then
    a poll on another connection; whichever the server reads first, the poll is
    refused (never answered with a noop as if the session still polled)."""
    assert NODE is not None
    script = Path(__file__).parent / "js" / "upgrade_race.cjs"
    with trio.fail_after(30):
        done = await trio.run_process(
            [NODE, str(script), f"http://127.0.0.1:{eio.port}", "/engine.io/", "30"],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
        )
    statuses = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert [status for status, _text in statuses] == [400] * 30, statuses
