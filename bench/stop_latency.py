"""How fast ``stop`` ends a long move on the fake platform, through Socket.IO.

    .venv/bin/python bench/stop_latency.py [--stops 50]

Starts ``ephysd --platform fake`` and connects python-socketio's AsyncClient
over WebSocket, as Pinpoint's own client would. Each round starts a move of
manipulator 0 that would take 10 s (10 mm at 1 mm/s), lets it run for 0.1 s,
sends ``stop`` and times two things from the moment ``stop`` is sent: its own
ack, and the ack of the stopped ``set_position``, which must carry the
"did not reach" error. Issue 3 asks for the move to end within 50 ms. The
figures are printed, not asserted (the machines are noisy); any round
whose answers are wrong makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import socketio
from _common import (
    REPO_DIR,
    BenchError,
    ServerSpec,
    free_port,
    machine_conditions,
    make_log_dir,
    percentile,
    running,
)

EPHYSD_CONFIG = REPO_DIR / "bench" / "ephysd-bench.toml"
RUN_S = 0.1
ANSWER_TIMEOUT_S = 5.0


def move(x: float) -> dict[str, Any]:
    return {"ManipulatorId": "0", "Position": {"x": x, "y": 0, "z": 0, "w": 0}, "Speed": 1.0}


async def one_stop(client: Any, x: float) -> tuple[float, float, str]:
    """(stop acked, move acked) in seconds after the stop was sent, and the move's error."""
    loop = asyncio.get_running_loop()
    moved: asyncio.Future[str] = loop.create_future()
    await client.emit("set_position", move(x), callback=moved.set_result)
    await asyncio.sleep(RUN_S)
    sent = time.perf_counter()
    stop_answer = await client.call("stop", "0", timeout=ANSWER_TIMEOUT_S)
    stopped = time.perf_counter() - sent
    answer = await asyncio.wait_for(moved, ANSWER_TIMEOUT_S)
    ended = time.perf_counter() - sent
    if stop_answer != "":
        raise BenchError(f"stop answered {stop_answer!r}")
    return stopped, ended, str(json.loads(answer)["Error"])


async def measure(port: int, stops: int) -> tuple[list[float], list[float]]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
    stop_ms: list[float] = []
    end_ms: list[float] = []
    try:
        for i in range(stops):
            # Alternate ends of the axis so that every move has ~10 mm to go.
            stopped, ended, error = await one_stop(client, 10.0 if i % 2 == 0 else -10.0)
            if "did not reach target position" not in error:
                raise BenchError(f"round {i}: the stopped move answered {error!r}")
            stop_ms.append(stopped * 1000)
            end_ms.append(ended * 1000)
    finally:
        await client.disconnect()
    return stop_ms, end_ms


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=int, default=50, help="stopped moves (50)")
    args = parser.parse_args(argv)
    port = free_port()
    argv_ = [sys.executable, "-m", "ephysd.cli", "--platform", "fake"]
    argv_ += ["--listen", f"127.0.0.1:{port}", "--config", str(EPHYSD_CONFIG)]
    spec = ServerSpec("ephysd (fake)", argv_, port)
    try:
        with running(spec, make_log_dir()):
            stop_ms, end_ms = asyncio.run(measure(port, args.stops))
    except (BenchError, OSError, TimeoutError, socketio.exceptions.SocketIOError) as exc:
        print(f"stop_latency: FAILED: {exc}")
        return 1
    print(f"stop_latency: {machine_conditions()}")
    print(f"{args.stops} moves of 10 mm at 1 mm/s, each stopped after {RUN_S * 1000:.0f} ms")
    for name, values in (("stop acked", stop_ms), ("move ended (its ack)", end_ms)):
        print(
            f"{name:22s} p50 {percentile(values, 50):6.2f} ms  p99 {percentile(values, 99):6.2f} ms"
            f"  max {max(values):6.2f} ms"
        )
    worst = max(end_ms)
    print(f"every stopped move acked 'did not reach'; slowest {worst:.2f} ms (target < 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
