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
import contextlib
import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio
from _common import percentile
from trio_websocket import WebSocketConnection, open_websocket_url

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
        async with simulators(args.manipulators, Path(tmp)) as paths:
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


class RawSocketIO:
    """Just enough Engine.IO v4 / Socket.IO v5 text to send events and read acks."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.acks: dict[int, trio.Event] = {}
        self.answers: dict[int, object] = {}

    async def handshake(self) -> None:
        opening = await self.ws.get_message()
        assert isinstance(opening, str) and opening.startswith("0"), opening
        await self.ws.send_message("40")
        while not str(await self.ws.get_message()).startswith("40"):
            pass

    async def pump(self) -> None:
        while True:
            message = str(await self.ws.get_message())
            if message == "2":
                await self.ws.send_message("3")
            elif message.startswith("43"):
                digits = len(message) - len(message[2:].lstrip("0123456789"))
                ack_id = int(message[2:digits])
                self.answers[ack_id] = json.loads(message[digits:])
                self.acks.pop(ack_id).set()

    async def send(self, event: str, *args: object) -> int:
        self.next_id += 1
        self.acks[self.next_id] = trio.Event()
        await self.ws.send_message(f"42{self.next_id}" + json.dumps([event, *args]))
        return self.next_id

    async def answer(self, ack_id: int) -> object:
        event = self.acks.get(ack_id)
        if event is not None:
            with trio.fail_after(30):
                await event.wait()
        return self.answers.pop(ack_id)


async def daemon_stops(stops: int, workdir: Path) -> None:
    sim = NewScaleSim(link=str(workdir / "newscale-daemon"))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        command = [sys.executable, "-m", "ephysd", "--platform", "newscale", "--port", sim.path]
        daemon: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                [*command, "--listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
        )
        assert daemon.stdout is not None
        log = b""
        with trio.fail_after(30):
            while b"listening on http://" not in log:
                log += await daemon.stdout.receive_some(4096)
        port = int(log.split(b"listening on http://127.0.0.1:")[1].split(b"\n")[0].strip())
        daemon_log: list[bytes] = [log]
        nursery.start_soon(_drain, daemon.stdout, daemon_log)
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        try:
            async with socketio_session(url) as client:
                cpu0 = _process_cpu_s(daemon.pid)
                reads, elapsed = await _read_loop(client, READS_VIA_DAEMON)
                cpu = _process_cpu_s(daemon.pid) - cpu0
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


@contextlib.asynccontextmanager
async def socketio_session(url: str) -> AsyncIterator[RawSocketIO]:
    """One session for the whole run: the daemon lets one controller in at a time."""
    async with trio.open_nursery() as nursery, open_websocket_url(url) as ws:
        client = RawSocketIO(ws)
        await client.handshake()
        nursery.start_soon(client.pump)
        yield client
        nursery.cancel_scope.cancel()


async def _read_loop(client: RawSocketIO, reads: int) -> tuple[int, float]:
    start = trio.current_time()
    for _ in range(reads):
        answer = await client.answer(await client.send("get_position", "1"))
        assert isinstance(answer, list) and '"Error":""' in str(answer[0]), answer
    return reads, trio.current_time() - start


def _process_cpu_s(pid: int) -> float:
    """User + system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def _drain(stream: trio.abc.ReceiveStream, keep: list[bytes]) -> None:
    while data := await stream.receive_some(65536):
        keep.append(bytes(data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--manipulators", type=int, default=2)
    parser.add_argument("--stops", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--stops-via-daemon", type=int, default=200, help="0 skips the daemon measurement"
    )
    trio.run(main, parser.parse_args())
