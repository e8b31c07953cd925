"""``ephysd check``: is this rig configured right? Answered without moving anything.

Run before enabling the service, or after re-cabling a rig. It takes the
daemon's own flags and runs the daemon's own start-up checks
(:mod:`ephysd.startup`), so it fails exactly where the daemon would: the
settings, the access rules and the platform's validation, then the e-stop
button. Then it makes sure the listen address is free and each serial device
can be opened by this user, starts the platform and handshakes with every
manipulator (open, read the position, close). It never sends a move: a check
must be safe with probes in a brain.

Each finding is one line. The exit status is the daemon's: 2 for a
configuration error, 1 for any other problem, 0 when all is well.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from drivers.base import DeviceError, Manipulator, Platform, PlatformConfigError
from ephysd.config import ConfigError, Settings, estop_device, listen_address
from ephysd.platforms import SERIAL_PLATFORMS
from ephysd.ports import NEWSCALE_BRIDGE_IDS, PortLike, system_ports
from ephysd.security import AccessPolicy, PolicyError, parse_networks, peer_address
from ephysd.startup import locate_estop, prepare

CONFIGURATION_ERROR = 2

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0
_IN_USE = "address in use"
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Finding:
    ok: bool
    subject: str
    text: str
    # A risk worth a line that does not make the check fail.
    warning: bool = False

    def __str__(self) -> str:
        tag = "FAIL" if not self.ok else "WARN" if self.warning else "ok  "
        return f"{tag}  {self.subject}: {self.text}"


def check_policy(policy: AccessPolicy) -> Finding:
    """What the (already validated) access rules let in, in one line."""
    origins = ", ".join(sorted(policy.allowed_origins)) or "none listed"
    networks = ", ".join(str(n) for n in policy.allow)
    token_text = "token required" if policy.token else "no token"
    return Finding(
        True,
        "access",
        f"clients from {networks}; origins {origins} (and the daemon's own); {token_text}",
    )


def check_exposure(
    listen_host: str, allow: Sequence[str], allow_origin: Sequence[str], token: str | None
) -> list[Finding]:
    """Warnings for settings that open the rig to more than this computer's native clients."""
    warnings: list[Finding] = []
    try:
        networks = parse_networks(allow)
    except PolicyError:
        return warnings  # a configuration error, reported before this runs
    outside = [str(n) for n in networks if not n.is_loopback]
    loopback_listen = listen_host == "localhost" or _is_loopback_ip(listen_host)
    if not loopback_listen and outside and token is None:
        warnings.append(
            Finding(
                True,
                "access",
                f"clients from {', '.join(outside)} may drive the manipulators with no token;"
                " set token",
                warning=True,
            )
        )
    if "*" in allow_origin:
        warnings.append(
            Finding(True, "access", "allow_origin '*': any web page can connect", warning=True)
        )
    return warnings


def _is_loopback_ip(host: str) -> bool:
    address = peer_address(host)
    return address is not None and address.is_loopback


def check_listen(host: str, port: int) -> Finding:
    """Can we bind the listen address? Says plainly if another ephysd holds it."""
    subject = f"listen {host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return Finding(False, subject, f"cannot resolve the address ({exc.strerror})")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return Finding(False, subject, f"{_IN_USE} (is ephysd already running?)")
            return Finding(False, subject, f"cannot bind: {exc.strerror}")
    loopback = host == "localhost" or _is_loopback_ip(host)
    where = "loopback only" if loopback else "reachable from the network"
    return Finding(True, subject, f"free ({where})")


def check_serial_device(spec: str) -> Finding:
    """``DEVICE`` or ``NAME=DEVICE``: the device node exists and this user may open it."""
    device = _port_device(spec)
    subject = f"port {device}"
    try:
        info = os.stat(device)
    except FileNotFoundError:
        return Finding(False, subject, "no such device (unplugged? see `ephysd ports`)")
    except OSError as exc:
        return Finding(False, subject, f"cannot stat: {exc.strerror}")
    if not stat.S_ISCHR(info.st_mode):
        return Finding(False, subject, "not a serial (character) device")
    if not os.access(device, os.R_OK | os.W_OK):
        return Finding(False, subject, "permission denied (is this user in the dialout group?)")
    busy = _held_by_another_process(device)
    if busy:
        return Finding(False, subject, busy)
    real = os.path.realpath(device)
    return Finding(True, subject, "present" + (f" ({real})" if real != device else ""))


