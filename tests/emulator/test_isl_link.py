"""Inter-satellite links in the emulator: the ISL gate loses frames, and one ``channel serve``
carries a sat-ground link and an ISL from one config, over real ZeroMQ sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import zmq

from channel.isl import IslGeometry
from flowgraphs.config import parse_config
from flowgraphs.errors import ConfigError
from flowgraphs.measure import run_pdus
from flowgraphs.pdu import decode_pdu, encode_pdu

from ..conftest import REPO

pytestmark = pytest.mark.integration

ISL = """
[[link]]
id = "isl"
kind = "isl"
modcod = "qpsk-1/2"
seed = 3
{addrs}
[link.orbit]
altitude_m = 550e3
raan_deg = 0.0
phase_deg = 0.0
[link.peer]
altitude_m = 550e3
raan_deg = 90.0
phase_deg = 255.0
[link.params]
bandwidth_hz = 1.0e6
"""

GROUND = """
[[link]]
id = "gnd"
modcod = "qpsk-1/2"
seed = 1
{addrs}
"""


def _addrs(d, lid):
    return "\n".join(f'{k} = "ipc://{d}/{lid}-{k}"' for k in ("in", "out", "status"))


def _isl_config(d=None):
    addrs = _addrs(d, "isl") if d else ""
    return parse_config(__import__("tomllib").loads(ISL.format(addrs=addrs)), "isl.toml")


def test_isl_config_builds_the_isl_geometry_and_rejects_ground_keys():
    lc = _isl_config().links[0]
    geo = lc.geometry()
    assert isinstance(geo, IslGeometry) and lc.kind == "isl"
    assert lc.fading_max_doppler_hz == 0.0 and lc.params.carrier_hz == 23e9
    import tomllib

    bad = ISL.format(addrs="") + "[link.site]\nlat_deg = 1.0\n"
    with pytest.raises(ConfigError, match=r"isl\.toml: link 'isl'\.site: an isl link has no"):
        parse_config(tomllib.loads(bad), "isl.toml")
    nopeer = ISL.format(addrs="").replace(
        "[link.peer]\naltitude_m = 550e3\nraan_deg = 90.0\nphase_deg = 255.0\n", ""
    )
    assert "peer" not in nopeer
    with pytest.raises(ConfigError, match=r"needs \[link\.peer\]"):
        parse_config(tomllib.loads(nopeer), "isl.toml")
    ground_peer = GROUND.format(addrs="") + "[link.peer]\nraan_deg = 1.0\n"
    with pytest.raises(ConfigError, match="only an isl link"):
        parse_config(tomllib.loads(ground_peer), "g.toml")
    wrong = ISL.format(addrs="").replace('kind = "isl"', 'kind = "laser"')
    with pytest.raises(ConfigError, match="kind: expected one of"):
        parse_config(tomllib.loads(wrong), "isl.toml")


def test_frames_outside_the_isl_window_are_lost_only_through_the_gate():
    lc = _isl_config().links[0]
    geo = lc.geometry()
    ws = geo.windows(0.0, 86400.0)
    assert ws, "the two planes' satellites never see each other"
    a, _ = max(ws, key=lambda w: w[1] - w[0])
    inside = [a + 20.0 + 0.5 * i for i in range(4)]
    gaps = [(ws[i][1], ws[i + 1][0]) for i in range(len(ws) - 1) if ws[i + 1][0] - ws[i][1] > 60]
    outside = [gaps[0][0] + 20.0 + 0.5 * i for i in range(4)]
    st_in, st_out = geo.state(np.array(inside)), geo.state(np.array(outside))
    assert st_in.visible.all() and not st_out.visible.any()
    assert np.all(st_in.snr_db > 10.0)
    payloads = [bytes([i]) * 2000 for i in range(4)]
    res_in = run_pdus(lc.channel(), payloads, inside)
    res_out = run_pdus(lc.channel(), payloads, outside)
    assert sorted(p for _, p in res_in.delivered) == sorted(payloads)
    m = res_in.delivered[0][0]
    assert m["prop_delay_s"] == pytest.approx(
        float(geo.state(m["tx_start"]).prop_delay_s), rel=1e-3
    )
    # outside, the budget alone would carry them (free space, SNR still high) — the gate drops them
    if np.all(st_out.snr_db > 10.0):
        assert res_out.delivered == []
    else:
        assert len(res_out.delivered) < len(payloads)


def test_one_emulator_serves_a_ground_link_and_an_isl(tmp_path):
    cfg = tmp_path / "emu.toml"
    cfg.write_text(
        "[emulator]\nstats_interval_s = 0\n"
        + GROUND.format(addrs=_addrs(tmp_path, "gnd"))
        + ISL.format(addrs=_addrs(tmp_path, "isl"))
    )
    lc = {x.id: x for x in parse_config(__import__("tomllib").loads(cfg.read_text())).links}
    t_isl = lc["isl"].geometry().windows(0.0, 86400.0)[0][0] + 10.0
    gw = lc["gnd"].geometry().windows(0.0, 86400.0)
    t_gnd = 0.5 * (gw[0][0] + gw[0][1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "channel", "serve", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ctx = zmq.Context()
    socks = []
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        ready = json.loads(line)
        assert set(ready["links"]) == {"gnd", "isl"}
        got = {}
        for lid, t in (("gnd", t_gnd), ("isl", t_isl)):
            push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
            socks += [push, pull]
            for s in (push, pull):
                s.setsockopt(zmq.LINGER, 0)
            pull.setsockopt(zmq.RCVTIMEO, 60_000)
            push.connect(ready["links"][lid]["in"])
            pull.connect(ready["links"][lid]["out"])
            push.send(
                encode_pdu({"tx_time": t, "seq": 1, "src": "x", "dst": "y"}, lid.encode() * 50)
            )
            push.send(encode_pdu({"cmd": "advance", "tx_time": t + 5.0}, b""))
            while True:
                m, p = decode_pdu(pull.recv())
                if m.get("cmd") != "safe":
                    got[lid] = (m, p)
                    break
        assert got["gnd"][1] == b"gnd" * 50 and got["isl"][1] == b"isl" * 50
        assert got["isl"][0]["link"] == "isl" and got["gnd"][0]["link"] == "gnd"
        # each link has its own geometry: an ISL's range is thousands of km, the ground's not
        assert got["isl"][0]["prop_delay_s"] > 3e-3 > got["gnd"][0]["prop_delay_s"]
    finally:
        for s in socks:
            s.close()
        ctx.term()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
