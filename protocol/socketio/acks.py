"""Acknowledgement bookkeeping for ``call``: ack ids, waiting callers, their deadlines.

Shared by the server (one table per client and namespace) and the client (one
table per connection), so both sides time out and fail the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from protocol.socketio.packets import MAX_ACK_ID

log = logging.getLogger(__name__)


class Disconnected(Exception):
    """The peer is not connected, or went away before answering a ``call``."""


def ack_args(result: Any) -> list[Any]:
    """Map a handler's return value to ack arguments (None: none, tuple: several)."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]


class _Slot:
    __slots__ = ("args", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.args: list[Any] | None = None


class AckTable:
    """Hands out ack ids and delivers each ACK to the one caller waiting for it."""

    def __init__(self) -> None:
        self._next_id = 0
        self._waiting: dict[int, _Slot] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._waiting)

    async def call(
        self,
        send: Callable[[int], Awaitable[None]],
        timeout: float,  # noqa: ASYNC109 (mirrors the call() API)
    ) -> list[Any]:
        """Send a packet carrying a fresh ack id with ``send(id)`` and wait for its ACK.

        Raises :class:`trio.TooSlowError` after ``timeout`` seconds (the sending
        counts against it) and :class:`Disconnected` if the peer leaves first.
        """
        if self._closed:
            raise Disconnected("not connected")
        ack_id = self._next_id
        self._next_id = 0 if ack_id >= MAX_ACK_ID else ack_id + 1
        slot = _Slot()
        self._waiting[ack_id] = slot
        try:
            with trio.fail_after(timeout):
                await send(ack_id)
                await slot.done.wait()
        finally:
            self._waiting.pop(ack_id, None)
        if slot.args is None:
            raise Disconnected("peer disconnected before acknowledging")
        return slot.args

    def resolve(self, ack_id: int, args: list[Any]) -> bool:
        """Deliver an ACK; False when nobody waits for that id (late or bogus)."""
        slot = self._waiting.pop(ack_id, None)
        if slot is None:
            return False
        slot.args = args
        slot.done.set()
        return True

    def close(self) -> None:
        """Fail every waiting caller with :class:`Disconnected`, and any later one too."""
        self._closed = True
        waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot.done.set()