def check_newscale_bridge(spec: str, ports: Sequence[PortLike]) -> Finding | None:
    """Is ``DEVICE`` (or ``NAME=DEVICE``) a New Scale bridge by its USB id? None: not USB.

    A bridge is 10c4:ea61 as shipped (the mode Pathway and Pathfinder need)
    or 10c4:ea60 in COM-port mode; Linux serves both as /dev/ttyUSB*. Another
    id is only a warning: the handshake is what decides.
    """
    device = _port_device(spec)
    real = os.path.realpath(device)
    port = next((p for p in ports if os.path.realpath(p.device) == real), None)
    if port is None or port.vid is None:
        return None  # not a USB serial port (a simulator's pty, say)
    usb_id = f"{port.vid:04x}:{port.pid or 0:04x}"
    if (port.vid, port.pid) in NEWSCALE_BRIDGE_IDS:
        mode = "COM-port mode" if port.pid == 0xEA60 else "USBXpress mode"
        return Finding(True, f"port {device}", f"New Scale bridge (USB {usb_id}, {mode})")
    known = ", ".join(f"{v:04x}:{p:04x}" for v, p in sorted(NEWSCALE_BRIDGE_IDS))
    return Finding(
        True,
        f"port {device}",
        f"USB {usb_id} is not a New Scale bridge id ({known})",
        warning=True,
    )


def _port_device(spec: str) -> str:
    """The device of a ``--port`` value, ``DEVICE`` or ``NAME=DEVICE``, spaces
    stripped as :func:`drivers.serial_ports.parse_port_specs` strips them for the daemon."""
    _, sep, device = spec.partition("=")
    return (device if sep else spec).strip()


def _held_by_another_process(device: str) -> str:
    """Why the device cannot be used now ("" if it can).

    The drivers take an exclusive flock on their port; so do we, for a moment,
    without sending a byte. A check must never talk to a bridge the running
    service is using: replies would be stolen and the service confused.
    """
    try:
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return "busy: in use by another process (is the ephysd service running?)"
        return f"cannot open: {exc.strerror}"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy: in use by another process (is the ephysd service running?)"
    except OSError:
        pass  # a device that cannot be locked at all; the handshake will tell
    finally:
        os.close(fd)
    return ""


async def check_platform(
    platform: Platform, open_timeout_s: float = OPEN_TIMEOUT_S
) -> list[Finding]:
    """Start the platform, handshake with each manipulator concurrently, release everything."""
    subject = f"platform {platform.info.cli_name}"
    findings: list[Finding] = []
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(open_timeout_s):
                manipulators: list[Manipulator] = await nursery.start(platform.run)
            ids = ", ".join(m.id for m in manipulators)
            findings.append(
                Finding(True, subject, f"manipulators {ids}")
                if manipulators
                else Finding(False, subject, "no manipulators found")
            )
            results: dict[str, Finding] = {}
            async with trio.open_nursery() as handshakes:
                for manipulator in manipulators:
                    handshakes.start_soon(_handshake, manipulator, open_timeout_s, results)
            findings.extend(results[m.id] for m in manipulators)
            nursery.cancel_scope.cancel()
    except* DeviceError as group:
        findings.extend(Finding(False, subject, str(e)) for e in _leaves(group))
    except* trio.TooSlowError:
        findings.append(Finding(False, subject, f"not ready within {open_timeout_s:g} s"))
    return findings


