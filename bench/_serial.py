"""Pieces the serial-platform benches share: simulator processes, a daemon, a raw client.

Each serial bench (``newscale.py`` and the ones after it) measures its driver
through a simulator on a pty and then through ``ephysd`` and Socket.IO; these
are the parts that do not depend on the platform.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import trio
from _common import cpu_seconds, percentile
from trio_websocket import WebSocketConnection, open_websocket_url

from drivers.base import DeviceError, Manipulator, Vector
from drivers.pty_sim import PtyDevice

READS_VIA_DAEMON = 2000


@contextlib.asynccontextmanager
async def simulators(
    module: str, count: int, workdir: Path, *extra: str
) -> AsyncIterator[list[str]]:
    """``count`` processes of ``python -m module --link ...``; yields their pty paths."""
    paths: list[str] = []
    async with trio.open_nursery() as nursery:
        for i in range(count):
            link = workdir / f"{module.rsplit('.', 2)[-2]}-{i}"
            process: trio.Process = await nursery.start(
                _run_sim, [sys.executable, "-m", module, "--link", str(link), *extra]
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


async def start_daemon(
    nursery: trio.Nursery, flags: Sequence[str], log: list[bytes]
) -> tuple[trio.Process, str]:
    """``ephysd *flags`` on a free port; returns it and its WebSocket URL once it listens.

    Its output is collected in ``log`` (print it when a bench fails).
    """
    daemon: trio.Process = await nursery.start(
        functools.partial(
            trio.run_process,
            [sys.executable, "-m", "ephysd", *flags, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    )
    assert daemon.stdout is not None
    text = b""
    with trio.fail_after(30):
        while b"listening on http://" not in text:
            chunk = await daemon.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"ephysd exited: {text.decode(errors='replace')[-2000:]}")
            text += chunk
    port = int(text.split(b"listening on http://127.0.0.1:")[1].split(b"\n")[0].strip())
    log.append(text)
    nursery.start_soon(drain, daemon.stdout, log)
    return daemon, f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"


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


@contextlib.asynccontextmanager
async def socketio_session(url: str) -> AsyncIterator[RawSocketIO]:
    """One session for the whole run: the daemon lets one controller in at a time."""
    async with trio.open_nursery() as nursery, open_websocket_url(url) as ws:
        client = RawSocketIO(ws)
        await client.handshake()
        nursery.start_soon(client.pump)
        yield client
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def daemon_session(flags: Sequence[str]) -> AsyncIterator[tuple[trio.Process, RawSocketIO]]:
    """``ephysd *flags`` and one Socket.IO session to it; the end of the daemon's log goes
    to stderr if the block fails."""
    async with trio.open_nursery() as nursery:
        daemon_log: list[bytes] = []
        daemon, url = await start_daemon(nursery, flags, daemon_log)
        try:
            async with socketio_session(url) as client:
                yield daemon, client
        except BaseException:
            sys.stderr.write(b"".join(daemon_log).decode(errors="replace")[-3000:])
            raise
        daemon.terminate()
        with trio.move_on_after(5):
            await daemon.wait()
        nursery.cancel_scope.cancel()


async def drain(stream: trio.abc.ReceiveStream, keep: list[bytes]) -> None:
    while data := await stream.receive_some(65536):
        keep.append(bytes(data))


class WireClock(logging.Handler):
    """When a transport wrote ``frame``, from its ``"%s >> %r"`` debug line (device, bytes).

    It listens to the transport's logger (``logger``), which it keeps quiet
    except while :meth:`measuring`: formatting a debug line per frame costs CPU.
    """

    def __init__(self, logger: str, frame: bytes) -> None:
        super().__init__(logging.DEBUG)
        self.frame = frame
        self.times: list[float] = []
        self._logger = logging.getLogger(logger)
        self._logger.addHandler(self)
        self._logger.propagate = False

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        self._logger.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            self._logger.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg == "%s >> %r" and isinstance(args, tuple) and args[1] == self.frame:
            self.times.append(time.perf_counter())


async def open_and_read(devices: Sequence[Manipulator], seconds: float) -> tuple[list[int], float]:
    """Open every device, then position reads/s of each with all reading at once for
    ``seconds``, and this process's CPU seconds spent on them."""
    for device in devices:
        await device.open()
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

    cpu0 = time.process_time()
    async with trio.open_nursery() as nursery:
        for i in range(len(devices)):
            nursery.start_soon(reader, i)
    return [round(c / seconds) for c in counts], time.process_time() - cpu0


