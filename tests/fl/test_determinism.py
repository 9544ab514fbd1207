"""Learning determinism: thread count, deterministic kernels and seeds per process.

docs/learning.md, *Determinism*: the same seed and thread count give bit-identical results;
on CPU 1, 2 and 4 threads do too, because the expert GEMMs run on padded row groups and the
LM head on a padded weight (:mod:`testbed.fl.padded_gemm`).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from testbed.fl.config import FLConfig
from testbed.fl.data import federated_split
from testbed.fl.determinism import configure_determinism, round_seed
from testbed.fl.timeline import RunResult, make_strategy, run_timeline

#: Families covered by the padded expert forward (fused experts, router at ``mlp.gate``).
FAMILIES = ("mixtral", "qwen2_moe", "olmoe")
#: Tolerance of the padded GEMMs against the unpadded ones (float32 rounding) [1].
FLOAT32_TOL = 1e-5


@pytest.fixture
def torch_state():
    """Restore torch's thread count, deterministic-algorithm flags and CPU generator."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng = torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.set_rng_state(rng)


def _one_cycle(model_dir: Path, config: FLConfig, algorithm: str, threads: int):
    """One orbital cycle from a fresh copy of the model: (metrics without wall time, LoRA)."""
    from testbed.fl.model import load_model

    configure_determinism(threads, config.seed)
    model, tok = load_model(model_dir, device=torch.device("cpu"))
    clusters, global_test = federated_split(
        config.clusters,
        config.devices_per_cluster,
        config.examples_per_device,
        config.test_per_cluster,
        config.seed,
    )
    strategy = make_strategy(algorithm, model, tok, clusters, config)
    result: RunResult = run_timeline(strategy, 1, global_test, config.target_accuracy)
    doc = result.to_json()
    for c in doc["cycles"]:
        c.pop("wall_s")
        c.pop("peak_memory_bytes")
    lora = {"global": strategy.global_state}
    for k, states in enumerate(strategy.device_states):
        for d, state in enumerate(states):
            lora[f"device {k}.{d}"] = state
    return doc, lora


def _assert_identical(a, b) -> None:
    doc_a, lora_a = a
    doc_b, lora_b = b
    assert doc_a == doc_b
    for who, state in lora_a.items():
        assert state.keys() == lora_b[who].keys()
        for key, v in state.items():
            assert torch.equal(v, lora_b[who][key]), f"{who} {key} differs"


# ------------------------------------------------------------------------------ unit


def test_configure_determinism_sets_threads_kernels_and_seeds(torch_state):
    # Execute
    configure_determinism(2, 7)
    draws = (random.random(), np.random.random(), torch.rand(1))
    configure_determinism(1, 7)
    again = (random.random(), np.random.random(), torch.rand(1))
    # Assert
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])


@pytest.mark.parametrize("bad", [0, 257, True, 1.5, "2"])
def test_configure_determinism_rejects_bad_thread_counts(bad, torch_state):
    with pytest.raises(ValueError, match="threads"):
        configure_determinism(bad, 0)


def test_round_seed_depends_only_on_the_round_identity():
    seeds = {round_seed(0, k, d, r) for k in range(3) for d in range(2) for r in range(4)}
    assert len(seeds) == 24
    assert all(0 <= s < 2**63 for s in seeds)
    assert round_seed(5, 1, 0, 2) == round_seed(5, 1, 0, 2) != round_seed(6, 1, 0, 2)


