"""Node code uses CUDA when present and CPU otherwise."""

from __future__ import annotations

import pytest
import torch

from nodes.fl_setup import build_strategy, torch_device
from testbed.scenario import load_scenario


def test_auto_picks_cpu_without_cuda_and_cuda_is_refused_clearly():
    if torch.cuda.is_available():
        assert torch_device("auto").type == "cuda"
    else:
        assert torch_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA device"):
            torch_device("cuda")
    assert torch_device("cpu").type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cluster_training_runs_on_cuda_and_records_gpu_memory():
    from testbed.fl.strategy import peak_memory_bytes

    scn = load_scenario("default").with_overrides(["model.device=cuda"])
    strategy, global_test = build_strategy(scn)
    assert strategy.device.type == "cuda"
    torch.cuda.reset_peak_memory_stats()
    strategy.train(0, "full")
    assert 0 < peak_memory_bytes(strategy.device) == torch.cuda.max_memory_allocated()
    assert 0.0 <= strategy.evaluate(global_test[:16]) <= 1.0
