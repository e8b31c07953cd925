"""How fast ``stop`` and ``abort_jackhammer`` end a motion on the fake platform, through Socket.IO.

    .venv/bin/python bench/stop_latency.py [--stops 50]

Starts ``ephysd --platform fake`` (default settings) and connects
python-socketio's AsyncClient over WebSocket, as Pinpoint's own client would.
Three series of ``--stops`` rounds each, on manipulator 0:

- stop a move: a ``set_position`` that would take 10 s (10 mm at 1 mm/s),
  stopped with ``stop`` after 0.1 s; its ack must say "did not reach"
  (issue 3: within 50 ms);
- abort a jackhammer: a closed-loop ``jackhammer`` whose target is out of
  reach, ended with ``abort_jackhammer`` after 0.3 s; its ack must carry
  StopReason ``aborted`` and an empty Error (issue 13: within 100 ms);
- stop a jackhammer: the same, ended with ``stop``; its ack must say it was
  stopped (issue 13: within 100 ms).

Each round times two things from the moment the stop is sent: the stop's own
ack, and the ack of the motion it ended. The figures are printed, not
asserted (the machines are noisy); any round whose answers are wrong makes the
exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import socketio
from _common import (
    REPLY_TIMEOUT_S,
    BenchError,
    ServerSpec,
    ephysd_fake_argv,
    free_port,
    machine_conditions,
    make_log_dir,
    percentile,
    running,
)

ENDLESS_JACKHAMMER = json.dumps(
    {"ManipulatorId": "0", "ClosedLoop": True, "TargetUm": 1e6, "MaxIterations": 1000}
)


def move(x: float) -> dict[str, Any]:
    return {"ManipulatorId": "0", "Position": {"x": x, "y": 0, "z": 0, "w": 0}, "Speed": 1.0}


def move_was_stopped(answer: dict[str, Any]) -> bool:
    return "did not reach target position" in str(answer.get("Error"))


def jackhammer_was_aborted(answer: dict[str, Any]) -> bool:
    return answer.get("StopReason") == "aborted" and answer.get("Error") == ""


def jackhammer_was_stopped(answer: dict[str, Any]) -> bool:
    return answer.get("Error") == "Manipulator 0 jackhammer was stopped."


@dataclass
class Series:
    name: str
    target_ms: float
    start: Callable[[int], tuple[str, Any]]  # round -> (event, data) of the motion
    run_s: float
    stop: tuple[str, Any]  # (event, data); data None: no argument
    stop_answer: str
    ended_well: Callable[[dict[str, Any]], bool]


SERIES = [
    Series(
        "stop a move",
        50.0,
        # Alternate ends of the axis so that every move has ~10 mm to go.
        lambda i: ("set_position", move(10.0 if i % 2 == 0 else -10.0)),
        0.1,
        ("stop", "0"),
        "",
        move_was_stopped,
    ),
    Series(
        "abort a jackhammer",
        100.0,
        lambda _i: ("jackhammer", ENDLESS_JACKHAMMER),
        0.3,
        ("abort_jackhammer", None),
        '{"success": true}',
        jackhammer_was_aborted,
    ),
    Series(
        "stop a jackhammer",
        100.0,
        lambda _i: ("jackhammer", ENDLESS_JACKHAMMER),
        0.3,
        ("stop", "0"),
        "",
        jackhammer_was_stopped,
    ),
]


async def one_stop(client: Any, series: Series, i: int) -> tuple[float, float]:
    """(stop acked, motion acked) in seconds after the stop was sent."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[str] = loop.create_future()
    event, data = series.start(i)
    await client.emit(event, data, callback=ended.set_result)
    await asyncio.sleep(series.run_s)
    sent = time.perf_counter()
    stop_answer = await client.call(*series.stop, timeout=REPLY_TIMEOUT_S)
    stopped = time.perf_counter() - sent
    answer = await asyncio.wait_for(ended, REPLY_TIMEOUT_S)
    over = time.perf_counter() - sent
    if stop_answer != series.stop_answer:
        raise BenchError(f"{series.name}, round {i}: {series.stop[0]} answered {stop_answer!r}")
    if not series.ended_well(json.loads(answer)):
        raise BenchError(f"{series.name}, round {i}: the motion answered {answer!r}")
    return stopped, over


async def measure(port: int, stops: int) -> dict[str, tuple[list[float], list[float]]]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
    figures: dict[str, tuple[list[float], list[float]]] = {}
    try:
        for series in SERIES:
            stop_ms, end_ms = figures[series.name] = ([], [])
            for i in range(stops):
                stopped, ended = await one_stop(client, series, i)
                stop_ms.append(stopped * 1000)
                end_ms.append(ended * 1000)
    finally:
        await client.disconnect()
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stops", type=int, default=50, help="rounds per series (50)")
    args = parser.parse_args(argv)
    if not 1 <= args.stops <= 10_000:
        parser.error("--stops must be 1..10000")
    port = free_port()
    spec = ServerSpec("ephysd (fake)", ephysd_fake_argv(port), port)
    try:
        with running(spec, make_log_dir()):
            figures = asyncio.run(measure(port, args.stops))
    except (BenchError, OSError, TimeoutError, socketio.exceptions.SocketIOError) as exc:
        print(f"stop_latency: FAILED: {exc}")
        return 1
    print(f"stop_latency: {machine_conditions()}")
    print(f"{args.stops} rounds per series, python-socketio over WebSocket, manipulator 0")
    for series in SERIES:
        stop_ms, end_ms = figures[series.name]
        after, target = series.run_s * 1000, series.target_ms
        print(f"\n{series.name} (after {after:.0f} ms; target < {target:.0f} ms)")
        for name, values in ((f"{series.stop[0]} acked", stop_ms), ("motion acked", end_ms)):
            print(
                f"  {name:22s} p50 {percentile(values, 50):6.2f} ms"
                f"  p99 {percentile(values, 99):6.2f} ms  max {max(values):6.2f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
