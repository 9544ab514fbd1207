"""LoRA on fused MoE expert tensors and the router (peft ``target_parameters``), per-expert slicing.

Layout of peft's 3-D parameter wrapper (``peft.tuners.lora.layer.ParamWrapper``, checked against
peft 0.21.2 ``get_delta_weight``): for a fused expert stack with ``E`` experts and rank ``r``,
``lora_A.weight`` has shape ``(r·E, in)`` and is read as ``(E, r, in)``; ``lora_B.weight`` has
shape ``(out, r·E)`` and is read as ``(out, r, E)``. Expert ``e`` therefore owns rows
``e·r:(e+1)·r`` of A and columns ``e::E`` of B, and

.. math::

    \\Delta W_e = s \\, B_{[:, e::E]} \\, A_{[e r:(e+1) r, :]}

with ``s = alpha / r``. The router (a 2-D ``weight`` of shape ``(E, hidden)``) gets an ordinary
LoRA pair ``A (r, hidden)``, ``B (E, r)``; row ``e`` of B belongs to expert ``e``'s logit.

Canonical state keys (global expert ids, independent of how many experts a model holds)::

    layers.{l}.experts.{e}.{gate_up_proj|down_proj}.lora_A   (r, in)
    layers.{l}.experts.{e}.{gate_up_proj|down_proj}.lora_B   (out, r)
    layers.{l}.gate.lora_A                                    (r, hidden)
    layers.{l}.gate.lora_B                                    (E, r)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = [
    "EXPERT_PARAMS",
    "attach_lora",
    "expert_key",
    "expert_of_key",
    "gate_keys",
    "get_lora_state",
    "join_expert_factors",
    "lora_wrappers",
    "mask_frozen_expert_grads",
    "set_lora_state",
    "set_trainable",
    "split_expert_factors",
]

EXPERT_PARAMS = ("gate_up_proj", "down_proj")
_ADAPTER = "default"
_NAME = re.compile(r"layers\.(\d+)\.mlp\.(gate|experts)(?:\.base_layer)*$")
_EXPERT_KEY = re.compile(r"^layers\.(\d+)\.experts\.(\d+)\.")


def attach_lora(model: nn.Module, rank: int = 4, alpha: float = 8.0, seed: int = 0) -> nn.Module:
    """Wrap a Mixtral-style model with LoRA on the fused experts and the router.

    Parameters
    ----------
    model
        A transformers MoE model with ``mlp.gate.weight`` and ``mlp.experts.{gate_up_proj,
        down_proj}`` in every decoder layer.
    rank, alpha
        LoRA rank ``r`` and scaling numerator (scaling ``alpha / r``).
    seed
        Seed of the LoRA A initialisation (B starts at zero, so the wrapped model is unchanged).
    """
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=[],
        target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj", "mlp.gate.weight"],
        lora_dropout=0.0,
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers deprecation inside peft
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, cfg)
    return peft_model


def lora_wrappers(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """``(layer, param, wrapper)`` for every LoRA parameter wrapper; ``param`` is
    ``"gate"`` for the router or one of :data:`EXPERT_PARAMS`."""
    from peft.tuners.lora.layer import ParamWrapper

    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, ParamWrapper):
            continue
        m = _NAME.search(name)
        if m is None:
            raise ValueError(f"unexpected LoRA wrapper {name!r}")
        layer = int(m.group(1))
        param = "gate" if m.group(2) == "gate" else mod.parameter_name
        out.append((layer, param, mod))
    out.sort(key=lambda t: (t[0], t[1]))
    return out


def expert_key(layer: int, expert: int, param: str, factor: str) -> str:
    """Canonical key of one expert's LoRA factor (``factor`` is ``"lora_A"`` or ``"lora_B"``)."""
    return f"layers.{layer}.experts.{expert}.{param}.{factor}"


def gate_keys(layer: int) -> tuple[str, str]:
    """Canonical keys of the router LoRA pair of one layer."""
    return f"layers.{layer}.gate.lora_A", f"layers.{layer}.gate.lora_B"


def expert_of_key(key: str) -> int | None:
    """Global expert id of a canonical key, ``None`` for router keys."""
    m = _EXPERT_KEY.match(key)
    return int(m.group(2)) if m else None


