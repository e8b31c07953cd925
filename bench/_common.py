"""Shared harness of the benchmarks: server subprocesses, a raw Socket.IO client, statistics.

Every server under test runs as its own subprocess so that client and server
never share an interpreter (or a GIL), and every server is driven by the very
same client code: a raw WebSocket speaking just enough Engine.IO/Socket.IO text
to open a session, send EVENT frames with an ack id and match the ACK frames.
Differences between the figures are therefore the servers', not the clients'.

Every loop here is bounded in count and in time, and the only address used is
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import pstats
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from _rawws import ClientError, RawSioClient
from websockets.asyncio.client import ClientConnection, connect

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SERVERS_SCRIPT = BENCH_DIR / "_servers.py"

# Deadlines for anything that waits on a server.
START_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
THROUGHPUT_WINDOW = 32
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A server misbehaved or could not be started; the bench reports it and moves on."""


# ---------------------------------------------------------------------------
# Ports and processes


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _children(pid: int) -> list[int]:
    """All descendants of pid (servers that fork count with their children)."""
    found: list[int] = []
    pending = [pid]
    while pending and len(found) < 1000:
        current = pending.pop()
        task_dir = Path(f"/proc/{current}/task")
        try:
            tids = [entry.name for entry in task_dir.iterdir()]
        except OSError:
            continue
        for tid in tids:
            try:
                text = (task_dir / tid / "children").read_text()
            except OSError:
                continue
            for child in text.split():
                found.append(int(child))
                pending.append(int(child))
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of pid plus its descendants, in KiB (0 for a process that is gone)."""
    total = 0
    for proc in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{proc}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its descendants so far."""
    ticks = 0
    for proc in [pid, *_children(pid)]:
        try:
            stat = Path(f"/proc/{proc}/stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name; utime and stime are 14 and 15.
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll-connect until something accepts on port; fail fast if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"exited with status {proc.returncode} before listening")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect((HOST, port))
            except OSError:
                time.sleep(0.002)
                continue
            return
    raise BenchError(f"not listening on {HOST}:{port} after {timeout_s:.0f} s")


@dataclass
class ServerSpec:
    """How to start one server under test."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] | None = None
    cpu: int | None = None


@dataclass
class RunningServer:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    log_path: Path
    startup_s: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running(spec: ServerSpec, log_dir: Path) -> Iterator[RunningServer]:
    """Start the server, wait until it listens (timing it), and always stop it afterwards."""
    log_path = log_dir / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', spec.name).strip('_')}.log"
    env = dict(os.environ)
    if spec.env:
        env.update(spec.env)
    with log_path.open("wb") as log_file:
        started = time.perf_counter()
        proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_DIR,
            start_new_session=True,
        )
    server = RunningServer(spec, proc, log_path, 0.0)
    try:
        if spec.cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, {spec.cpu})
        try:
            wait_listening(spec.port, proc, START_TIMEOUT_S)
        except BenchError as exc:
            tail = server.log_tail()
            raise BenchError(f"{spec.name}: {exc}\n{tail}") from None
        server.startup_s = time.perf_counter() - started
        yield server
    finally:
        _stop(proc)


def measure_startup(spec: ServerSpec, log_dir: Path, runs: int) -> list[float]:
    """Seconds from exec to accepting connections, over fresh starts of the server."""
    times: list[float] = []
    for _ in range(runs):
        with running(spec, log_dir) as server:
            times.append(server.startup_s)
        time.sleep(0.2)
    return times


def make_log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ephysd-bench-"))


def pin_client(cpu: int | None) -> None:
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def ephysd_fake_argv(port: int) -> list[str]:
    """``ephysd --platform fake`` on ``port`` with no config file: the defaults a rig gets."""
    argv = [sys.executable, "-m", "ephysd.cli", "--platform", "fake"]
    return [*argv, "--listen", f"127.0.0.1:{port}"]


def servers_argv(kind: str, port: int, *extra: str) -> list[str]:
    """argv of one of the helper servers in bench/_servers.py, on the bench's interpreter."""
    return [sys.executable, str(SERVERS_SCRIPT), kind, "--port", str(port), *extra]


# ---------------------------------------------------------------------------
# The raw client


def event_payload(event: str, *args: str) -> str:
    """The JSON array of a Socket.IO EVENT, e.g. '["ping","x"]'."""
    return json.dumps([event, *args], separators=(",", ":"))


