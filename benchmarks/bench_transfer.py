"""Transfer efficiency = goodput / (link rate × (1 − frame loss)), at 0, 10 and 30 % loss.

Runs the real sender and receiver engines (real disk store with fsync) over the
discrete-event link model (nodes/simlink.py) with independent frame loss on both directions.
The link rate is the *raw* burst rate (framing overhead counts against us). Times are
emulated; wall time is printed beside them. Usage: ``python -m benchmarks.bench_transfer``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nodes.payload import manifest_for, new_transfer_id
from nodes.receiver import ReceiverConfig, ReceiverEngine
from nodes.sender import SenderDriver, SenderEngine
from nodes.simlink import SimLinkParams, SimulatedLink
from nodes.store import ReceiverStore

RATE = 2.0e6
SIZE = 2_000_000
FRAG = 1024


def one(loss: float, seed: int) -> tuple[float, float, int, float]:
    data = os.urandom(SIZE)
    with tempfile.TemporaryDirectory() as d:
        rx = ReceiverEngine(ReceiverStore(Path(d)), ReceiverConfig(frame_bytes=FRAG + 64))
        link = SimulatedLink(
            rx, SimLinkParams(up_rate_bps=RATE, loss=loss, down_loss=loss, seed=seed)
        )
        drv = SenderDriver(
            SenderEngine(new_transfer_id(), manifest_for(data, "c1", 1, FRAG), data),
            link,
            link.sender_config(),  # timers from the link's round trip
        )
        w0 = time.monotonic()
        rec = drv.run()
        wall = time.monotonic() - w0
    assert rec.status == "accepted" and rec.goodput_bps
    return (
        rec.goodput_bps / (RATE * (1 - loss)),
        rec.upload_time_s,
        rec.fragments_retransmitted,
        wall,
    )


def main() -> int:
    w = sys.stdout.write
    w(
        f"payload {SIZE / 1e6:g} MB, fragments {FRAG} B, raw link {RATE / 1e6:g} Mbit/s, "
        "loss on both directions, 5 seeds\n\n"
    )
    w(
        "| frame loss | efficiency (mean, min) | upload time [s, emulated] "
        "| resent fragments | wall [s] |\n"
    )
    w("|---|---|---|---|---|\n")
    for loss in (0.0, 0.1, 0.3):
        runs = [one(loss, s) for s in range(5)]
        eff = [r[0] for r in runs]
        w(
            f"| {loss:.0%} | {statistics.mean(eff):.3f}, {min(eff):.3f} | "
            f"{statistics.mean(r[1] for r in runs):.2f} | "
            f"{statistics.mean(r[2] for r in runs):.0f} | "
            f"{statistics.mean(r[3] for r in runs):.2f} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
