"""Exec a command with MemoryDenyWriteExecute in force, as ephysd.service sets it.

systemd implements ``MemoryDenyWriteExecute=yes`` with seccomp; Linux 6.3+
offers the same rule per process as ``prctl(PR_SET_MDWE)``, inherited across
exec. Used by the sandbox test: ``python mdwe_exec.py PROGRAM ARGS...``.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(f"mdwe_exec: prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())}")
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