class Client(Protocol):
    """What the measurements need from a client session (both clients below)."""

    sid: str
    # The ACK arguments every call must get (None: not checked), and the
    # calls that got something else.
    expected: str | None

    @property
    def wrong(self) -> int: ...

    @property
    def first_wrong(self) -> str: ...

    async def call(self, payload: str) -> str: ...

    async def latencies_ns(self, payload: str, count: int) -> list[int]: ...

    async def throughput(self, payload: str, seconds: float, window: int) -> tuple[int, float]: ...

    async def close(self) -> None: ...


CLIENTS = ("raw", "websockets")


async def open_client(port: int, kind: str = "raw") -> Client:
    """A joined session on port with the chosen client implementation."""
    if kind == "websockets":
        return await SioClient.open(port)
    return await RawClient.open(port)


class RawClient:
    """The bare-Protocol client of bench/_rawws.py, with the bench's deadlines and errors."""

    def __init__(self, raw: RawSioClient) -> None:
        self._raw = raw
        self.sid = raw.sid

    @property
    def expected(self) -> str | None:
        return self._raw.expected

    @expected.setter
    def expected(self, value: str | None) -> None:
        self._raw.expected = value

    @property
    def wrong(self) -> int:
        return self._raw.wrong

    @property
    def first_wrong(self) -> str:
        return self._raw.first_wrong

    @classmethod
    async def open(cls, port: int) -> RawClient:
        try:
            return cls(await RawSioClient.open(port, REPLY_TIMEOUT_S))
        except (OSError, TimeoutError, ClientError) as exc:
            raise BenchError(f"cannot open a session on port {port}: {exc!r}") from None

    async def call(self, payload: str) -> str:
        try:
            return await self._raw.call(payload, REPLY_TIMEOUT_S)
        except ClientError as exc:
            raise BenchError(str(exc)) from None

    async def latencies_ns(self, payload: str, count: int) -> list[int]:
        try:
            return await self._raw.latencies_ns(payload, count, REPLY_TIMEOUT_S)
        except ClientError as exc:
            raise BenchError(str(exc)) from None

    async def throughput(self, payload: str, seconds: float, window: int) -> tuple[int, float]:
        try:
            return await self._raw.throughput(payload, seconds, window, REPLY_TIMEOUT_S)
        except ClientError as exc:
            raise BenchError(str(exc)) from None

    async def close(self) -> None:
        await self._raw.close()


class SioClient:
    """One Socket.IO session on the default namespace over the `websockets` client.

    Only text frames are spoken: EVENT with an ack id out, ACK in. Server pings
    are answered inline, anything else the server sends is ignored.
    """

    def __init__(self, ws: ClientConnection, sid: str) -> None:
        self._ws = ws
        self.sid = sid
        self._next_id = 0
        self.expected: str | None = None
        self.wrong = 0
        self.first_wrong = ""

    @classmethod
    async def open(cls, port: int) -> SioClient:
        url = f"ws://{HOST}:{port}/socket.io/?EIO=4&transport=websocket"
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                ws = await connect(
                    url,
                    compression=None,
                    ping_interval=None,
                    open_timeout=REPLY_TIMEOUT_S,
                    close_timeout=1.0,
                    max_size=1 << 20,
                    proxy=None,
                )
                opening = await ws.recv()
                if not isinstance(opening, str) or not opening.startswith("0{"):
                    raise BenchError(f"expected an Engine.IO OPEN packet, got {opening!r}")
                await ws.send("40")
                for _ in range(100):
                    answer = await ws.recv()
                    if answer == "2":
                        await ws.send("3")
                        continue
                    break
        except (OSError, TimeoutError) as exc:
            raise BenchError(f"cannot open a session on port {port}: {exc!r}") from None
        if not isinstance(answer, str) or not answer.startswith("40"):
            await ws.close()
            raise BenchError(f"namespace join refused: {answer!r}")
        sid = str(json.loads(answer[2:]).get("sid", "")) if len(answer) > 2 else ""
        return cls(ws, sid)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._ws.close()

    def _frame(self, payload: str) -> tuple[int, str]:
        ack_id = self._next_id
        self._next_id += 1
        return ack_id, f"42{ack_id}{payload}"

    async def _recv_ack(self) -> tuple[int, str]:
        """The next ACK (id, arguments JSON), answering pings on the way."""
        for _ in range(10_000):
            message = await self._ws.recv()
            if not isinstance(message, str):
                continue
            if message.startswith("43"):
                bracket = message.find("[", 2)
                if bracket < 3:
                    raise BenchError(f"ACK without an id: {message[:80]!r}")
                args = message[bracket:]
                if self.expected is not None and args != self.expected:
                    self.wrong += 1
                    self.first_wrong = self.first_wrong or args
                return int(message[2:bracket]), args
            if message == "2":
                await self._ws.send("3")
            elif message.startswith(("1", "41", "44")):
                raise BenchError(f"server ended the session: {message[:80]!r}")
        raise BenchError("no ACK among 10000 frames")

    async def call(self, payload: str) -> str:
        """Send one EVENT and return its ACK arguments (a JSON array text)."""
        ack_id, frame = self._frame(payload)
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            await self._ws.send(frame)
            got, args = await self._recv_ack()
        if got != ack_id:
            raise BenchError(f"ACK {got} for EVENT {ack_id}")
        return args

    async def latencies_ns(self, payload: str, count: int) -> list[int]:
        """Round trip of count calls, one in flight at a time."""
        samples: list[int] = []
        ws = self._ws
        for _ in range(count):
            ack_id, frame = self._frame(payload)
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                start = time.perf_counter_ns()
                await ws.send(frame)
                got, _args = await self._recv_ack()
                samples.append(time.perf_counter_ns() - start)
            if got != ack_id:
                raise BenchError(f"ACK {got} for EVENT {ack_id}")
        return samples

    async def throughput(self, payload: str, seconds: float, window: int) -> tuple[int, float]:
        """(acks, elapsed seconds) with `window` calls kept in flight for `seconds`."""
        outstanding: set[int] = set()
        ws = self._ws
        async with asyncio.timeout(seconds + REPLY_TIMEOUT_S):
            start = time.perf_counter()
            deadline = start + seconds
            for _ in range(window):
                ack_id, frame = self._frame(payload)
                outstanding.add(ack_id)
                await ws.send(frame)
            done = 0
            end = start
            while outstanding:
                got, _args = await self._recv_ack()
                try:
                    outstanding.remove(got)
                except KeyError:
                    raise BenchError(f"unexpected ACK {got}") from None
                now = time.perf_counter()
                if now < deadline:
                    done += 1
                    end = now
                    ack_id, frame = self._frame(payload)
                    outstanding.add(ack_id)
                    await ws.send(frame)
        return done, end - start


