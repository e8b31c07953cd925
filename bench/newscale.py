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
written", since it includes the client's send and the simulator's read.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio
from _common import percentile
from _serial import RawSocketIO, process_cpu_s, simulators, socketio_session, start_daemon

from drivers.base import DeviceError, Vector
from drivers.newscale.driver import NewScaleManipulator
from drivers.newscale.sim import NewScaleSim

HALT = b"<03>\r"
TRANSACTIONS_PER_READ = 6
READS_VIA_DAEMON = 2000


class WireClock(logging.Handler):
    """Timestamps of ``<03>`` writes, from the transport's ``>>`` debug line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.halts: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "%s >> %r" and record.args and record.args[1] == HALT:  # type: ignore[index]
            self.halts.append(time.perf_counter())


async def reads_per_second(devices: list[NewScaleManipulator], seconds: float) -> list[int]:
    counts = [0] * len(devices)

    async def reader(i: int) -> None:
        with trio.move_on_after(seconds):
            while True:
                try:
                    await devices[i].position()
                except DeviceError as exc:  # a starved simulator on a loaded machine
                    print(f"manipulator {devices[i].id}: read failed: {exc}")
                    continue
                counts[i] += 1

    async with trio.open_nursery() as nursery:
        for i in range(len(devices)):
            nursery.start_soon(reader, i)
    return [round(c / seconds) for c in counts]


async def stop_latencies(device: NewScaleManipulator, stops: int, wire: WireClock) -> list[float]:
    latencies: list[float] = []
    targets: list[Vector] = [(2.0, 7.5, 7.5, 0.0), (13.0, 7.5, 7.5, 0.0)]
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


async def main(args: argparse.Namespace) -> None:
    wire = WireClock()
    transport_log = logging.getLogger("drivers.newscale.transport")
    transport_log.addHandler(wire)
    transport_log.propagate = False
    with tempfile.TemporaryDirectory(prefix="ephysd-bench-newscale-") as tmp:
        async with simulators("drivers.newscale.sim", args.manipulators, Path(tmp)) as paths:
            devices = [NewScaleManipulator(str(i + 1), p) for i, p in enumerate(paths)]
            for device in devices:
                await device.open()
            cpu0 = time.process_time()
            rates = await reads_per_second(devices, args.seconds)
            cpu = time.process_time() - cpu0
            for device, rate in zip(devices, rates, strict=True):
                per_tx_ms = 1000 / (rate * TRANSACTIONS_PER_READ)
                print(
                    f"manipulator {device.id}: {rate} position reads/s "
                    f"({per_tx_ms:.3f} ms per serial transaction, round trip incl. the simulator)"
                )
            transactions = sum(rates) * args.seconds * TRANSACTIONS_PER_READ
            print(f"driver CPU per serial transaction: {cpu / transactions * 1000:.3f} ms")
            if args.stops:
                transport_log.setLevel(logging.DEBUG)  # only now: it costs CPU per frame
                latencies = await stop_latencies(devices[0], args.stops, wire)
                transport_log.setLevel(logging.INFO)
                ms = [x * 1000 for x in latencies]
                print(
                    f"stop -> <03> written, {len(ms)} stops during moves: "
                    f"p50 {percentile(ms, 50):.3f} ms, p99 {percentile(ms, 99):.3f} ms, "
                    f"max {max(ms):.3f} ms, mean {statistics.mean(ms):.3f} ms"
                )
            for device in devices:
                await device.close()
        if args.stops_via_daemon:
            await daemon_stops(args.stops_via_daemon, Path(tmp))


async def daemon_stops(stops: int, workdir: Path) -> None:
    sim = NewScaleSim(link=str(workdir / "newscale-daemon"))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        daemon_log: list[bytes] = []
        daemon, url = await start_daemon(
            nursery, ["--platform", "newscale", "--port", sim.path], daemon_log
        )
        try:
            async with socketio_session(url) as client:
                cpu0 = process_cpu_s(daemon.pid)
                reads, elapsed = await _read_loop(client, READS_VIA_DAEMON)
                cpu = process_cpu_s(daemon.pid) - cpu0
                transactions = reads * TRANSACTIONS_PER_READ
                print(
                    f"via ephysd + Socket.IO: {reads / elapsed:.0f} get_position/s one in flight; "
                    f"daemon CPU {cpu / transactions * 1000:.3f} ms per serial transaction "
                    f"(Socket.IO + actor + driver, {TRANSACTIONS_PER_READ} transactions per read)"
                )
                latencies = await _stop_loop(sim, client, stops)
        except BaseException:
            sys.stderr.write(b"".join(daemon_log).decode(errors="replace")[-3000:])
            raise
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        print(
            f"via ephysd + Socket.IO: stop sent -> <03> read by the simulator, {len(latencies)} "
            f"stops: p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {max(latencies):.3f} ms"
        )
        daemon.terminate()
        with trio.move_on_after(5):
            await daemon.wait()
        nursery.cancel_scope.cancel()


async def _read_loop(client: RawSocketIO, reads: int) -> tuple[int, float]:
    start = trio.current_time()
    for _ in range(reads):
        answer = await client.answer(await client.send("get_position", "1"))
        assert isinstance(answer, list) and '"Error":""' in str(answer[0]), answer
    return reads, trio.current_time() - start


async def _stop_loop(sim: NewScaleSim, client: RawSocketIO, stops: int) -> list[float]:
    latencies: list[float] = []
    for i in range(stops):
        x = 2.0 if i % 2 == 0 else 13.0
        target = {"x": x, "y": 7.5, "z": 7.5, "w": 7.5}
        request = json.dumps({"ManipulatorId": "1", "Position": target, "Speed": 3.0})
        move = await client.send("set_position", request)
        await trio.sleep(0.03 + 0.01 * (i % 4))
        seen = len(sim.received)
        t0 = trio.current_time()
        stop = await client.send("stop", "1")
        assert await client.answer(stop) == [""], "stop failed"
        await client.answer(move)
        halts = [r.time for r in sim.received[seen:] if r.raw == HALT]
        if not halts:
            raise RuntimeError(f"stop {i}: the simulator saw no <03>")
        latencies.append((halts[0] - t0) * 1000)
    return latencies


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--manipulators", type=int, default=2)
    parser.add_argument("--stops", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--stops-via-daemon", type=int, default=200, help="0 skips the daemon measurement"
    )
    trio.run(main, parser.parse_args())
