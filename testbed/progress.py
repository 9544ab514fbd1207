"""Live progress of long commands (run, demo, replay, sweep, learn) on stderr.

On a terminal, a `rich <https://rich.readthedocs.io>`_ live panel redrawn in place; when
stderr is not a terminal (a pipe, a log file, CI) or with ``-q``, plain lines — one per
change, at most one every ``min_interval_s`` of wall time — or nothing at all with ``-q``.
Third-party progress bars (transformers' "Loading weights") are switched off while a
display is active. Nothing here reads or writes emulated time; it only shows it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Any

__all__ = [
    "Display",
    "eta_s",
    "fmt_bytes",
    "fmt_duration",
    "silence_third_party_bars",
    "table_text",
]

log = logging.getLogger(__name__)


def silence_third_party_bars() -> None:
    """Turn off the progress bars of transformers / huggingface_hub / tqdm users."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # transformers not imported by this command
        pass


def fmt_bytes(n: float | None) -> str:
    """``1.2 MB``-style (decimal units)."""
    if n is None:
        return "–"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_duration(s: float | None) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``42 s``."""
    if s is None or s != s or s < 0:
        return "–"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def eta_s(done: float, total: float, elapsed_wall_s: float) -> float | None:
    """Wall seconds left if the rest goes as fast as what is done (``done`` of ``total``)."""
    if not (total > 0 and done > 0) or done >= total:
        return None if done < total else 0.0
    return elapsed_wall_s * (total - done) / done


class Display:
    """A live panel (terminal) or plain lines (otherwise), or nothing (``quiet``).

    Parameters
    ----------
    title : shown above the panel
    quiet : show nothing
    stream : where to draw (stderr)
    min_interval_s : plain mode prints at most one line per this many wall seconds
    live : force the live panel on (True) or off (False); default: ``stream.isatty()``
    """

    def __init__(
        self,
        title: str,
        quiet: bool = False,
        stream: IO[str] | None = None,
        min_interval_s: float = 2.0,
        live: bool | None = None,
    ) -> None:
        self.title = title
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval_s = float(min_interval_s)
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.live_mode = (isatty if live is None else live) and not quiet
        self._live: Any = None
        self._last_line = ""
        self._last_t = -1e18
        self._pending = ""
        self.t0 = time.monotonic()

    def __enter__(self) -> Display:
        silence_third_party_bars()
        if self.live_mode:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                console=Console(file=self.stream), refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        elif not self.quiet and self._pending and self._pending != self._last_line:
            self.stream.write(self._pending + "\n")  # the final state, even if rate-limited
            self.stream.flush()
            self._last_line = self._pending

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    def update(self, rows: list[list[str]], headers: list[str], line: str) -> None:
        """Show ``rows`` under ``headers`` (live) or ``line`` (plain, when it changed)."""
        if self.quiet:
            return
        if self._live is not None:
            from rich.table import Table

            table = Table(title=self.title, title_justify="left", expand=False)
            for h in headers:
                table.add_column(h)
            for r in rows:
                table.add_row(*r)
            self._live.update(table)
            return
        now = time.monotonic()
        self._pending = line
        if line != self._last_line and now - self._last_t >= self.min_interval_s:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_line, self._last_t = line, now

    def message(self, text: str) -> None:
        """A line that stays (above the live panel, or plain)."""
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


def table_text(headers: list[str], rows: list[list[str]]) -> str:
    """A plain monospace table (the end-of-run summary; stdout, any terminal)."""
    cols = [headers, *rows]
    w = [max(len(str(r[i])) for r in cols) for i in range(len(headers))]
    out = ["  ".join(str(h).ljust(w[i]) for i, h in enumerate(headers)).rstrip()]
    out.append("  ".join("-" * x for x in w))
    for r in rows:
        out.append("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(out) + "\n"