# ---------------------------------------------------------------------------
# Measuring one server


@dataclass
class Figures:
    """Everything measured for one server, accumulated over interleaved rounds."""

    name: str
    short: str = ""
    latencies_ns: list[int] = field(default_factory=list)
    acks: int = 0
    seconds: float = 0.0
    round_rates: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    # Server CPU during the one-in-flight phase (no batching possible there).
    serial_cpu_s: float = 0.0
    # The bench process's own CPU in the throughput phase: shows the client is not the limit.
    client_cpu_s: float = 0.0
    error: str = ""
    # Skipped on purpose (e.g. upstream not installable): reported, not a failure.
    skipped: bool = False
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.latencies_ns)

    @property
    def rate(self) -> float:
        return self.acks / self.seconds if self.seconds > 0 else 0.0

    def p(self, percent: float) -> float:
        """Percentile (nearest rank) of the round trips, in microseconds."""
        return percentile(self.latencies_ns, percent) / 1000

    @property
    def cpu_us_per_ack(self) -> float:
        return self.server_cpu_s * 1e6 / self.acks if self.acks else float("nan")

    @property
    def client_cpu_us_per_ack(self) -> float:
        return self.client_cpu_s * 1e6 / self.acks if self.acks else float("nan")

    @property
    def serial_cpu_us_per_ack(self) -> float:
        calls = len(self.latencies_ns)
        return self.serial_cpu_s * 1e6 / calls if calls else float("nan")


@dataclass
class Target:
    """A session open on one running server and the payload it is driven with."""

    figures: Figures
    client: Client
    pid: int
    payload: str


