"""What the daemon does when systemd (or a person at the terminal) signals it.

SIGTERM / SIGINT: stop every motion first, then let the root nursery unwind
(each actor's shielded ``close()`` releases its device) and exit 0. The order
matters: cancelling the nursery alone would also cancel moves, but
``stop_motion`` commands every stage to halt concurrently and is bounded, so
the probes are still before anything else is torn down.

SIGHUP: reload what can change safely while a client is connected (log
level, allowed origins). Anything else in the file needs a restart; the reload
callback decides and logs what it ignored.

The task takes callbacks so it knows nothing about the daemon's internals.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import trio

from ephysd.sdnotify import Notifier

log = logging.getLogger(__name__)

# The whole shutdown must fit in systemd's patience and the 2 s; the
# halt gets the first second, device release the rest. A platform whose halt
# is confirmed by its effect (Parallax) declares a longer halt budget, and
# the halt at shutdown gets that instead (see stop_motion_timeout).
STOP_MOTION_TIMEOUT_S = 1.0
# Time for the actors to answer once their own halt deadline has passed.
STOP_ANSWER_MARGIN_S = 0.25
RELOAD_TIMEOUT_S = 2.0

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_motion_timeout(halt_budget_s: float) -> float:
    """How long the halt at shutdown may take: the default, or longer for a
    platform whose halts need longer (``PlatformInfo.halt_budget_s``), so a stop
    that is still being confirmed is not cut off by the shutdown it serves."""
    return max(STOP_MOTION_TIMEOUT_S, halt_budget_s + STOP_ANSWER_MARGIN_S)


async def handle_signals(
    *,
    stop_motion: Callable[[], Awaitable[object]],
    shutdown: Callable[[], object],
    reload: Callable[[], Awaitable[object]] | None = None,
    notifier: Notifier | None = None,
    stop_timeout: float = STOP_MOTION_TIMEOUT_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve SIGTERM/SIGINT/SIGHUP until the daemon shuts down; start with ``nursery.start``.

    ``stop_motion`` halts every manipulator (it runs shielded with its own
    deadline, so it completes even though shutdown is under way);
    ``shutdown`` cancels the root nursery; ``reload`` re-reads the safe part
    of the configuration. Once started, SIGINT no longer raises
    KeyboardInterrupt: it takes the same orderly path as SIGTERM.
    """
    notifier = notifier or Notifier(None)
    with trio.open_signal_receiver(*STOP_SIGNALS, signal.SIGHUP) as signals:
        task_status.started()
        stopping = False
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if stopping:
                    continue
                await _reload(name, reload, notifier)
            elif stopping:
                log.info("%s received while stopping: already on it", name)
            else:
                stopping = True
                await stop_everything(name, stop_motion, notifier, stop_timeout)
                shutdown()


async def stop_everything(
    reason: str,
    stop_motion: Callable[[], Awaitable[object]],
    notifier: Notifier,
    within_s: float = STOP_MOTION_TIMEOUT_S,
) -> bool:
    """Tell systemd we are stopping and halt every manipulator; True if the halt completed.

    Also usable outside signal handling (a fatal error path), which is why it
    is shielded: the caller may already be cancelled.
    """
    log.info("%s: stopping every motion and shutting down", reason)
    with trio.CancelScope(shield=True):
        await notifier.stopping(f"stopping ({reason}): halting every manipulator")
        errors: object = None
        with trio.move_on_after(within_s) as scope:
            try:
                errors = await stop_motion()
            except Exception:
                log.exception("stopping motion failed; shutting down anyway")
                return False
    if scope.cancelled_caught:
        log.error("stopping motion took longer than %.1f s; shutting down anyway", within_s)
        return False
    if errors:  # the manipulators that did not halt, named (Daemon.stop_all)
        log.error("some manipulators did not stop: %s; shutting down anyway", errors)
        return False
    log.info("every motion stopped")
    return True


async def _reload(
    name: str, reload: Callable[[], Awaitable[object]] | None, notifier: Notifier
) -> None:
    if reload is None:
        log.info("%s received: nothing to reload", name)
        return
    log.info("%s received: reloading the configuration", name)
    await notifier.reloading()
    try:
        with trio.fail_after(RELOAD_TIMEOUT_S):
            await reload()
    except Exception as exc:
        # A bad edit must not take down a running rig: keep the old settings.
        log.error("reload failed, keeping the previous settings: %s", exc)
    await notifier.notify("READY=1")
