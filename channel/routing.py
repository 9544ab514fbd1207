"""Routing a payload on a contact plan (contact graph routing, store-and-forward).

A payload of B bytes is released at node ``src`` at time t. It crosses a contact in one
piece (no fragmentation): from the moment it is at the contact's sending node and the
contact is free, it is on the air until :math:`\\frac18\\int C\\,dt = B`
(:meth:`channel.contact_plan.Contact.finish_s`) and arrives one light time (the contact's
largest range / c) later. Satellites store and forward (any wait); stations only send or
receive. Every contact is full duplex: each direction has the whole profile, and
transmissions booked on a direction (:meth:`ContactGraph.book`) occupy it — a later payload
uses only the gaps, so the capacity of each contact is respected.

* :meth:`ContactGraph.earliest_arrival` — the route that delivers first (Dijkstra over the
  nodes; exact, since a later start never gives an earlier arrival).
* :meth:`ContactGraph.minimum_latency` — the route with the smallest arrival − release when
  the payload may be released at t or at the start of any of ``src``'s contacts after t
  (the payload is produced just in time for a pass), ties to the earliest arrival.
"""

from __future__ import annotations

import heapq
import math
import numbers
from bisect import insort
from dataclasses import dataclass

from channel.constellation import ConstellationError
from channel.contact_plan import Contact, ContactPlan

__all__ = ["ContactGraph", "Hop", "Route"]


@dataclass(frozen=True)
class Hop:
    """One transmission: ``contact`` (index into the plan) from ``src`` to ``dst``."""

    contact: int
    src: str
    dst: str
    tx_start_s: float
    tx_end_s: float
    arrival_s: float


@dataclass(frozen=True)
class Route:
    """A payload's path: its hops, when it was released and how big it is."""

    hops: tuple[Hop, ...]
    release_s: float
    nbytes: int

    @property
    def arrival_s(self) -> float:
        return self.hops[-1].arrival_s if self.hops else self.release_s

    @property
    def latency_s(self) -> float:
        return self.arrival_s - self.release_s

    @property
    def nodes(self) -> list[str]:
        return [self.hops[0].src, *(h.dst for h in self.hops)] if self.hops else []

    def to_dict(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "release_s": self.release_s,
            "arrival_s": self.arrival_s,
            "latency_s": self.latency_s,
            "nbytes": self.nbytes,
            "hops": [h.__dict__ for h in self.hops],
        }


class ContactGraph:
    """The directed contact graph of a plan, with the transmissions booked on it.

    Parameters
    ----------
    plan : the contact plan
    relays : nodes that store and forward (default: the plan's satellites)
    """

    def __init__(self, plan: ContactPlan, relays: set[str] | None = None) -> None:
        self.plan = plan
        self.contacts: list[Contact] = plan.contacts
        self.relays = set(plan.satellite_ids) if relays is None else set(relays)
        self._out: dict[str, list[tuple[int, int]]] = {}
        for i, c in enumerate(self.contacts):
            self._out.setdefault(c.src, []).append((i, 0))
            self._out.setdefault(c.dst, []).append((i, 1))
        for lst in self._out.values():
            lst.sort(key=lambda e: (self.contacts[e[0]].start_s, e))
        self._busy: dict[tuple[int, int], list[tuple[float, float]]] = {}

    def _ends(self, edge: tuple[int, int]) -> tuple[str, str]:
        c = self.contacts[edge[0]]
        return (c.src, c.dst) if edge[1] == 0 else (c.dst, c.src)

    def earliest_tx(
        self, edge: tuple[int, int], t_s: float, nbytes: int
    ) -> tuple[float, float] | None:
        """(start, end) of the earliest transmission of ``nbytes`` on ``edge`` (contact index,
        direction 0 = src→dst) starting at or after ``t_s`` in a free gap, or None."""
        c = self.contacts[edge[0]]
        start = max(t_s, c.start_s)
        for b0, b1 in self._busy.get(edge, []):
            if b1 <= start:
                continue
            end = c.finish_s(start, nbytes)
            if end is None:
                return None
            if end <= b0:
                return start, end
            start = max(start, b1)
        if start >= c.end_s and nbytes > 0:
            return None
        end = c.finish_s(start, nbytes)
        return None if end is None else (start, end)

    def earliest_arrival(self, src: str, dst: str, t_s: float, nbytes: int) -> Route | None:
        """The route of ``nbytes`` released at ``src`` at ``t_s`` that reaches ``dst`` first,
        or None if none does within the plan."""
        self._check(src, dst, nbytes)
        t_s = self._check_time(t_s)
        nbytes = int(nbytes)
        best: dict[str, float] = {src: t_s}
        pred: dict[str, Hop] = {}
        heap: list[tuple[float, str]] = [(t_s, src)]
        done: set[str] = set()
        while heap:
            a, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if u == dst:
                break
            if u != src and u not in self.relays:
                continue
            for edge in self._out.get(u, []):
                c = self.contacts[edge[0]]
                if c.end_s <= a:
                    continue
                _, v = self._ends(edge)
                if v in done:
                    continue
                tx = self.earliest_tx(edge, a, nbytes)
                if tx is None:
                    continue
                arr = tx[1] + c.owlt_s
                if arr < best.get(v, math.inf):
                    best[v] = arr
                    pred[v] = Hop(edge[0], u, v, tx[0], tx[1], arr)
                    heapq.heappush(heap, (arr, v))
        if dst not in pred:
            return None
        hops = []
        n = dst
        while n != src:
            h = pred[n]
            hops.append(h)
            n = h.src
        return Route(tuple(reversed(hops)), t_s, nbytes)

    def minimum_latency(self, src: str, dst: str, t_s: float, nbytes: int) -> Route | None:
        """The route with the smallest arrival − release over releases at ``t_s`` and at the
        start of each of ``src``'s contacts after it (ties: the earlier arrival)."""
        self._check(src, dst, nbytes)
        t_s = self._check_time(t_s)
        cands = {t_s} | {
            self.contacts[i].start_s
            for i, _ in self._out.get(src, [])
            if self.contacts[i].start_s > t_s
        }
        best: Route | None = None
        for d in sorted(cands):
            r = self.earliest_arrival(src, dst, d, nbytes)
            if r is None:
                continue
            if best is None or (r.latency_s, r.arrival_s) < (best.latency_s, best.arrival_s):
                best = r
        return best

    def book(self, route: Route) -> None:
        """Occupy each hop's direction of its contact for the transmission."""
        for h in route.hops:
            c = self.contacts[h.contact]
            edge = (h.contact, 0 if (c.src, c.dst) == (h.src, h.dst) else 1)
            insort(self._busy.setdefault(edge, []), (h.tx_start_s, h.tx_end_s))

    def _check(self, src: str, dst: str, nbytes: int) -> None:
        nodes = self.plan.nodes
        for name, n in (("source", src), ("destination", dst)):
            if n not in nodes:
                raise ConstellationError(f"{name} {n!r} is not a node of the contact plan")
        if src == dst:
            raise ConstellationError("source and destination are the same node")
        if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral) or nbytes <= 0:
            raise ConstellationError(f"payload size must be a positive integer, got {nbytes!r}")

    @staticmethod
    def _check_time(t_s: float) -> float:
        t = float(t_s)
        if not math.isfinite(t):
            raise ConstellationError(f"release time must be finite, got {t_s!r}")
        return t
