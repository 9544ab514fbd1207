"""When each cluster is connected: the contact windows of a run and its orbital cycles.

Two modes (``[schedule].mode``):

* ``ideal`` — the paper's schedule (Remark 4): one cluster per slot, consecutive, with
  ``idle_slots`` empty slots per orbital cycle. Cluster ``i``'s slot in cycle ``c`` (0-based)
  is :math:`[t_0 + c\\,(K + n_{idle})\\,T_{slot} + i\\,T_{slot},\\; \\cdot + T_{slot})`. The
  emulator gates the link by the same slots (:class:`channel.ScheduledLinkGeometry`).
* ``orbit`` — each cluster's contact windows from the orbit model at its site; cycle ``c``
  visits every cluster at its first window after the previous cycle ended, in AOS order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.errors import ConfigError

__all__ = ["SLOT_ELEVATION_DEG", "Slot", "cluster_windows", "cycle_plan", "run_geometry"]

SLOT_ELEVATION_DEG = 45.0  # elevation of the idealised slots (fixed range, no Doppler)
EXTRA_CYCLES = 4  # windows beyond the last cycle, where late transfers may still complete


@dataclass(frozen=True)
class Slot:
    """One connected phase: cluster ``index`` (id ``cluster``) during [aos_s, los_s)."""

    cycle: int  # 1-based
    index: int
    cluster: str
    aos_s: float
    los_s: float


def cluster_windows(scn: Any) -> dict[str, list[tuple[float, float]]]:
    """Every cluster's windows over the run (plus a few cycles of slack) [emulated s]."""
    s = scn.schedule
    k = len(scn.clusters)
    cycles = scn.algorithm.cycles + EXTRA_CYCLES
    out: dict[str, list[tuple[float, float]]] = {}
    if s.mode == "ideal":
        cyc = (k + s.idle_slots) * s.slot_s
        for i, c in enumerate(scn.clusters):
            out[c.id] = [
                (s.start_s + n * cyc + i * s.slot_s, s.start_s + n * cyc + (i + 1) * s.slot_s)
                for n in range(cycles)
            ]
        return out
    for c in scn.clusters:
        g = scn.link_geometry(c.id)
        out[c.id] = g.windows(s.start_s, s.start_s + s.horizon_h * 3600.0)
    return out


def cycle_plan(scn: Any, windows: dict[str, list[tuple[float, float]]]) -> list[list[Slot]]:
    """The connected phases of each orbital cycle, in time order."""
    plan: list[list[Slot]] = []
    if scn.schedule.mode == "ideal":
        for n in range(scn.algorithm.cycles):
            plan.append(
                [Slot(n + 1, i, c.id, *windows[c.id][n]) for i, c in enumerate(scn.clusters)]
            )
        return plan
    cursor = scn.schedule.start_s
    for n in range(scn.algorithm.cycles):
        slots = []
        for i, c in enumerate(scn.clusters):
            nxt = next(((a, b) for a, b in windows[c.id] if a >= cursor), None)
            if nxt is None:
                raise ConfigError(
                    f"{scn.source}: schedule.horizon_h: cluster {c.id!r} has no contact window "
                    f"for cycle {n + 1}; raise the horizon or lower link.min_elevation_deg"
                )
            slots.append(Slot(n + 1, i, c.id, *nxt))
        slots.sort(key=lambda sl: sl.aos_s)
        plan.append(slots)
        cursor = max(sl.los_s for sl in slots)
    return plan


def run_geometry(scn: Any, cluster_id: str, windows: dict[str, list[tuple[float, float]]]) -> Any:
    """The uplink geometry the emulator uses for ``cluster_id`` in this run."""
    if scn.schedule.mode == "ideal":
        from channel import ScheduledLinkGeometry

        return ScheduledLinkGeometry(
            windows[cluster_id],
            scn.link.params,
            SLOT_ELEVATION_DEG,
            scn.orbit.altitude_km * 1e3,
            seed=scn.seed + scn.cluster_index(cluster_id),
        )
    return scn.link_geometry(cluster_id)
