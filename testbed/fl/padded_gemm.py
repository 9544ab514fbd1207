"""Thread-count-invariant GEMMs on CPU: padded expert row groups and a padded LM head.

On CPU, torch's float32 GEMMs are MKL ``SGEMM`` calls, and for some shapes MKL sums the
contraction in a different order depending on how many threads run the call, so training
results depended on the torch thread count (measured on the development machine, oneMKL
2024.2; docs/learning.md, *Determinism*). Two shapes of the MoE models hit this:

* **expert row groups.** transformers 5 runs a Mixtral-style MoE block as one ``grouped_mm``
  per projection: the token–expert pairs are sorted by expert and expert :math:`e`
  multiplies its :math:`M_e` rows (one per token routed to it) with its weight. MKL computes
  the rows after the last full block of 4 of an ``SGEMM`` with
  :math:`M \\in \\{5, 6, 7, 9, 10, 11\\}` rows differently on 1 and 2 threads; :math:`M_e`
  depends on the routing, so such groups occur in most training steps.
  :func:`padded_grouped_mm_experts_forward` pads every group with zero rows to a multiple of
  :data:`ROW_MULTIPLE` rows and drops the padded rows before the routing weights are applied.
* **the LM head.** With 4 or more threads MKL splits an ``SGEMM`` with 71 (or 72) output
  columns, the embedded model's vocabulary, differently than with 1–3.
  :class:`OutputPaddedLinear` multiplies with the weight padded by zero rows to a multiple of
  :data:`OUT_MULTIPLE` outputs and drops the padded columns (no copy when already a
  multiple, e.g. a 32000-token vocabulary).

Both compute the same function as before (padded rows and columns contribute exact zeros and
are dropped); only the GEMM shapes change. :func:`use_padded_gemms` switches a model to both;
every loader of :mod:`testbed.fl` calls it. The experts forward is registered with
transformers as ``experts_implementation = "satfl_padded"``; on other devices, and for expert
layouts it does not cover (bias, transposed weights, post-expert norm, expert parallelism),
it calls transformers' own ``grouped_mm`` forward.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = [
    "EXPERTS_IMPLEMENTATION",
    "OUT_MULTIPLE",
    "ROW_MULTIPLE",
    "OutputPaddedLinear",
    "padded_grouped_mm_experts_forward",
    "use_padded_gemms",
]

log = logging.getLogger(__name__)

#: Name under which the padded forward is registered in transformers' ``ExpertsInterface``.
EXPERTS_IMPLEMENTATION = "satfl_padded"
#: Each expert's row group is padded with zero rows to a multiple of this [rows].
ROW_MULTIPLE = 16
#: The LM head's weight is padded with zero rows to a multiple of this [output features].
OUT_MULTIPLE = 16


def _stock_forward():
    from transformers.integrations.moe import grouped_mm_experts_forward

    return grouped_mm_experts_forward


def padded_grouped_mm_experts_forward(
    self: nn.Module,
    hidden_states: torch.Tensor,
    top_k_index: torch.Tensor,
    top_k_weights: torch.Tensor,
) -> torch.Tensor:
    """Experts forward of a fused ``gate_up_proj``/``down_proj`` MoE block with padded groups.

    Parameters
    ----------
    self
        The experts module (``gate_up_proj (E, 2I, H)``, ``down_proj (E, H, I)``,
        ``_apply_gate``).
    hidden_states
        Router input, shape ``(T, H)`` [T tokens].
    top_k_index, top_k_weights
        Routed experts and their routing weights, shape ``(T, k)``.

    Returns
    -------
    torch.Tensor
        :math:`y_t = \\sum_{j<k} w_{t,j}\\, \\mathrm{FFN}_{e_{t,j}}(x_t)`, shape ``(T, H)``.
    """
    unsupported = (
        hidden_states.device.type != "cpu"
        or getattr(self, "has_bias", False)
        or getattr(self, "is_transposed", False)
        or getattr(self, "has_post_expert_norm", False)
        or getattr(self, "_is_expert_parallel", False)
        or not getattr(self, "has_gate", True)
    )
    if unsupported:
        return _stock_forward()(self, hidden_states, top_k_index, top_k_weights)
    num_tokens, hidden_dim = hidden_states.shape
    num_top_k = top_k_index.size(-1)
    num_experts = self.num_experts
    expert_ids = top_k_index.reshape(-1)  # (S,), S = T * k token-expert pairs
    sample_weights = top_k_weights.reshape(-1)
    # A stable sort keeps the order of a group's rows independent of the sort's threading.
    expert_ids_g, perm = torch.sort(expert_ids, stable=True)
    counts = torch.bincount(expert_ids_g, minlength=num_experts)
    padded = (counts + ROW_MULTIPLE - 1) // ROW_MULTIPLE * ROW_MULTIPLE
    start = torch.cumsum(counts, 0) - counts
    start_padded = torch.cumsum(padded, 0) - padded
    rank = torch.arange(expert_ids_g.numel(), device=expert_ids_g.device) - start[expert_ids_g]
    dest = start_padded[expert_ids_g] + rank  # row of each sorted pair in the padded layout
    rows = int(padded.sum())
    selected = hidden_states[perm // num_top_k]
    x = hidden_states.new_zeros(rows, hidden_dim).index_copy(0, dest, selected)
    offs = torch.cumsum(padded, 0).to(torch.int32)
    gate_up = nn.functional.grouped_mm(x, self.gate_up_proj.transpose(-2, -1), offs=offs)
    act = self._apply_gate(gate_up)  # (rows, I); padded rows stay zero
    out = nn.functional.grouped_mm(act, self.down_proj.transpose(-2, -1), offs=offs)
    weighted = out[dest] * sample_weights[perm].unsqueeze(-1).to(out.dtype)  # (S, H), sorted
    inv_perm = torch.empty_like(perm)
    inv_perm[perm] = torch.arange(perm.numel(), device=perm.device)
    final = weighted[inv_perm].view(num_tokens, num_top_k, hidden_dim).sum(dim=1)
    return final.to(hidden_states.dtype)


class OutputPaddedLinear(nn.Linear):
    """``nn.Linear`` whose GEMM runs on the weight padded to :data:`OUT_MULTIPLE` outputs.

    .. math:: y = \\left(x \\, [W; 0]^\\top + [b; 0]\\right)_{:, :N}

    Same parameters and state-dict keys as ``nn.Linear``; set by :func:`use_padded_gemms`
    on a model's output embeddings.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        n = self.out_features
        pad = -n % OUT_MULTIPLE
        if pad == 0:
            return super().forward(input)
        weight = torch.cat([self.weight, self.weight.new_zeros(pad, self.in_features)])
        bias = None if self.bias is None else torch.cat([self.bias, self.bias.new_zeros(pad)])
        return nn.functional.linear(input, weight, bias)[..., :n]


def _register() -> None:
    from transformers.integrations.moe import ExpertsInterface

    ExpertsInterface.register(EXPERTS_IMPLEMENTATION, padded_grouped_mm_experts_forward)


def use_padded_gemms(model: nn.Module) -> nn.Module:
    """Switch a transformers MoE model to the padded expert GEMMs and LM head, in place.

    The experts forward becomes :func:`padded_grouped_mm_experts_forward` where the model
    class can switch experts implementations; an output embedding that is a plain
    ``nn.Linear`` becomes an :class:`OutputPaddedLinear` (same parameters). Anything else is
    left as it is, with a debug message. Returns ``model``.
    """
    _register()
    if getattr(model, "_can_set_experts_implementation", lambda: False)():
        model.set_experts_implementation(EXPERTS_IMPLEMENTATION)
    else:
        log.debug("%s: experts implementation left as is", type(model).__name__)
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    if type(head) is nn.Linear:
        head.__class__ = OutputPaddedLinear
    elif head is not None and not isinstance(head, OutputPaddedLinear):
        log.debug("%s: output embedding %s left as is", type(model).__name__, type(head).__name__)
    return model
