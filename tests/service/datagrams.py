"""Reading what the daemon sent to a test's notify socket."""

from __future__ import annotations

import socket


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on a non-blocking socket, without waiting for more."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out
