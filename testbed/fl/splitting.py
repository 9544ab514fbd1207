"""Expert-driven model splitting (EMS-FL Algo 1), as plain NumPy.

Given the expert relevance matrix :math:`P \\in [0,1]^{K \\times E}` (eq. 29, one row per cluster,
from :func:`testbed.fl.routing.routing_statistics`), experts are assigned to clusters without
overlap:

1. threshold truncation (eq. 32): :math:`\\tilde p_{k,e} = p_{k,e} \\, [p_{k,e} \\ge \\tau]`;
2. assignment probability (eq. 33): :math:`q_{k,e} = \\tilde p_{k,e} / \\sum_{k'} \\tilde p_{k',e}`;
3. probabilistic non-overlapping assignment (eq. 34): each expert goes to at most one cluster
   with :math:`\\tilde p_{k,e} > 0`; first a maximum matching clusters↔experts (so that as many
   clusters as possible get an expert) explored in an order sampled from :math:`q`, then every
   expert still free is drawn to a cluster with probability :math:`q_{\\cdot,e}`;
4. every expert is assigned (the paper: "all experts are assigned non-overlappingly across
   the clusters"): an expert whose relevance is below τ for every cluster (an all-zero column
   of :math:`q`) goes to the cluster that routes to it most, :math:`\\arg\\max_k p_{k,e}`,
   preferring clusters that hold no expert yet (so that as many clusters as possible train
   one).
"""

from __future__ import annotations

import numpy as np

__all__ = ["assign_experts", "assignment_probability", "truncate_relevance"]


def truncate_relevance(p: np.ndarray, tau: float) -> np.ndarray:
    """Eq. 32: zero every relevance below the threshold ``tau`` (shape ``(K, E)``)."""
    p = np.asarray(p, dtype=float)
    return np.where(p >= tau, p, 0.0)


def assignment_probability(p_trunc: np.ndarray) -> np.ndarray:
    """Eq. 33: column-normalised truncated relevance; all-zero columns stay zero."""
    col = p_trunc.sum(axis=0, keepdims=True)
    return np.divide(p_trunc, col, out=np.zeros_like(p_trunc), where=col > 0)


def _weighted_order(w: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Items in a random order, earlier positions likelier for larger weight (Gumbel-top-k)."""
    keys = np.log(w) + rng.gumbel(size=len(w))
    return [int(items[i]) for i in np.argsort(-keys)]


def assign_experts(p: np.ndarray, tau: float, rng: np.random.Generator) -> dict[int, list[int]]:
    """Eq. 32–34: non-overlapping assignment of every expert, covering as many clusters as
    possible.

    Parameters
    ----------
    p
        Relevance :math:`p_{k,e}`, shape ``(K, E)``.
    tau
        Truncation threshold :math:`\\tau`.
    rng
        Source of the assignment randomness.

    Returns
    -------
    dict
        ``cluster -> sorted expert ids``; every cluster is a key (possibly with no expert,
        when there are fewer experts than clusters); every expert is in exactly one list.
        Expert ``e`` is given to cluster ``k`` only if :math:`p_{k,e} \\ge \\tau`, unless no
        cluster reaches τ for it (step 4).
    """
    pt = truncate_relevance(p, tau)
    q = assignment_probability(pt)
    K, E = q.shape
    owner = [-1] * E
    # Kuhn's augmenting paths: maximum matching = maximum number of covered clusters.
    prefs = {}
    for k in range(K):
        cand = np.flatnonzero(q[k] > 0)
        prefs[k] = _weighted_order(q[k, cand], cand, rng) if len(cand) else []

    def augment(k: int, seen: set[int]) -> bool:
        for e in prefs[k]:
            if e in seen:
                continue
            seen.add(e)
            if owner[e] == -1 or augment(owner[e], seen):
                owner[e] = k
                return True
        return False

    for k in [int(x) for x in rng.permutation(K)]:
        augment(k, set())
    for e in range(E):
        if owner[e] == -1 and q[:, e].sum() > 0:
            owner[e] = int(rng.choice(K, p=q[:, e] / q[:, e].sum()))
    p = np.asarray(p, dtype=float)
    for e in sorted(range(E), key=lambda e: -float(p[:, e].max())):
        if owner[e] != -1:
            continue
        empty = [k for k in range(K) if k not in owner]
        pool = empty or list(range(K))
        owner[e] = max(pool, key=lambda k: (float(p[k, e]), -k))
    out: dict[int, list[int]] = {k: [] for k in range(K)}
    for e, k in enumerate(owner):
        if k >= 0:
            out[k].append(e)
    return out