def split_expert_factors(
    A: torch.Tensor, B: torch.Tensor, num_experts: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Slice fused LoRA factors into per-expert pairs (exact, no arithmetic).

    Parameters
    ----------
    A
        ``lora_A.weight``, shape ``(r·E, in)``.
    B
        ``lora_B.weight``, shape ``(out, r·E)``.
    num_experts
        ``E``.

    Returns
    -------
    list of (A_e, B_e)
        ``A_e = A[e·r:(e+1)·r]`` with shape ``(r, in)``, ``B_e = B[:, e::E]`` with shape
        ``(out, r)``.
    """
    r = A.shape[0] // num_experts
    if r * num_experts != A.shape[0] or B.shape[1] != A.shape[0]:
        raise ValueError(
            f"factor shapes {tuple(A.shape)}, {tuple(B.shape)} do not fit E={num_experts}"
        )
    return [
        (A[e * r : (e + 1) * r].clone(), B[:, e::num_experts].clone()) for e in range(num_experts)
    ]


def join_expert_factors(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`split_expert_factors`."""
    E = len(pairs)
    r, n_in = pairs[0][0].shape
    n_out = pairs[0][1].shape[0]
    A = pairs[0][0].new_empty(r * E, n_in)
    B = pairs[0][1].new_empty(n_out, r * E)
    for e, (a, b) in enumerate(pairs):
        A[e * r : (e + 1) * r] = a
        B[:, e::E] = b
    return A, B


def _factors(wrapper: nn.Module) -> tuple[nn.Parameter, nn.Parameter]:
    return wrapper.lora_A[_ADAPTER].weight, wrapper.lora_B[_ADAPTER].weight


def get_lora_state(
    model: nn.Module,
    expert_ids: Sequence[int] | None = None,
    *,
    experts: Iterable[int] | None = None,
    gate: bool = True,
) -> dict[str, torch.Tensor]:
    """Canonical LoRA state of ``model`` (detached CPU copies).

    Parameters
    ----------
    expert_ids
        Global id of each local expert slot (``None``: identity). A model holding only some
        experts (enhanced EMS-FL) passes the global ids of the experts it holds.
    experts
        Global ids to export (``None``: all the model holds).
    gate
        Also export the router LoRA; only possible for a model holding every expert.
    """
    out: dict[str, torch.Tensor] = {}
    wanted = None if experts is None else set(experts)
    for layer, param, w in lora_wrappers(model):
        A, B = _factors(w)
        if param == "gate":
            if not gate:
                continue
            if expert_ids is not None and list(expert_ids) != list(range(B.shape[0])):
                raise ValueError(
                    "the router LoRA of a model holding a subset of experts is partial"
                )
            ka, kb = gate_keys(layer)
            out[ka], out[kb] = A.detach().cpu().clone(), B.detach().cpu().clone()
            continue
        ids = list(range(w.num_experts)) if expert_ids is None else list(expert_ids)
        for local, (a, b) in enumerate(split_expert_factors(A.detach(), B.detach(), w.num_experts)):
            g = ids[local]
            if wanted is None or g in wanted:
                out[expert_key(layer, g, param, "lora_A")] = a.cpu()
                out[expert_key(layer, g, param, "lora_B")] = b.cpu()
    return out


@torch.no_grad()
def set_lora_state(
    model: nn.Module, state: dict[str, torch.Tensor], expert_ids: Sequence[int] | None = None
) -> None:
    """Write the canonical keys present in ``state`` into ``model`` (others untouched).

    For a model holding a subset of experts, router B rows are gathered at ``expert_ids``
    (the router of such a model has one logit per held expert).
    """
    for layer, param, w in lora_wrappers(model):
        A, B = _factors(w)
        if param == "gate":
            ka, kb = gate_keys(layer)
            if ka in state:
                A.copy_(state[ka])
            if kb in state:
                b = state[kb]
                if expert_ids is not None:
                    b = b[list(expert_ids)]
                B.copy_(b)
            continue
        E = w.num_experts
        r = A.shape[0] // E
        ids = list(range(E)) if expert_ids is None else list(expert_ids)
        for local, g in enumerate(ids):
            ka = expert_key(layer, g, param, "lora_A")
            kb = expert_key(layer, g, param, "lora_B")
            if ka in state:
                A[local * r : (local + 1) * r] = state[ka]
            if kb in state:
                B[:, local::E] = state[kb]


def set_trainable(model: nn.Module, experts: bool, gate: bool) -> list[nn.Parameter]:
    """Freeze everything except the chosen LoRA factors; return the trainable parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for _layer, param, w in lora_wrappers(model):
        if (param == "gate" and gate) or (param != "gate" and experts):
            for p in _factors(w):
                p.requires_grad_(True)
                params.append(p)
    return params


@torch.no_grad()
def mask_frozen_expert_grads(model: nn.Module, trainable_local: Sequence[int]) -> None:
    """Zero the gradient slices of experts not in ``trainable_local`` (local slot indices).

    Used when a model holds every expert but a cluster trains only its assigned ones
    (standard EMS-FL); with a fresh Adam the frozen slices then stay bit-identical.
    """
    keep = set(trainable_local)
    for _layer, param, w in lora_wrappers(model):
        if param == "gate":
            continue
        A, B = _factors(w)
        E = w.num_experts
        r = A.shape[0] // E
        for e in range(E):
            if e in keep:
                continue
            if A.grad is not None:
                A.grad[e * r : (e + 1) * r] = 0
            if B.grad is not None:
                B.grad[:, e::E] = 0
