"""Per-process determinism of the learning side: thread count, deterministic kernels, seeds.

Every process that trains or evaluates (``testbed learn``, the satellite node, each cluster
node) calls :func:`configure_determinism` once, before building its model, with the thread
count and seed of its scenario (or of the CLI). What is and is not bit-reproducible, and why,
is in docs/learning.md, *Determinism*.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from testbed.fl.config import MAX_THREADS

__all__ = ["configure_determinism", "round_seed"]

log = logging.getLogger(__name__)


def configure_determinism(threads: int, seed: int) -> None:
    """Fix this process's torch threads, kernels and global seeds.

    * ``torch.set_num_threads(threads)`` (intra-op threads; inter-op threads are left alone:
      torch allows setting them only before the first parallel work, and nothing here uses
      inter-op parallelism);
    * ``torch.use_deterministic_algorithms(True, warn_only=True)``: deterministic kernels
      where torch has them; an op without one warns instead of failing (none is hit on CPU
      by the embedded model, docs/learning.md); on CUDA ``CUBLAS_WORKSPACE_CONFIG`` is set to
      ``:4096:8`` unless already set, as cuBLAS needs for reproducible GEMMs;
    * Python's ``random``, NumPy's legacy global generator and torch's generators are seeded
      with ``seed``. The code itself draws only from explicit generators (NumPy
      ``Generator`` objects seeded from the scenario seed, per device, and
      :func:`round_seed` for dropout); the global seeds cover third-party code.

    Parameters
    ----------
    threads
        torch intra-op threads, 1…:data:`~testbed.fl.config.MAX_THREADS`.
    seed
        The run's seed (``scenario.seed`` or ``--seed``).

    Raises
    ------
    ValueError
        ``threads`` out of range.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in 1..{MAX_THREADS}, got {threads!r}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    log.debug("torch threads %d, deterministic algorithms on, seed %d", threads, seed)


def round_seed(seed: int, cluster: int, device: int, round_index: int) -> int:
    """Seed of torch's generator for one local round of one device (dropout, if any).

    Derived from the run seed and the round's identity only, so a device's dropout masks are
    the same whether all clusters train in one process (``testbed learn``) or each in its own
    (``testbed run``), whatever else drew from torch's generator before.
    """
    ss = np.random.SeedSequence([seed, 13, cluster, device, round_index])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) >> 1
