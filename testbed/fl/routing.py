"""Router utilities: masked gate (enhanced EMS-FL), routing statistics, expert slicing.

Masked gate (Algo 3): unassigned experts get logit :math:`-\\infty`, hence

.. math::

    G(x)_e = \\frac{\\exp(g_e(x)) \\, [e \\in \\mathcal{E}_k]}
                    {\\sum_{j \\in \\mathcal{E}_k} \\exp(g_j(x))}

exactly zero routing weight and exactly zero gradient for :math:`e \\notin \\mathcal{E}_k`. (The
paper sets the unassigned gate outputs "to zero"; a zero *logit* still has softmax weight
:math:`e^0 / \\sum` > 0, so those experts would still be routed to.) Holding only the experts
of :math:`\\mathcal{E}_k` with the router rows sliced is the same function (softmax over a subset
equals the masked softmax), which is how the enhanced variant keeps only assigned experts in
memory.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from testbed.fl.config import RELEVANCE_MODES
from testbed.fl.padded_gemm import use_padded_gemms

__all__ = [
    "RELEVANCE_MODES",
    "base_state_dict",
    "num_experts",
    "routers",
    "routing_statistics",
    "set_router_mask",
    "slice_experts",
]


def routers(model: nn.Module) -> list[nn.Module]:
    """The top-k router module of every MoE layer (unwrapped from peft), in layer order."""
    out = []
    for name, mod in model.named_modules():
        if name.endswith("mlp.gate") or name.endswith("mlp.gate.base_layer"):
            base = mod.get_base_layer() if hasattr(mod, "get_base_layer") else mod
            if hasattr(base, "top_k") and hasattr(base, "weight") and base not in out:
                out.append(base)
    return out


def num_experts(config) -> int:
    """Routed experts per layer of a transformers MoE config (Mixtral/OLMoE or Qwen-MoE naming)."""
    n = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    if not n:
        raise ValueError(f"{type(config).__name__} has no num_local_experts/num_experts")
    return int(n)


def _masked_forward(self: nn.Module, hidden_states: torch.Tensor):
    hidden_states = hidden_states.reshape(-1, self.hidden_dim)
    logits = functional.linear(hidden_states, self.weight) + self.logit_mask.to(hidden_states.dtype)
    probs = torch.softmax(logits.float(), dim=-1)
    top_value, top_index = torch.topk(probs, self.top_k, dim=-1)
    if getattr(self, "norm_topk_prob", True):  # Mixtral always renormalises
        top_value = top_value / top_value.sum(dim=-1, keepdim=True)
    return logits, top_value, top_index


def set_router_mask(model: nn.Module, allowed: Sequence[int] | None) -> None:
    """Mask every router so that only experts in ``allowed`` can be routed to.

    ``allowed=None`` removes the mask. The logit of a masked expert is :math:`-\\infty`, so its
    softmax weight and its gradient are exactly zero.
    """
    for r in routers(model):
        if allowed is None:
            r.__dict__.pop("forward", None)
            if hasattr(r, "logit_mask"):
                del r.logit_mask
            continue
        if not allowed:
            raise ValueError("a masked router needs at least one allowed expert")
        mask = torch.full((r.num_experts,), float("-inf"), device=r.weight.device)
        mask[list(allowed)] = 0.0
        r.logit_mask = mask
        r.forward = types.MethodType(_masked_forward, r)


@torch.no_grad()
def routing_statistics(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    mode: str = "soft",
) -> torch.Tensor:
    """Expert relevance probability of a cluster's trial set (eq. 29), in eval mode.

    ``"frequency"`` (the paper's definition: the probability that the gate routes to expert
    :math:`e` at any MoE layer) counts the Top-K selections,

    .. math::

        p_{k,e} = \\frac{1}{K_{top} \\, L \\, N_k} \\sum_{l=1}^{L} \\sum_{n=1}^{N_k}
                  [\\, e \\in \\mathrm{TopK}(g_l(h_{l,n})) \\,],

    over the :math:`N_k` non-padding tokens and the :math:`L` MoE layers (with Top-1 this is
    the share of token-layer routings that pick :math:`e`); ``"soft"`` averages the router
    probabilities instead, :math:`\\frac{1}{L N_k}\\sum_l\\sum_n \\mathrm{softmax}(g_l(h_{l,n}))_e`.

    Parameters
    ----------
    batches
        ``(input_ids, attention_mask)`` pairs, each ``(batch, seq)``.
    mode
        One of :data:`RELEVANCE_MODES`.

    Returns
    -------
    torch.Tensor
        ``(E,)`` probabilities summing to 1.
    """
    if mode not in RELEVANCE_MODES:
        raise ValueError(f"relevance must be one of {RELEVANCE_MODES}, got {mode!r}")
    was_training = model.training
    model.eval()
    rs = routers(model)
    captured: list[tuple[int, torch.Tensor]] = []
    hooks = [
        r.register_forward_hook(lambda m, _i, out: captured.append((int(m.top_k), out[0])))
        for r in rs
    ]
    total = None
    count = 0
    try:
        for ids, mask in batches:
            captured.clear()
            model(input_ids=ids, attention_mask=mask)
            keep = mask.reshape(-1).bool()
            for top_k, logits in captured:
                probs = torch.softmax(logits.float(), dim=-1)[keep]
                if mode == "soft":
                    p = probs.sum(0)
                else:
                    k = min(top_k, probs.shape[-1])
                    picks = torch.topk(probs, k, dim=-1).indices.reshape(-1)
                    p = torch.bincount(picks, minlength=probs.shape[-1]).float() / k
                total = p if total is None else total + p
            count += int(keep.sum()) * len(captured)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if total is None or count == 0:
        raise ValueError("no tokens to compute routing statistics on")
    return (total / count).cpu()


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Base-model weights of a (possibly peft-wrapped) model, LoRA factors excluded."""
    inner = model
    if hasattr(model, "get_base_model"):
        inner = model.get_base_model()
    out = {}
    for k, v in inner.state_dict().items():
        if "lora_" in k:
            continue
        out[k.replace(".base_layer", "")] = v
    return out


def slice_experts(base: dict[str, torch.Tensor], config, expert_ids: Sequence[int]) -> nn.Module:
    """A Mixtral-style model holding only the experts ``expert_ids`` (in that order).

    Router rows and expert stacks are gathered at ``expert_ids``; local slot ``i`` is global
    expert ``expert_ids[i]``. ``top_k`` becomes ``min(top_k, len(expert_ids))``.
    """
    from transformers import AutoModelForCausalLM

    ids = list(expert_ids)
    if not ids:
        raise ValueError("cannot slice a model to zero experts")
    cfg = config.__class__.from_dict(config.to_dict())
    for attr in ("num_local_experts", "num_experts"):  # Mixtral/OLMoE, Qwen-MoE
        if hasattr(config, attr):
            setattr(cfg, attr, len(ids))
    cfg.num_experts_per_tok = min(config.num_experts_per_tok, len(ids))
    sd = {}
    index = torch.tensor(ids)
    for k, v in base.items():
        if (
            k.endswith("mlp.gate.weight")
            or k.endswith("experts.gate_up_proj")
            or k.endswith("experts.down_proj")
        ):
            v = v.index_select(0, index.to(v.device))
        sd[k] = v
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(cfg)
    model.load_state_dict(sd)
    use_padded_gemms(model)
    return model.to(next(iter(base.values())).device)
