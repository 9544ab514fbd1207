"""Defaults of the federated runs, in one place (the CLI reads them from here)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALGORITHMS", "LOSSES", "MAX_THREADS", "RELEVANCE_MODES", "FLConfig"]

#: CLI names of the implemented algorithms.
ALGORITHMS = ("emsfl", "emsfl-enhanced", "baseline")

#: Eq. 29 variants: how often the router selects an expert (the paper), or its mean probability.
RELEVANCE_MODES = ("frequency", "soft")

#: Local training losses: CE over the options' scores (the paper) or LM loss on the answer.
LOSSES = ("options", "lm")

#: Largest accepted torch thread count (``testbed learn --threads``, ``model.threads``).
MAX_THREADS = 256


@dataclass(frozen=True)
class FLConfig:
    """Hyper-parameters of a federated run on the ideal-link timeline.

    Attributes
    ----------
    clusters
        Number of ground clusters :math:`K`; one is connected per slot, :math:`K` slots per
        orbital cycle, so each cluster trains :math:`T = K` local rounds per cycle in EMS-FL.
    devices_per_cluster
        Devices aggregated by the satellite within a cluster (eq. 35/36/28).
    examples_per_device, test_per_cluster
        Shard sizes [questions].
    local_steps, batch_size, lr
        One local round = ``local_steps`` Adam steps of ``batch_size`` at learning rate ``lr``.
    loss
        Local training loss: ``"options"`` — cross-entropy over the options' length-normalised
        log-likelihoods (the paper's Exp. 1); ``"lm"`` — causal-LM loss on the gold answer.
    lora_rank, lora_alpha
        LoRA rank :math:`r` and scaling numerator.
    tau
        Relevance truncation threshold :math:`\\tau` (eq. 32), absolute; ``None`` (default)
        takes it relative to the uniform share, :math:`\\tau = \\tau_{rel} / E`.
    tau_relative
        :math:`\\tau_{rel}`: the threshold as a multiple of :math:`1/E` (0.4: an expert is a
        candidate for a cluster that routes to it at least 0.4 times as often as uniform
        routing would; τ = 0.1 with the embedded model's 4 experts). Remark 2 of the paper
        calls the rarely activated experts those "below :math:`1/E` each".
    relevance
        Eq. 29: ``"frequency"`` (how often the router selects the expert, the paper's
        definition) or ``"soft"`` (mean router probability; the default while the embedded
        model routes Top-2, where the frequency of second picks flattens the rows —
        docs/learning.md).
    split_period
        Algo 1 is re-run every ``split_period`` cycles.
    masked_share
        Enhanced EMS-FL: share of the run's cycles spent in masked-gate expert training
        before the gate is tuned by standard EMS-FL rounds (the paper: masked "after the
        experts are well-trained through sufficient orbital rounds, the gate can be tuned …
        for a few rounds"): :math:`n_m = \\min(N - 1, \\max(1, \\mathrm{round}(s N)))` of
        :math:`N` cycles (3 → 2, 5 → 4, 8 → 6, 30 → 24).
    masked_cycles
        An explicit count of masked cycles instead of ``masked_share`` (``None``: the share).
    target_accuracy
        Global held-out accuracy that defines ``cycles_to_target``.
    major_fraction
        Share of a cluster's data from its own (major) domain; the rest is spread uniformly
        over the other domains (1 = each cluster holds only its domain; 1/D ≈ IID).
    seed
        The one seed of data, model build, LoRA init and assignment.
    threads
        torch intra-op threads of the process that trains or evaluates (1…256); set with the
        seeds and deterministic algorithms by :func:`testbed.fl.determinism.configure_determinism`.
        The embedded model's results on CPU were measured the same on 1, 2, 4 and 8 threads
        (docs/learning.md, *Determinism*).
    """

    clusters: int = 3
    devices_per_cluster: int = 2
    examples_per_device: int = 96
    test_per_cluster: int = 64
    local_steps: int = 4
    batch_size: int = 16
    lr: float = 5e-3
    loss: str = "options"
    lora_rank: int = 4
    lora_alpha: float = 8.0
    tau: float | None = None
    tau_relative: float = 0.4
    relevance: str = "soft"
    split_period: int = 2
    masked_share: float = 0.8
    masked_cycles: int | None = None
    target_accuracy: float = 0.8
    major_fraction: float = 0.85
    seed: int = 0
    threads: int = 1

    def masked_cycle_count(self, total_cycles: int | None) -> int:
        """Cycles of masked-gate training in a run of ``total_cycles`` (``None``: unknown,
        then 2, the count before the share existed)."""
        if self.masked_cycles is not None:
            return int(self.masked_cycles)
        if total_cycles is None:
            return 2
        n = int(total_cycles)
        return min(max(n - 1, 0), max(1, round(self.masked_share * n)))

    def threshold(self, num_experts: int) -> float:
        """The truncation threshold τ of eq. 32 for ``num_experts`` experts per layer."""
        if self.tau is not None:
            return float(self.tau)
        return float(self.tau_relative) / max(int(num_experts), 1)
