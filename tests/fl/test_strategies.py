"""The three algorithms on the embedded task (small, fast configuration)."""

from __future__ import annotations

import pytest
import torch

from testbed.fl.data import federated_split
from testbed.fl.lora import expert_of_key
from testbed.fl.strategy import Step
from testbed.fl.timeline import make_strategy, run_timeline

pytestmark = pytest.mark.integration

CHANCE = 0.25


def _setup(fresh_model, config, algorithm):
    model, tok = fresh_model
    clusters, global_test = federated_split(
        config.clusters,
        config.devices_per_cluster,
        config.examples_per_device,
        config.test_per_cluster,
        config.seed,
    )
    return make_strategy(algorithm, model, tok, clusters, config), global_test


@pytest.mark.parametrize("algorithm", ["baseline", "emsfl", "emsfl-enhanced"])
def test_training_raises_accuracy_well_above_chance(fresh_model, small_config, algorithm):
    # Prepare
    strategy, global_test = _setup(fresh_model, small_config, algorithm)
    # Execute
    result = run_timeline(strategy, 2, global_test, target_accuracy=0.99)
    # Assert
    final = result.cycles[-1].accuracy_global
    assert final >= CHANCE + 0.3
    assert final > result.initial_accuracy + 0.03
    assert all(c.uplink_bytes > 0 for c in result.cycles)
    assert len(result.cycles[-1].accuracy_local) == small_config.clusters


def test_emsfl_uploads_only_assigned_experts_and_keeps_others(fresh_model, small_config):
    strategy, _ = _setup(fresh_model, small_config, "emsfl")
    strategy.configure_cycle(1)
    before = {k: v.clone() for k, v in strategy.global_state.items()}
    k = next(c for c, ids in strategy.assignment.items() if ids)
    strategy.train(k, "experts")
    sent = strategy.upload(k, "experts", 1)
    assert sent and all(set(p.expert_ids) == set(strategy.assignment[k]) for p in sent)
    assert all(expert_of_key(key) in strategy.assignment[k] for p in sent for key in p.tensors)
    strategy.aggregate(k, "experts", sent)
    for key, v in strategy.global_state.items():
        if expert_of_key(key) not in strategy.assignment[k]:
            assert torch.equal(v, before[key]), f"{key} changed though not assigned to {k}"


def test_frozen_experts_stay_bit_identical_during_local_training(fresh_model, small_config):
    strategy, _ = _setup(fresh_model, small_config, "emsfl")
    strategy.configure_cycle(1)
    k = next(c for c, ids in strategy.assignment.items() if ids)
    # pretend the device holds different values for unassigned experts, then train
    state = strategy.device_states[k][0]
    before = {key: v.clone() for key, v in state.items()}
    strategy.train(k, "experts+gate")
    for key, v in state.items():
        e = expert_of_key(key)
        if e is not None and e not in strategy.assignment[k]:
            assert torch.equal(v, before[key])
    assert any(
        not torch.equal(v, before[key])
        for key, v in state.items()
        if expert_of_key(key) in strategy.assignment[k]
    )


def test_aggregation_with_a_lost_upload_equals_aggregating_the_arrived_one(
    fresh_model, small_config
):
    strategy, _ = _setup(fresh_model, small_config, "baseline")
    plan = strategy.connected_plan(0, 1)
    assert plan == [Step("download", "global"), Step("train", "full"), Step("upload", "full")]
    strategy.receive(0, strategy.download(0, "global", 1))
    strategy.train(0, "full")
    sent = strategy.upload(0, "full", 1)
    strategy.aggregate(0, "full", sent[1:])  # device 0's upload was lost on the link
    for key, v in strategy.global_state.items():
        assert torch.equal(v, sent[1].tensors[key])
    before = {k: v.clone() for k, v in strategy.global_state.items()}
    strategy.aggregate(0, "full", [])  # everything lost: unchanged
    assert all(torch.equal(v, before[k]) for k, v in strategy.global_state.items())


