"""The one interface the timeline drives, and the state every algorithm shares.

A connected phase is a list of :class:`Step` objects that the runner (the ideal-link
:mod:`~testbed.fl.timeline` here, the emulated link in the orchestration) executes in order:

* ``Step("download", stage)``: satellite :meth:`Strategy.download` → cluster
  :meth:`Strategy.receive`;
* ``Step("train", mode)``: cluster :meth:`Strategy.train` (one local round on every device);
* ``Step("upload", stage)``: cluster :meth:`Strategy.upload` (one :class:`Payload` per device) →
  link → satellite :meth:`Strategy.aggregate` with *whichever payloads arrived*.

A disconnected cluster runs :meth:`Strategy.disconnected_plan` (``train`` steps only) per slot.
One object holds both the satellite's state (``global_state``) and each device's state, so the
same object runs the whole federation in one process; across processes each side only calls its
own methods.

Train modes: ``"full"`` (all LoRA), ``"experts+gate"`` (assigned experts and router),
``"experts"`` (assigned experts, router frozen), ``"experts-masked"`` (only the assigned experts
held in memory, masked router frozen; enhanced EMS-FL).
"""

from __future__ import annotations

import logging
import resource
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from testbed.fl.config import FLConfig
from testbed.fl.data import ClusterData, MCQExample
from testbed.fl.determinism import round_seed
from testbed.fl.lora import (
    attach_lora,
    expert_of_key,
    get_lora_state,
    mask_frozen_expert_grads,
    set_lora_state,
    set_trainable,
)
from testbed.fl.payload import Payload, weighted_average
from testbed.fl.routing import (
    base_state_dict,
    num_experts,
    routing_statistics,
    set_router_mask,
    slice_experts,
)
from testbed.fl.splitting import assign_experts
from testbed.fl.tokenizer import TextTokenizer
from testbed.fl.train import mcq_accuracy, train_steps, trial_batches

__all__ = ["Step", "Strategy", "peak_memory_bytes"]

log = logging.getLogger(__name__)

TRAIN_MODES = ("full", "experts+gate", "experts", "experts-masked")


@dataclass(frozen=True)
class Step:
    """One action of a phase: ``kind`` is ``"download"``, ``"train"`` or ``"upload"``."""

    kind: str
    stage: str


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA max allocated on GPU, else the process peak RSS [bytes]."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _model_bytes(model: nn.Module, params: Sequence[nn.Parameter]) -> int:
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    # gradient + two Adam moments per trainable element
    return held + 3 * sum(p.numel() * p.element_size() for p in params)


