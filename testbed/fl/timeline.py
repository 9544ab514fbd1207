"""The paper's timeline on an ideal link, and the per-cycle metrics.

One orbital cycle has :math:`K` slots; in slot :math:`s` cluster :math:`k = s` is connected and
runs its connected phase while every other cluster runs its disconnected plan. Links are ideal
(every payload arrives, no delay) unless a ``deliver`` function drops some.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from testbed.fl.config import FLConfig
from testbed.fl.data import MCQExample, cluster_data, heterogeneity_xi
from testbed.fl.payload import Payload
from testbed.fl.strategy import Strategy, peak_memory_bytes

__all__ = ["CycleMetrics", "RunResult", "make_strategy", "run_learning", "run_timeline"]

log = logging.getLogger(__name__)

Deliver = Callable[[list[Payload]], list[Payload]]


@dataclass
class CycleMetrics:
    """Metrics after one orbital cycle.

    Attributes
    ----------
    accuracy_global
        Global model on the global held-out set (uniform over domains).
    accuracy_local
        Global model on each cluster's held-out set, one entry per cluster.
    uplink_bytes
        Bytes of every upload sent in the cycle [bytes] (safetensors size).
    uploads
        Number of uploads sent.
    peak_memory_bytes
        CUDA max allocated (GPU) or process peak RSS (CPU) so far [bytes].
    device_model_bytes
        Largest model a device trained in the cycle: held parameters plus gradient and two
        Adam moments of the trainable ones [bytes].
    wall_s
        Wall time per phase [s]: ``connected``, ``disconnected``, ``eval``.
    upload_bytes_max
        The largest single upload of the cycle [bytes] (safetensors size): what one device
        must get through one contact.
    emulated_s
        Time on the ideal timeline at the end of the cycle [s]:
        :math:`c\\,(K + I)\\,T_{slot}` for cycle :math:`c`, :math:`K` clusters, :math:`I` idle
        slots per cycle and slot length :math:`T_{slot}`.
    """

    cycle: int
    accuracy_global: float
    accuracy_local: list[float]
    uplink_bytes: int
    uploads: int
    peak_memory_bytes: int
    device_model_bytes: int
    wall_s: dict[str, float] = field(default_factory=dict)
    emulated_s: float = 0.0
    upload_bytes_max: int = 0


@dataclass
class RunResult:
    """A whole run; :meth:`to_json` is the CLI's ``--json`` document."""

    algorithm: str
    target_accuracy: float
    initial_accuracy: float
    cycles: list[CycleMetrics]
    idle_slots: int = 0
    slot_s: float = 0.0
    eval_examples: int = 0
    major_fraction: float | None = None
    xi: float | None = None

    @property
    def emulated_s_to_target(self) -> float | None:
        """Ideal-timeline time at the end of the first cycle reaching the target [s]."""
        for c in self.cycles:
            if c.accuracy_global >= self.target_accuracy:
                return c.emulated_s
        return None

    @property
    def cycles_to_target(self) -> int | None:
        """First cycle whose global accuracy reaches the target, else ``None``."""
        for c in self.cycles:
            if c.accuracy_global >= self.target_accuracy:
                return c.cycle
        return None

    def to_json(self) -> dict:
        """JSON-serialisable dict (``algorithm``, ``cycles``, ``cycles_to_target``, ...)."""
        return {
            "algorithm": self.algorithm,
            "target_accuracy": self.target_accuracy,
            "initial_accuracy": self.initial_accuracy,
            "cycles_to_target": self.cycles_to_target,
            "emulated_s_to_target": self.emulated_s_to_target,
            "idle_slots": self.idle_slots,
            "slot_s": self.slot_s,
            "eval_examples": self.eval_examples,
            "major_fraction": self.major_fraction,
            "xi": self.xi,
            "cycles": [asdict(c) for c in self.cycles],
        }


def make_strategy(
    algorithm: str, model, tokenizer, clusters, config: FLConfig, cycles: int | None = None
) -> Strategy:
    """Strategy object for a CLI algorithm name (``emsfl``, ``emsfl-enhanced``, ``baseline``)
    for a run of ``cycles`` orbital cycles (``None``: not known yet; :func:`run_timeline`
    sets it)."""
    from testbed.fl.emsfl import EMSFL
    from testbed.fl.emsfl_enhanced import EnhancedEMSFL
    from testbed.fl.fedavg import SyncFedAvg

    classes = {"emsfl": EMSFL, "emsfl-enhanced": EnhancedEMSFL, "baseline": SyncFedAvg}
    if algorithm not in classes:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    strategy = classes[algorithm](model, tokenizer, clusters, config)
    strategy.total_cycles = cycles
    return strategy


def _ideal(payloads: list[Payload]) -> list[Payload]:
    return payloads


def _train_disconnected(strategy: Strategy, clusters: Sequence[int], cycle: int) -> None:
    """One slot of the disconnected plan of every cluster in ``clusters``."""
    for j in clusters:
        for step in strategy.disconnected_plan(j, cycle):
            strategy.train(j, step.stage)