def test_enhanced_masked_stage_holds_only_assigned_experts(fresh_model, small_config):
    strategy, _ = _setup(fresh_model, small_config, "emsfl-enhanced")
    strategy.configure_cycle(1)
    assert strategy.connected_plan(0, 1)[-1] == Step("train", "experts-masked")
    k = next(c for c, ids in strategy.assignment.items() if ids)
    strategy.train(k, "experts-masked")
    ids = tuple(strategy.assignment[k])
    sub = strategy._sliced[ids]
    assert sub.config.num_local_experts == len(ids)
    for name, p in sub.named_parameters():
        if name.endswith("gate_up_proj"):
            assert p.shape[0] == len(ids)
    # gate stage after masked_cycles
    assert Step("upload", "gate") in strategy.connected_plan(0, small_config.masked_cycles + 1)


def test_enhanced_masks_the_configured_share_of_the_run(fresh_model):
    from testbed.fl.config import FLConfig

    c = FLConfig()
    assert [c.masked_cycle_count(n) for n in (1, 2, 3, 5, 8, 30)] == [0, 1, 2, 4, 6, 24]
    assert FLConfig(masked_cycles=3).masked_cycle_count(30) == 3
    assert FLConfig(masked_share=0.5).masked_cycle_count(10) == 5
    model, tok = fresh_model
    clusters, _ = federated_split(3, 2, 16, 8, 0)
    strategy = make_strategy("emsfl-enhanced", model, tok, clusters, c, cycles=5)
    plans = [strategy.connected_plan(0, cycle) for cycle in range(1, 6)]
    masked = [Step("train", "experts-masked") in p for p in plans]
    assert masked == [True, True, True, True, False]  # 80 % masked, then gate tuning
    assert Step("upload", "gate") in plans[-1]


@pytest.mark.parametrize("algorithm", ["emsfl", "baseline"])
def test_idle_slots_give_emsfl_extra_disconnected_rounds_and_the_baseline_none(
    default_model_dir, small_config, algorithm
):
    # Remark 4: in an idle slot nobody is connected; EMS-FL clusters keep training
    from testbed.fl.model import load_model

    rounds = {}
    for idle in (0, 2):
        model, tok = load_model(default_model_dir, device=torch.device("cpu"))
        clusters, test = federated_split(3, 2, 16, 8, 0)
        s = make_strategy(algorithm, model, tok, clusters, small_config, cycles=1)
        r = run_timeline(s, 1, test, 0.99, idle_slots=idle, slot_s=60.0)
        rounds[idle] = [list(x) for x in s._rounds]
        assert r.cycles[0].emulated_s == (3 + idle) * 60.0
        doc = r.to_json()
        assert doc["idle_slots"] == idle and doc["eval_examples"] == len(test)
        assert doc["cycles"][0]["emulated_s"] == (3 + idle) * 60.0
    pairs = zip(rounds[0], rounds[2], strict=True)
    extra = [[b - a for a, b in zip(x, y, strict=True)] for x, y in pairs]
    if algorithm == "emsfl":
        assert extra == [[2, 2]] * 3  # one more local round per device and idle slot
    else:
        assert extra == [[0, 0]] * 3
    with pytest.raises(ValueError, match="idle_slots"):
        run_timeline(s, 1, test, 0.99, idle_slots=-1)


def test_measured_xi_spans_the_theorems_extremes():
    from testbed.fl.data import heterogeneity_xi

    one_domain, _ = federated_split(4, 2, 40, 8, 0, major_fraction=1.0)
    assert heterogeneity_xi(one_domain) == pytest.approx(4.0)
    three, _ = federated_split(3, 2, 40, 8, 0, major_fraction=1.0)
    assert heterogeneity_xi(three) == pytest.approx(3.0)
    mixed, _ = federated_split(4, 2, 400, 8, 0, major_fraction=0.25)
    assert heterogeneity_xi(mixed) == pytest.approx(1.0, abs=0.35)
    default, _ = federated_split(4, 2, 400, 8, 0, major_fraction=0.85)
    assert 3.0 < heterogeneity_xi(default) < 3.8  # ≈ 0.85 · 4
