"""The supervisor: one root nursery owns every task of the daemon.

Start order, each step ``nursery.start``-ed so the next only runs once the
previous is ready: the platform's ``run`` (manipulators discovered), one actor
per manipulator (device opened), the emergency stop if asked for, then the
Socket.IO server (port bound) and the rig_state publisher for its observers,
or the proxy client, then the service plumbing (signals, systemd watchdog).
Only then do the ready hooks run (systemd ``READY=1``, the devrig banner). A
failure of any of them before ready ends the daemon with that error; after
ready, a crash of any task takes the whole nursery down, and each actor's
shielded clean-up halts and releases its device.

Other parts plug in through :meth:`Daemon.on_ready` and
:meth:`Daemon.add_service`, and control the daemon through
:meth:`Daemon.stop_all` and :meth:`Daemon.shutdown`.
"""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import trio

from drivers.base import Platform
from ephysd.actor import ActorLimits
from ephysd.api import Api
from ephysd.config import Settings, estop_device, is_loopback, listen_address, proxy_address
from ephysd.connection import ControlPolicy, build_server
from ephysd.errors import StartupError, find_leaf
from ephysd.estop import EStopState, run_sigusr1_estop
from ephysd.logging_setup import configure_logging
from ephysd.rig import Rig, start_rig
from ephysd.rig_state import RigStatePublisher
from ephysd.security import AccessPolicy
from ephysd.service import Service, status_line
from ephysd.signals import stop_motion_timeout
from ephysd.startup import access_policy, prepare
from protocol.server import ServerConfig

log = logging.getLogger(__name__)

ReadyHook = Callable[["Daemon"], Awaitable[None]]
ExtraService = Callable[..., Awaitable[Any]]


def new_pinpoint_id() -> str:
    """What the user types into Pinpoint in proxy mode: 8 hex chars of a UUID4."""
    return str(uuid.uuid4())[:8]


