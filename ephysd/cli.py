"""``ephysd``: the command line.

Every way to get the invocation wrong (a bad flag, a bad config file, a
missing device, a port in use) ends with one ``ephysd: error: ...`` line on
stderr and a non-zero exit, never a traceback: the people reading it are at a
rig, not at a debugger. ``ephysd ports`` and ``ephysd check`` are service
tools living in their own modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import trio

from drivers.base import DeviceError, PlatformConfigError, PlatformOptions
from ephysd import __version__
from ephysd.api import EPHYS_LINK_API_VERSION
from ephysd.app import Daemon
from ephysd.config import ConfigError, Settings, build_settings, load_toml
from ephysd.errors import StartupError, find_leaf
from ephysd.logging_setup import configure_logging
from ephysd.platforms import PLATFORM_NAMES, create_platform

SUBCOMMANDS = {"ports": "ephysd.ports", "check": "ephysd.check"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ephysd: error: {message} (see ephysd --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ephysd",
        description="Drive electrophysiology manipulators for Pinpoint over the Ephys Link API.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--platform", choices=PLATFORM_NAMES, help="manipulator platform (fake)")
    p.add_argument(
        "--port",
        action="append",
        metavar="DEVICE",
        help="serial device of one manipulator (repeat for each, in order)",
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (127.0.0.1:3000)")
    p.add_argument("--use-proxy", action="store_true", help="connect to a Pinpoint proxy instead")
    p.add_argument("--proxy-address", metavar="HOST[:PORT]", help="proxy to connect to")
    p.add_argument("--mpm-port", type=int, metavar="PORT", help="Pathfinder MPM HTTP port (8080)")
    p.add_argument("--parallax-port", type=int, metavar="PORT", help="Parallax HTTP port (8081)")
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="browser origin allowed to connect (repeatable; * for any)",
    )
    p.add_argument(
        "--estop",
        nargs="?",
        const=True,
        metavar="DEVICE",
        help="enable the emergency-stop button (optionally its serial device)",
    )
    p.add_argument(
        "--no-stop-on-disconnect",
        dest="stop_on_disconnect",
        action="store_false",
        help="keep moving when the controlling client disconnects",
    )
    p.add_argument("--config", metavar="FILE", help="TOML settings file; flags override it")
    p.add_argument("--debug", action="store_true", help="log wire-level detail")
    p.add_argument(
        "--version",
        action="version",
        version=f"ephysd {__version__} (Ephys Link API {EPHYS_LINK_API_VERSION})",
    )
    return p


def parse_settings(argv: Sequence[str]) -> Settings:
    """Settings from flags over the ``--config`` file over defaults."""
    flags: dict[str, Any] = vars(build_parser().parse_args(list(argv)))
    config_path = flags.pop("config", None)
    file_values = load_toml(config_path) if config_path else {}
    return build_settings(file_values, flags)


def platform_options(settings: Settings) -> PlatformOptions:
    return PlatformOptions(
        serial_ports=settings.port,
        mpm_port=settings.mpm_port,
        parallax_port=settings.parallax_port,
        manipulator_count=settings.manipulator_count,
        manipulators=settings.manipulators,
    )


def _fail(message: str, code: int = 1) -> int:
    print(f"ephysd: error: {message}", file=sys.stderr, flush=True)
    return code


def run(argv: Sequence[str]) -> int:
    """The daemon's whole life; returns the exit status."""
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        status: int = module.main(argv[1:])
        return status
    try:
        settings = parse_settings(argv)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    configure_logging(settings.debug)

    def serve() -> None:
        platform = create_platform(settings.platform, platform_options(settings))
        daemon = Daemon(
            settings, platform, handle_signals=True, reload_settings=lambda: parse_settings(argv)
        )
        trio.run(daemon.run)

    return exit_status(serve)


def exit_status(serve: Callable[[], object], config_error_status: int = 1) -> int:
    """Run ``serve``; a start-up failure anywhere inside it (however deep in a
    nursery) becomes one error line and a non-zero status, Ctrl-C becomes 130."""
    try:
        serve()
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        leaf = find_leaf(exc, (StartupError, DeviceError, ConfigError, PlatformConfigError))
        if leaf is None:
            raise
        if isinstance(leaf, PlatformConfigError):
            return _fail(str(leaf), 2)
        return _fail(str(leaf), config_error_status if isinstance(leaf, ConfigError) else 1)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