async def driver_stops(
    device: Manipulator,
    stops: int,
    wire: WireClock,
    targets: Sequence[Vector],
    speed_mm_s: float,
) -> list[float]:
    """Cancel a move (what ``stop`` does) ``stops`` times, to each of ``targets`` in turn;
    ms from the cancel to the halt frame on the wire (call inside ``wire.measuring()``)."""
    latencies: list[float] = []
    for i in range(stops):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def move(scope: trio.CancelScope = scope, i: int = i) -> None:
                with scope:
                    await device.move_to(targets[i % len(targets)], speed_mm_s)

            nursery.start_soon(move)
            await trio.sleep(0.05 + 0.013 * (i % 7))  # anywhere in the move's polling
            wire.times.clear()
            t0 = time.perf_counter()
            scope.cancel()
        if not wire.times:
            raise RuntimeError(f"stop {i}: no {wire.frame!r} written")
        latencies.append((wire.times[0] - t0) * 1000)
    return latencies


async def socketio_reads(client: RawSocketIO, manipulator: str, reads: int) -> float:
    """``get_position`` one in flight, each answer checked; returns reads per second."""
    start = trio.current_time()
    for _ in range(reads):
        answer = await client.answer(await client.send("get_position", manipulator))
        assert isinstance(answer, list) and '"Error":""' in str(answer[0]), answer
    return reads / (trio.current_time() - start)


async def socketio_stops(
    client: RawSocketIO,
    stops: int,
    move: Callable[[int], str],
    halts: Callable[[], list[float]],
    manipulator: str = "1",
) -> list[float]:
    """``stop`` during a ``set_position`` (``move(i)``), ``stops`` times; ms from just before
    the stop frame is written to the first halt the simulator read after it (``halts()``:
    when it read each halt so far, on this process's Trio clock).

    A stop counts only if its ack is ``""`` and its move's ack says it did not reach
    the target: a fast refusal is not a stop.
    """
    latencies: list[float] = []
    for i in range(stops):
        moving = await client.send("set_position", move(i))
        await trio.sleep(0.05 + 0.013 * (i % 7))  # anywhere in the move's polling
        seen = len(halts())
        t0 = trio.current_time()
        stop = await client.send("stop", manipulator)
        assert await client.answer(stop) == [""], "stop failed"
        moved = await client.answer(moving)
        assert isinstance(moved, list) and "did not reach" in str(moved[0]), moved
        after = halts()[seen:]
        if not after:
            raise RuntimeError(f"stop {i}: the simulator saw no halt")
        latencies.append((after[0] - t0) * 1000)
    return latencies


def latency_summary(label: str, ms: Sequence[float]) -> str:
    return (
        f"{label}, {len(ms)} stops: p50 {percentile(ms, 50):.3f} ms, p99 {percentile(ms, 99):.3f}"
        f" ms, max {max(ms):.3f} ms, mean {statistics.mean(ms):.3f} ms"
    )


def serial_bench_arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every serial bench takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--manipulators", type=int, default=2)
    parser.add_argument("--stops", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--stops-via-daemon", type=int, default=200, help="0 skips the daemon measurement"
    )
    return parser


async def through_the_daemon(
    sim: PtyDevice,
    platform: str,
    stops: int,
    *,
    transactions_per_read: int,
    far_move: Callable[[int], str],
    halt: str,
    halts: Callable[[], list[float]],
) -> None:
    """``ephysd --platform platform`` on ``sim`` (started here), manipulator "1": get_position/s
    one in flight and the daemon's CPU per serial transaction, then ``stops`` stops, each
    during the set_position ``far_move(i)``, timed to the simulator reading ``halt``
    (``halts()``: when it read each so far)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        flags = ["--platform", platform, "--port", sim.path]
        async with daemon_session(flags) as (daemon, client):
            cpu0 = cpu_seconds(daemon.pid)
            rate = await socketio_reads(client, "1", READS_VIA_DAEMON)
            cpu = cpu_seconds(daemon.pid) - cpu0
            transactions = READS_VIA_DAEMON * transactions_per_read
            print(
                f"via ephysd + Socket.IO: {rate:.0f} get_position/s one in flight; "
                f"daemon CPU {cpu / transactions * 1000:.3f} ms per serial transaction "
                f"(Socket.IO + actor + driver, {transactions_per_read} transaction(s) per read)"
            )
            latencies = await socketio_stops(client, stops, far_move, halts)
        label = f"via ephysd + Socket.IO: stop sent -> {halt} read by the simulator"
        print(latency_summary(label, latencies))
        nursery.cancel_scope.cancel()
