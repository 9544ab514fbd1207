"""End to end: ``testbed channel serve`` as its own process, PDUs over real ZeroMQ sockets."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import zmq

import channel
from flowgraphs.pdu import decode_pdu, encode_pdu

from ..conftest import REPO

pytestmark = pytest.mark.integration

REQUIRED = {
    "seq",
    "src",
    "dst",
    "tx_start",
    "tx_end",
    "rx_end",
    "airtime_s",
    "prop_delay_s",
    "snr_db",
    "elevation_deg",
    "doppler_hz",
    "doppler_rate_hz_per_s",
    "modcod",
    "esn0_db",
    "esn0_pred_db",
    "frame_id",
    "frames",
    "ldpc_iterations",
    "crc_ok",
    "link",
    "wall_proc_s",
}

CONFIG = """
[emulator]
stats_interval_s = 0.5

[[link]]
id = "a"
in = "ipc://{d}/a-in"
out = "ipc://{d}/a-out"
status = "ipc://{d}/a-status"
seed = 1
modcod = "qpsk-1/2"

[[link]]
id = "b"
in = "ipc://{d}/b-in"
out = "ipc://{d}/b-out"
status = "ipc://{d}/b-status"
seed = 2
doppler_precomp = "residual"
residual_hz = 500.0
[link.site]
lat_deg = 48.2
lon_deg = 11.7
"""


@pytest.fixture
def server(tmp_path):
    cfg = tmp_path / "emu.toml"
    cfg.write_text(CONFIG.format(d=tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "channel", "serve", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    ready = json.loads(line)
    assert ready["event"] == "ready" and set(ready["links"]) == {"a", "b"}
    yield proc, ready["links"]
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _sock(ctx, kind, addr):
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 20_000)
    s.connect(addr)
    return s


def test_pdus_cross_the_emulator_with_metadata_and_garbage_is_survived(server):
    proc, links = server
    geo = channel.default_link_geometry()
    wins = channel.contact_windows(geo.orbit, geo.site, 0.0, 86400.0, 10.0)
    t0 = max(wins, key=lambda w: w.max_elevation_deg).tca_s
    ctx = zmq.Context()
    try:
        push = _sock(ctx, zmq.PUSH, links["a"]["in"])
        out = _sock(ctx, zmq.PULL, links["a"]["out"])
        status = _sock(ctx, zmq.PULL, links["a"]["status"])
        push_b = _sock(ctx, zmq.PUSH, links["b"]["in"])
        out_b = _sock(ctx, zmq.PULL, links["b"]["out"])
        time.sleep(0.3)  # let the connections settle
        # garbage first: not PMT, a PMT that is no PDU, no tx_time, tx_time of a wrong
        # type, an oversized payload, multipart
        push.send(b"\x00garbage\xff" * 10)
        push.send(encode_pdu({"tx_time": t0}, b"")[:-3])
        push.send(encode_pdu({"seq": 1}, b"abc"))
        push.send(encode_pdu({"tx_time": "soon"}, b"abc"))
        push.send(encode_pdu({"tx_time": t0}, bytes(20_000)))
        push.send_multipart([b"a", b"b"])
        # then real PDUs on both links, and a promise beyond them (the frames go out)
        sent = {}
        for i in range(4):
            payload = bytes([i]) * (100 + i)
            sent[i] = payload
            push.send(
                encode_pdu(
                    {"tx_time": t0 + i, "seq": i, "src": "n1", "dst": "sat", "round": 7}, payload
                )
            )
        push.send(encode_pdu({"cmd": "advance", "tx_time": t0 + 10.0}, b""))
        push_b.send(encode_pdu({"tx_time": t0, "seq": 99, "src": "n2", "dst": "sat"}, b"hi b"))
        push_b.send(encode_pdu({"cmd": "advance", "tx_time": t0 + 1.0}, b""))
        got, safe = [], []
        while len(got) < 4:
            m, p = decode_pdu(out.recv())
            (safe if m.get("cmd") == "safe" else got).append((m, p))
        meta_b, payload_b = next(
            x for x in iter(lambda: decode_pdu(out_b.recv()), None) if x[0].get("cmd") != "safe"
        )
        reports = []
        while sum(len(r.get("pdus", [])) for r in reports) < 4:
            r = decode_pdu(status.recv())[0]
            if r.get("status") == "frame":
                reports.append(r)
        push.send(encode_pdu({"cmd": "stats"}, b""))
        while True:
            stats = decode_pdu(status.recv())[0]
            if stats.get("cmd") == "stats":
                break
    finally:
        ctx.destroy(linger=0)
    for meta, payload in got:
        assert payload == sent[meta["seq"]]
        assert REQUIRED <= set(meta), REQUIRED - set(meta)
        assert meta["round"] == 7 and meta["crc_ok"] is True and meta["link"] == "a"
        assert meta["modcod"] == "qpsk-1/2"  # the fixed MODCOD of link a
        assert meta["tx_start"] >= t0 + meta["seq"] and meta["rx_end"] > meta["tx_end"]
    # the markers: monotone, and no delivery after one has rx_end below it
    assert safe and all(a[0]["t"] < b[0]["t"] for a, b in itertools.pairwise(safe))
    assert payload_b == b"hi b" and meta_b["link"] == "b"
    assert meta_b["freq_est_hz"] == pytest.approx(500.0, abs=50.0)
    assert sorted(p[0] for r in reports for p in r["pdus"]) == sorted(sent)
    assert all({"tx_start", "tx_end", "modcod", "frame_id"} <= set(r) for r in reports)
    assert stats["cmd"] == "stats" and stats["link"] == "a"
    assert stats["in_rejected"] == 6 and stats["delivered"] == 4
    # still alive after the garbage; SIGTERM stops it cleanly
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out_text, err_text = proc.communicate(timeout=30)
    assert proc.returncode == 0, err_text
    final = json.loads(out_text.strip().splitlines()[-1])
    assert final["event"] == "stopped" and final["stats"]["a"]["in_not_pdu"] >= 2
    # the bound ipc:// socket files are removed (ZeroMQ leaves them behind)
    for link in links.values():
        for addr in link.values():
            assert not os.path.exists(addr[len("ipc://") :]), addr
    assert "stats" in err_text  # the periodic stats log line
