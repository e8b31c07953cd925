"""Ack round trip and throughput of our Socket.IO server against python-socketio and a floor.

    .venv/bin/python bench/protocol_rtt.py [--samples 2000] [--seconds 3] [--only ours,floor]

Three servers answer the same handler (EVENT ``["ping","x"]`` acked with
``["x"]``), each in its own subprocess on 127.0.0.1: ours
(protocol.server.SocketIOServer on Trio), python-socketio AsyncServer on
aiohttp, and the floor (the ``websockets`` library answering canned frames,
no Socket.IO logic). One raw WebSocket client in this process drives all three
in interleaved rounds. Reports p50/p99 with one call in flight, acks/s with 32
in flight, the server's CPU time per ack, and the issue's ratios: throughput
ours/python-socketio >= 2, p50 overhead above the floor ours <= 0.5x
python-socketio's, p99 ours <= python-socketio's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from _common import (
    CLIENTS,
    LATENCY_HEADERS,
    BenchError,
    Figures,
    RunningServer,
    ServerSpec,
    Target,
    conditions,
    event_payload,
    exit_status,
    free_port,
    latency_rows,
    make_log_dir,
    open_client,
    pin_client,
    print_notes,
    print_profile,
    print_ratios,
    print_table,
    run_rounds,
    running,
    servers_argv,
)

SERVERS = {
    "ours": "ours (protocol.server, Trio)",
    "python-socketio": "python-socketio + aiohttp",
    "floor": "floor (websockets, canned)",
}
PAYLOAD = event_payload("ping", "x")
EXPECTED_ACK = '["x"]'


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=2000, help="one-in-flight calls per server")
    parser.add_argument("--seconds", type=float, default=3.0, help="32-in-flight time per server")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds to split into")
    parser.add_argument("--warmup", type=int, default=200, help="calls per server before measuring")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(SERVERS)}"
    )
    parser.add_argument(
        "--pin", action="store_true", help="pin the client to CPU 0 and the servers to CPU 1"
    )
    parser.add_argument(
        "--profile",
        default="",
        help="run ours and python-socketio under cProfile, write DIR/KIND.prof, print the top",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="raw",
        help="raw: bare asyncio Protocol (default, cheapest); websockets: the websockets library",
    )
    args = parser.parse_args(argv)
    if not (1 <= args.samples <= 1_000_000 and 0.1 <= args.seconds <= 600):
        parser.error("--samples must be 1..1e6 and --seconds 0.1..600")
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be 1..100")
    wanted = [k.strip() for k in args.only.split(",") if k.strip()] or list(SERVERS)
    unknown = [k for k in wanted if k not in SERVERS]
    if unknown:
        parser.error(f"--only: unknown server(s) {unknown}; choose from {list(SERVERS)}")
    args.wanted = wanted
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    return args


def profile_path(args: argparse.Namespace, kind: str) -> Path:
    return Path(args.profile).resolve() / f"{kind}.prof"


async def measure(args: argparse.Namespace) -> dict[str, Figures]:
    log_dir = make_log_dir()
    pin_client(0 if args.pin else None)
    figures = {kind: Figures(SERVERS[kind], kind) for kind in args.wanted}
    targets: list[Target] = []
    started: list[tuple[str, RunningServer]] = []
    with contextlib.ExitStack() as stack:
        for kind in args.wanted:
            port = free_port()
            extra = (
                []
                if kind == "floor" or not args.profile
                else ["--profile", str(profile_path(args, kind))]
            )
            spec = ServerSpec(
                SERVERS[kind], servers_argv(kind, port, *extra), port, cpu=1 if args.pin else None
            )
            try:
                started.append((kind, stack.enter_context(running(spec, log_dir))))
            except BenchError as exc:
                figures[kind].error = str(exc)
        # Clients connect only once every server listens (the start-up wait blocks the loop).
        for kind, server in started:
            try:
                client = await open_client(server.spec.port, args.client)
            except BenchError as exc:
                figures[kind].error = str(exc)
                continue
            try:
                ack = await client.call(PAYLOAD)
                if ack != EXPECTED_ACK:
                    raise BenchError(f"ping acked with {ack!r}, expected {EXPECTED_ACK!r}")
            except BenchError as exc:
                figures[kind].error = str(exc)
                await client.close()
                continue
            targets.append(Target(figures[kind], client, server.pid, PAYLOAD))
        try:
            await run_rounds(targets, args.samples, args.seconds, args.rounds, args.warmup)
        finally:
            for target in targets:
                await target.client.close()
    print(f"(server logs in {log_dir})", file=sys.stderr)
    return figures


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    figures = asyncio.run(measure(args))
    print(f"protocol_rtt: {conditions(args.samples, args.seconds, args.rounds)}")
    print(f"EVENT {PAYLOAD} -> ACK {EXPECTED_ACK} over WebSocket, {args.client} client,")
    print("servers in subprocesses\n")
    print_table(LATENCY_HEADERS, latency_rows(list(figures.values())))
    print_notes(list(figures.values()))
    print()
    if "ours" in figures and "python-socketio" in figures:
        print_ratios(figures["ours"], figures["python-socketio"], figures.get("floor"))
    if args.profile:
        for kind in args.wanted:
            if kind != "floor":
                print(f"\n=== cProfile of {SERVERS[kind]} (whole run, top by own time) ===")
                print_profile(profile_path(args, kind), 30)
    return exit_status(list(figures.values()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
