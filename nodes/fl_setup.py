"""Build the learning side of a node from a scenario (same model, data and strategy everywhere).

Every node derives the model, the non-IID data split and the strategy from the scenario's
seed, so the satellite and each cluster hold identical copies and each side calls only its
own methods (docs/learning.md).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["build_strategy", "torch_device"]

log = logging.getLogger(__name__)


def torch_device(spec: str) -> Any:
    """``auto`` → CUDA when present, else CPU."""
    import torch

    if spec == "cuda" or (spec == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("model.device = cuda but no CUDA device is present")
        return torch.device("cuda")
    return torch.device("cpu")


def build_strategy(scn: Any, cache: str | None = None, threads: int = 1) -> tuple[Any, Any]:
    """``(strategy, global_test)`` for the scenario's algorithm."""
    import torch

    from testbed.fl.data import federated_split
    from testbed.fl.model import build_default_model, load_model
    from testbed.fl.timeline import make_strategy

    torch.set_num_threads(threads)
    cfg = scn.fl_config()
    torch.manual_seed(cfg.seed)
    dev = torch_device(scn.model.device)
    if scn.model.path:
        model, tok = load_model(scn.model.path, device=dev)
    else:
        model, tok = build_default_model(cfg.seed, cache, device=dev)
    clusters, global_test = federated_split(
        cfg.clusters,
        cfg.devices_per_cluster,
        cfg.examples_per_device,
        cfg.test_per_cluster,
        cfg.seed,
    )
    return make_strategy(scn.algorithm.name, model, tok, clusters, cfg), global_test
