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
    """``auto`` → CUDA when present, else CPU; ``cuda:N`` → that GPU (it must exist)."""
    import torch

    if spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError(f"model.device = {spec} but no CUDA device is present")
        if ":" in spec:
            n = int(spec.split(":", 1)[1])
            if n >= torch.cuda.device_count():
                raise RuntimeError(
                    f"model.device = {spec} but only {torch.cuda.device_count()} CUDA "
                    "device(s) are present"
                )
            return torch.device("cuda", n)
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

    from testbed.fl.data import cluster_data
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
    ids = [c.id for c in scn.clusters]
    clusters, global_test = cluster_data(cfg, ids, tok, scn.data.path, scn.data.kind)
    strategy = make_strategy(scn.algorithm.name, model, tok, clusters, cfg, scn.algorithm.cycles)
    return strategy, global_test