class Strategy(ABC):
    """Base of every algorithm: satellite state, device states, local training, evaluation.

    Parameters
    ----------
    model
        Base MoE (not yet LoRA-wrapped); it is wrapped in place.
    tokenizer
        Its tokenizer.
    clusters
        Per-cluster data (device shards, held-out and trial sets).
    config
        Hyper-parameters.
    """

    name = "abstract"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: TextTokenizer,
        clusters: Sequence[ClusterData],
        config: FLConfig,
    ) -> None:
        self.config = config
        self.tok = tokenizer
        self.clusters = list(clusters)
        self.device = next(model.parameters()).device
        self._config_hf = model.config
        self.model = attach_lora(model, config.lora_rank, config.lora_alpha, seed=config.seed)
        self._base = base_state_dict(self.model)
        self.num_experts = num_experts(model.config)
        #: Satellite's global LoRA, canonical keys.
        self.global_state: dict[str, torch.Tensor] = get_lora_state(self.model)
        #: ``device_states[k][d]``: LoRA state of device ``d`` of cluster ``k``.
        self.device_states = [
            [{k: v.clone() for k, v in self.global_state.items()} for _ in c.devices]
            for c in self.clusters
        ]
        self._rngs = [
            [np.random.default_rng([config.seed, 11, k, d]) for d in range(len(c.devices))]
            for k, c in enumerate(self.clusters)
        ]
        self._assign_rng = np.random.default_rng([config.seed, 23])
        #: ``_rounds[k][d]``: local rounds device ``d`` of cluster ``k`` has started.
        self._rounds = [[0 for _ in c.devices] for c in self.clusters]
        #: ``cluster -> assigned global expert ids``.
        self.assignment: dict[int, list[int]] = {
            k: list(range(self.num_experts)) for k in range(len(self.clusters))
        }
        self._sliced: dict[tuple[int, ...], nn.Module] = {}
        #: Cycles of the run, where known (the enhanced variant's masked share needs it).
        self.total_cycles: int | None = None
        self.device_model_bytes = 0

    # ----------------------------------------------------------------- schedule
    def configure_cycle(self, cycle: int) -> None:  # noqa: B027 - optional hook
        """Called at the start of every orbital cycle (1-based) before any phase."""

    @abstractmethod
    def connected_plan(self, cluster: int, cycle: int) -> list[Step]:
        """Steps of the connected phase of ``cluster``."""

    def disconnected_plan(self, cluster: int, cycle: int) -> list[Step]:
        """Steps of ``cluster`` during one slot in which another cluster is connected."""
        return []

    # ----------------------------------------------------------------- cluster side
    def train(self, cluster: int, mode: str) -> float:
        """One local round on every device of ``cluster``; mean training loss."""
        if mode not in TRAIN_MODES:
            raise ValueError(f"unknown train mode {mode!r}")
        losses = [
            self._train_device(cluster, d, mode) for d in range(len(self.device_states[cluster]))
        ]
        losses = [x for x in losses if np.isfinite(x)]
        return float(np.mean(losses)) if losses else float("nan")

    def upload(self, cluster: int, stage: str, cycle: int) -> list[Payload]:
        """One payload per device of ``cluster`` for ``stage``."""
        keys = self._upload_keys(cluster, stage)
        out = []
        for d, state in enumerate(self.device_states[cluster]):
            tensors = {k: state[k].clone() for k in keys}
            ids = tuple(sorted({e for k in keys if (e := expert_of_key(k)) is not None}))
            n = len(self.clusters[cluster].devices[d])
            out.append(Payload(tensors, cluster, d, cycle, stage, ids, n))
        return out

    def receive(self, cluster: int, payload: Payload) -> None:
        """Every device of ``cluster`` takes the downloaded tensors."""
        for state in self.device_states[cluster]:
            for k, v in payload.tensors.items():
                state[k] = v.clone()

    # ----------------------------------------------------------------- satellite side
    def aggregate(self, cluster: int, stage: str, payloads: Sequence[Payload]) -> None:
        """Per-key weighted mean of the payloads that arrived, written into ``global_state``.

        Keys the stage does not allow for ``cluster`` (e.g. an expert re-assigned since) are
        dropped. With no payload the global state is unchanged.
        """
        allowed = set(self._upload_keys(cluster, stage))
        arrived = [p for p in payloads if p.cluster == cluster and p.stage == stage]
        if not arrived:
            log.warning("cluster %d %s: no payload arrived; global state unchanged", cluster, stage)
            return
        kept = []
        for p in arrived:
            extra = set(p.tensors) - allowed
            if extra:
                log.warning(
                    "cluster %d device %d: dropping %d unexpected keys",
                    cluster,
                    p.device,
                    len(extra),
                )
            kept.append(
                Payload(
                    {k: v for k, v in p.tensors.items() if k in allowed},
                    p.cluster,
                    p.device,
                    p.cycle,
                    p.stage,
                    p.expert_ids,
                    p.num_samples,
                )
            )
        self.global_state.update(weighted_average(kept))

    def download(self, cluster: int, stage: str, cycle: int) -> Payload:
        """What the satellite sends to ``cluster`` for ``stage``."""
        keys = self._download_keys(cluster, stage)
        ids = tuple(sorted({e for k in keys if (e := expert_of_key(k)) is not None}))
        return Payload(
            {k: self.global_state[k].clone() for k in keys}, cluster, -1, cycle, stage, ids
        )

    # ----------------------------------------------------------------- key sets
    def _expert_keys(self, experts: Sequence[int]) -> list[str]:
        want = set(experts)
        return [k for k in self.global_state if expert_of_key(k) in want]

    def _gate_keys(self) -> list[str]:
        return [k for k in self.global_state if expert_of_key(k) is None]

    def _upload_keys(self, cluster: int, stage: str) -> list[str]:
        if stage == "experts":
            return self._expert_keys(self.assignment[cluster])
        if stage == "gate":
            return self._gate_keys()
        if stage == "full":
            return list(self.global_state)
        raise ValueError(f"unknown upload stage {stage!r}")

    def _download_keys(self, cluster: int, stage: str) -> list[str]:
        if stage == "gate":
            return self._gate_keys()
        return list(self.global_state)

    # ----------------------------------------------------------------- Algo 1
    def relevance(self, cluster: int) -> np.ndarray:
        """Eq. 29 on ``cluster``'s trial set with the current global model, shape ``(E,)``."""
        set_router_mask(self.model, None)
        set_lora_state(self.model, self.global_state)
        batches = trial_batches(self.tok, self.clusters[cluster].trial, self.device)
        return routing_statistics(self.model, batches, self.config.relevance).numpy()

    def split(self) -> dict[int, list[int]]:
        """Algo 1: relevance of every cluster, truncation (eq. 32), assignment (eq. 33–34)."""
        P = np.stack([self.relevance(k) for k in range(len(self.clusters))])
        tau = self.config.threshold(P.shape[1])
        if tau > float(P.max()):
            log.warning(
                "relevance threshold τ = %.3g is above every relevance (max %.3g): every "
                "expert goes to the cluster that routes to it most",
                tau,
                float(P.max()),
            )
        self.assignment = assign_experts(P, tau, self._assign_rng)
        self._sliced.clear()
        log.info("expert assignment: %s (relevance %s)", self.assignment, np.round(P, 3).tolist())
        return self.assignment

    # ----------------------------------------------------------------- local training
    def _sliced_model(self, ids: tuple[int, ...]) -> nn.Module:
        if ids not in self._sliced:
            m = slice_experts(self._base, self._config_hf, ids)
            self._sliced[ids] = attach_lora(m, self.config.lora_rank, self.config.lora_alpha)
        return self._sliced[ids]

    def _train_device(self, k: int, d: int, mode: str) -> float:
        """One local round of device ``d`` of cluster ``k``, torch's generator seeded for it.

        Batches come from the device's NumPy generator; anything drawing from torch's
        generator (dropout of a checkpoint that has it) sees :func:`round_seed` of the run
        seed and the round, on a forked generator state.
        """
        r = self._rounds[k][d]
        self._rounds[k][d] += 1
        dev = self.device
        cuda = []
        if dev.type == "cuda":
            cuda = [dev.index if dev.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(round_seed(self.config.seed, k, d, r))
            return self._train_device_round(k, d, mode)

    def _train_device_round(self, k: int, d: int, mode: str) -> float:
        c = self.config
        state = self.device_states[k][d]
        ids = list(self.assignment[k])
        data = self.clusters[k].devices[d]
        rng = self._rngs[k][d]
        if mode == "experts-masked":
            if not ids:
                return float("nan")
            m = self._sliced_model(tuple(ids))
            set_lora_state(m, state, ids)
            params = set_trainable(m, experts=True, gate=False)
            loss = train_steps(
                m, self.tok, data, params, c.local_steps, c.batch_size, c.lr, rng, loss=c.loss
            )
            state.update(get_lora_state(m, ids, gate=False))
        else:
            m = self.model
            set_router_mask(m, None)
            set_lora_state(m, state)
            full = mode == "full"
            gate = mode in ("full", "experts+gate")
            train_experts = full or bool(ids)
            if not (train_experts or gate):
                return float("nan")
            params = set_trainable(m, experts=train_experts, gate=gate)
            hook = None if full else (lambda: mask_frozen_expert_grads(m, ids))
            loss = train_steps(
                m,
                self.tok,
                data,
                params,
                c.local_steps,
                c.batch_size,
                c.lr,
                rng,
                before_step=hook,
                loss=c.loss,
            )
            state.update(get_lora_state(m, experts=None if full else ids, gate=gate))
        self.device_model_bytes = max(self.device_model_bytes, _model_bytes(m, params))
        return loss

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, examples: Sequence[MCQExample]) -> float:
        """Accuracy of the satellite's global model (unmasked router) on ``examples``."""
        set_router_mask(self.model, None)
        set_lora_state(self.model, self.global_state)
        return mcq_accuracy(self.model, self.tok, examples)
