"""Byte-exact delivery under loss, duplication, reordering and across passes."""

import hashlib
import os

import pytest

from nodes.simlink import SimLinkParams
from nodes.wire import Cancel, encode

from .conftest import accepted_files


def _accepted_bytes(tmp_path):
    files = [f for f in accepted_files(tmp_path / "rx") if f.endswith(".safetensors")]
    assert len(files) == 1, files
    return (tmp_path / "rx" / "accepted" / files[0]).read_bytes()


@pytest.mark.parametrize("loss", [0.0, 0.1, 0.2, 0.4])
@pytest.mark.parametrize("seed", [1, 2])
def test_byte_exact_under_random_loss(sim, tmp_path, payload, loss, seed):
    rec, _rx, link, _ = sim(payload, SimLinkParams(loss=loss, down_loss=loss, seed=seed))
    assert rec.status == "accepted"
    assert _accepted_bytes(tmp_path) == payload
    n = rec.fragments
    assert rec.fragments_sent >= n
    if loss == 0.0:
        assert rec.fragments_retransmitted == 0
    else:
        # Only gaps are resent: about n·p/(1−p) retransmissions, never a restart.
        assert 0 < rec.fragments_retransmitted < 2.5 * n * loss / (1 - loss) + 20
    assert link.counters["up_lost"] > 0 or loss == 0.0


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_duplication_and_reordering(sim, tmp_path, payload, seed):
    p = SimLinkParams(loss=0.15, down_loss=0.1, duplicate=0.2, reorder_jitter_s=0.02, seed=seed)
    rec, rx, link, _ = sim(payload, p)
    assert rec.status == "accepted"
    assert _accepted_bytes(tmp_path) == payload
    assert link.counters["duplicated"] > 0
    assert rx.counters["duplicate_fragment"] > 0


def test_transfer_spanning_three_windows_resumes_from_gaps(sim, tmp_path):
    data = os.urandom(300_000)
    # 2 Mbit/s: the payload needs ≈1.3 s of airtime; windows of 0.5 s with long gaps.
    windows = [(10.0, 10.5), (100.0, 100.5), (200.0, 200.5), (300.0, 300.5)]
    p = SimLinkParams(loss=0.1, down_loss=0.1, windows=tuple(windows), seed=9)
    rec, _rx, link, eng = sim(data, p, windows=windows, start=0.0, frag=1000)
    assert rec.status == "accepted"
    assert _accepted_bytes(tmp_path) == data
    assert rec.passes_used >= 3
    assert 200.0 <= rec.accepted_s <= 300.5
    assert rec.first_tx_s == pytest.approx(10.0)
    # Never restarted from zero: every fragment was sent once plus its losses' resends.
    assert rec.fragments_sent < 1.6 * rec.fragments
    assert eng.stats["prompts_sent"] >= 2
    # Nothing was transmitted into an outage by the sender.
    assert link.counters["up_gated"] == 0
    # Timers were paused through the outages: the ~90 s gaps did not count as timeouts.
    assert eng.stats["timeouts"] < 10


def test_upload_time_is_emulated_and_counts_airtime(sim, tmp_path, payload):
    rec, *_ = sim(payload, SimLinkParams(loss=0.0, up_rate_bps=1e6, seed=1))
    airtime = (len(payload) + rec.fragments * (36 + 32)) * 8 / 1e6
    assert rec.upload_time_s == pytest.approx(airtime, rel=0.05)
    assert rec.goodput_bps == pytest.approx(len(payload) * 8 / rec.upload_time_s)


def test_window_too_short_for_any_fragment_never_completes(sim, tmp_path, payload):
    windows = [(1.0, 1.001)]
    rec, *_ = sim(payload, SimLinkParams(windows=tuple(windows)), windows=windows)
    assert rec.status == "incomplete"
    assert accepted_files(tmp_path / "rx") == []


def test_superseded_round_is_cancelled_at_the_receiver(tmp_path):
    from nodes.payload import manifest_for, new_transfer_id
    from nodes.receiver import ReceiverConfig, ReceiverEngine
    from nodes.store import ReceiverStore
    from nodes.wire import MetadataMsg

    rx = ReceiverEngine(ReceiverStore(tmp_path / "rx"), ReceiverConfig(frame_bytes=600))
    old, new = os.urandom(5000), os.urandom(5000)
    t_old, t_new = new_transfer_id(), new_transfer_id()
    rx.handle(encode(MetadataMsg(t_old, manifest_for(old, "c1", 1, 512))), 1.0)
    rx.handle(encode(MetadataMsg(t_new, manifest_for(new, "c1", 2, 512))), 2.0)
    assert t_old not in rx.store.partials and t_new in rx.store.partials
    assert rx.counters["superseded"] == 1
    # The stale round is refused from then on.
    replies = rx.handle(
        encode(MetadataMsg(new_transfer_id(), manifest_for(old, "c1", 1, 512))), 3.0
    )
    assert replies and replies[0].status.name == "CANCELLED"
    # An explicit cancel is answered from the record.
    rep = rx.handle(encode(Cancel(t_new)), 4.0)
    assert rep[0].status.name == "CANCELLED" and t_new not in rx.store.partials


def test_efficiency_target_at_10_percent_loss(sim, tmp_path):
    data = os.urandom(400_000)
    p = SimLinkParams(loss=0.1, down_loss=0.1, up_rate_bps=2e6, seed=11)
    rec, *_ = sim(data, p, frag=1000)
    eff = rec.goodput_bps / (2e6 * (1 - 0.1))
    assert eff >= 0.85, eff
    assert hashlib.sha256(_accepted_bytes(tmp_path)).hexdigest() == rec.sha256
