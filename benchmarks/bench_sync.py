"""Wall-clock cost of the one-clock synchronisation: the same frames with and without it.

``python -m benchmarks.bench_sync [--mib 4]``

Both phases run a fresh emulator process (the standalone pair ``c1`` + ``c1-down``) with a
fixed MODCOD (QPSK 1/2) and no small-scale fading at the first pass's culmination, so that no
frame is lost and both carry the same frames:

* **raw**: ``N`` PDUs of 1060 bytes (a 1024-byte fragment and its header) pushed at one
  ``tx_time`` with a single promise after the last, read back from ``out`` — the emulator's
  chain alone, as ``testbed channel bench`` drives it, but across ZeroMQ and processes;
* **send**: ``testbed send --start-emulator`` of an ``N``-fragment file: the sender's
  discrete-event loop, promises, frame reports, a receiver process that stores every fragment
  crash-safely and forwards safe times, and the downlink.

Printed: wall seconds from the first PDU to the last delivery (raw) and the upload record's
``wall_s`` (send, which also excludes process start-up), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--modcod", "qpsk-1/2", "--fading-max-doppler-hz", "0"]


def _raw(n: int, t0: float, tmp: Path) -> tuple[float, int]:
    import zmq

    from flowgraphs.pdu import decode_pdu, encode_pdu
    from nodes.zmq_link import LinkEndpoints
    from testbed.cli import build_parser
    from testbed.commands import transfer

    args = build_parser().parse_args(["send", "x", *FLAGS])
    eps = {
        lid: LinkEndpoints(*(f"ipc://{tmp}/{lid}-{k}" for k in ("in", "out", "status")))
        for lid in ("c1", "c1-down")
    }
    tables = [
        transfer.emulator_link_table(lid, eps[lid], 1 + i, args)
        for i, lid in enumerate(("c1", "c1-down"))
    ]
    cfg = tmp / "emu.toml"
    cfg.write_text(transfer.emulator_toml(tables))
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "channel", "serve", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        proc.stdout.readline()  # ready
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(eps["c1"].in_addr)
        out = ctx.socket(zmq.PULL)
        out.connect(eps["c1"].out_addr)
        st = ctx.socket(zmq.PULL)
        st.connect(eps["c1"].status_addr)
        time.sleep(0.5)
        rnd = random.Random(1)
        bodies = [rnd.randbytes(1060) for _ in range(n)]
        poller = zmq.Poller()
        poller.register(out, zmq.POLLIN)
        poller.register(st, zmq.POLLIN)
        got, last = 0, 0.0
        w0 = time.monotonic()

        def drain(timeout_ms: int) -> bool:
            nonlocal got, last
            ev = dict(poller.poll(timeout_ms))
            for s in ev:
                m, _ = decode_pdu(s.recv(), 1 << 20)
                if s is out and m.get("cmd") != "safe":
                    got += 1
                    last = time.monotonic()
            return bool(ev)

        for i, b in enumerate(bodies):
            push.send(encode_pdu({"tx_time": t0, "seq": i, "src": "raw"}, b))
            drain(0)
        push.send(encode_pdu({"cmd": "advance", "tx_time": t0 + 1e5}, b"\0"))
        while got < n and drain(20_000):
            pass
        for s in (push, out, st):
            s.close(0)
        ctx.term()
        return last - w0, got
    finally:
        proc.terminate()
        proc.wait(30)


def _send(n: int, t0: float, tmp: Path) -> dict:
    f = tmp / "payload.bin"
    f.write_bytes(random.Random(2).randbytes(n * 1024))
    r = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "send", str(f), "--start-emulator", "--json",
         "--start-s", str(t0), *FLAGS],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(r.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=float, default=4.0, help="payload [MiB]")
    p.add_argument("--start-s", type=float, default=1750.0, help="emulated start (TCA ± 12 s)")
    a = p.parse_args(argv)
    n = int(a.mib * 1024)
    with tempfile.TemporaryDirectory(prefix="satfl-bench-sync-") as d:
        raw_wall, got = _raw(n, a.start_s, Path(d))
        rec = _send(n, a.start_s, Path(d))
    sys.stdout.write(
        f"| phase | PDUs delivered | frames | wall [s] |\n|---|---|---|---|\n"
        f"| raw push, one promise | {got}/{n} | – | {raw_wall:.2f} |\n"
        f"| testbed send + receive | {rec['fragments_sent']} fragments ({rec['status']}) "
        f"| {rec['frames']} | {rec['wall_s']:.2f} |\n\n"
        f"send / raw = {rec['wall_s'] / raw_wall:.2f} "
        f"(emulated upload {rec['upload_time_s']:.3f} s, airtime {rec['airtime_s']:.3f} s)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
