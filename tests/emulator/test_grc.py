"""The GRC files compile with ``grcc``, the generated Python builds the flowgraph, and the
stage-by-stage hier block carries PDUs end to end exactly as :class:`LinkChannel` does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO

pytestmark = pytest.mark.integration

GRC_DIR = REPO / "flowgraphs" / "grc"
GRC_FILES = ("satfl_link_stages.grc", "satfl_channel_emulator.grc")

#: message ports of each block yml: (inputs, outputs), as the Python blocks register them
PORTS = {
    "satfl_awgn": (["in"], ["out"]),
    "satfl_burst_demodulator": (["in"], ["out"]),
    "satfl_burst_modulator": (["in"], ["out"]),
    "satfl_burst_scheduler": (["in"], ["out", "status"]),
    "satfl_crc_check": (["in"], ["out"]),
    "satfl_deframer": (["in"], ["out"]),
    "satfl_doppler": (["in"], ["out"]),
    "satfl_elevation_gate": (["in"], ["out"]),
    "satfl_fec_decoder": (["in"], ["out"]),
    "satfl_link_channel": (["in"], ["out", "status"]),
    "satfl_rician_fading": (["in"], ["out"]),
    "satfl_zmq_pdu_sink": (["in"], []),
    "satfl_zmq_pdu_source": ([], ["out", "status"]),
}


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),  # grcc writes its cache under ~
        "GRC_BLOCKS_PATH": str(GRC_DIR),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def _grcc(name: str, tmp: Path) -> Path:
    """Compile ``name`` with grcc into ``tmp/out``; the generated module's path."""
    grcc = shutil.which("grcc")
    assert grcc, "grcc (GNU Radio Companion compiler) is not on PATH"
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    r = subprocess.run(
        [grcc, "-o", str(out), str(GRC_DIR / name)],
        env=_env(tmp),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Error" not in r.stdout + r.stderr, r.stdout + r.stderr
    py = out / name.replace(".grc", ".py")
    assert py.exists()
    return py


def _run_py(code: str, tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**_env(tmp), "HOME": os.environ.get("HOME", str(tmp))},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """``compiled(name)``: the module grcc generated from ``name`` (compiled once)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = _grcc(name, tmp_path_factory.mktemp(name.replace(".", "_")))
        return cache[name]

    return get


@pytest.mark.parametrize("name", GRC_FILES)
def test_grcc_compiles(name, compiled, tmp_path):
    py = compiled(name)
    stem = py.stem
    ctor = f"{stem}.{stem}()"
    ipc = None
    if name == "satfl_channel_emulator.grc":  # binds sockets: private ipc endpoints
        ipc = tempfile.mkdtemp(prefix="satfl-grc-", dir="/tmp")  # ipc paths are short
        ctor = (
            f"{stem}.{stem}(link_id='g1', in_addr='ipc://{ipc}/in', "
            f"out_addr='ipc://{ipc}/out', status_addr='ipc://{ipc}/status')"
        )
    else:  # the hier block's definition for other flowgraphs comes with it
        hb = yaml.safe_load((py.parent / f"{stem}.block.yml").read_text())
        assert [p["label"] for p in hb["inputs"]] == ["in"]
        assert [p["label"] for p in hb["outputs"]] == ["out", "status"]
        assert {"geometry", "fading", "modcod", "interop"} <= {p["id"] for p in hb["parameters"]}
    # the generated module imports and builds the flowgraph (no run)
    code = (
        f"import sys; sys.path.insert(0, {str(py.parent)!r}); import {stem}; "
        f"tb = {ctor}; print(type(tb).__name__)"
    )
    try:
        r = _run_py(code, tmp_path)
    finally:
        if ipc is not None:
            shutil.rmtree(ipc, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == stem


def _ymls() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(GRC_DIR.glob("*.block.yml"))}


def test_every_block_yml_is_used_or_documented():
    ymls = sorted(p.name for p in GRC_DIR.glob("*.block.yml"))
    assert len(ymls) >= 13
    for p in GRC_DIR.glob("*.block.yml"):
        text = p.read_text()
        assert "flowgraphs." in text and "documentation:" in text, p.name
    used = set()
    for g in GRC_FILES:
        used |= {b["id"] for b in yaml.safe_load((GRC_DIR / g).read_text())["blocks"]}
    for name, d in _ymls().items():
        assert d["id"] == name.removesuffix(".block.yml"), name
        assert d["category"] == "[SatFL]", name
        assert "flowgraphs." in d["templates"]["make"], name
        assert "flowgraphs." in d["documentation"], name
        assert d["id"] in used, f"{name} is in neither {GRC_FILES}"


def test_block_yml_ports_and_parameters():
    from flowgraphs.burst_scheduler import PREDICTIONS
    from flowgraphs.impairments import DOPPLER_PRECOMP
    from flowgraphs.modcod import MODCODS

    ymls = {d["id"]: d for d in _ymls().values()}
    assert set(ymls) == set(PORTS)
    for bid, (ins, outs) in PORTS.items():
        d = ymls[bid]
        assert [p["id"] for p in d.get("inputs", [])] == ins, bid
        assert [p["id"] for p in d.get("outputs", [])] == outs, bid
        assert all(p["domain"] == "message" for p in d.get("inputs", []) + d.get("outputs", []))
        params = {p["id"]: p for p in d["parameters"]}
        make = d["templates"]["make"]
        for pid in params:  # every parameter reaches the constructor
            assert "${" + pid + "}" in make, (bid, pid)
        assert "modulation" not in params, bid  # the old uncoded modem's parameter
        # choices the blocks accept: editable (dtype string), so a hier parameter can drive them
        for pid, choices in (
            ("modcod", ["acm", *(m.name for m in MODCODS)]),
            ("prediction", list(PREDICTIONS)),
            ("doppler_precomp", list(DOPPLER_PRECOMP)),
            ("llr_method", ["maxlog", "exact"]),
        ):
            if pid in params:
                assert params[pid]["dtype"] == "string", (bid, pid)
                assert params[pid]["options"] == choices, (bid, pid)
                assert params[pid]["default"] in choices, (bid, pid)
    # the 5 MHz configuration of flowgraphs/config.py
    from flowgraphs.config import LinkConfig

    lc = LinkConfig("c1", "", "", "")
    link = {p["id"]: p["default"] for p in ymls["satfl_link_channel"]["parameters"]}
    assert float(link["samp_rate"]) == lc.sample_rate_hz
    assert eval(link["symbol_rate"]) == pytest.approx(lc.symbol_rate_hz)
    assert float(link["rolloff"]) == lc.rolloff
    assert int(link["pilot_spacing"]) == lc.pilot_spacing
    assert float(link["doppler_spread"]) == lc.fading_max_doppler_hz
    assert link["modcod"] == lc.modcod and link["prediction"] == lc.acm_prediction
    assert float(link["margin_db"]) == lc.acm_margin_db
    assert float(link["feedback_delay"]) == lc.acm_feedback_delay_s
    assert link["doppler_precomp"] == lc.doppler_precomp
    assert float(link["residual_hz"]) == lc.residual_hz
    assert int(link["max_iterations"]) == lc.max_iterations


_E2E = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {out!r})
    import numpy as np
    from gnuradio import gr
    import channel
    import satfl_link_stages
    from flowgraphs.link_channel import LinkChannel
    from flowgraphs.modem import ModemConfig
    from flowgraphs.msg_io import PduCollector, PduInjector
    from flowgraphs.static_link import StaticLink

    def run(link, pdus, t_end):
        tb = gr.top_block()
        inj, col, st = PduInjector(), PduCollector(), PduCollector()
        tb.msg_connect(inj, "out", link, "in")
        tb.msg_connect(link, "out", col, "in")
        tb.msg_connect(link, "status", st, "in")
        tb.start()
        try:
            for meta, payload in pdus:
                inj.send(meta, payload)
            # the sender's promise; one dummy byte (the stock crc_append drops empty PDUs)
            inj.send({{"_ctl": "advance", "t": t_end}}, b"\\x00")
            deadline = time.monotonic() + 40.0
            done = lambda: any(m.get("cmd") == "safe" and m["t"] > t_end for m, _ in col.items)
            while not done() and time.monotonic() < deadline:
                col.wait_for(len(col.items) + 1, 0.2)
        finally:
            tb.stop()
            tb.wait()
        items = [[m, bytes(d).hex()] for m, d in col.items]
        return {{"out": items, "status": [m for m, _ in st.items]}}

    rng = np.random.default_rng(7)
    res = {{}}
    # 1. one PDU, byte-exact, on a static 20 dB link; 9000 B spans two frames at any MODCOD
    payload = rng.integers(0, 256, 9000, dtype=np.uint8).tobytes()
    for interop in (False, True):
        link = satfl_link_stages.satfl_link_stages(
            geometry=StaticLink(snr_db=20.0), fading=None, interop=interop
        )
        r = run(link, [({{"tx_time": 0.0, "seq": 1}}, payload)], 1e6)
        r["sent"] = payload.hex()
        res["static_interop" if interop else "static"] = r
    # 2. the same PDUs through the hier block and LinkChannel at the highest pass, with the
    #    defaults (orbit, ACM, Rician fading, residual Doppler)
    tca = {tca!r}
    pdus = [
        ({{"tx_time": tca + 0.002 * i, "seq": 10 + i}}, rng.bytes(n))
        for i, n in enumerate((1, 700, 5000))
    ]
    res["hier"] = run(satfl_link_stages.satfl_link_stages(), pdus, tca + 1.0)
    geo = channel.default_link_geometry(1)
    ref = LinkChannel(
        "c1", geo, channel.RicianFading(10.0, 5.0, 1),
        ModemConfig(5e6, 5e6 / 1.05, 0.05, 1440, 5.0),
        seed=1, doppler_precomp="residual", residual_hz=300.0,
    )
    res["ref"] = run(ref, pdus, tca + 1.0)
    res["sent_pass"] = [[m, p.hex()] for m, p in pdus]
    print("RESULT " + json.dumps(res))
    """
)


