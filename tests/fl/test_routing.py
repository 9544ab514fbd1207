"""Masked gate (Algo 3): exact zero routing weight and gradient; only assigned experts in memory."""

from __future__ import annotations

import pytest
import torch

from testbed.fl.data import domain_examples
from testbed.fl.lora import (
    attach_lora,
    get_lora_state,
    lora_wrappers,
    set_lora_state,
    set_trainable,
)
from testbed.fl.routing import (
    base_state_dict,
    routers,
    routing_statistics,
    set_router_mask,
    slice_experts,
)
from testbed.fl.train import batch_for_lm, trial_batches

pytestmark = pytest.mark.integration


def _batch(tok):
    ex = [e for d in range(4) for e in domain_examples(d, 4, 0, stream=5)]
    return batch_for_lm(tok, ex)


def _randomise_b(model) -> None:
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _l, _p, w in lora_wrappers(model):
            b = w.lora_B["default"].weight
            b.copy_(0.05 * torch.randn(b.shape, generator=g))


def test_masked_experts_get_exactly_zero_weight_and_gradient(fresh_model):
    # Prepare
    model, tok = fresh_model
    model = attach_lora(model, rank=4)
    _randomise_b(model)  # non-zero B so every LoRA factor would get a gradient
    allowed = [1, 2]
    set_router_mask(model, allowed)
    params = set_trainable(model, experts=True, gate=True)
    weights = []
    hooks = [r.register_forward_hook(lambda _m, _i, o: weights.append(o)) for r in routers(model)]
    # Execute
    out = model(**_batch(tok))
    out.loss.backward()
    for h in hooks:
        h.remove()
    # Assert: routing weights
    for _logits, top_w, top_i in weights:
        masked = ~torch.isin(top_i, torch.tensor(allowed))
        assert torch.all(top_w[masked] == 0)
    # Assert: gradients of masked experts' LoRA slices are exactly zero, others are not
    E, r = 4, 4
    for _layer, param, w in lora_wrappers(model):
        A, B = w.lora_A["default"].weight, w.lora_B["default"].weight
        if param == "gate":
            assert torch.all(B.grad[[0, 3]] == 0) and B.grad[allowed].abs().sum() > 0
            continue
        for e in range(E):
            ga, gb = A.grad[e * r : (e + 1) * r], B.grad[:, e::E]
            if e in allowed:
                assert ga.abs().sum() > 0 and gb.abs().sum() > 0
            else:
                assert torch.all(ga == 0) and torch.all(gb == 0), f"expert {e} got a gradient"
    assert params


def test_sliced_model_holds_only_assigned_experts_and_equals_masked_model(fresh_model):
    model, tok = fresh_model
    full = attach_lora(model, rank=4)
    _randomise_b(full)
    state = get_lora_state(full)
    ids = [2, 0]
    # Execute
    sub = attach_lora(slice_experts(base_state_dict(full), full.config, ids), rank=4)
    set_lora_state(sub, state, ids)
    set_router_mask(full, ids)
    batch = _batch(tok)
    with torch.no_grad():
        full.eval()
        sub.eval()
        y_full = full(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        y_sub = sub(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Assert
    for name, p in sub.named_parameters():
        if name.endswith(("gate_up_proj", "down_proj")) or name.endswith(
            "mlp.gate.base_layer.weight"
        ):
            assert p.shape[0] == len(ids), name
    held = sum(p.numel() for p in sub.parameters())
    assert held < sum(p.numel() for p in full.parameters())
    torch.testing.assert_close(y_sub, y_full, rtol=1e-4, atol=1e-4)


def test_mask_removal_restores_the_router(fresh_model):
    model, tok = fresh_model
    batch = _batch(tok)
    with torch.no_grad():
        ref = model(**batch).logits
        set_router_mask(model, [0])
        masked = model(**batch).logits
        set_router_mask(model, None)
        back = model(**batch).logits
    assert not torch.allclose(ref, masked)
    assert torch.equal(ref, back)


def test_routing_statistics_are_probabilities_and_ignore_padding(fresh_model):
    model, tok = fresh_model
    ex = domain_examples(0, 8, 0, stream=6) + domain_examples(3, 8, 0, stream=6)
    stats = routing_statistics(model, trial_batches(tok, ex, torch.device("cpu"), batch_size=16))
    one_by_one = [
        routing_statistics(model, trial_batches(tok, [e], torch.device("cpu"))) for e in ex
    ]
    assert stats.shape == (4,)
    torch.testing.assert_close(stats.sum(), torch.tensor(1.0))
    # padding excluded: the padded batch equals the token-weighted mean of unpadded singletons
    lens = torch.tensor([len(tok.encode(e.text)) + 1 for e in ex], dtype=torch.float)
    expect = (torch.stack(one_by_one) * lens[:, None]).sum(0) / lens.sum()
    torch.testing.assert_close(stats, expect, rtol=1e-4, atol=1e-5)


def test_eq29_counts_top_k_selections_on_a_hand_made_routing_table(fresh_model):
    # Every router returns a fixed logit table for a batch of one 4-token sequence whose last
    # token is padding. Top-1 picks: layer A → experts 0, 0, 1 (pad: 3), layer B → 2, 0, 1
    # (pad: 3). Over the 3 real tokens × 2 layers: counts 3, 2, 1, 0 → 1/2, 1/3, 1/6, 0.
    import types

    model, _ = fresh_model
    rs = routers(model)[:2]
    picks = [[0, 0, 1, 3], [2, 0, 1, 3]]
    inner = [r for r in routers(model) if r not in rs]
    saved = [(r.__dict__.get("forward"), r.top_k) for r in rs + inner]

    def fixed(table):
        def forward(self, hidden):
            logits = torch.full((4, self.num_experts), -4.0)
            logits[torch.arange(4), torch.tensor(table)] = 4.0
            top_v, top_i = torch.topk(torch.softmax(logits, -1), 1, dim=-1)
            return logits.to(hidden.dtype), top_v / top_v, top_i

        return forward

    ids = torch.tensor([[5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    try:
        for r, table in zip(rs, picks, strict=True):
            r.top_k = 1
            r.forward = types.MethodType(fixed(table), r)
        for r in inner:  # other layers, if any: the same table as layer A
            r.top_k = 1
            r.forward = types.MethodType(fixed(picks[0]), r)
        n_layers = len(routers(model))
        freq = routing_statistics(model, [(ids, mask)], mode="frequency")
        soft = routing_statistics(model, [(ids, mask)], mode="soft")
    finally:
        for r, (fwd, k) in zip(rs + inner, saved, strict=True):
            r.top_k = k
            r.__dict__.pop("forward", None)
            if fwd is not None:
                r.forward = fwd
    counts = torch.zeros(freq.shape[0])
    for table in picks + [picks[0]] * (n_layers - 2):
        for e in table[:3]:
            counts[e] += 1
    torch.testing.assert_close(freq, counts / counts.sum())
    if n_layers == 2:
        torch.testing.assert_close(freq[:4], torch.tensor([1 / 2, 1 / 3, 1 / 6, 0.0]))
    assert freq[3] == 0.0 and soft[3] > 0.0  # the soft variant spreads mass to every expert
    with pytest.raises(ValueError, match="relevance"):
        routing_statistics(model, [(ids, mask)], mode="mean")
