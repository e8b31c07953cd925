"""The protocol layer's two error types.

Two types keep blame clear: a peer that broke the protocol is a reason to close
its connection, while a local misuse is a bug in ephysd.
"""


class ProtocolError(Exception):
    """Base of every error the protocol layer raises on purpose."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class LocalProtocolError(ProtocolError):
    """We asked the state machine for something illegal in its current state."""
