"""Nothing malformed or forged touches the global state: the satellite's checks of a payload
before aggregation (sender bound to its link, exact dtype/shape/names, finite values,
num_samples within what the device holds, metadata matching the manifest)."""

from __future__ import annotations

import pytest
import torch

from nodes.satellite import SatelliteNode, _device_of
from testbed.fl.payload import Payload
from testbed.scenario import load_scenario


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    scn = load_scenario("default").with_overrides(["model.threads=1"])
    n = SatelliteNode(scn, tmp_path_factory.mktemp("sat"), "t0ken")
    yield n
    for j in (n.uploads, n.aggs, n.metrics, n.events):
        j.f.close()


def _good(node: SatelliteNode) -> Payload:
    k, dev = 0, 1
    p = node.strategy.upload(k, "full", 1)[dev]
    return p


@pytest.mark.parametrize(
    "sender, want",
    [
        ("munich-d0", 0),
        ("munich-d1", 1),
        ("munich-d2", None),  # the cluster has 2 devices
        ("madrid-d1", None),  # another cluster's device on munich's link
        ("munich", None),
        ("munich-d01", None),
        ("munich-d-1", None),
        ("munich-d١", None),  # a non-ASCII digit
        ("x-munich-d0", None),
    ],
)
def test_a_sender_belongs_to_the_link_it_came_on(sender, want):
    assert _device_of(sender, "munich", 2) == want


def test_payload_checks(node):
    good = _good(node)
    assert node._payload_problem(good, "munich", 1, 1) is None
    key = next(iter(good.tensors))

    def variant(**kw):
        t = dict(good.tensors)
        t.update(kw.pop("tensors", {}))
        base = dict(
            cluster=good.cluster, device=good.device, cycle=good.cycle, stage=good.stage,
            expert_ids=good.expert_ids, num_samples=good.num_samples,
        )  # fmt: skip
        base.update(kw)
        return Payload(t, **base)

    cases = {
        "dtype": variant(tensors={key: good.tensors[key].double()}),
        "shape": variant(tensors={key: good.tensors[key][..., :1]}),
        "name": variant(tensors={"no.such.lora_A.weight": good.tensors[key]}),
        "nan": variant(tensors={key: torch.full_like(good.tensors[key], float("nan"))}),
        "inf": variant(tensors={key: torch.full_like(good.tensors[key], float("inf"))}),
        "samples0": variant(num_samples=0),
        "samples_huge": variant(num_samples=10**12),
        "cluster": variant(cluster=2),
        "device": variant(device=0),
        "cycle": variant(cycle=7),
    }
    assert node._payload_problem(variant(stage="gate"), "munich", 1, 1, "full") is not None
    assert node._payload_problem(good, "munich", 1, 1, "full") is None
    for what, p in cases.items():
        why = node._payload_problem(p, "munich", 1, 1)
        assert why is not None, what
    assert "num_samples" in node._payload_problem(cases["samples_huge"], "munich", 1, 1)
    assert "float64" in node._payload_problem(cases["dtype"], "munich", 1, 1)


def test_the_update_norm_bound(node):
    # ‖w − w_global‖₂ beyond update_norm_factor (10) × the median of accepted updates (or ×
    # max(‖w_global‖₂, 1) before 3 were accepted) is rejected; the norm is reported
    good = _good(node)
    g = torch.Generator().manual_seed(0)
    ref = {k: node.strategy.global_state[k] for k in good.tensors}

    def moved(scale: float, only: str | None = None) -> Payload:
        t = {
            k: (r + scale * torch.randn(r.shape, generator=g).to(r.dtype)) if only in (None, k)
            else r.clone()
            for k, r in ref.items()
        }  # fmt: skip
        return Payload(t, cluster=good.cluster, device=good.device, cycle=good.cycle,
                       stage=good.stage, expert_ids=good.expert_ids,
                       num_samples=good.num_samples)  # fmt: skip

    saved = dict(node._norms)
    try:
        node._norms.clear()
        why, n1 = node._norm_problem(moved(1e-3), "full")
        assert why is None and n1 > 0
        why, _ = node._norm_problem(moved(1e30), "full")  # finite, enormous
        assert why is not None and "above the bound" in why and "global norm" in why
        node._norms["full"] = [n1, n1, n1]
        assert node._norm_problem(moved(5e-3), "full")[0] is None  # ≈ 5 × the median
        why, n20 = node._norm_problem(moved(2e-2), "full")
        assert "median" in why and n20 > 10 * n1
        one = next(iter(ref))
        why, _ = node._norm_problem(moved(1.0, only=one), "full")  # one tensor × a lot
        assert why is not None
    finally:
        node._norms.clear()
        node._norms.update(saved)
