"""``make bench``: every benchmark, one after another, each in its own process.

Each prints its own table; speeds are ratios measured within one benchmark run
(docs/performance.md). A failing benchmark is reported and the rest still run; the exit
status is non-zero if any failed. Usage: ``python -m benchmarks.run_all [NAME ...]``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHES = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or BENCHES
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.stderr.write(f"run_all: unknown benchmark(s) {unknown}; have {BENCHES}\n")
        return 2
    failed = []
    for name in names:
        sys.stdout.write(f"\n=== {name} ===\n")
        sys.stdout.flush()
        w0 = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        sys.stdout.write(f"--- {name}: exit {rc}, {time.monotonic() - w0:.0f} s wall\n")
        if rc != 0:
            failed.append(name)
    if failed:
        sys.stderr.write(f"run_all: failed: {failed}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
