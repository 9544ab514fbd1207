"""The live display: what it shows from a run's progress, plain lines off a terminal,
nothing with -q, a rich panel on one."""

from __future__ import annotations

import io

from testbed.progress import Display, eta_s, fmt_bytes, fmt_duration
from testbed.run import link_state, progress_view

WINDOWS = {"munich": [[0.0, 20.0], [60.0, 80.0]], "madrid": [[20.0, 40.0]]}
PROG = {
    "cycle": 1,
    "cycles": 3,
    "cluster": "munich",
    "phase": "connected",
    "uploads_in_flight": 2,
    "accuracy": 0.656,
    "t_s": 12.5,
    "t_start_s": 0.0,
    "horizon_s": 100.0,
    "transfers": [
        {"sender": "munich-d0", "kind": "experts", "size_bytes": 40_000,
         "received_bytes": 10_000, "missing_fragments": 3},
        {"sender": "munich-d1", "kind": "experts", "size_bytes": 40_000,
         "received_bytes": 40_000, "missing_fragments": 0},
    ],
}  # fmt: skip


def test_link_state_from_the_windows():
    assert link_state(WINDOWS["munich"], 5.0) == "in pass until 20 s"
    assert link_state(WINDOWS["munich"], 30.0) == "waiting for AOS at 60 s"
    assert link_state(WINDOWS["madrid"], 50.0) == "no more passes"


def test_progress_view_shows_cycle_time_links_uploads_and_eta():
    rows, _, line = progress_view("emsfl", PROG, WINDOWS, elapsed_s=25.0)
    table = {r[0]: r[1:] for r in rows}
    assert table["algorithm"][1].startswith("cycle 1/3") and "0.656" in table["algorithm"][1]
    assert table["emulated time"][0] == "12.5 s of 100 s"
    # 12.5 of 100 emulated seconds in 25 wall seconds: 175 wall seconds to go
    assert "ETA 2 min 55 s" in table["emulated time"][1]
    assert table["munich"][0] == "in pass until 20 s · connected"
    assert "munich-d0 experts 10.0 kB of 40.0 kB, 3 fragments missing" in table["munich"][1]
    assert table["madrid"] == ["waiting for AOS at 20 s", "–"]
    assert "cycle 1/3" in line and "t 12/100 s" in line and "50.0 kB of 80.0 kB" in line


def test_formatting_and_eta():
    assert fmt_bytes(1_234_567) == "1.2 MB" and fmt_bytes(999) == "999 B"
    assert fmt_duration(3725) == "1 h 02 min" and fmt_duration(65) == "1 min 05 s"
    assert eta_s(1, 4, 10.0) == 30.0 and eta_s(0, 4, 10.0) is None and eta_s(4, 4, 9.0) == 0.0


def test_plain_lines_off_a_terminal_and_the_final_state_always():
    buf = io.StringIO()  # not a TTY
    with Display("t", stream=buf, min_interval_s=3600.0) as d:
        assert not d.live_mode
        d.update([], [], "first")
        d.update([], [], "second")  # rate-limited...
        d.update([], [], "third")
    assert buf.getvalue().splitlines() == ["first", "third"]  # ...but the last one is shown


def test_quiet_shows_nothing_and_live_draws_a_table():
    buf = io.StringIO()
    with Display("t", quiet=True, stream=buf) as d:
        d.update([["a", "b"]], ["x", "y"], "line")
        d.message("hello")
    assert buf.getvalue() == ""
    buf = io.StringIO()
    with Display("testbed run · default", stream=buf, live=True) as d:
        rows, headers, line = progress_view("emsfl", PROG, WINDOWS, 25.0)
        d.update(rows, headers, line)
    out = buf.getvalue()
    assert "testbed run · default" in out and "waiting for AOS at 20 s" in out