async def _handshake(
    manipulator: Manipulator, open_timeout_s: float, results: dict[str, Finding]
) -> None:
    subject = f"manipulator {manipulator.id}"
    try:
        with trio.fail_after(open_timeout_s):
            await manipulator.open()
            position = await manipulator.position()
    except DeviceError as exc:
        results[manipulator.id] = Finding(False, subject, str(exc) or type(exc).__name__)
    except trio.TooSlowError:
        results[manipulator.id] = Finding(False, subject, f"no answer in {open_timeout_s:g} s")
    else:
        where = ", ".join(f"{v:.3f}" for v in position)
        identity = manipulator.identity()
        said = f" ({identity})" if identity else ""
        results[manipulator.id] = Finding(True, subject, f"handshake ok{said}, at ({where}) mm")
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await manipulator.close()


def _leaves(group: BaseExceptionGroup[DeviceError]) -> list[DeviceError]:
    leaves: list[DeviceError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


def report(findings: Sequence[Finding], failure_status: int = 1) -> int:
    """Print one line per finding; the exit status is ``failure_status`` if anything failed."""
    for finding in findings:
        print(finding, flush=True)
    failed = sum(not f.ok for f in findings)
    warned = sum(f.ok and f.warning for f in findings)
    summary = f"{failed} problem(s) found" if failed else "configuration ok"
    if warned:
        summary += f", {warned} warning(s)"
    print(summary, flush=True)
    return failure_status if failed else 0


def check_estop(settings: Settings) -> list[Finding]:
    """The button the daemon would arm: the named device, or the one the daemon would find."""
    if settings.estop is False:
        return []
    try:
        device = locate_estop(settings)
    except DeviceError as exc:
        return [Finding(False, "e-stop", str(exc))]
    assert device is not None
    finding = check_serial_device(device)
    found = "" if estop_device(settings) else "found by `ephysd ports`' rule; "
    return [Finding(finding.ok, "e-stop", f"{device}: {found}{finding.text}")]


def main(argv: Sequence[str] = ()) -> int:
    """Entry point of ``ephysd check``: takes the daemon's own flags (``--config FILE`` ...)."""
    from ephysd.cli import build_parser, parse_settings

    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    parser = build_parser("ephysd check", CHECK_DESCRIPTION, CHECK_EPILOG)
    try:
        settings = parse_settings(argv, parser)
        prepared = prepare(settings)
    except (ConfigError, PlatformConfigError) as exc:
        return report([Finding(False, "configuration", str(exc))], CONFIGURATION_ERROR)
    except DeviceError as exc:  # the platform's driver cannot be loaded
        return report([Finding(False, f"platform {settings.platform}", str(exc))])
    findings = [Finding(True, "configuration", f"valid, platform {settings.platform}")]
    findings.extend(Finding(True, "configuration", line, warning=True) for line in prepared.ignored)
    findings.append(check_policy(prepared.access))
    service_running = False
    if not settings.use_proxy:
        host, port = listen_address(settings)
        findings.extend(check_exposure(host, settings.allow, settings.allow_origin, settings.token))
        listen = check_listen(host, port)
        findings.append(listen)
        service_running = not listen.ok and listen.text.startswith(_IN_USE)
    if settings.platform in SERIAL_PLATFORMS:
        findings.extend(check_serial_device(spec) for spec in settings.port)
    if settings.platform == "newscale" and settings.port:
        ports = system_ports()
        findings.extend(f for spec in settings.port if (f := check_newscale_bridge(spec, ports)))
    findings.extend(check_estop(settings))
    if service_running:
        # Handshaking would share the devices with the running daemon (and
        # closing them would halt its moves). Say so instead.
        findings.append(
            Finding(False, "devices", "not checked while ephysd is running; stop it first")
        )
        return report(findings)
    findings.extend(trio.run(check_platform, prepared.platform))
    return report(findings)


CHECK_DESCRIPTION = (
    "Check the configuration, the serial devices, the e-stop button and every manipulator"
    " (opened, position read, closed) as the daemon would start them; nothing moves."
    " Takes the daemon's flags."
)
CHECK_EPILOG = (
    "exit status: 0 all well, 2 a configuration error (the daemon would exit 2 too),"
    " 1 any other problem."
)
