"""Output paths given on the command line: never create missing parents silently.

A path the user names (``--out``, ``--plot``, ``--dir``) must have an existing parent
directory; a missing one is an error naming the option, unless the command has
``--parents`` and it was given. Default paths under ``runs/`` are ours and are created.
"""

from __future__ import annotations

from pathlib import Path

from testbed.errors import UserError

__all__ = ["add_parents_flag", "check_output_path"]


def check_output_path(
    path: str | Path, option: str, parents: bool = False, has_parents_flag: bool = True
) -> Path:
    """``path`` if its parent directory exists (or ``parents``); else a one-line error."""
    if not str(path).strip():
        raise UserError(f"{option} must not be empty")
    p = Path(path).expanduser()
    if p.absolute() == Path("/"):
        raise UserError(f"{option} /: choose a directory below /")
    parent = p.absolute().parent
    if parent.is_dir() or parents:
        return p
    if parent.exists():
        raise UserError(f"{option} {path}: {parent} is not a directory")
    how = "create it first, or pass --parents" if has_parents_flag else "create it first"
    raise UserError(f"{option} {path}: the directory {parent} does not exist ({how})")


def add_parents_flag(p: object) -> None:
    """Add ``--parents`` (create missing parent directories of ``--out``) to a parser."""
    p.add_argument(  # type: ignore[attr-defined]
        "--parents",
        action="store_true",
        help="create missing parent directories of --out",
    )