def _tiny_moe(family: str):
    """A random tiny MoE and a batch whose expert row groups include 5..11-row ones."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = dict(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,  # head_dim 16: SDPA with head_dim 8 is itself thread-dependent
        num_key_value_heads=2,
        num_experts_per_tok=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if family == "mixtral":
        kw.update(num_local_experts=4)
    elif family == "qwen2_moe":
        kw.update(num_experts=4, moe_intermediate_size=48, shared_expert_intermediate_size=48)
    else:
        kw.update(num_experts=4)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(family, **kw))
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(1))
    return model, ids


def _forward_backward(model, ids) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[int]]:
    """Logits, every parameter gradient and the rows routed to each expert."""
    routed: list[torch.Tensor] = []
    hook = model.model.layers[0].mlp.gate.register_forward_hook(
        lambda _m, _i, out: routed.append(out[2])
    )
    try:
        model.zero_grad()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
    finally:
        hook.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    counts = torch.bincount(routed[0].reshape(-1), minlength=4).tolist()
    return out.logits.detach(), grads, counts


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_gemms_compute_the_same_function(family, torch_state):
    """Same outputs and gradients as transformers' ``grouped_mm`` forward and ``nn.Linear``,
    with expert row groups of 5..11 rows among them (sizes MKL sums per thread count)."""
    from testbed.fl.padded_gemm import EXPERTS_IMPLEMENTATION, OutputPaddedLinear, use_padded_gemms

    # Prepare
    model, ids = _tiny_moe(family)
    ref_logits, ref_grads, counts = _forward_backward(model, ids)
    # Execute
    use_padded_gemms(model)
    logits, grads, _ = _forward_backward(model, ids)
    # Assert
    assert any(5 <= c <= 11 for c in counts), counts
    assert model.config._experts_implementation == EXPERTS_IMPLEMENTATION
    assert isinstance(model.get_output_embeddings(), OutputPaddedLinear)
    torch.testing.assert_close(logits, ref_logits, atol=FLOAT32_TOL, rtol=FLOAT32_TOL)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=FLOAT32_TOL, rtol=FLOAT32_TOL)


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_gemms_are_bit_identical_on_one_and_two_threads(family, torch_state):
    from testbed.fl.padded_gemm import use_padded_gemms

    # Prepare
    model, ids = _tiny_moe(family)
    use_padded_gemms(model)
    # Execute
    torch.set_num_threads(1)
    logits_1, grads_1, _ = _forward_backward(model, ids)
    torch.set_num_threads(2)
    logits_2, grads_2, _ = _forward_backward(model, ids)
    # Assert
    assert torch.equal(logits_1, logits_2)
    assert all(torch.equal(g, grads_2[n]) for n, g in grads_1.items())


def test_padded_lm_head_computes_linear_and_is_bit_identical_on_1_2_4_threads(torch_state):
    """71 outputs (the embedded vocabulary): MKL splits that GEMM differently from 4 threads."""
    from testbed.fl.padded_gemm import OutputPaddedLinear

    # Prepare
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 71, bias=False)
    padded = torch.nn.Linear(64, 71, bias=False)
    padded.load_state_dict(plain.state_dict())
    padded.__class__ = OutputPaddedLinear
    x = torch.randn(96, 64, generator=torch.Generator().manual_seed(1))
    # Execute
    outs = {}
    for threads in (1, 2, 4):
        torch.set_num_threads(threads)
        outs[threads] = padded(x).detach()
    torch.set_num_threads(1)
    ref = plain(x).detach()
    # Assert
    assert outs[1].shape == (96, 71)
    torch.testing.assert_close(outs[1], ref, atol=FLOAT32_TOL, rtol=FLOAT32_TOL)
    assert torch.equal(outs[1], outs[2]) and torch.equal(outs[1], outs[4])


@pytest.mark.integration
def test_embedded_model_uses_padded_gemms_and_no_dropout(fresh_model):
    from testbed.fl.padded_gemm import EXPERTS_IMPLEMENTATION, OutputPaddedLinear

    model, _ = fresh_model
    assert model.config._experts_implementation == EXPERTS_IMPLEMENTATION
    assert isinstance(model.get_output_embeddings(), OutputPaddedLinear)
    assert model.config.attention_dropout == 0.0
    assert getattr(model.config, "router_jitter_noise", 0.0) == 0.0
    assert not [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]


def test_scenario_model_threads_key_is_validated():
    from testbed.errors import ConfigError
    from testbed.scenario import load_scenario

    scn = load_scenario("default")
    assert scn.model.threads == 1 and scn.fl_config().threads == 1
    two = scn.with_overrides(["model.threads=2"])
    assert two.model.threads == 2 and two.fl_config().threads == 2
    assert load_scenario("gpu").model.threads == 1
    for value, what in (("0", "must be >= 1"), ("257", "must be <= 256"), ('"2"', "an integer")):
        with pytest.raises(ConfigError) as e:
            scn.with_overrides([f"model.threads={value}"])
        msg = str(e.value)
        assert "\n" not in msg and "model.threads" in msg and what in msg, msg
    with pytest.raises(ConfigError, match=re.escape("algorithm.threads: set by model.threads")):
        scn.with_overrides(["algorithm.threads=2"])


def test_learn_rejects_bad_threads_with_one_line_error(capsys):
    from testbed.cli import main

    assert main(["learn", "--threads", "0", "--cycles", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--threads" in err


# ------------------------------------------------------------------------------ integration


@pytest.mark.integration
def test_node_build_strategy_applies_the_scenarios_thread_count(fl_cache, torch_state):
    from nodes.fl_setup import build_strategy
    from testbed.scenario import load_scenario

    scn = load_scenario("default").with_overrides(["model.threads=2", 'model.device="cpu"'])
    strategy, _ = build_strategy(scn, cache=str(fl_cache))
    assert torch.get_num_threads() == 2
    assert torch.are_deterministic_algorithms_enabled()
    assert strategy.config.threads == 2
    build_strategy(scn, cache=str(fl_cache), threads=1)
    assert torch.get_num_threads() == 1


@pytest.mark.integration
def test_same_seed_and_threads_twice_give_identical_accuracies_and_lora(
    default_model_dir, small_config, torch_state
):
    first = _one_cycle(default_model_dir, small_config, "emsfl-enhanced", threads=1)
    second = _one_cycle(default_model_dir, small_config, "emsfl-enhanced", threads=1)
    _assert_identical(first, second)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("algorithm", "threads"), [("baseline", 2), ("emsfl-enhanced", 2), ("baseline", 4)]
)
def test_more_threads_give_identical_accuracies_and_lora(
    default_model_dir, small_config, torch_state, algorithm, threads
):
    one = _one_cycle(default_model_dir, small_config, algorithm, threads=1)
    more = _one_cycle(default_model_dir, small_config, algorithm, threads=threads)
    _assert_identical(one, more)
