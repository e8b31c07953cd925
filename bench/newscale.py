"""New Scale driver through the simulator's pty: position reads/s and stop-to-halt latency.

Run: ``.venv/bin/python bench/newscale.py [--manipulators 2] [--stops 200]``

Each simulated bridge runs as its own process (``python -m drivers.newscale.sim``),
so the figures are the driver's own round trips over a real pty, not a shared
event loop. Measured at the driver level (what an actor calls): the time from
cancelling a move's scope (what ``stop`` does) to the driver writing ``<03>``,
taken from the transport's wire log, and position reads per second per
manipulator with all manipulators reading at once. Each position read is three
stage selects and three ``10`` transactions, so the per-transaction time is
also printed. The integrator may extend this to time the ``stop`` event over
Socket.IO.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import trio

from drivers.newscale.driver import NewScaleManipulator

HALT = b"<03>\r"
TRANSACTIONS_PER_READ = 6


class WireClock(logging.Handler):
    """Timestamps of ``<03>`` writes, from the transport's ``>>`` debug line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.halts: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "%s >> %r" and record.args and record.args[1] == HALT:  # type: ignore[index]
            self.halts.append(time.perf_counter())


@contextlib.asynccontextmanager
async def simulators(count: int, workdir: Path) -> AsyncIterator[list[str]]:
    """``count`` simulator processes; yields their pty paths."""
    paths: list[str] = []
    async with trio.open_nursery() as nursery:
        for i in range(count):
            link = workdir / f"newscale-{i}"
            process: trio.Process = await nursery.start(
                _run_sim, [sys.executable, "-m", "drivers.newscale.sim", "--link", str(link)]
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


async def reads_per_second(devices: list[NewScaleManipulator], seconds: float) -> list[int]:
    counts = [0] * len(devices)

    async def reader(i: int) -> None:
        with trio.move_on_after(seconds):
            while True:
                await devices[i].position()
                counts[i] += 1

    async with trio.open_nursery() as nursery:
        for i in range(len(devices)):
            nursery.start_soon(reader, i)
    return [round(c / seconds) for c in counts]


async def stop_latencies(device: NewScaleManipulator, stops: int, wire: WireClock) -> list[float]:
    latencies: list[float] = []
    targets = [np.array([2.0, 7.5, 7.5, 0.0]), np.array([13.0, 7.5, 7.5, 0.0])]
    for i in range(stops):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def move(scope: trio.CancelScope = scope, i: int = i) -> None:
                with scope:
                    await device.move_to(targets[i % 2], 3.0)

            nursery.start_soon(move)
            await trio.sleep(0.02 + 0.01 * (i % 4))  # somewhere in the polling loop
            wire.halts.clear()
            t0 = time.perf_counter()
            scope.cancel()
        if not wire.halts:
            raise RuntimeError(f"stop {i}: no <03> written")
        latencies.append(wire.halts[0] - t0)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
    wire = WireClock()
    transport_log = logging.getLogger("drivers.newscale.transport")
    transport_log.setLevel(logging.DEBUG)
    transport_log.addHandler(wire)
    transport_log.propagate = False
    with tempfile.TemporaryDirectory(prefix="ephysd-bench-newscale-") as tmp:
        async with simulators(args.manipulators, Path(tmp)) as paths:
            devices = [NewScaleManipulator(str(i + 1), p) for i, p in enumerate(paths)]
            for device in devices:
                await device.open()
            rates = await reads_per_second(devices, args.seconds)
            for device, rate in zip(devices, rates, strict=True):
                per_tx_ms = 1000 / (rate * TRANSACTIONS_PER_READ)
                print(
                    f"manipulator {device.id}: {rate} position reads/s "
                    f"({per_tx_ms:.3f} ms per serial transaction incl. the simulator)"
                )
            latencies = await stop_latencies(devices[0], args.stops, wire)
            ms = [x * 1000 for x in latencies]
            print(
                f"stop -> <03> written, {len(ms)} stops during moves: "
                f"p50 {percentile(ms, 50):.3f} ms, p99 {percentile(ms, 99):.3f} ms, "
                f"max {max(ms):.3f} ms, mean {statistics.mean(ms):.3f} ms"
            )
            for device in devices:
                await device.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--manipulators", type=int, default=2)
    parser.add_argument("--stops", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    trio.run(main, parser.parse_args())
