"""Per-expert slicing of peft's fused LoRA factors: layout and bit-exact round trips."""

from __future__ import annotations

import pytest
import torch

from testbed.fl.lora import (
    attach_lora,
    expert_key,
    get_lora_state,
    join_expert_factors,
    lora_wrappers,
    set_lora_state,
    split_expert_factors,
)


def _tiny_moe(num_experts: int = 4):
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_local_experts=num_experts,
        num_experts_per_tok=2,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return MixtralForCausalLM(cfg)


def _randomise(model) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _l, _p, w in lora_wrappers(model):
            for f in (w.lora_A["default"].weight, w.lora_B["default"].weight):
                f.copy_(torch.randn(f.shape, generator=g))


def test_split_join_round_trip_is_bit_exact():
    A, B = torch.randn(3 * 5, 7), torch.randn(11, 3 * 5)
    pairs = split_expert_factors(A, B, 5)
    A2, B2 = join_expert_factors(pairs)
    assert torch.equal(A, A2) and torch.equal(B, B2)
    assert pairs[2][0].shape == (3, 7) and pairs[2][1].shape == (11, 3)


def test_slices_match_peft_delta_weight_per_expert():
    # Prepare: the layout claim is checked against peft's own get_delta_weight
    model = attach_lora(_tiny_moe(), rank=3, alpha=6.0)
    _randomise(model)
    checked = 0
    for _layer, param, w in lora_wrappers(model):
        if param == "gate":
            continue
        A, B = w.lora_A["default"].weight, w.lora_B["default"].weight
        # Execute
        delta = w.get_delta_weight("default")  # (E, out, in) for Mixtral's (E, out, in) stacks
        pairs = split_expert_factors(A.detach(), B.detach(), w.num_experts)
        # Assert
        base = getattr(w.get_base_layer(), param)
        assert delta.shape == base.shape
        for e, (a, b) in enumerate(pairs):
            torch.testing.assert_close(w.scaling["default"] * b @ a, delta[e], rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked == 2 * 2 * 4


def test_get_set_state_round_trip_is_bit_exact():
    model = attach_lora(_tiny_moe(), rank=3)
    _randomise(model)
    state = get_lora_state(model)
    assert expert_key(1, 3, "down_proj", "lora_B") in state
    other = attach_lora(_tiny_moe(), rank=3)
    set_lora_state(other, state)
    again = get_lora_state(other)
    assert state.keys() == again.keys()
    for k in state:
        assert torch.equal(state[k], again[k]), k
    for (_, _, w1), (_, _, w2) in zip(lora_wrappers(model), lora_wrappers(other), strict=True):
        assert torch.equal(w1.lora_A["default"].weight, w2.lora_A["default"].weight)
        assert torch.equal(w1.lora_B["default"].weight, w2.lora_B["default"].weight)


def test_subset_model_round_trip_with_remapped_ids():
    # A model holding experts [3, 1] of a 4-expert model: local slot 0 = global 3.
    full = attach_lora(_tiny_moe(4), rank=2)
    _randomise(full)
    state = get_lora_state(full)
    sub = attach_lora(_tiny_moe(2), rank=2)
    set_lora_state(sub, state, expert_ids=[3, 1])
    back = get_lora_state(sub, [3, 1], gate=False)
    assert {int(k.split(".")[3]) for k in back} == {1, 3}
    for k, v in back.items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(ValueError):
        get_lora_state(sub, [3, 1], gate=True)


@pytest.mark.parametrize("family", ["qwen2_moe", "olmoe"])
def test_other_moe_families_slice_and_round_trip(family):
    # Prepare: tiny random Qwen2-MoE / OLMoE (fused experts, router at mlp.gate.weight)
    from transformers import AutoConfig, AutoModelForCausalLM

    from testbed.fl.routing import base_state_dict, num_experts, slice_experts

    kw = dict(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_experts_per_tok=2,
        max_position_embeddings=32,
    )
    if family == "qwen2_moe":
        kw.update(num_experts=4, moe_intermediate_size=24, shared_expert_intermediate_size=24)
    else:
        kw.update(num_experts=4)
    cfg = AutoConfig.for_model(family, **kw)
    torch.manual_seed(0)
    model = attach_lora(AutoModelForCausalLM.from_config(cfg), rank=2)
    _randomise(model)
    # Execute
    state = get_lora_state(model)
    sub = attach_lora(slice_experts(base_state_dict(model), model.config, [2, 0]), rank=2)
    set_lora_state(sub, state, [2, 0])
    # Assert
    assert num_experts(sub.config) == 2
    assert len([k for k in state if ".experts." in k]) == 2 * 2 * 4 * 2
    for k, v in get_lora_state(sub, [2, 0], gate=False).items():
        assert torch.equal(v, state[k]), k
