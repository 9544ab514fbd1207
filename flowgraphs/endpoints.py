"""ZeroMQ endpoint helpers shared by the emulator and the processes that start it (no GNU Radio).

ZeroMQ leaves an ``ipc://`` endpoint's socket file behind when the socket closes, and a killed
process cannot remove it at all; whoever bound it (or started the process that did) removes it.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["ipc_path", "remove_ipc_file"]

log = logging.getLogger("flowgraphs")

_IPC = "ipc://"


def ipc_path(address: str) -> Path | None:
    """The socket file of an ``ipc://`` endpoint (None for any other transport)."""
    return Path(address[len(_IPC) :]) if address.startswith(_IPC) else None


def remove_ipc_file(address: str) -> None:
    """Remove an ``ipc://`` endpoint's socket file if it is there (failures are logged)."""
    path = ipc_path(address)
    if path is None:
        return
    try:
        if path.is_socket():
            path.unlink()
    except OSError as e:
        log.warning("could not remove %s: %s", path, e)