async def run_rounds(
    targets: Sequence[Target], samples: int, seconds: float, rounds: int, warmup: int
) -> None:
    """Measure all targets in interleaved rounds so that background load hits each alike."""
    for target in targets:
        try:
            await target.client.latencies_ns(target.payload, warmup)
            await target.client.throughput(target.payload, 0.3, THROUGHPUT_WINDOW)
        except (BenchError, TimeoutError, OSError) as exc:
            target.figures.error = f"warm-up failed: {exc!r}"
        if target.client.wrong:
            target.figures.error = (
                f"warm-up: {target.client.wrong} ACKs were not the expected answer,"
                f" e.g. {target.client.first_wrong[:120]!r}"
            )
    per_round = max(1, samples // rounds)
    for _ in range(rounds):
        for target in targets:
            figures = target.figures
            if figures.error:
                continue
            try:
                cpu_before = cpu_seconds(target.pid)
                figures.latencies_ns += await target.client.latencies_ns(target.payload, per_round)
                figures.serial_cpu_s += cpu_seconds(target.pid) - cpu_before
                cpu_before = cpu_seconds(target.pid)
                client_before = time.process_time()
                acks, elapsed = await target.client.throughput(
                    target.payload, seconds / rounds, THROUGHPUT_WINDOW
                )
                figures.client_cpu_s += time.process_time() - client_before
                figures.server_cpu_s += cpu_seconds(target.pid) - cpu_before
            except (BenchError, TimeoutError, OSError) as exc:
                figures.error = f"failed mid-run: {exc!r}"
                continue
            if target.client.wrong:
                figures.error = (
                    f"{target.client.wrong} ACKs were not the expected answer,"
                    f" e.g. {target.client.first_wrong[:120]!r}: figures discarded"
                )
                continue
            figures.acks += acks
            figures.seconds += elapsed
            figures.round_rates.append(acks / elapsed if elapsed > 0 else 0.0)


# ---------------------------------------------------------------------------
# Reporting


def fmt(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def _cells(cells: Sequence[str], widths: Sequence[int]) -> str:
    """First column left-aligned, numbers right-aligned."""
    padded = [
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(padded)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = _cells(headers, widths)
    print(line)
    print("-" * len(line))
    for row in rows:
        print(_cells(row, widths))


def latency_rows(all_figures: Sequence[Figures]) -> list[list[str]]:
    rows = []
    for f in all_figures:
        if not f.ok:
            rows.append([f.name, *["-"] * (len(LATENCY_HEADERS) - 1)])
            continue
        spread = f"{fmt(min(f.round_rates))}-{fmt(max(f.round_rates))}" if f.round_rates else "-"
        rows.append(
            [
                f.name,
                str(len(f.latencies_ns)),
                fmt(f.p(50)),
                fmt(f.p(99)),
                fmt(f.rate),
                spread,
                fmt(f.serial_cpu_us_per_ack, 1),
                fmt(f.cpu_us_per_ack, 1),
                fmt(f.client_cpu_us_per_ack, 1),
            ]
        )
    return rows


LATENCY_HEADERS = [
    "server",
    "samples",
    "p50 us",
    "p99 us",
    "acks/s @32",
    "per-round acks/s",
    "srv CPU us/ack @1",
    "@32",
    "client CPU @32",
]


def verdict(ok: bool) -> str:
    return "MEETS" if ok else "MISSES"


def print_ratios(ours: Figures, theirs: Figures, floor: Figures | None) -> None:
    """The issue's three latency/throughput targets, ours against the reference server."""
    if not (ours.ok and theirs.ok):
        print(f"ratios: not computed ({ours.short} ok={ours.ok}, {theirs.short} ok={theirs.ok})")
        return
    thr = ours.rate / theirs.rate if theirs.rate else float("nan")
    meets = verdict(thr >= 2)
    print(f"throughput {ours.short} / {theirs.short}: {thr:.2f}x  (target >= 2.00x: {meets})")
    if floor is not None and floor.ok:
        ours_over = ours.p(50) - floor.p(50)
        theirs_over = theirs.p(50) - floor.p(50)
        rel = ours_over / theirs_over if theirs_over > 0 else float("nan")
        print(
            f"p50 overhead above floor: {ours.short} {ours_over:.0f} us, {theirs.short} "
            f"{theirs_over:.0f} us -> {rel:.2f}x  (target <= 0.50x: {verdict(rel <= 0.5)})"
        )
    else:
        print("p50 overhead above floor: not computed (no floor figures in this run)")
    p99 = ours.p(99) / theirs.p(99)
    print(
        f"p99 {ours.short} / {theirs.short}: {ours.p(99):.0f} / {theirs.p(99):.0f} us = {p99:.2f}x"
        f"  (target <= 1.00x: {verdict(p99 <= 1)})"
    )
    cpu = ours.cpu_us_per_ack / theirs.cpu_us_per_ack
    print(f"server CPU per ack {ours.short} / {theirs.short}: {cpu:.2f}x (information, no target)")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile of values by nearest rank (NaN for none)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))  # 1-based
    return ordered[rank - 1]


def machine_conditions() -> str:
    """When, on what, and how busy: the line every bench prints first."""
    load = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs; "
        f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Python {sys.version.split()[0]}"
    )


