"""Enhanced EMS-FL (paper Algo 3): masked gate, assigned experts only in memory, gate tuning."""

from __future__ import annotations

from testbed.fl.emsfl import EMSFL
from testbed.fl.strategy import Step

__all__ = ["EnhancedEMSFL"]


class EnhancedEMSFL(EMSFL):
    """Enhanced EMS-FL.

    For the first ``config.masked_share`` of the run's cycles (or ``config.masked_cycles``)
    every cluster holds only its assigned experts
    :math:`\\mathcal{E}_k` (expert stacks and router rows sliced, local slot :math:`i` ↔ global
    expert :math:`\\mathcal{E}_k[i]`), which is the masked gate

    .. math:: \\tilde g_e(x) = g_e(x) \\text{ if } e \\in \\mathcal{E}_k \\text{ else } -\\infty,

    so unassigned experts get exactly zero routing weight and gradient. The router is frozen;
    connected phases upload the assigned experts (eq. 35) and download them back. Afterwards
    the gate is tuned by standard EMS-FL rounds (:class:`~testbed.fl.emsfl.EMSFL`).
    """

    name = "emsfl-enhanced"

    def masked(self, cycle: int) -> bool:
        """Whether ``cycle`` is in the masked expert-training stage (the first
        :meth:`~testbed.fl.config.FLConfig.masked_cycle_count` cycles of the run)."""
        return cycle <= self.config.masked_cycle_count(self.total_cycles)

    def connected_plan(self, cluster: int, cycle: int) -> list[Step]:
        if not self.masked(cycle):
            return super().connected_plan(cluster, cycle)
        return [
            Step("upload", "experts"),
            Step("download", "assigned"),
            Step("train", "experts-masked"),
        ]

    def disconnected_plan(self, cluster: int, cycle: int) -> list[Step]:
        if not self.masked(cycle):
            return super().disconnected_plan(cluster, cycle)
        return [Step("train", "experts-masked")]

    def _download_keys(self, cluster: int, stage: str) -> list[str]:
        if stage == "assigned":
            return self._expert_keys(self.assignment[cluster]) + self._gate_keys()
        return super()._download_keys(cluster, stage)
