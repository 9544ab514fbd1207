"""Synchronous baseline (paper III-A): only the connected cluster trains, FedAvg (eq. 28)."""

from __future__ import annotations

from testbed.fl.strategy import Step, Strategy

__all__ = ["SyncFedAvg"]


class SyncFedAvg(Strategy):
    """Synchronous FedAvg over the connected cluster's devices.

    At each connection the satellite sends the global LoRA, the connected cluster's devices
    train one local round on every LoRA factor (experts and router), upload the full LoRA
    payload, and the satellite averages (eq. 28)

    .. math::

        w^{t+1} = \\frac{\\sum_{i \\in \\mathcal{D}_k} n_i \\, w_i^{t}}
                       {\\sum_{i \\in \\mathcal{D}_k} n_i}

    over the devices :math:`\\mathcal{D}_k` whose upload arrived. Disconnected clusters idle.
    """

    name = "baseline"

    def connected_plan(self, cluster: int, cycle: int) -> list[Step]:
        return [Step("download", "global"), Step("train", "full"), Step("upload", "full")]
