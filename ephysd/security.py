"""Who may drive the manipulators: network allow list, browser Origin, shared token, budget.

The daemon listens on loopback by default, but loopback is not a trust
boundary on a rig PC: any web page open in the browser there can reach
``ws://localhost:3000``. Browsers always say where such a request comes from
(``Origin``, and ``Sec-Fetch-Site`` in current browsers), so a request from a
page not on the allowlist is refused before an Engine.IO session exists.
Native clients are allowed, subject to the network allow list and, if
configured, the token: most send no Origin (Pinpoint desktop, python-socketio's
AsyncClient, Node), and python-socketio's sync ``Client`` (websocket-client
underneath) sends the daemon's own address as its Origin, which is the same
origin and allowed, as python-engineio allows it.

A same-origin request counts only when its ``Host`` names this daemon (an IP
address, ``localhost``, this computer's host name or the ``listen`` host):
otherwise a page on a domain its owner re-points at 127.0.0.1 (DNS rebinding)
would be "same origin" too. python-engineio takes any Host; we are stricter.

Everything here is pure and synchronous: the policy is consulted by the
protocol server on accept (:meth:`AccessPolicy.check_request`) and by the
Socket.IO connect hook (:meth:`AccessPolicy.check_auth`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio

from protocol.transport import RequestInfo

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
# Longest token / origin we bother comparing; anything longer is refused outright.
MAX_TOKEN_LENGTH = 1024
MAX_ORIGIN_LENGTH = 512

# Events the request budget never delays: stop always wins, and so does the
# jackhammer's emergency button.
NEVER_LIMITED: frozenset[str] = frozenset({"stop", "stop_all", "abort_jackhammer"})
# The API's generic error shape (as for "Malformed request."), for a request
# from a client that does not hold control, or one flooding far past its budget.
TOO_MANY_REQUESTS = json.dumps({"error": "Too many requests."})
# The default budget is far above what the daemon serves one client (tens of
# thousands of requests a second on the fake rig, far fewer on hardware), so a
# client shaped like Pinpoint (one read in flight per manipulator, back to back,
# as fast as answers come) is never slowed; a lower [limits] rate caps a client.
DEFAULT_RATE_PER_S = 100_000.0
DEFAULT_BURST = 10_000.0
MAX_WAIT_S = 10.0
"""The longest one request waits for budget, however far over it its client is."""
MAX_WAITING = 32
"""How many of one client's requests may wait for budget at once, by default;
the daemon uses half its handler slots per connection
(``ServerConfig.max_concurrent_handlers``), so the other half is always free to
read and run that client's stop."""

# Sec-Fetch-Site values a browser sends for requests a page on another site made.
_CROSS_SITE_FETCH = frozenset({"cross-site", "same-site"})


class PolicyError(ValueError):
    """The configured policy itself is wrong (bad CIDR, bad origin); a startup error."""


