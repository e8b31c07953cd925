"""``ephysd``: the command line.

Every way to get the invocation wrong (a bad flag, a bad config file, a
missing device, a port in use) ends with one ``ephysd: error: ...`` line on
stderr and a non-zero exit, never a traceback: the people reading it are at a
rig, not at a debugger. The status says whether a restart can help: 2 for a
configuration error, found before any device is opened (systemd's
``RestartPreventExitStatus=2``), 1 for anything else (a device missing, a port
in use). ``ephysd ports`` and ``ephysd check`` are service tools living in
their own modules.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import trio

from drivers.base import DeviceError, PlatformConfigError
from ephysd import __version__
from ephysd.api import EPHYS_LINK_API_VERSION
from ephysd.app import Daemon
from ephysd.config import ConfigError, Settings, build_settings, load_toml
from ephysd.errors import StartupError, find_leaf
from ephysd.logging_setup import configure_logging
from ephysd.platforms import PLATFORM_NAMES
from ephysd.startup import locate_estop, prepare

log = logging.getLogger("ephysd")

SUBCOMMANDS = {"ports": "ephysd.ports", "check": "ephysd.check"}
DESCRIPTION = "Drive electrophysiology manipulators for Pinpoint over the Ephys Link API."
COMMANDS = """\
commands:
  ephysd ports          list serial ports, marking the controllers and e-stop buttons
                        it recognises (see ephysd ports --help)
  ephysd check [FLAGS]  validate the settings as the daemon would and handshake with
                        every device, moving nothing (see ephysd check --help)

exit status: 0 stopped cleanly, 2 configuration error (found before any device
is opened; restarting cannot help), 1 any other failure, 130 Ctrl-C."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ephysd: error: {message} (see {self.prog} --help)\n")


def build_parser(
    prog: str = "ephysd", description: str = DESCRIPTION, epilog: str = COMMANDS
) -> argparse.ArgumentParser:
    """The daemon's flags; ``ephysd check`` takes the same ones under its own name."""
    p = _Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--platform", choices=PLATFORM_NAMES, help="manipulator platform (fake)")
    p.add_argument(
        "--port",
        action="append",
        metavar="DEVICE",
        help="serial device of one manipulator, DEVICE or NAME=DEVICE (repeat for each,"
        " in order; serial platforms only)",
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (127.0.0.1:3000)")
    p.add_argument("--use-proxy", action="store_true", help="connect to a Pinpoint proxy instead")
    p.add_argument(
        "--proxy-address",
        metavar="HOST[:PORT]",
        help="proxy to connect to (proxy2.virtualbrainlab.org:3000)",
    )
    p.add_argument("--mpm-port", type=int, metavar="PORT", help="Pathfinder MPM HTTP port (8080)")
    p.add_argument("--parallax-port", type=int, metavar="PORT", help="Parallax HTTP port (8081)")
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="browser origin allowed to connect (repeatable; * for any); the daemon's"
        " own origin always is",
    )
    p.add_argument(
        "--estop",
        nargs="?",
        const=True,
        metavar="DEVICE|auto",
        help="enable the emergency-stop button: its serial device, or without one (or"
        " 'auto') the first e-stop candidate `ephysd ports` marks",
    )
    p.add_argument(
        "--no-stop-on-disconnect",
        dest="stop_on_disconnect",
        action="store_false",
        help="keep moving when the controlling client disconnects",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (every key: systemd/ephysd.toml); flags override it",
    )
    p.add_argument("--debug", action="store_true", help="log wire-level detail")
    p.add_argument(
        "--version",
        action="version",
        version=f"ephysd {__version__} (Ephys Link API {EPHYS_LINK_API_VERSION})",
    )
    return p


def parse_settings(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> Settings:
    """Settings from flags over the ``--config`` file over defaults."""
    flags: dict[str, Any] = vars((parser or build_parser()).parse_args(list(argv)))
    config_path = flags.pop("config", None)
    file_values = load_toml(config_path) if config_path else {}
    return build_settings(file_values, flags)


def _fail(message: str, code: int = 1) -> int:
    print(f"ephysd: error: {message}", file=sys.stderr, flush=True)
    return code


def build_daemon(settings: Settings, **options: Any) -> Daemon:
    """The daemon for ``settings``, after every check that needs no device.

    Raises as :func:`exit_status` expects: a configuration error before
    anything is opened, a missing e-stop button before any manipulator is.
    """
    prepared = prepare(settings)
    for line in prepared.ignored:
        log.warning("%s", line)
    estop = locate_estop(settings)
    if estop is not None:
        log.info("e-stop button: %s", estop)
    return Daemon(settings, prepared.platform, access=prepared.access, **options)


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
        daemon = build_daemon(
            settings, handle_signals=True, reload_settings=lambda: parse_settings(argv)
        )
        trio.run(daemon.run)

    return exit_status(serve)


def exit_status(serve: Callable[[], object]) -> int:
    """Run ``serve``; a start-up failure anywhere inside it (however deep in a
    nursery) becomes one error line and its status (2 for configuration, else
    1), Ctrl-C becomes 130."""
    try:
        serve()
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        leaf = find_leaf(exc, (StartupError, DeviceError, ConfigError, PlatformConfigError))
        if leaf is None:
            raise
        return _fail(str(leaf), 2 if isinstance(leaf, ConfigError | PlatformConfigError) else 1)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