def conditions(samples: int, seconds: float, rounds: int) -> str:
    return (
        f"{machine_conditions()}; "
        f"{samples} one-in-flight samples and {seconds:g} s at {THROUGHPUT_WINDOW} in flight "
        f"per server, in {rounds} interleaved rounds"
    )


def print_notes(all_figures: Sequence[Figures]) -> None:
    for f in all_figures:
        if f.error:
            print(f"{'SKIPPED' if f.skipped else 'FAILED'} {f.name}: {f.error}")


def exit_status(all_figures: Sequence[Figures]) -> int:
    """0 when every server was measured or skipped on purpose, else 1."""
    return 0 if all(f.ok or f.skipped for f in all_figures) else 1


# Where a server's own time goes, by the path of the code (first match wins).
PROFILE_GROUPS = [
    ("waiting in epoll (idle)", "method 'poll' of 'select.epoll'"),
    ("socket syscalls", "of '_socket.socket'"),
    ("ephysd/", "/ephysd/"),
    ("protocol/engineio", "/protocol/engineio/"),
    ("protocol/socketio + server", "/protocol/"),
    ("wsproto", "/wsproto/"),
    ("h11", "/h11/"),
    ("trio (+ outcome)", "/trio/"),
    ("trio (+ outcome)", "/outcome/"),
    ("python-socketio", "/socketio/"),
    ("python-engineio", "/engineio/"),
    ("aiohttp", "/aiohttp/"),
    ("asyncio", "/asyncio/"),
    ("ephys_link", "/ephys_link/"),
    ("pydantic / vbl_aquarium", "/pydantic"),
    ("pydantic / vbl_aquarium", "/vbl_aquarium/"),
    ("json", "/json/"),
    ("other packages", "/site-packages/"),
    ("stdlib", "/lib/python3"),
    ("builtins", "~:"),
]


def print_profile(path: Path, limit: int) -> None:
    """Own time of a server run under --profile, grouped by package, then the top functions."""
    if not path.exists():
        print(f"(no profile written at {path})")
        return
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = getattr(
        stats, "stats", {}
    )
    groups: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        where = f"{filename}:{function}"
        label = next((g for g, key in PROFILE_GROUPS if key in where), "other Python")
        groups[label] = groups.get(label, 0.0) + tottime
    busy = sum(t for g, t in groups.items() if g != PROFILE_GROUPS[0][0])
    print(f"own time by group (busy total {busy:.2f} s, epoll idle excluded from %):")
    for label, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        share = "" if label == PROFILE_GROUPS[0][0] else f"{100 * seconds / busy:5.1f}%"
        print(f"  {label:<28} {seconds:7.2f} s  {share}")
    stats.sort_stats(pstats.SortKey.TIME).print_stats(limit)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def parse_bench_args(
    argv: list[str],
    description: str | None,
    servers: Sequence[str],
    profiled: str,
    add_extra: Callable[[argparse.ArgumentParser], None] = lambda _parser: None,
    check_extra: Callable[[argparse.Namespace], str] = lambda _args: "",
) -> argparse.Namespace:
    """The options both RTT benches share; ``add_extra``/``check_extra`` add a bench's own.

    ``check_extra`` returns an error message ('' when the extra options are fine).
    Sets ``args.wanted`` (the servers to run) and creates the profile folder.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--samples", type=int, default=2000, help="one-in-flight calls per server")
    parser.add_argument("--seconds", type=float, default=3.0, help="32-in-flight time per server")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds to split into")
    parser.add_argument("--warmup", type=int, default=200, help="calls per server before measuring")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(servers)}"
    )
    parser.add_argument(
        "--pin", action="store_true", help="pin the client to CPU 0 and the servers to CPU 1"
    )
    parser.add_argument(
        "--profile",
        default="",
        help=f"run {profiled} under cProfile, write DIR/KIND.prof, print the top",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="raw",
        help="raw: bare asyncio Protocol (default, cheapest); websockets: the websockets library",
    )
    add_extra(parser)
    args = parser.parse_args(argv)
    if not (1 <= args.samples <= 1_000_000 and 0.1 <= args.seconds <= 600):
        parser.error("--samples must be 1..1e6 and --seconds 0.1..600")
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be 1..100")
    problem = check_extra(args)
    if problem:
        parser.error(problem)
    wanted = [k.strip() for k in args.only.split(",") if k.strip()] or list(servers)
    unknown = [k for k in wanted if k not in servers]
    if unknown:
        parser.error(f"--only: unknown server(s) {unknown}; choose from {list(servers)}")
    args.wanted = wanted
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    return args
