"""New Scale driver through the simulator's pty: position reads/s and stop-to-halt latency.

Run: ``.venv/bin/python bench/newscale.py [--manipulators 2] [--stops 200]``

Each simulated bridge runs as its own process (``python -m drivers.newscale.sim``),
so the figures are the driver's own round trips over a real pty, not a shared
event loop. Measured at the driver level (what an actor calls): the time from
cancelling a move's scope (what ``stop`` does) to the driver writing ``<03>``,
taken from the transport's wire log, and position reads per second per
manipulator with all manipulators reading at once. Each position read is three
stage selects and three ``10`` transactions, so the per-transaction time is
also printed, with the bench process's own CPU per transaction (the driver's
overhead; the simulators run in other processes).

Then through the daemon: ``ephysd --platform newscale --port <pty>`` as a
subprocess with an in-process simulator, and a raw Socket.IO client on a
WebSocket (``trio-websocket``) in the bench process. A ``set_position`` is
started, then ``stop`` is sent; the figure is from just before the ``stop``
frame is written by the client to the simulator reading ``<03>`` from the pty
(same clock): an upper bound of "stop event arrives at the daemon -> ``<03>``
written", since it includes the client's send and the simulator's read. Each
stop's ack must be ``""`` and its move's ack must say it did not reach the
target, or the bench fails.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import trio
from _serial import (
    WireClock,
    driver_stops,
    latency_summary,
    open_and_read,
    serial_bench_arguments,
    simulators,
    through_the_daemon,
)

from drivers.base import Vector
from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.sim import NewScaleSim

HALT = b"<03>\r"
TARGETS: list[Vector] = [(2.0, 7.5, 7.5, 0.0), (13.0, 7.5, 7.5, 0.0)]
SPEED_MM_S = 3.0
TRANSACTIONS_PER_READ = 6


async def main(args: argparse.Namespace) -> None:
    wire = WireClock("drivers.newscale.transport", HALT)
    with tempfile.TemporaryDirectory(prefix="ephysd-bench-newscale-") as tmp:
        async with simulators("drivers.newscale.sim", args.manipulators, Path(tmp)) as paths:
            devices = [NewScaleManipulator(str(i + 1), p) for i, p in enumerate(paths)]
            rates, cpu = await open_and_read(devices, args.seconds)
            for device, rate in zip(devices, rates, strict=True):
                per_tx_ms = 1000 / (rate * TRANSACTIONS_PER_READ)
                print(
                    f"manipulator {device.id}: {rate} position reads/s "
                    f"({per_tx_ms:.3f} ms per serial transaction, round trip incl. the simulator)"
                )
            transactions = sum(rates) * args.seconds * TRANSACTIONS_PER_READ
            print(f"driver CPU per serial transaction: {cpu / transactions * 1000:.3f} ms")
            if args.stops:
                with wire.measuring():
                    ms = await driver_stops(devices[0], args.stops, wire, TARGETS, SPEED_MM_S)
                print(latency_summary("driver: stop -> <03> written, during moves", ms))
            for device in devices:
                await device.close()
        if args.stops_via_daemon:
            await daemon_level(args.stops_via_daemon, Path(tmp))


def _far_move(i: int) -> str:
    """A set_position that a stop will interrupt: 5.5 mm at 3 mm/s, one way then the other."""
    target = {"x": 2.0 if i % 2 == 0 else 13.0, "y": 7.5, "z": 7.5, "w": 7.5}
    return json.dumps({"ManipulatorId": "1", "Position": target, "Speed": SPEED_MM_S})


async def daemon_level(stops: int, workdir: Path) -> None:
    sim = NewScaleSim(link=str(workdir / "newscale-daemon"))
    await through_the_daemon(
        sim,
        "newscale",
        stops,
        transactions_per_read=TRANSACTIONS_PER_READ,
        far_move=_far_move,
        halt="<03>",
        halts=lambda: [r.time for r in sim.received if r.raw == HALT],
    )


if __name__ == "__main__":
    description = __doc__.splitlines()[0] if __doc__ else None
    trio.run(main, serial_bench_arguments(description).parse_args())
