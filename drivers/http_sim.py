"""The small HTTP server and motion model behind both vendor emulators.

The emulators let the HTTP drivers be tested over real sockets: they serve the
rig state on GET, take commands on PUT, record every command, and move their
stages at the commanded rate on Trio's clock. A test can make one answer
nonsense or take it down and bring it back on the same port.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import h11
import msgspec
import trio

log = logging.getLogger(__name__)

Reply = tuple[int, bytes, str]
"""Status, body and Content-Type of one answer."""
Handler = Callable[[str, str, bytes], Awaitable[Reply]]
"""(method, path, body) -> the answer."""
JSON = "application/json"

IDLE_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 1 << 20


class SimStage:
    """A 3-axis stage moving in straight lines at a fixed speed, evaluated lazily."""

    def __init__(self, native_mm: Sequence[float]) -> None:
        self._start = tuple(float(v) for v in native_mm)
        self._target = self._start
        self._speed = 0.0
        self._t0 = trio.current_time()

    def position(self) -> tuple[float, float, float]:
        delta = [b - a for a, b in zip(self._start, self._target, strict=True)]
        distance = max(abs(d) for d in delta)
        if distance == 0.0 or self._speed <= 0.0:
            return (self._start[0], self._start[1], self._start[2])
        fraction = min(1.0, self._speed * (trio.current_time() - self._t0) / distance)
        return (
            self._start[0] + delta[0] * fraction,
            self._start[1] + delta[1] * fraction,
            self._start[2] + delta[2] * fraction,
        )

    @property
    def moving(self) -> bool:
        return self.position() != self._target

    def move_to(self, target_mm: Sequence[float], speed_mm_s: float) -> None:
        self._start = self.position()
        self._target = (float(target_mm[0]), float(target_mm[1]), float(target_mm[2]))
        self._speed = speed_mm_s
        self._t0 = trio.current_time()

    def move_by(self, delta_mm: Sequence[float], speed_mm_s: float) -> None:
        here = self.position()
        self.move_to([here[i] + delta_mm[i] for i in range(3)], speed_mm_s)

    def stop(self) -> None:
        self._start = self._target = self.position()
        self._speed = 0.0


def number(command: dict[str, object], key: str) -> float:
    """A numeric field of a PUT command, or the TypeError/KeyError the emulator answers 400 to."""
    value = command[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number, not {value!r}")
    return float(value)


class HttpSim(abc.ABC):
    """One vendor server: state on GET, commands on PUT, every PUT recorded."""

    def __init__(self, *, coarse_speed_mm_s: float = 1.0, fine_speed_mm_s: float = 0.1) -> None:
        self.coarse_speed_mm_s = coarse_speed_mm_s
        self.fine_speed_mm_s = fine_speed_mm_s
        self.puts: list[dict[str, object]] = []
        self.gets = 0
        self.override_body: bytes | None = None
        """When set, GET answers this instead of the state (to test nonsense answers)."""

    @abc.abstractmethod
    def state(self) -> object:
        """The JSON-able rig state right now."""

    @abc.abstractmethod
    def apply(self, command: dict[str, object]) -> None:
        """Carry out one PUT command; raise ValueError/KeyError/TypeError if it is wrong."""

    async def handle(self, method: str, path: str, body: bytes) -> Reply:
        if method == "GET":
            self.gets += 1
            if self.override_body is not None:
                return 200, self.override_body, JSON
            return 200, msgspec.json.encode(self.state()), JSON
        if method == "PUT":
            try:
                command = msgspec.json.decode(body, type=dict[str, object])
                self.puts.append(command)
                self.apply(command)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                log.warning("emulator refused %r: %s", body, exc)
                return 400, msgspec.json.encode({"error": str(exc)}), JSON
            return 200, b"{}", JSON
        return 405, b"{}", JSON

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self.start_beside(nursery)
            await serve_http(self.handle, host, port, task_status=task_status)

    def start_beside(self, nursery: trio.Nursery) -> None:
        """Start what the vendor program runs beside its server (Parallax's listener
        of Pathfinder); it ends with the server. Nothing by default."""
        return None


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` over HTTP/1.1 with keep-alive; reports the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = int(listeners[0].socket.getsockname()[1])
    log.info("emulator listening on http://%s:%d", host, bound)
    task_status.started(bound)
    await trio.serve_listeners(partial(_serve_connection, handler=handler), listeners)


async def _serve_connection(stream: trio.SocketStream, *, handler: Handler) -> None:
    connection = h11.Connection(h11.SERVER)
    try:
        async with stream:
            while True:
                request = await _read_request(stream, connection)
                if request is None:
                    return
                method, path, body = request
                status, payload, content_type = await handler(method, path, body)
                headers = [
                    ("Content-Type", content_type),
                    ("Content-Length", str(len(payload))),
                ]
                await stream.send_all(
                    connection.send(h11.Response(status_code=status, headers=headers))
                )
                await stream.send_all(connection.send(h11.Data(data=payload)) or b"")
                await stream.send_all(connection.send(h11.EndOfMessage()) or b"")
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
    except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("emulator connection ended: %s", exc)


async def _read_request(
    stream: trio.SocketStream, connection: h11.Connection
) -> tuple[str, str, bytes] | None:
    method = path = ""
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = b""
            with trio.move_on_after(IDLE_TIMEOUT_S):
                data = await stream.receive_some(65536)
            connection.receive_data(data)
            if not data and connection.their_state is h11.IDLE:
                return None
        elif isinstance(event, h11.Request):
            method = event.method.decode("ascii", "replace")
            path = event.target.decode("ascii", "replace")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                return None
        elif isinstance(event, h11.EndOfMessage):
            return method, path, bytes(body)
        else:
            return None


def run_cli(
    make_sim: Callable[[argparse.Namespace], HttpSim],
    default_port: int,
    argv: Sequence[str] | None,
    *,
    description: str | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], object] | None = None,
) -> None:
    """``python -m drivers.<platform>.sim --port N``: serve an emulated rig until Ctrl-C.

    ``make_sim`` gets the parsed options (``probes`` and whatever
    ``add_arguments`` added).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--probes", type=int, default=3, help="number of manipulators")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        await make_sim(args).serve(args.host, args.port)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)
