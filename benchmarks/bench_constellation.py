"""CPU time of the contact plan (issue 13 targets), one core.

``python -m benchmarks.bench_constellation``

Two cases, each the whole :func:`channel.contact_plan.contact_plan` (ephemeris, ground
windows, intra- and inter-plane ISLs with bisection, capacity profiles) over 24 h at the
default 10 s grid:

* Walker delta 53:24/4/1 at 550 km, 3 stations (target ≤ 2 s);
* Walker star 86.4:66/6/2 at 780 km (Iridium-like), 10 stations (target ≤ 20 s).

Printed: CPU seconds (``time.process_time``, best of 3, BLAS/OpenMP pinned to one thread)
and the contact counts.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import time  # noqa: E402
from collections import Counter  # noqa: E402

from channel.constellation import Constellation  # noqa: E402
from channel.contact_plan import contact_plan  # noqa: E402
from channel.orbit import GroundSite  # noqa: E402

STATIONS_3 = [
    GroundSite(48.1, 11.6, 500.0, "munich"),
    GroundSite(40.4, -3.7, 650.0, "madrid"),
    GroundSite(52.2, 21.0, 100.0, "warsaw"),
]
STATIONS_10 = [GroundSite(-60.0 + 13.0 * k, -170.0 + 35.0 * k, 0.0, f"gs{k}") for k in range(10)]


def _case(name: str, con: Constellation, stations: list[GroundSite], target_s: float) -> None:
    best = float("inf")
    plan = None
    for _ in range(3):
        t0 = time.process_time()
        plan = contact_plan(con, stations, duration_s=86400.0)
        best = min(best, time.process_time() - t0)
    assert plan is not None
    kinds = Counter(c.kind for c in plan.contacts)
    print(
        f"{name:<34} {best:6.2f} s CPU (target <= {target_s:g} s)  "
        f"sat_ground {kinds['sat_ground']:5d}  isl {kinds['isl']:5d}"
    )


def main() -> None:
    _case(
        "53:24/4/1 550 km x 3 stations x 24 h",
        Constellation.walker("53:24/4/1", 550e3),
        STATIONS_3,
        2.0,
    )
    _case(
        "86.4:66/6/2 star x 10 stations x 24 h",
        Constellation.walker("86.4:66/6/2", 780e3, pattern="star"),
        STATIONS_10,
        20.0,
    )


if __name__ == "__main__":
    main()
