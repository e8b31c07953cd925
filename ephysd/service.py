"""The service plumbing the supervisor starts in its root nursery, in one call.

Keeps the supervisor's side to three lines: start :func:`run_service` with
the callbacks, call :meth:`Service.ready` once listening and handshaken, and
:meth:`Service.status` when the summary changes (a client connects or leaves).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from ephysd.sdnotify import Notifier
from ephysd.signals import STOP_MOTION_TIMEOUT_S, handle_signals

log = logging.getLogger(__name__)


def status_line(platform: str, manipulators: Sequence[str], client: str | None) -> str:
    """The one line `systemctl status ephysd` shows under "Status:"."""
    ids = ", ".join(manipulators) if manipulators else "none"
    count = len(manipulators)
    who = f"client {client} connected" if client else "no client"
    return f"{platform}: {count} manipulator{'s' if count != 1 else ''} ({ids}); {who}"


class Service:
    """sd_notify + watchdog + signals for one daemon process."""

    def __init__(self, notifier: Notifier | None = None) -> None:
        self.notifier = notifier if notifier is not None else Notifier.from_environ()
        self._last_status = ""
        self.is_ready = False

    async def run(
        self,
        *,
        stop_motion: Callable[[], Awaitable[object]],
        shutdown: Callable[[], object],
        reload: Callable[[], Awaitable[object]] | None = None,
        healthy: Callable[[], bool] | None = None,
        stop_timeout: float = STOP_MOTION_TIMEOUT_S,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve signals and the watchdog until cancelled; ``nursery.start`` it early.

        Start it before the devices are opened, so a SIGTERM during a slow
        handshake already takes the orderly path.
        """
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: handle_signals(
                        stop_motion=stop_motion,
                        shutdown=shutdown,
                        reload=reload,
                        notifier=self.notifier,
                        stop_timeout=stop_timeout,
                        task_status=task_status,
                    )
                )
                await nursery.start(self.notifier.run_watchdog, healthy)
                task_status.started()
        finally:
            self.notifier.close()

    async def ready(self, status: str) -> None:
        """READY=1 with the first status line; later calls only update the status."""
        if self.is_ready:
            await self.status(status)
            return
        self.is_ready = True
        self._last_status = status
        log.info("ready: %s", status)
        await self.notifier.ready(status)

    async def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            await self.notifier.status(status)
