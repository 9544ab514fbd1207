"""What trust costs: CURVE + signatures against plain sockets, on real transfers (issue 11).

For each mode (``plain``: no keys; ``keys``: CURVE on every socket, signed manifest) this
starts ``testbed channel serve`` and ``testbed receive`` on fresh ``ipc://`` endpoints and
sends the same random files through them with :func:`testbed.commands.transfer.send_file`
(5 MHz default link, from the middle of the first pass, where frames are not lost, so both
modes send the same fragments). Modes alternate (plain, keys, plain, keys) so drift
in machine load hits both; the emulated records must be the same in both modes except the
signature's frames. Also times Ed25519 sign/verify of a manifest and 1 KiB PUSH→PULL message
rates with and without CURVE. Usage: ``python -m benchmarks.bench_trust [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from channel import contact_windows
from flowgraphs.keys import Keyring, ZapGuard, create_keys, curve_client
from nodes.payload import derived_transfer_id, manifest_for
from nodes.signing import manifest_bytes, manifest_problem, sign_manifest
from nodes.zmq_link import LinkEndpoints
from testbed.commands.transfer import (
    emulator_link_table,
    emulator_toml,
    send_file,
    standalone_link_config,
)

SIZES = (256 * 1024, 256 * 1024 + 17)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _mode(base: Path, keys: Path | None, files: list[Path]) -> list[dict[str, Any]]:
    d = Path(tempfile.mkdtemp(prefix="m-", dir=base))
    up = LinkEndpoints(*(f"ipc://{d}/u-{k}" for k in ("in", "out", "status")))
    down = LinkEndpoints(*(f"ipc://{d}/d-{k}" for k in ("in", "out", "status")))
    nodes = (("c1", "satellite"), ("satellite", "c1")) if keys else (None, None)
    cfg = d / "emu.toml"
    cfg.write_text(
        emulator_toml(
            [
                emulator_link_table("c1", up, 1, None, nodes[0]),
                emulator_link_table("c1-down", down, 2, None, nodes[1]),
            ],
            str(keys) if keys else None,
        )
    )
    serve = _cli("channel", "serve", "--config", str(cfg))
    procs = [serve]
    try:
        json.loads(serve.stdout.readline())  # ready
        kargs = ["--keys", str(keys)] if keys else []
        procs.append(
            _cli("receive", "--dir", str(d / "rx"), "--up-out", up.out_addr, "--down-in",
                 down.in_addr, "--down-status", down.status_addr, *kargs)
        )  # fmt: skip
        lc = standalone_link_config("c1", None, {"c1": up, "c1-down": down}).links[0]
        kr = Keyring(keys, "c1") if keys else None
        geo = lc.geometry()
        ws = contact_windows(geo.orbit, geo.site, 0.0, 86400.0, lc.params.min_elevation_deg)
        wins = [(w.aos_s, w.los_s) for w in ws]
        out = []
        for i, f in enumerate(files):
            w0 = time.perf_counter()
            mid = 0.5 * (wins[0][0] + wins[0][1])  # high elevation: like with like, no losses
            rec = send_file(f, lc, "c1", i, 1024, mid, wins, up, down, None, keys=kr)
            rec["bench_wall_s"] = time.perf_counter() - w0
            out.append(rec)
        return out
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
        shutil.rmtree(d, ignore_errors=True)


def _msg_rate(curve: bool, n: int = 20000) -> float:
    """1 KiB messages per second PUSH → PULL over ipc (one process, two threads of zmq)."""
    with tempfile.TemporaryDirectory(prefix="z-", dir="/tmp") as d:
        ctx = zmq.Context()
        guard = None
        pull = ctx.socket(zmq.PULL)
        push = ctx.socket(zmq.PUSH)
        if curve:
            create_keys(d, ["srv", "cli"])
            guard = ZapGuard(ctx, Keyring(d, "srv"))
            guard.serve(pull, "b", ["cli"])
            curve_client(push, Keyring(d, "cli"), "srv")
        pull.bind(f"ipc://{d}/s")
        push.connect(f"ipc://{d}/s")
        buf = os.urandom(1024)
        push.send(buf)
        pull.recv()  # connected (and authenticated)
        w0 = time.perf_counter()
        for _ in range(n):
            push.send(buf)
            pull.recv()
        rate = n / (time.perf_counter() - w0)
        push.close(0)
        pull.close(0)
        if guard:
            guard.close()
        ctx.term()
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_trust")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="satfl-bt-", dir="/tmp"))
    try:
        keys = base / "keys"
        create_keys(keys, ["channel", "satellite", "c1"])
        files = []
        for i, n in enumerate(SIZES):
            f = base / f"f{i}.bin"
            f.write_bytes(random.Random(i).randbytes(n))
            files.append(f)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "keys": []}
        for _ in range(a.repeats):
            runs["plain"] += _mode(base, None, files)
            runs["keys"] += _mode(base, keys, files)
        # signatures
        kr = Keyring(keys, "c1")
        m = manifest_for(b"x" * 100, "c1", 0, 1024)
        tid = derived_transfer_id(m)
        w0 = time.perf_counter()
        for _ in range(500):
            sm = sign_manifest(tid, m, kr)
        sign_us = (time.perf_counter() - w0) / 500 * 1e6
        w0 = time.perf_counter()
        for _ in range(500):
            assert manifest_problem(tid, sm, kr) is None
        verify_us = (time.perf_counter() - w0) / 500 * 1e6
        rates = {"plain": _msg_rate(False), "curve": _msg_rate(True)}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    wall = {k: statistics.mean(r["bench_wall_s"] for r in v) for k, v in runs.items()}
    up = {k: statistics.mean(r["upload_time_s"] for r in v) for k, v in runs.items()}
    per_emu = {k: wall[k] / up[k] for k in wall}
    res = {
        "per_transfer": {
            k: [
                {
                    f: r.get(f)
                    for f in (
                        "upload_time_s",
                        "bench_wall_s",
                        "fragments_sent",
                        "fragments_retransmitted",
                        "metadata_sent",
                    )
                }
                for r in v
            ]
            for k, v in runs.items()
        },
        "wall_per_emulated_s": per_emu,
        "wall_per_emulated_ratio_keys_over_plain": per_emu["keys"] / per_emu["plain"],
        "files_bytes": list(SIZES),
        "repeats": a.repeats,
        "transfer_wall_s": wall,
        "wall_ratio_keys_over_plain": wall["keys"] / wall["plain"],
        "upload_time_s_emulated": up,
        "all_accepted": all(r["status"] == "accepted" for v in runs.values() for r in v),
        "manifest_sign_us": sign_us,
        "manifest_verify_us": verify_us,
        "manifest_signed_bytes": len(manifest_bytes(tid, sm)),
        "msgs_per_s_1kib": rates,
        "curve_msg_rate_ratio": rates["curve"] / rates["plain"],
    }
    if a.json:
        sys.stdout.write(json.dumps(res, indent=1) + "\n")
    else:
        w = sys.stdout.write
        w(f"transfers: {len(SIZES)} files x {a.repeats} repeats per mode, 5 MHz default link\n")
        w(f"  wall per transfer: plain {wall['plain']:.2f} s, keys {wall['keys']:.2f} s, "
          f"ratio {res['wall_ratio_keys_over_plain']:.3f}\n")  # fmt: skip
        w(f"  emulated upload time: plain {up['plain']:.4f} s, keys {up['keys']:.4f} s\n")
        ratio = res["wall_per_emulated_ratio_keys_over_plain"]
        w(f"  wall per emulated second: ratio {ratio:.3f}\n")
        w(f"Ed25519 manifest: sign {sign_us:.0f} us, verify {verify_us:.0f} us\n")
        w(f"1 KiB PUSH->PULL: plain {rates['plain']:.0f}/s, CURVE {rates['curve']:.0f}/s "
          f"(ratio {res['curve_msg_rate_ratio']:.3f})\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
