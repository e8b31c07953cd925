"""A lightweight mutex for one connection's outgoing packets.

Every event's ack takes it, so it sits on the hot path. ``trio.Lock`` does more
than needed here (owner tracking, fairness bookkeeping, a checkpoint even when
free); this gate only keeps a binary packet's text part and attachments
contiguous on the wire, and costs a flag test when nobody else is sending.
"""

from __future__ import annotations

from trio.lowlevel import ParkingLot


class SendGate:
    """Mutual exclusion for sends: ``await acquire()``, then ``release()`` in a finally."""

    __slots__ = ("_busy", "_lot")

    def __init__(self) -> None:
        self._busy = False
        self._lot = ParkingLot()

    @property
    def busy(self) -> bool:
        return self._busy

    async def acquire(self) -> None:
        # A woken waiter re-checks: another task may have taken the gate first.
        # Once woken it cannot lose the wake-up to cancellation (Trio delivers
        # that at its next checkpoint, after it holds the gate), so none is lost.
        while self._busy:
            await self._lot.park()
        self._busy = True

    def release(self) -> None:
        self._busy = False
        if self._lot:
            self._lot.unpark()
