"""Algo 1: truncation, assignment probability, non-overlapping maximum-coverage assignment."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.fl.splitting import assign_experts, assignment_probability, truncate_relevance


def _max_coverage(eligible: np.ndarray) -> int:
    """Brute force: largest number of clusters that can each get a distinct eligible expert."""
    K, E = eligible.shape
    best = 0
    for perm in itertools.permutations(range(E), min(K, E)):
        for clusters in itertools.permutations(range(K), len(perm)):
            best = max(best, sum(bool(eligible[k, e]) for k, e in zip(clusters, perm, strict=True)))
    return best


relevance = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1)).map(
    lambda t: np.random.default_rng(t[2]).dirichlet(np.ones(t[1]) * 0.7, size=t[0])
)


@settings(max_examples=60, deadline=None)
@given(p=relevance, tau=st.floats(0.0, 0.6), seed=st.integers(0, 1000))
def test_assignment_is_non_overlapping_respects_threshold_and_covers_max(p, tau, seed):
    # Prepare
    rng = np.random.default_rng(seed)
    # Execute
    a = assign_experts(p, tau, rng)
    # Assert
    assert set(a) == set(range(p.shape[0]))
    owned = [e for ids in a.values() for e in ids]
    assert len(owned) == len(set(owned)), "an expert was assigned twice"
    # eq. 34: every expert is assigned
    assert sorted(owned) == list(range(p.shape[1]))
    for k, ids in a.items():
        for e in ids:
            if (p[:, e] >= tau).any():
                assert p[k, e] >= tau, f"expert {e} below threshold for cluster {k}"
            else:  # nobody reaches τ: the cluster that routes to it most, among the empty ones
                others = [j for j in range(p.shape[0]) if j != k]
                assert all(p[k, e] >= p[j, e] or a[j] for j in others)
    covered = sum(1 for ids in a.values() if ids)
    assert covered >= _max_coverage(p >= tau)


def test_truncation_and_probability_match_eq_32_33():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    pt = truncate_relevance(p, 0.25)
    np.testing.assert_array_equal(pt, [[0.6, 0.3, 0.0], [0.0, 0.0, 0.6]])
    q = assignment_probability(pt)
    np.testing.assert_allclose(q, [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_assignment_is_deterministic_for_a_seed():
    p = np.random.default_rng(3).dirichlet(np.ones(6), size=3)
    a1 = assign_experts(p, 0.05, np.random.default_rng(9))
    a2 = assign_experts(p, 0.05, np.random.default_rng(9))
    assert a1 == a2


def test_an_expert_below_the_threshold_everywhere_is_still_assigned():
    # expert 2 is routed to by nobody above τ = 0.2: it goes to the cluster routing to it
    # most (cluster 1: 0.15 > 0.05), not left untrained
    p = np.array([[0.85, 0.10, 0.05], [0.05, 0.80, 0.15]])
    for s in range(20):
        a = assign_experts(p, 0.2, np.random.default_rng(s))
        assert a == {0: [0], 1: [1, 2]}


def test_assignment_follows_the_probabilities():
    # Cluster 0 has relevance 0.9 vs 0.1 for expert 0; in two clusters/two experts with both
    # eligible everywhere, cluster 0 should get expert 0 much more often than expert 1.
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    hits = sum(assign_experts(p, 0.05, np.random.default_rng(s))[0] == [0] for s in range(400))
    assert hits > 300
