"""Child processes that never outlive the command that started them.

Every command that starts processes (``testbed run``, ``testbed send --start-emulator``,
``testbed replay``) stops them on exit, on error, on Ctrl-C and on SIGTERM; and each child
asks the kernel to send it SIGTERM if its parent dies without cleaning up (kill -9).
"""

from __future__ import annotations

import ctypes
import signal
from typing import Any

__all__ = ["die_with_parent", "terminate_as_interrupt"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """``preexec_fn`` for :class:`subprocess.Popen`: SIGTERM this child when the parent dies."""
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise :class:`KeyboardInterrupt`, so ``finally`` blocks run (children
    stopped, temporary directories removed) exactly as on Ctrl-C."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
