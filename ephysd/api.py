"""The Ephys Link API: event name and arguments in, the ack's string out.

Transport-free on purpose: the Socket.IO server, the proxy client and the tests
all call :meth:`Api.handle`. Every answer is a string, as on the wire; the
shapes and texts are those of ``ephys-link-api.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from ephysd.actor import ActorHandle
from ephysd.errors import error_text, unknown_manipulator
from ephysd.models import (
    MALFORMED_REQUEST,
    UNKNOWN_EVENT,
    AngularResponse,
    BooleanStateResponse,
    GetManipulatorsResponse,
    MalformedRequest,
    PinpointIdResponse,
    PlatformInfoResponse,
    PositionalResponse,
    SetDepthRequest,
    SetDepthResponse,
    SetInsideBrainRequest,
    SetPositionRequest,
    ShankCountResponse,
    decode_manipulator_id,
    decode_request,
    to_json,
    vector4,
)
from ephysd.rig import Rig

log = logging.getLogger(__name__)

# The Ephys Link API level ephysd implements. Pinpoint refuses a server whose
# major version is not 2, so this is what get_version reports, not our own
# package version.
EPHYS_LINK_API_VERSION: Final = "2.3.0"


class Api:
    """Maps each event to a rig call and the response text."""

    def __init__(self, rig: Rig, pinpoint_id: str) -> None:
        self._rig = rig
        self.pinpoint_id = pinpoint_id
        self._handlers: dict[str, Callable[[Sequence[Any]], Awaitable[str]]] = {
            "get_version": self._get_version,
            "get_pinpoint_id": self._get_pinpoint_id,
            "get_platform_info": self._get_platform_info,
            "get_manipulators": self._get_manipulators,
            "get_position": self._get_position,
            "get_angles": self._get_angles,
            "get_shank_count": self._get_shank_count,
            "set_position": self._set_position,
            "set_depth": self._set_depth,
            "set_inside_brain": self._set_inside_brain,
            "stop": self._stop,
            "stop_all": self._stop_all,
        }

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    async def handle(self, event: str, args: Sequence[Any]) -> str:
        """The ack string for ``event`` called with ``args`` (request data first)."""
        handler = self._handlers.get(event)
        if handler is None:
            log.error("unknown event %r", event)
            return UNKNOWN_EVENT
        log.debug("event %s %r", event, args)
        try:
            answer = await handler(args)
            log.debug("event %s answered %.500s", event, answer)
            return answer
        except MalformedRequest as exc:
            shown = args[0] if args else "(no argument)"
            log.error("malformed %s request: %s; got %.200r", event, exc, shown)
            return MALFORMED_REQUEST
        except Exception as exc:
            # A bug must cost this one answer, never the connection or the daemon.
            log.exception("%s failed unexpectedly", event)
            return json.dumps({"error": error_text(exc)})

    # --- helpers ---------------------------------------------------------------

    @staticmethod
    def _arg(args: Sequence[Any]) -> Any:
        return args[0] if args else None

    def _handle_for(self, manipulator_id: str) -> ActorHandle | None:
        handle = self._rig.handles.get(manipulator_id)
        if handle is None:
            log.error("%s", self._unknown(manipulator_id))
        return handle

    @staticmethod
    def _unknown(manipulator_id: str) -> str:
        return error_text(unknown_manipulator(manipulator_id))

    # --- metadata ----------------------------------------------------------------

    async def _get_version(self, args: Sequence[Any]) -> str:
        return EPHYS_LINK_API_VERSION

    async def _get_pinpoint_id(self, args: Sequence[Any]) -> str:
        return to_json(
            PinpointIdResponse(
                PinpointId=self.pinpoint_id,
                IsRequester=False,
                pinpoint_id=self.pinpoint_id,
                is_requester=False,
            )
        )

    async def _get_platform_info(self, args: Sequence[Any]) -> str:
        info = self._rig.info
        return to_json(
            PlatformInfoResponse(
                name=info.name,
                cli_name=info.cli_name,
                axes_count=info.axes_count,
                dimensions=vector4(info.dimensions_mm),
            )
        )

    async def _get_manipulators(self, args: Sequence[Any]) -> str:
        return to_json(GetManipulatorsResponse(manipulators=self._rig.ids))

    # --- reads -------------------------------------------------------------------

    async def _get_position(self, args: Sequence[Any]) -> str:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return to_json(PositionalResponse(error=self._unknown(manipulator_id)))
        result = await handle.get_position()
        if result.error or result.value is None:
            return to_json(PositionalResponse(error=result.error))
        return to_json(PositionalResponse(position=result.value))

    async def _get_angles(self, args: Sequence[Any]) -> str:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return to_json(AngularResponse(error=self._unknown(manipulator_id)))
        result = await handle.get_angles()
        if result.error or result.value is None:
            return to_json(AngularResponse(error=result.error))
        return to_json(AngularResponse(angles=result.value))

    async def _get_shank_count(self, args: Sequence[Any]) -> str:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return to_json(ShankCountResponse(error=self._unknown(manipulator_id)))
        result = await handle.get_shank_count()
        if result.error or result.value is None:
            return to_json(ShankCountResponse(error=result.error))
        return to_json(ShankCountResponse(shank_count=result.value))

    # --- moves -------------------------------------------------------------------

    async def _set_position(self, args: Sequence[Any]) -> str:
        request = decode_request(self._arg(args), SetPositionRequest)
        handle = self._handle_for(request.manipulator_id)
        if handle is None:
            return to_json(PositionalResponse(error=self._unknown(request.manipulator_id)))
        result = await handle.move_to(request.position, request.speed)
        if result.error or result.value is None:
            return to_json(PositionalResponse(error=result.error))
        return to_json(PositionalResponse(position=result.value))

    async def _set_depth(self, args: Sequence[Any]) -> str:
        request = decode_request(self._arg(args), SetDepthRequest)
        handle = self._handle_for(request.manipulator_id)
        if handle is None:
            return to_json(SetDepthResponse(error=self._unknown(request.manipulator_id)))
        result = await handle.move_depth(request.depth, request.speed)
        if result.error or result.value is None:
            return to_json(SetDepthResponse(error=result.error))
        return to_json(SetDepthResponse(depth=result.value))

    async def _set_inside_brain(self, args: Sequence[Any]) -> str:
        request = decode_request(self._arg(args), SetInsideBrainRequest)
        handle = self._handle_for(request.manipulator_id)
        if handle is None:
            return to_json(BooleanStateResponse(error=self._unknown(request.manipulator_id)))
        result = await handle.set_inside_brain(request.inside)
        if result.error or result.value is None:
            return to_json(BooleanStateResponse(error=result.error))
        return to_json(BooleanStateResponse(state=result.value))

    async def _stop(self, args: Sequence[Any]) -> str:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return self._unknown(manipulator_id)
        result = await handle.stop()
        return result.error

    async def _stop_all(self, args: Sequence[Any]) -> str:
        return await self._rig.stop_all()