@pytest.fixture(scope="module")
def e2e(compiled, best_pass, tmp_path_factory):
    """Run the end-to-end script once (both tests read its result)."""
    _, win = best_pass
    tmp = tmp_path_factory.mktemp("grc_e2e")
    code = _E2E.format(out=str(compiled("satfl_link_stages.grc").parent), tca=float(win.tca_s))
    r = _run_py(code, tmp, timeout=150)
    assert r.returncode == 0, r.stderr[-4000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(line[-1][len("RESULT ") :])


@pytest.mark.parametrize("mode", ["static", "static_interop"])
def test_link_stages_carries_a_pdu_end_to_end(e2e, mode):
    """satfl_link_stages.grc, built by grcc: PduInjector -> the hier block -> PduCollector,
    one PDU (by-reference hops between the stages, and plain PMT with interop)."""
    r = e2e[mode]
    out = r["out"]
    got = [(m, p) for m, p in out if m.get("seq") == 1]
    assert len(got) == 1, out
    meta, payload = got[0]
    assert payload == r["sent"]  # byte-exact
    assert meta["crc_ok"] is True and meta["link"] == "c1"
    assert meta["tx_time"] == 0.0
    assert meta["frames"] >= 2  # fragmented and reassembled
    assert not any(str(k).startswith("_") for k in meta)
    assert meta["rx_end"] > meta["tx_start"] >= 0.0
    # conservative synchronisation: a safe-time marker beyond the delivery follows it
    i = next(i for i, (m, _) in enumerate(out) if m.get("seq") == 1)
    assert any(m.get("cmd") == "safe" and m["t"] >= meta["rx_end"] for m, _ in out[i + 1 :])
    assert all(p == "" for m, p in out if m.get("cmd") == "safe")
    # status: frame reports, the last of them completing PDU 1
    frames = [s for s in r["status"] if s.get("status") == "frame"]
    assert len(frames) == meta["frames"]
    assert [p[0] for p in frames[-1]["pdus"]] == [1]
    assert all(f["modcod"] == meta["modcod"] for f in frames)


def test_link_stages_matches_link_channel(e2e):
    """At the highest pass of the default link (ACM, fading, residual Doppler), the grcc
    hier block and flowgraphs.LinkChannel deliver the same PDUs, bytes and metadata."""

    def strip(items):
        return [[{k: v for k, v in m.items() if k != "wall_proc_s"}, p] for m, p in items]

    hier, ref = e2e["hier"], e2e["ref"]
    assert strip(hier["out"]) == strip(ref["out"])
    assert hier["status"] == ref["status"]
    sent = {m["seq"]: p for m, p in e2e["sent_pass"]}
    delivered = {m["seq"]: p for m, p in hier["out"] if "seq" in m}
    assert delivered, hier["out"]  # at the top of the pass, the link delivers
    for seq, p in delivered.items():
        assert p == sent[seq]


_ZMQ_E2E = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {out!r})
    import zmq
    import satfl_channel_emulator
    from flowgraphs.pdu import decode_pdu, encode_pdu

    ep = {{p: "ipc://{ipc}/" + p for p in ("in", "out", "status")}}
    tb = satfl_channel_emulator.satfl_channel_emulator(
        link_id="g1", in_addr=ep["in"], out_addr=ep["out"], status_addr=ep["status"]
    )
    tb.start()
    ctx = zmq.Context()
    socks = {{}}
    for p, kind in (("in", zmq.PUSH), ("out", zmq.PULL), ("status", zmq.PULL)):
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 30000)
        s.connect(ep[p])
        socks[p] = s
    payload = bytes(range(256)) * 12
    socks["in"].send(encode_pdu({{"tx_time": {tca!r}, "seq": 1, "src": "n1"}}, payload))
    socks["in"].send(encode_pdu({{"cmd": "advance", "tx_time": {tca!r} + 1.0}}, b""))
    got = []
    while True:
        meta, body = decode_pdu(socks["out"].recv())
        got.append(meta)
        if meta.get("seq") == 1:
            break
    report = decode_pdu(socks["status"].recv())[0]
    tb.stop()
    tb.wait()
    for s in socks.values():
        s.close()
    ctx.term()
    print("RESULT " + json.dumps({{"meta": got[-1], "exact": body == payload, "report": report}}))
    """
)


def test_channel_emulator_carries_a_pdu_over_zmq(compiled, tmp_path, best_pass):
    """satfl_channel_emulator.grc, built by grcc, on private ipc endpoints: a PDU sent at
    the top of the highest pass, then the sender's advance, comes back on "out"."""
    py = compiled("satfl_channel_emulator.grc")
    _, win = best_pass
    ipc = tempfile.mkdtemp(prefix="satfl-grc-", dir="/tmp")  # ipc paths must be short
    try:
        code = _ZMQ_E2E.format(out=str(py.parent), ipc=ipc, tca=float(win.tca_s))
        r = _run_py(code, tmp_path, timeout=120)
    finally:
        shutil.rmtree(ipc, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-4000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(line[-1][len("RESULT ") :])
    meta = res["meta"]
    assert res["exact"]
    assert meta["link"] == "g1" and meta["src"] == "n1" and meta["crc_ok"] is True
    assert meta["tx_time"] == pytest.approx(float(win.tca_s))
    assert meta["rx_end"] > meta["tx_start"] >= meta["tx_time"]
    assert res["report"]["status"] in ("frame", "clock")
