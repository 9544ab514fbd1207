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


def build_strategy(
    scn: Any, cache: str | None = None, threads: int | None = None
) -> tuple[Any, Any]:
    """``(strategy, global_test)`` for the scenario's algorithm.

    Fixes this process's torch threads, deterministic kernels and seeds first
    (:func:`testbed.fl.determinism.configure_determinism`) from the scenario: ``model.threads``
    and ``scenario.seed``.

    Parameters
    ----------
    scn
        The :class:`testbed.scenario.Scenario`.
    cache
        Cache root of the embedded model (default ``$TESTBED_CACHE`` or ``~/.cache``).
    threads
        Overrides ``model.threads`` (tests); ``None`` takes the scenario's.
    """
    import torch

    from testbed.fl.data import federated_split
    from testbed.fl.determinism import configure_determinism
    from testbed.fl.model import build_default_model, load_model
    from testbed.fl.timeline import make_strategy

    cfg = scn.fl_config()
    configure_determinism(cfg.threads if threads is None else threads, cfg.seed)
    log.debug("learning side: %d torch threads, seed %d", torch.get_num_threads(), cfg.seed)
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
