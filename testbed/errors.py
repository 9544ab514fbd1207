"""Errors shared by every process, and the one exit-code table.

User-facing failures raise :class:`UserError`; the CLI prints its message as one line
(``testbed: error: ...``) and exits with :data:`EXIT_USAGE`. Nothing a user can type
produces a traceback.
"""

from __future__ import annotations

from flowgraphs.errors import ConfigError as EmulatorConfigError

__all__ = [
    "EXIT_CHILD_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "ConfigError",
    "EmulatorConfigError",
    "UserError",
]

EXIT_OK = 0
EXIT_RUNTIME = 1  # an operation failed at run time (I/O, a peer vanished, ...)
EXIT_USAGE = 2  # bad command line, bad scenario, bad input file
EXIT_CHILD_FAILED = 3  # an orchestrated child process failed
EXIT_INTERRUPTED = 130  # Ctrl-C


class UserError(Exception):
    """Bad input from the user; the message is printed as one line, no traceback."""

    exit_code = EXIT_USAGE


class ConfigError(UserError, EmulatorConfigError):
    """A scenario/config value is invalid; the message names the file and the key."""
