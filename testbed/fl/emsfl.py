"""Standard EMS-FL (paper Algo 2) with expert-driven splitting (Algo 1)."""

from __future__ import annotations

from testbed.fl.strategy import Step, Strategy

__all__ = ["EMSFL"]


class EMSFL(Strategy):
    """Standard EMS-FL.

    Every ``split_period`` cycles the experts are re-assigned (Algo 1, eq. 29–34). With
    :math:`\\mathcal{E}_k` the experts of cluster :math:`k` and :math:`\\mathcal{D}_k` its devices:

    *Connected phase* of cluster :math:`k`:

    1. upload the assigned experts; expert-wise aggregation (eq. 35)

       .. math:: \\theta_e \\leftarrow \\frac{\\sum_{i \\in \\mathcal{D}_k} n_i \\theta_{i,e}}
                                           {\\sum_{i \\in \\mathcal{D}_k} n_i},
       \\quad e \\in \\mathcal{E}_k

       (experts of other clusters are untouched: the per-key weights of
       :func:`~testbed.fl.payload.weighted_average`);
    2. download the global model;
    3. one local round on :math:`\\mathcal{E}_k` and the gate;
    4. upload the gate; aggregation (eq. 36)
       :math:`\\phi \\leftarrow \\sum_i n_i \\phi_i / \\sum_i n_i`; download the gate.

    *Disconnected phase*: :math:`T-1` local rounds (one per slot of another cluster, so
    :math:`T = K`) on :math:`\\mathcal{E}_k` only, gate frozen.
    """

    name = "emsfl"

    def configure_cycle(self, cycle: int) -> None:
        if (cycle - 1) % max(1, self.config.split_period) == 0:
            self.split()

    def connected_plan(self, cluster: int, cycle: int) -> list[Step]:
        return [
            Step("upload", "experts"),
            Step("download", "global"),
            Step("train", "experts+gate"),
            Step("upload", "gate"),
            Step("download", "gate"),
        ]

    def disconnected_plan(self, cluster: int, cycle: int) -> list[Step]:
        return [Step("train", "experts")]