class Daemon:
    """The whole daemon, for one platform and one set of settings."""

    def __init__(
        self,
        settings: Settings,
        platform: Platform,
        *,
        limits: ActorLimits | None = None,
        server_config: ServerConfig | None = None,
        pinpoint_id: str | None = None,
        handle_signals: bool = False,
        reload_settings: Callable[[], Settings] | None = None,
        access: AccessPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.platform = platform
        self.pinpoint_id = pinpoint_id or new_pinpoint_id()
        self._limits = limits
        self._server_config = server_config
        self._handle_signals = handle_signals
        self._reload_settings = reload_settings
        # Built now, so bad access settings fail before any device is opened.
        self.access = access if access is not None else access_policy(settings)
        self._ready_hooks: list[ReadyHook] = []
        self._services: list[ExtraService] = []
        self._nursery: trio.Nursery | None = None
        self._shutting_down = False
        self.rig: Rig | None = None
        self.api: Api | None = None
        self.policy: ControlPolicy | None = None
        self.publisher: RigStatePublisher | None = None
        self.estop_state = EStopState()
        # (host, port) the server listens on; None in proxy mode.
        self.address: tuple[str, int] | None = None
        self.service = Service()

    # --- extension points ----------------------------------------------------------

    def on_ready(self, hook: ReadyHook) -> None:
        """Run ``await hook(daemon)`` once everything is up."""
        self._ready_hooks.append(hook)

    def add_service(self, service: ExtraService) -> None:
        """Start ``service(task_status=...)`` in the root nursery before ready."""
        self._services.append(service)

    async def stop_all(self) -> str:
        """Halt every manipulator now; "" on success, else the errors."""
        if self.rig is None or self._shutting_down:
            # Once shutting down, the actors are being cancelled and each one
            # halts its device in its own shielded clean-up; asking them would
            # wait for answers that never come (e.g. the disconnect hook of
            # the client the shutdown just dropped).
            return ""
        return await self.rig.stop_all()

    def shutdown(self) -> None:
        """End the daemon: cancel the root nursery (actors halt and release devices)."""
        self._shutting_down = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # --- running ---------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int] | None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start everything, report the listening address (None with a proxy), serve."""
        log.info("platform %s (%s)", self.platform.info.name, self.platform.info.cli_name)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            # First, so a SIGTERM during a slow device handshake already
            # takes the orderly path.
            await self._start_service_plumbing(nursery)
            self.rig = rig = await start_rig(nursery, self.platform, self._limits)
            self.api = api = Api(rig, self.pinpoint_id)
            log.info("manipulators: %s", ", ".join(rig.ids) or "(none)")
            if self.settings.estop is not False:
                await self._start_estop(nursery)
            if self.settings.use_proxy:
                await self._start_proxy(nursery, api)
            else:
                await self._start_server(nursery, api)
            for service in self._services:
                await nursery.start(service)
            for hook in self._ready_hooks:
                await hook(self)
            await self.service.ready(self.status_line())
            # Everything built so far lives as long as the daemon: take it out
            # of the collector's view, so a full collection while serving scans
            # only what serving allocated (tens of ms otherwise, a latency spike).
            gc.collect()
            gc.freeze()
            task_status.started(self.address)

    def status_line(self, client: str | None = None) -> str:
        """The one line systemd shows under "Status:"."""
        ids = self.rig.ids if self.rig is not None else []
        line = status_line(self.platform.info.cli_name, ids, client)
        if self.address is not None:
            host, port = self.address
            return f"{line}; listening on http://{url_host(host)}:{port}"
        return f"{line}; via proxy, Pinpoint ID {self.pinpoint_id}"

    async def _control_changed(self, client: str | None) -> None:
        await self.service.status(self.status_line(client))

    async def _start_server(self, nursery: trio.Nursery, api: Api) -> None:
        host, port = listen_address(self.settings)
        if not is_loopback(host):
            log.warning(
                "listening on %s: the rig is reachable from the network, not just this"
                " computer (clients allowed from %s)",
                host,
                ", ".join(self.settings.allow),
            )
        server, self.policy = build_server(
            api, self.stop_all, self.settings, self._server_config, self.access
        )
        self.policy.on_control_change = self._control_changed
        try:
            self.address = await nursery.start(server.serve, host, port)
        except (OSError, BaseExceptionGroup) as exc:
            leaf = find_leaf(exc, OSError)
            if not isinstance(leaf, OSError):
                raise
            raise StartupError(f"cannot listen on {host}:{port}: {leaf.strerror or leaf}") from None
        log.info("listening on http://%s:%d", url_host(self.address[0]), self.address[1])
        assert self.rig is not None  # started before the server
        policy = self.policy
        self.publisher = RigStatePublisher(
            self.rig, server, policy.observers, lambda: policy.controller_peer, self.estop_state
        )
        await nursery.start(self.publisher.run)

    async def _start_proxy(self, nursery: trio.Nursery, api: Api) -> None:
        from ephysd.proxy import run_proxy  # only proxy mode needs the client

        host, port = proxy_address(self.settings)
        print(f"PINPOINT ID: {self.pinpoint_id}", flush=True)
        log.info("Pinpoint ID %s; connecting to proxy %s:%d", self.pinpoint_id, host, port)
        await nursery.start(
            run_proxy,
            api,
            f"http://{url_host(host)}:{port}",
            self.stop_all if self.settings.stop_on_disconnect else None,
        )

    async def emergency_stop(self, source: str) -> None:
        """The e-stop button's (and SIGUSR1's) press: halt everything, loudly."""
        log.critical("EMERGENCY STOP (%s): stopping every manipulator", source.strip() or "press")
        errors = await self.stop_all()
        if errors:
            log.critical("emergency stop: some manipulators failed to halt: %s", errors)

    async def _start_estop(self, nursery: trio.Nursery) -> None:
        device = estop_device(self.settings)  # None: find the button (true or "auto")
        try:
            from ephysd.estop import run_estop
        except ImportError as exc:
            raise StartupError(
                f"--estop: emergency stop support is not available ({exc})"
            ) from None
        await nursery.start(partial(run_estop, device, self.emergency_stop, state=self.estop_state))

    async def reload(self) -> None:
        """SIGHUP: apply what can change under a connected client (debug, allow_origin).

        The whole new file is validated first, as at start-up (settings, access
        rules, the platform's own checks): a file with any error raises here and
        changes nothing, so the daemon keeps running on its previous settings.
        """
        if self._reload_settings is None:
            return
        new = self._reload_settings()
        prepare(new)
        configure_logging(new.debug)
        self.access.update_origins(new.allow_origin)
        changed = [
            name
            for name in new.__struct_fields__
            if name not in ("debug", "allow_origin")
            and getattr(new, name) != getattr(self.settings, name)
        ]
        self.settings = msgspec.structs.replace(
            self.settings, debug=new.debug, allow_origin=new.allow_origin
        )
        if changed:
            log.warning("reload: %s changed; restart ephysd to apply", ", ".join(changed))
        log.info("reloaded: debug=%s, allow_origin=%s", new.debug, list(new.allow_origin))

    async def _start_service_plumbing(self, nursery: trio.Nursery) -> None:
        """Signals, SIGUSR1 e-stop and the systemd watchdog (ephysd.service).

        Only for the real process: signal handlers belong to the main thread
        and to one daemon per process, not to each test's daemon.
        """
        if not self._handle_signals:
            return
        await nursery.start(
            partial(
                self.service.run,
                stop_motion=self.stop_all,
                shutdown=self.shutdown,
                reload=self.reload if self._reload_settings is not None else None,
                stop_timeout=stop_motion_timeout(self.platform.info.halt_budget_s),
            )
        )
        await nursery.start(run_sigusr1_estop, self.emergency_stop)


def url_host(host: str) -> str:
    """``host`` as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
