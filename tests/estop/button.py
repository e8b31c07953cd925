"""A pretend e-stop button: a pty whose slave is reached through a stable symlink.

The symlink plays the part of ``/dev/serial/by-id/...``: unplugging removes it
and closes the pty, plugging back makes a new pty behind the same name.
"""

from __future__ import annotations

import os
from pathlib import Path


class ButtonPty:
    def __init__(self, link: Path) -> None:
        self.link = link
        self._master: int | None = None
        self.plug()

    @property
    def device(self) -> str:
        return str(self.link)

    def plug(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)
        self._master = master
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(name)

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def press(self, data: bytes = b"STOP\r\n") -> None:
        assert self._master is not None, "button is unplugged"
        os.write(self._master, data)

    def close(self) -> None:
        self.unplug()