def parse_networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse an allow list like ``["127.0.0.0/8", "10.1.2.3"]`` with one clear error."""
    networks: list[IPNetwork] = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError as exc:
            raise PolicyError(f"allow: {spec!r} is not a network in CIDR notation ({exc})") from exc
    return tuple(networks)


def normalize_origin(origin: str) -> str:
    """The ``scheme://host[:port]`` form browsers send, lower-case, default port dropped."""
    text = origin.strip()
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(f"allow_origin: {origin!r} is not an http(s) origin like https://host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise PolicyError(f"allow_origin: {origin!r} must be scheme://host[:port], nothing more")
    try:
        port = parts.port
    except ValueError as exc:
        raise PolicyError(f"allow_origin: {origin!r} has a bad port") from exc
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "https" else 80
    suffix = f":{port}" if port is not None and port != default_port else ""
    return f"{parts.scheme}://{host}{suffix}"


def _request_origin(value: str) -> str | None:
    """Normalise an Origin header as received; None if it is not a usable origin."""
    if len(value) > MAX_ORIGIN_LENGTH:
        return None
    try:
        return normalize_origin(value)
    except PolicyError:
        return None


def peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's IP, with IPv4-mapped IPv6 (dual-stack listeners) turned back into IPv4."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def own_host_names(listen_host: str | None = None) -> frozenset[str]:
    """Host names (besides IP addresses) a request may use to reach this daemon.

    Only names nobody else controls: a page's own domain cannot be one of
    them, so DNS rebinding cannot pass for a same-origin request.
    """
    names = {"localhost", socket.gethostname().lower()}
    if listen_host and peer_address(listen_host) is None:
        names.add(listen_host.lower())
    return frozenset(names)


def _same_origin(origin: str, host_header: str | None, own_names: frozenset[str]) -> bool:
    """Whether ``origin`` is the address the request reached (``http://`` + its Host).

    The daemon serves plain HTTP only, so an https origin is never its own.
    """
    if host_header is None or len(host_header) > MAX_ORIGIN_LENGTH:
        return False
    own = _request_origin(f"http://{host_header}")
    if own is None or _request_origin(origin) != own:
        return False
    hostname = urlsplit(own).hostname or ""
    return peer_address(hostname) is not None or hostname in own_names


class ThrottledLog:
    """Warnings at most once a second, with a count of those held back.

    A hostile page can make a browser fire thousands of refused requests; the
    journal should get the fact, not the flood.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last = -float("inf")
        self.held_back = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self.held_back += 1
            return
        if self.held_back:
            message += f" ({self.held_back} similar refusal(s) not logged)"
            self.held_back = 0
        self._last = now
        self._logger.warning(message, *args)


@dataclass
class AccessPolicy:
    """The daemon's access rules; ``allowed_origins`` may be replaced on SIGHUP.

    A page's own origin (the address the request reached, see
    :func:`_same_origin`) is always allowed, with or without an allowlist.

    The protocol server keeps a reference to :meth:`check_request` and the
    connect hook to :meth:`check_auth`, so a reload takes effect for the next
    request without touching connections already accepted.
    """

    allow: tuple[IPNetwork, ...] = field(default_factory=lambda: parse_networks(LOOPBACK_NETWORKS))
    allowed_origins: frozenset[str] = frozenset()
    token: str | None = None
    own_names: frozenset[str] = field(default_factory=own_host_names)
    _refusals: ThrottledLog = field(default_factory=lambda: ThrottledLog(log), repr=False)

    @classmethod
    def from_config(
        cls,
        allow: Iterable[str] = LOOPBACK_NETWORKS,
        allow_origin: Iterable[str] = (),
        token: str | None = None,
        listen_host: str | None = None,
    ) -> AccessPolicy:
        """Build from configuration values; raises :class:`PolicyError` with one clear line."""
        networks = parse_networks(allow)
        if not networks:
            raise PolicyError("allow: the list is empty, so no client could ever connect")
        if token is not None:
            if not token:
                raise PolicyError("token: empty; remove it or set a long random string")
            if len(token) > MAX_TOKEN_LENGTH:
                raise PolicyError(f"token: longer than {MAX_TOKEN_LENGTH} characters")
        origins = frozenset(normalize_origin(o) for o in allow_origin)
        if "*" in origins:
            log.warning("allow_origin includes '*': any web page can drive the manipulators")
        return cls(
            allow=networks,
            allowed_origins=origins,
            token=token,
            own_names=own_host_names(listen_host),
        )

    def update_origins(self, allow_origin: Iterable[str]) -> None:
        """Replace the Origin allowlist (SIGHUP); validated first, so a bad list changes nothing."""
        origins = frozenset(normalize_origin(o) for o in allow_origin)
        if origins != self.allowed_origins:
            log.info("allowed origins now: %s", ", ".join(sorted(origins)) or "(none)")
        self.allowed_origins = origins

    def client_allowed(self, host: str) -> bool:
        address = peer_address(host)
        if address is None:
            return False
        return any(address in network for network in self.allow)

    def origin_allowed(self, origin: str, host_header: str | None = None) -> bool:
        """Listed (or ``*``), or the origin of the address the request reached."""
        if "*" in self.allowed_origins:
            return True
        normalized = _request_origin(origin)
        if normalized is not None and normalized in self.allowed_origins:
            return True
        return _same_origin(origin, host_header, self.own_names)

    def check_request(self, request: RequestInfo) -> str | None:
        """Refusal reason for an HTTP/WebSocket request, or None to accept it.

        The reason goes back to the client and into the log, so it names the
        rule, not the configuration.
        """
        host = request.remote_host
        if not self.client_allowed(host):
            self._refusals.warn("refused %s: address not in the allow list", host[:64])
            return "Client address not allowed."
        origin = request.headers.get("origin")
        if origin is not None:
            if not self.origin_allowed(origin, request.headers.get("host")):
                self._refusals.warn("refused %s: Origin %r not allowed", host, origin[:100])
                return "Origin not allowed."
        elif request.headers.get("sec-fetch-site", "").lower() in _CROSS_SITE_FETCH:
            # A browser request from another site that carries no Origin
            # (a plain <img>/<script> GET): never a legitimate client.
            self._refusals.warn("refused %s: cross-site browser request", host)
            return "Cross-site browser request not allowed."
        return None

    def check_auth(self, auth: object) -> str | None:
        """Refusal reason for a Socket.IO CONNECT auth payload, or None to accept it.

        With a token configured the payload must be ``{"token": "<token>"}``;
        the comparison takes the same time whatever the guess.
        """
        if self.token is None:
            return None
        offered = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(offered, str) or len(offered) > MAX_TOKEN_LENGTH:
            return "Invalid token."
        # surrogatepass: a lone surrogate in the offer is a wrong token, not a crash.
        offered_bytes = offered.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(offered_bytes, self.token.encode("utf-8", "surrogatepass")):
            return "Invalid token."
        return None


class TokenBucket:
    """A request budget: ``rate`` tokens a second, at most ``burst`` saved up.

    A request always gets its token; when the bucket is empty it borrows
    against the tokens still to come, and :meth:`reserve` says how long until
    they are earned. The debt is capped at ``max_debt`` tokens, so no wait is
    ever longer than ``max_debt / rate``. Clock-free (callers pass ``now``,
    e.g. ``trio.current_time()``): trivially testable, a few float operations
    per request.
    """

    __slots__ = ("_level", "_stamp", "burst", "max_debt", "rate")

    def __init__(self, rate: float, burst: float, now: float, max_debt: float = 0.0) -> None:
        if rate <= 0 or burst < 1 or max_debt < 0:
            raise ValueError("rate must be > 0, burst >= 1 and max_debt >= 0")
        self.rate = rate
        self.burst = burst
        self.max_debt = max_debt
        self._level = burst
        self._stamp = now

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens, borrowing if need be; the seconds until the
        borrowed ones are earned (0.0 when none were borrowed)."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = max(self._stamp, now)
        level = min(self.burst, self._level + elapsed * self.rate) - cost
        self._level = max(level, -self.max_debt)
        return -self._level / self.rate if self._level < 0 else 0.0


class RequestRateLimiter:
    """One client's request budget: a client over it is slowed down, not refused.

    ``delay_s(event)`` before handling each event says how long that request
    must wait for budget; the caller waits, then serves it. Only the requests
    over the budget wait (each at most ``max_wait_s``). Stops never wait.

    A waiting request holds one of its connection's handler slots, and when
    every slot is taken the server stops reading that connection: a stop sent
    behind a backlog of waiting requests would wait with them. So at most
    ``max_waiting`` of a client's requests wait at once (fewer than its handler
    slots); one more, from a client flooding that far past its budget, is
    refused at once (``delay_s`` returns None), which keeps its stop readable.
    A client shaped like Pinpoint (one read in flight per manipulator) never
    comes near that.
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE_PER_S,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] = trio.current_time,
        max_wait_s: float = MAX_WAIT_S,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._clock = clock
        self._bucket = TokenBucket(rate, burst, clock(), max_debt=rate * max_wait_s)
        self.max_waiting = max_waiting
        # When each request now waiting for budget is served, earliest first.
        self._waits_end: deque[float] = deque()
        self.slowed = 0
        self.refused = 0

    def delay_s(self, event: str) -> float | None:
        """Seconds this request must wait for budget before it is served (0.0:
        now), or None: refuse it, ``max_waiting`` requests already wait."""
        if event in NEVER_LIMITED:
            return 0.0
        now = self._clock()
        ends = self._waits_end
        while ends and ends[0] <= now:
            ends.popleft()
        if len(ends) >= self.max_waiting:
            # While any request waits the bucket is in debt, so this one would wait too.
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "client flooding past its request budget (%d waiting): %d request(s)"
                    " refused so far, so that its stops are still read at once",
                    len(ends),
                    self.refused,
                )
            return None
        wait = self._bucket.reserve(now)
        if wait > 0:
            ends.append(now + wait)
            self.slowed += 1
            if self.slowed == 1 or self.slowed % 1000 == 0:
                log.warning(
                    "client over its request budget: %d request(s) slowed down so far", self.slowed
                )
        return wait
