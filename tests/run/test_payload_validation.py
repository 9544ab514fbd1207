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
