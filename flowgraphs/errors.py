"""Errors of the emulator layer (no dependency on the layers above).

:class:`ConfigError` is raised for an invalid emulator configuration (a config file, a CLI
value or a constructor argument); its message names the file or source and the key. The
``testbed`` command line prints it as one line and exits with status 2.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """An emulator config value is invalid; the message names the source and the key."""

    exit_code = 2
