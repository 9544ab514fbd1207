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


_SERIALISE = """
import hashlib, sys, torch
from testbed.fl.payload import Payload
g = torch.Generator().manual_seed(0)
t = {f"layers.{i}.experts.{j}.w.lora_A": torch.randn(3, 4, generator=g)
     for i in range(2) for j in range(3)}
p = Payload(t, 1, 0, 2, "experts", (0, 1, 2), 96, {"note": "x"})
sys.stdout.write(hashlib.sha256(p.to_bytes()).hexdigest())
"""


def test_the_same_payload_has_the_same_bytes_in_every_process():
    # safetensors writes its metadata map in a per-process hash order; a payload's bytes (and
    # so its SHA-256, its transfer id and the noise its frames meet) must not depend on that
    import subprocess
    import sys

    from tests.conftest import REPO

    digests = {
        subprocess.run(
            [sys.executable, "-c", _SERIALISE], cwd=REPO, capture_output=True, text=True,
            check=True,
        ).stdout
        for _ in range(4)
    }  # fmt: skip
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_canonical_header_is_valid_safetensors():
    from safetensors.torch import load

    p = _p({"b": torch.ones(3), "a": torch.zeros(2, 2)}, n=5)
    raw = p.to_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and raw[8 : 8 + n].decode().rstrip(" ").startswith('{"__metadata__":')
    back = load(raw)
    assert torch.equal(back["b"], torch.ones(3)) and torch.equal(back["a"], torch.zeros(2, 2))
