"""Read-only clients: the rig page and anything else that only watches.

A Socket.IO client that joins with auth ``{"role": "observer"}`` (plus the
token, if one is set) is an observer. It may call every read, and every event
that only ends motion (``stop``, ``stop_all``, ``abort_jackhammer``): a person
looking at the rig must be able to stop it, whoever drives. Anything else is
answered in that event's usual shape with an Error saying the connection is
read-only, so a client that parses the answer sees a refusal, not a crash.

Observers never take control and never block it: the one-controller rule of
:mod:`ephysd.connection` applies to every other client, unchanged. Each
observer gets its own request budget (stops are never limited), and a stop an
observer sends goes to the very same API call as the controller's, logged
with who pressed it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import msgspec
import trio

from ephysd.api import Answer, Api
from ephysd.models import (
    BooleanStateResponse,
    PositionalResponse,
    SetDepthResponse,
    jackhammer_answer,
    to_json,
)

log = logging.getLogger(__name__)

OBSERVER: Final = "observer"
CONTROLLER: Final = "controller"

# What an observer may call: reads, and events that can only end motion.
READS: Final = frozenset(
    {
        "get_version",
        "get_pinpoint_id",
        "get_platform_info",
        "get_manipulators",
        "get_position",
        "get_angles",
        "get_shank_count",
    }
)
# abort_jackhammer ends a running jackhammer and starts nothing: it is a stop,
# so the rig page's people may press it like stop.
STOPS: Final = frozenset({"stop", "stop_all", "abort_jackhammer"})
ALLOWED: Final = READS | STOPS

READ_ONLY: Final = (
    "This connection is read-only (observer): it may read and stop, not move or change the rig."
)


# Each event that changes the rig, and its usual answer carrying an error.
_REFUSALS: Final[dict[str, Callable[[str], str]]] = {
    "set_position": lambda error: to_json(PositionalResponse(error=error)),
    "set_depth": lambda error: to_json(SetDepthResponse(error=error)),
    "set_inside_brain": lambda error: to_json(BooleanStateResponse(error=error)),
    "jackhammer": lambda error: jackhammer_answer(None, error),
}


def read_only_answer(event: str) -> str:
    """The answer an observer gets for ``event``, which it may not call."""
    refuse = _REFUSALS.get(event)
    if refuse is None:  # a new event nobody classified yet: still refused
        return json.dumps({"error": READ_ONLY})
    return refuse(READ_ONLY)


class RoleError(ValueError):
    """The connect auth asks for a role that does not exist."""


def requested_role(auth: Any) -> str:
    """``observer`` or ``controller`` (no role given), from a CONNECT's auth payload."""
    role = auth.get("role") if isinstance(auth, dict) else None
    if role is None or role == CONTROLLER:
        return CONTROLLER
    if role == OBSERVER:
        return OBSERVER
    shown = role[:40] if isinstance(role, str) else type(role).__name__
    raise RoleError(f"Unknown role {shown!r}: use 'observer', or no role to take control.")


def client_label(auth: Any) -> str:
    """The short name a client gives itself (``"name"`` in auth), safe for one log line."""
    name = auth.get("name") if isinstance(auth, dict) else None
    if not isinstance(name, str):
        return ""
    return "".join(c for c in name[:40] if c.isprintable())


class Observer:
    """One connected observer, and the latest rig state waiting to be sent to it.

    The publisher puts each new state in ``pending`` (replacing one not yet
    sent, so a slow browser gets the newest, not a backlog) and wakes the
    observer's sender.
    """

    __slots__ = ("delay_s", "gone", "label", "peer", "pending", "sid", "wake")

    def __init__(
        self, sid: str, peer: str, label: str, delay_s: Callable[[str], float | None]
    ) -> None:
        self.sid = sid
        self.peer = peer
        self.label = label
        # This observer's request budget: how long a request must wait for it.
        self.delay_s = delay_s
        self.pending: str | None = None
        self.wake = trio.Event()
        self.gone = False

    def offer(self, text: str) -> None:
        self.pending = text
        self.wake.set()

    def who(self) -> str:
        named = f" ({self.label})" if self.label else ""
        return f"observer {self.sid} at {self.peer}{named}"


class Observers:
    """The connected observers, at most ``limit`` of them."""

    def __init__(
        self, limit: int, new_limiter: Callable[[], Callable[[str], float | None]]
    ) -> None:
        self.limit = limit
        self._new_limiter = new_limiter
        self._by_sid: dict[str, Observer] = {}
        self._someone = trio.Event()

    def __contains__(self, sid: object) -> bool:
        return sid in self._by_sid

    def __len__(self) -> int:
        return len(self._by_sid)

    def __iter__(self) -> Iterator[Observer]:
        return iter(list(self._by_sid.values()))

    def admit(self, sid: str, peer: str, label: str) -> str | None:
        """Add an observer; the refusal text when there are already ``limit`` of them."""
        if self.limit == 0:
            return "This daemon takes no observers (limits.max_observers is 0)."
        if len(self._by_sid) >= self.limit:
            return f"Too many observers ({self.limit} already watch this rig); try again later."
        self._by_sid[sid] = Observer(sid, peer, label, self._new_limiter())
        self._someone.set()
        log.info("%s joined (%d watching)", self._by_sid[sid].who(), len(self._by_sid))
        return None

    def leave(self, sid: str, reason: str) -> bool:
        """Forget an observer; False if ``sid`` was not one."""
        observer = self._by_sid.pop(sid, None)
        if observer is None:
            return False
        observer.gone = True
        observer.wake.set()
        if not self._by_sid:
            self._someone = trio.Event()
        log.info("%s left (%s); %d watching", observer.who(), reason, len(self._by_sid))
        return True

    async def wait_for_someone(self) -> None:
        """Return once at least one observer is connected."""
        await self._someone.wait()

    def delay_s(self, sid: str, event: str) -> float | None:
        """How long this observer's request must wait for its budget (stops never
        wait); None: refuse it (see RequestRateLimiter)."""
        return self._by_sid[sid].delay_s(event)

    async def answer(self, api: Api, sid: str, event: str, args: Sequence[Any]) -> Answer:
        """An observer's event: reads and stops as anyone's, the rest refused."""
        if event not in ALLOWED and event in api.events:
            log.info("refused %s from %s: read-only connection", event, self._by_sid[sid].who())
            return read_only_answer(event)
        if event in STOPS:
            target = f" {msgspec.json.encode(args[0]).decode()[:40]}" if args else ""
            log.warning("%s%s pressed by %s", event, target, self._by_sid[sid].who())
        return await api.answer(event, args)
