"""Payload serialisation and per-key aggregation (eq. 28/35/36), with lost payloads."""

from __future__ import annotations

import torch

from testbed.fl.payload import Payload, weighted_average


def _p(tensors, n=1, cluster=0, device=0, ids=()):
    return Payload(tensors, cluster, device, 1, "experts", ids, n)


def test_safetensors_round_trip_keeps_tensors_and_metadata():
    p = Payload(
        {"layers.0.experts.2.down_proj.lora_A": torch.randn(2, 5)}, 1, 3, 7, "experts", (2,), 40
    )
    q = Payload.from_bytes(p.to_bytes())
    assert (q.cluster, q.device, q.cycle, q.stage, q.expert_ids, q.num_samples) == (
        1,
        3,
        7,
        "experts",
        (2,),
        40,
    )
    assert torch.equal(
        q.tensors["layers.0.experts.2.down_proj.lora_A"],
        p.tensors["layers.0.experts.2.down_proj.lora_A"],
    )
    assert p.nbytes == len(p.to_bytes()) > 2 * 5 * 4


def test_disjoint_experts_aggregate_exactly():
    a = torch.randn(4, 3)
    b = torch.randn(4, 3)
    out = weighted_average([_p({"e0": a}, n=10), _p({"e1": b}, n=90)])
    assert torch.equal(out["e0"], a) and torch.equal(out["e1"], b)


def test_shared_key_is_sample_weighted_and_owner_is_not_shrunk():
    x, y = torch.ones(2), 3 * torch.ones(2)
    owned = torch.randn(2)
    out = weighted_average([_p({"g": x, "e": owned}, n=1), _p({"g": y}, n=3)])
    torch.testing.assert_close(out["g"], 2.5 * torch.ones(2))
    assert torch.equal(out["e"], owned)


def test_missing_payload_is_simply_left_out():
    x, y, z = torch.zeros(2), torch.ones(2), 4 * torch.ones(2)
    full = weighted_average([_p({"g": x}), _p({"g": y}), _p({"g": z})])
    lost = weighted_average([_p({"g": x}), _p({"g": z})])
    torch.testing.assert_close(full["g"], torch.full((2,), 5 / 3))
    torch.testing.assert_close(lost["g"], torch.full((2,), 2.0))
    assert weighted_average([]) == {}
