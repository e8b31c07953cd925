"""``python -m protocol.conformance engineio|socketio [--host H] [--port N]``."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m protocol.conformance",
        description="Conformance server for the official Engine.IO / Socket.IO test suites.",
    )
    parser.add_argument("mode", choices=("engineio", "socketio"))
    parser.add_argument("--port", type=int, default=3000, help="TCP port (default 3000; 0: any)")
    parser.add_argument(
        "--host", default="localhost", help="address to bind (socketio mode; default localhost)"
    )
    parser.add_argument("--debug", action="store_true", help="log every event")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    try:
        if args.mode == "engineio":
            from protocol.conformance.engineio_echo import main as engineio_main

            engineio_main(args.port)
        else:
            from protocol.conformance.socketio_server import main as socketio_main

            socketio_main(args.port, args.host)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
