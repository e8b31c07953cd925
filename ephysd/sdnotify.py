"""systemd's readiness/watchdog protocol, spoken from the Trio loop.

The protocol is one datagram of ``KEY=VALUE`` lines sent to the Unix socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract
namespace). It is written here rather than pulled in as a dependency because
it is a few lines, and because the watchdog ping must come from the main Trio
loop: a ping from a helper thread would keep a wedged daemon alive.

Without ``$NOTIFY_SOCKET`` (run by hand, in tests, under another supervisor)
every call quietly does nothing, so callers never need to check.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

import trio

log = logging.getLogger(__name__)

# A datagram to systemd is never worth stalling the daemon for.
SEND_TIMEOUT_S = 1.0
RETRY_INTERVAL_S = 0.01
# Refuse absurd WATCHDOG_USEC values rather than ping every microsecond.
MIN_WATCHDOG_INTERVAL_S = 0.05


def _socket_address(raw: str) -> str | bytes | None:
    """The sendto() address for a NOTIFY_SOCKET value, or None if unusable."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # systemd also allows vsock addresses ("vsock:CID:PORT"); a rig daemon is
    # never run inside a VM by systemd, so those are ignored, loudly.
    log.warning("ignoring unsupported NOTIFY_SOCKET %r", raw)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None if no watchdog is asked for.

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for; a
    child that inherited the environment must not ping on its parent's behalf.
    """
    raw = environ.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    wanted_pid = environ.get("WATCHDOG_PID", "")
    if wanted_pid and wanted_pid != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC %r", raw)
        return None
    if usec <= 0:
        return None
    return max(usec / 2_000_000, MIN_WATCHDOG_INTERVAL_S)


class Notifier:
    """Sends state changes to systemd; a no-op when not run under Type=notify.

    One Notifier per process. The socket is created lazily on first use and
    kept, so notifications cost one non-blocking ``sendto``.
    """

    def __init__(self, address: str | bytes | None, watchdog_s: float | None = None) -> None:
        self._address = address
        self.watchdog_s = watchdog_s if address is not None else None
        self._sock: socket.socket | None = None
        self._lock = trio.Lock()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = _socket_address(raw) if raw else None
        return cls(address, watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    async def notify(self, *fields: str, wait: bool = True) -> bool:
        """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=..."``) as one datagram.

        Returns whether it was sent. Failures are logged, never raised: losing
        a status line must not take the daemon down with the probes in the brain.
        If systemd's queue is full, waits up to SEND_TIMEOUT_S (``wait``) or
        drops the datagram at once (``wait=False``, for status lines that a
        later one supersedes). Sends are serialised, so concurrent callers
        never share the socket.
        """
        if self._address is None or not fields:
            return False
        for field in fields:
            if "=" not in field or "\n" in field:
                raise ValueError(f"not a single KEY=VALUE notification field: {field!r}")
        payload = "\n".join(fields).encode()
        async with self._lock:
            try:
                if self._sock is None:
                    # A plain non-blocking socket (not trio.socket), so that
                    # close() works anywhere, even after the Trio loop ended.
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                deadline = trio.current_time() + (SEND_TIMEOUT_S if wait else 0.0)
                while True:
                    try:
                        self._sock.sendto(payload, self._address)
                        return True
                    except BlockingIOError:
                        # A datagram peer's full queue does not show in poll(),
                        # so retry on a short timer, bounded.
                        if trio.current_time() >= deadline:
                            log.warning("systemd notify queue full; dropped %r", fields[0][:60])
                            return False
                        await trio.sleep(RETRY_INTERVAL_S)
            except OSError as exc:
                log.warning("cannot notify systemd (%s): %s", fields[0][:60], exc)
                return False

    async def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1"]
        if status is not None:
            fields.append(f"STATUS={one_line(status)}")
        return await self.notify(*fields)

    async def status(self, status: str) -> bool:
        return await self.notify(f"STATUS={one_line(status)}", wait=False)

    async def stopping(self, status: str | None = None) -> bool:
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append(f"STATUS={one_line(status)}")
        return await self.notify(*fields)

    async def reloading(self) -> bool:
        return await self.notify("RELOADING=1")

    async def run_watchdog(
        self,
        healthy: Callable[[], bool] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Ping ``WATCHDOG=1`` every half interval, for as long as the loop runs.

        Runs as a task in the root nursery: if the Trio loop wedges, the pings
        stop and systemd restarts the service. ``healthy`` lets the daemon
        withhold a ping (and so ask for a restart) when it knows it is broken.
        Returns at once when no watchdog was requested.
        """
        task_status.started()
        interval = self.watchdog_s
        if interval is None:
            return
        log.info("systemd watchdog: pinging every %.3g s", interval)
        while True:
            if self._healthy(healthy):
                await self.notify("WATCHDOG=1")
            else:
                log.error("withholding the systemd watchdog ping: the daemon reports unhealthy")
            await trio.sleep(interval)

    @staticmethod
    def _healthy(healthy: Callable[[], bool] | None) -> bool:
        if healthy is None:
            return True
        try:
            return healthy()
        except Exception:
            log.exception("health check failed; counting the daemon as unhealthy")
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def one_line(text: str) -> str:
    """STATUS= must be one line; keep what a person reading `systemctl status` needs."""
    return " ".join(text.split())[:200]