def run_timeline(
    strategy: Strategy,
    cycles: int,
    global_test: Sequence[MCQExample],
    target_accuracy: float,
    deliver: Deliver = _ideal,
    on_progress: Any = None,
    idle_slots: int = 0,
    slot_s: float = 120.0,
) -> RunResult:
    """Run ``cycles`` orbital cycles of ``strategy`` on the ideal-link schedule.

    A cycle is :math:`K` connected slots (cluster :math:`k` in slot :math:`k`) followed by
    ``idle_slots`` slots in which no cluster is connected (the paper's Remark 4): every
    cluster runs its disconnected plan once per idle slot — EMS-FL keeps training its
    experts, the synchronous baseline waits.

    Parameters
    ----------
    idle_slots
        Slots per cycle with no cluster connected (≥ 0).
    slot_s
        Slot length on the ideal timeline [s] (only for ``emulated_s``).
    deliver
        Link model applied to every batch of uploads (ideal: identity); the satellite
        aggregates whatever it returns.
    on_progress
        Called as ``on_progress(cycle, slot, K, accuracy)`` after every slot (``accuracy``
        is the last cycle's global accuracy, or the initial one) — for a live display.
    """
    if idle_slots < 0:
        raise ValueError(f"idle_slots must be >= 0, got {idle_slots}")
    strategy.total_cycles = cycles  # the run's length decides the enhanced masked share
    K = len(strategy.clusters)
    dev = strategy.device
    result = RunResult(
        strategy.name,
        target_accuracy,
        strategy.evaluate(global_test),
        [],
        idle_slots,
        float(slot_s),
        len(global_test),
    )
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for cycle in range(1, cycles + 1):
        wall = {"connected": 0.0, "disconnected": 0.0, "eval": 0.0}
        up_bytes = 0
        n_up = 0
        up_max = 0
        strategy.device_model_bytes = 0
        t0 = time.perf_counter()
        strategy.configure_cycle(cycle)
        wall["connected"] += time.perf_counter() - t0
        for slot in range(K):
            k = slot
            t0 = time.perf_counter()
            for step in strategy.connected_plan(k, cycle):
                if step.kind == "download":
                    strategy.receive(k, strategy.download(k, step.stage, cycle))
                elif step.kind == "train":
                    strategy.train(k, step.stage)
                elif step.kind == "upload":
                    sent = strategy.upload(k, step.stage, cycle)
                    up_bytes += sum(p.nbytes for p in sent)
                    n_up += len(sent)
                    up_max = max([up_max, *(p.nbytes for p in sent)])
                    strategy.aggregate(k, step.stage, deliver(sent))
                else:
                    raise ValueError(f"unknown step {step!r}")
            wall["connected"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            _train_disconnected(strategy, [j for j in range(K) if j != k], cycle)
            wall["disconnected"] += time.perf_counter() - t0
            if on_progress is not None:
                last = (
                    result.cycles[-1].accuracy_global if result.cycles else result.initial_accuracy
                )
                on_progress(cycle, slot + 1, K, last)
        t0 = time.perf_counter()
        for _ in range(idle_slots):  # Remark 4: nobody connected, disconnected plans run
            _train_disconnected(strategy, range(K), cycle)
        wall["disconnected"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        acc_g = strategy.evaluate(global_test)
        if on_progress is not None:
            on_progress(cycle, K, K, acc_g)  # the cycle's own accuracy, once evaluated
        acc_l = [strategy.evaluate(c.test) for c in strategy.clusters]
        wall["eval"] = time.perf_counter() - t0
        m = CycleMetrics(
            cycle,
            acc_g,
            acc_l,
            up_bytes,
            n_up,
            peak_memory_bytes(dev),
            strategy.device_model_bytes,
            {k: round(v, 3) for k, v in wall.items()},
            cycle * (K + idle_slots) * float(slot_s),
            up_max,
        )
        log.info(
            "%s cycle %d: global %.3f local %s uplink %d B",
            strategy.name,
            cycle,
            acc_g,
            [round(a, 3) for a in acc_l],
            up_bytes,
        )
        result.cycles.append(m)
    return result


def run_learning(
    algorithm: str,
    cycles: int,
    config: FLConfig | None = None,
    model_path: str | None = None,
    cache: str | None = None,
    data_path: str | None = None,
    data_kind: str = "auto",
    on_progress: Any = None,
    idle_slots: int = 0,
    slot_s: float = 120.0,
) -> RunResult:
    """Build (or load) the model and the embedded non-IID data, then :func:`run_timeline`.

    First fixes this process's torch threads (``config.threads``), deterministic kernels and
    seeds (:func:`~testbed.fl.determinism.configure_determinism`).

    Parameters
    ----------
    algorithm
        ``emsfl``, ``emsfl-enhanced`` or ``baseline``.
    cycles
        Orbital cycles to run.
    config
        Hyper-parameters (default :class:`~testbed.fl.config.FLConfig`).
    model_path
        Local MoE checkpoint; default: the embedded model for ``config.seed``.
    cache
        Cache root for the embedded model.
    data_path, data_kind
        The user's own JSONL data set (:mod:`testbed.fl.user_data`; clusters ``c0`` … by
        index) instead of the embedded one.
    """
    from testbed.fl.determinism import configure_determinism
    from testbed.fl.model import build_default_model, load_model

    config = config or FLConfig()
    configure_determinism(config.threads, config.seed)
    if model_path:
        model, tok = load_model(model_path)
    else:
        model, tok = build_default_model(config.seed, cache)
    ids = [f"c{k}" for k in range(config.clusters)]
    clusters, global_test = cluster_data(config, ids, tok, data_path or None, data_kind)
    strategy = make_strategy(algorithm, model, tok, clusters, config, cycles)
    result = run_timeline(
        strategy,
        cycles,
        global_test,
        config.target_accuracy,
        on_progress=on_progress,
        idle_slots=idle_slots,
        slot_s=slot_s,
    )
    result.xi = heterogeneity_xi(clusters)
    result.major_fraction = config.major_fraction if not data_path else None
    return result


def with_overrides(config: FLConfig, **kw) -> FLConfig:
    """``config`` with the non-``None`` keyword values replaced."""
    return replace(config, **{k: v for k, v in kw.items() if v is not None})
