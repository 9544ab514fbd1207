"""Contact graph routing against a brute-force search of every path of small plans."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from channel.constellation import Constellation, ConstellationError
from channel.contact_plan import Contact, ContactPlan, contact_plan
from channel.orbit import GroundSite
from channel.routing import ContactGraph

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SATS = ["s1", "s2", "s3", "s4"]
GROUND = ["A", "B"]


def _contact(kind, a, b, t0, t1, r0, r1, rng_km=1000.0):
    return Contact(
        kind, a, b, t0, t1, (t0, 0.5 * (t0 + t1), t1), (r0, 0.5 * (r0 + r1), r1), rng_km * 1e3
    )


def _random_plan(rng: np.random.Generator, n: int = 14) -> ContactPlan:
    nodes = SATS + GROUND
    contacts = []
    while len(contacts) < n:
        a, b = rng.choice(nodes, 2, replace=False)
        if a in GROUND and b in GROUND:
            continue
        t0 = float(rng.uniform(0, 900))
        t1 = t0 + float(rng.uniform(20, 300))
        kind = "sat_ground" if (a in GROUND or b in GROUND) else "isl"
        contacts.append(
            _contact(
                kind,
                a,
                b,
                t0,
                t1,
                float(rng.uniform(1e4, 1e5)),
                float(rng.uniform(1e4, 1e5)),
                float(rng.uniform(500, 5000)),
            )
        )
    return ContactPlan(
        EPOCH, 0.0, 1500.0, contacts, [{"id": s} for s in SATS], [{"name": g} for g in GROUND]
    )


def _brute(plan: ContactPlan, src: str, dst: str, t: float, nbytes: int) -> float:
    """Earliest arrival over every simple path (each hop sent as early as possible)."""
    best = math.inf
    edges = []
    for c in plan.contacts:
        edges += [(c, c.src, c.dst), (c, c.dst, c.src)]

    def walk(node: str, at: float, seen: set[str]) -> None:
        nonlocal best
        if node == dst:
            best = min(best, at)
            return
        if node != src and node not in SATS:
            return
        for c, u, v in edges:
            if u != node or v in seen:
                continue
            start = max(at, c.start_s)
            if start >= c.end_s:
                continue
            fin = c.finish_s(start, nbytes)
            if fin is None:
                continue
            walk(v, fin + c.owlt_s, seen | {v})

    walk(src, t, {src})
    return best


@pytest.mark.parametrize("seed", range(12))
def test_earliest_arrival_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    plan = _random_plan(rng)
    g = ContactGraph(plan)
    for src, dst in (("A", "B"), ("A", "s3"), ("s2", "B"), ("s1", "s4")):
        for t in (0.0, 300.0):
            nbytes = int(rng.integers(10_000, 2_000_000))
            want = _brute(plan, src, dst, t, nbytes)
            r = g.earliest_arrival(src, dst, t, nbytes)
            if math.isinf(want):
                assert r is None
                continue
            assert r is not None and r.arrival_s == pytest.approx(want, abs=1e-9)
            # the route is consistent: hops chain, each fits its contact, ends at dst
            assert r.nodes[0] == src and r.nodes[-1] == dst
            at = t
            for h in r.hops:
                c = plan.contacts[h.contact]
                assert h.tx_start_s >= at - 1e-12 and c.start_s <= h.tx_start_s
                assert h.tx_end_s <= c.end_s + 1e-9
                assert c.bytes_between(h.tx_start_s, h.tx_end_s) == pytest.approx(nbytes)
                at = h.arrival_s
            assert all(n in SATS for n in r.nodes[1:-1])  # stations do not relay


@pytest.mark.parametrize("seed", range(8))
def test_minimum_latency_equals_brute_force_over_release_times(seed):
    rng = np.random.default_rng(100 + seed)
    plan = _random_plan(rng)
    g = ContactGraph(plan)
    src, dst, nbytes = "A", "B", 200_000
    releases = {0.0} | {c.start_s for c in plan.contacts if src in (c.src, c.dst)}
    want = min((_brute(plan, src, dst, d, nbytes) - d for d in releases), default=math.inf)
    r = g.minimum_latency(src, dst, 0.0, nbytes)
    if math.isinf(want):
        assert r is None
    else:
        assert r is not None and r.latency_s == pytest.approx(want, abs=1e-9)
        ea = g.earliest_arrival(src, dst, 0.0, nbytes)
        assert ea is not None and r.latency_s <= ea.latency_s + 1e-9


def test_booked_capacity_is_respected():
    # one ground contact of 100 s at 80 kbit/s carries 1 MB: two 600 kB payloads do not fit
    c = _contact("sat_ground", "A", "s1", 0.0, 100.0, 8e4, 8e4)
    d = _contact("sat_ground", "s1", "B", 0.0, 1000.0, 8e4, 8e4)
    later = _contact("sat_ground", "A", "s1", 500.0, 600.0, 8e4, 8e4)
    plan = ContactPlan(
        EPOCH, 0.0, 1000.0, [c, d, later], [{"id": "s1"}], [{"name": "A"}, {"name": "B"}]
    )
    g = ContactGraph(plan)
    first = g.earliest_arrival("A", "s1", 0.0, 600_000)
    assert first is not None and first.hops[0].contact == 0
    assert first.hops[0].tx_end_s == pytest.approx(60.0)
    g.book(first)
    second = g.earliest_arrival("A", "s1", 0.0, 600_000)
    assert second is not None and second.hops[0].contact == 2  # waits for the next pass
    assert second.hops[0].tx_start_s == pytest.approx(500.0)
    small = g.earliest_arrival("A", "s1", 0.0, 300_000)  # fits in the rest of the first
    assert small is not None and small.hops[0].tx_start_s == pytest.approx(60.0)
    # the other direction of a full-duplex contact is not taken by the booking
    back = g.earliest_arrival("s1", "A", 0.0, 600_000)
    assert back is not None and back.hops[0].tx_start_s == pytest.approx(0.0)


def test_a_real_constellation_routes_ground_to_ground_via_isls():
    con = Constellation.walker("53:24/4/1", 550e3)
    st = [GroundSite(48.1, 11.6, 0.0, "munich"), GroundSite(-33.9, 151.2, 0.0, "sydney")]
    plan = contact_plan(con, st, duration_s=6 * 3600.0)
    g = ContactGraph(plan)
    r = g.earliest_arrival("munich", "sydney", 0.0, 10_000_000)
    assert r is not None and len(r.hops) >= 2
    assert r.arrival_s < plan.end_s
    assert {plan.contacts[h.contact].kind for h in r.hops} <= {"sat_ground", "isl"}
    fast = g.minimum_latency("munich", "sydney", 0.0, 10_000_000)
    assert fast is not None and fast.latency_s <= r.latency_s + 1e-9


def test_bad_route_requests_raise():
    plan = _random_plan(np.random.default_rng(0))
    g = ContactGraph(plan)
    with pytest.raises(ConstellationError, match="not a node"):
        g.earliest_arrival("A", "nowhere", 0.0, 10)
    with pytest.raises(ConstellationError, match="positive integer"):
        g.earliest_arrival("A", "B", 0.0, 0)
    with pytest.raises(ConstellationError, match="same node"):
        g.earliest_arrival("A", "A", 0.0, 10)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConstellationError, match="finite"):
            g.minimum_latency("A", "B", bad, 10)
    assert g.earliest_arrival("A", "B", 0.0, np.int64(1000)) == g.earliest_arrival(
        "A", "B", 0.0, 1000
    )
