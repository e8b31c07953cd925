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
    parse_bench_args,
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
    return parse_bench_args(
        argv,
        __doc__.splitlines()[0] if __doc__ else None,
        list(SERVERS),
        "ours and python-socketio",
    )


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
            client.expected = EXPECTED_ACK  # every later ACK is checked against it
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
