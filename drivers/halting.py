"""Halting a manipulator while its move unwinds, the way the driver contract asks.

A cancelled move (a stop) or a failed one must leave the hardware halted before
the exception goes on: the halt runs shielded from the cancellation, with a
budget of its own, and its failure is logged loudly rather than raised, since
the caller is already unwinding with the error that matters.
"""

from __future__ import annotations

import logging

import trio

from drivers.base import DeviceError, Manipulator

log = logging.getLogger(__name__)


async def halt_shielded(manipulator: Manipulator, budget_s: float) -> None:
    """Halt, whatever is cancelling the caller, for at most ``budget_s``.

    A driver whose halt bounds itself passes that same bound: the budget is
    then the backstop the contract asks for, not a second, different limit.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(budget_s) as scope:
        try:
            await manipulator.halt()
        except DeviceError as exc:
            log.error("manipulator %s: HALT FAILED: %s", manipulator.id, exc)
    if scope.cancelled_caught:
        log.error("manipulator %s: HALT TIMED OUT after %.1f s", manipulator.id, budget_s)
