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
import functools
import json
import tempfile
from pathlib import Path

import trio
from _common import cpu_seconds
from _serial import (
    WireClock,
    daemon_session,
    driver_stops,
    latency_summary,
    open_and_read,
    serial_bench_arguments,
    simulators,
    socketio_reads,
    socketio_stops,
)

from drivers.base import Vector
from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.sim import NewScaleSim

HALT = b"<03>\r"
TARGETS: list[Vector] = [(2.0, 7.5, 7.5, 0.0), (13.0, 7.5, 7.5, 0.0)]
SPEED_MM_S = 3.0
TRANSACTIONS_PER_READ = 6
READS_VIA_DAEMON = 2000


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
            await through_the_daemon(args.stops_via_daemon, Path(tmp))


def _far_move(manipulator: str, i: int) -> str:
    """A set_position that a stop will interrupt: 5.5 mm at 3 mm/s, one way then the other."""
    target = {"x": 2.0 if i % 2 == 0 else 13.0, "y": 7.5, "z": 7.5, "w": 7.5}
    return json.dumps({"ManipulatorId": manipulator, "Position": target, "Speed": SPEED_MM_S})


async def through_the_daemon(stops: int, workdir: Path) -> None:
    sim = NewScaleSim(link=str(workdir / "newscale-daemon"))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        flags = ["--platform", "newscale", "--port", sim.path]
        async with daemon_session(flags) as (daemon, client):
            cpu0 = cpu_seconds(daemon.pid)
            rate = await socketio_reads(client, "1", READS_VIA_DAEMON)
            cpu = cpu_seconds(daemon.pid) - cpu0
            transactions = READS_VIA_DAEMON * TRANSACTIONS_PER_READ
            print(
                f"via ephysd + Socket.IO: {rate:.0f} get_position/s one in flight; "
                f"daemon CPU {cpu / transactions * 1000:.3f} ms per serial transaction "
                f"(Socket.IO + actor + driver, {TRANSACTIONS_PER_READ} transactions per read)"
            )
            latencies = await socketio_stops(
                client,
                stops,
                move=functools.partial(_far_move, "1"),
                halts=lambda: [r.time for r in sim.received if r.raw == HALT],
            )
        print(
            latency_summary(
                "via ephysd + Socket.IO: stop sent -> <03> read by the simulator", latencies
            )
        )
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    description = __doc__.splitlines()[0] if __doc__ else None
    trio.run(main, serial_bench_arguments(description).parse_args())
