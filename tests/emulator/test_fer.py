"""The coded link's frame error rate through the real flowgraph: the waterfall is where the
code's reference says, and a frame with a wrong payload is never delivered."""

from __future__ import annotations

import numpy as np
import pytest

from flowgraphs import modcod
from flowgraphs.measure import frame_payload_bytes, per_modcod, run_pdus

from .conftest import static_link

pytestmark = pytest.mark.integration


def test_fer_is_zero_above_and_falls_through_the_threshold():
    # QPSK 1/2: EN 302 307-1 Table 13 gives 1.00 dB for PER 1e-7
    r = per_modcod("qpsk-1/2", [0.4, 0.9, 1.5], frames=20)
    fer = [p["fer"] for p in r["points"]]
    assert fer[0] == 1.0 and fer[2] == 0.0 and fer[0] >= fer[1] >= fer[2]
    assert all(p["wrong_payloads"] == 0 for p in r["points"])


@pytest.mark.parametrize("name", ["8psk-2/3", "16apsk-3/4", "32apsk-9/10"])
def test_higher_orders_decode_above_their_reference(name):
    ref = modcod.by_name(name).reference_esn0_db
    r = per_modcod(name, [ref - 1.0, ref + 0.5], frames=6)
    assert r["points"][0]["fer"] == 1.0 and r["points"][1]["fer"] == 0.0


def test_no_wrong_payload_is_ever_delivered_where_most_frames_fail():
    # 2400 frames at Es/N0 1.2 dB below 32APSK 9/10's threshold, a short decoder budget so
    # the test stays quick: most fail; every delivered payload must be the one sent
    mc = modcod.by_name("32apsk-9/10")
    link = static_link(mc.reference_esn0_db - 1.2, mc.name, max_iterations=3, seed=11)
    rng = np.random.default_rng(7)
    n = 2400
    payloads = [rng.bytes(frame_payload_bytes(mc)) for _ in range(n)]
    res = run_pdus(link, payloads, [0.0] * n, timeout_s=600.0)
    s = res.summary
    assert s["frames"] == n and s["ldpc_fail"] + s["df_crc_fail"] > n // 2
    assert all(p == payloads[int(m["seq"])] for m, p in res.delivered)
    assert len(res.delivered) + s["pdus_lost"] == n
