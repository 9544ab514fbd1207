"""Base MoE models: the embedded default (paper Experiment 1 at small scale) and local checkpoints.

The default model is built as in the paper's Experiment 1: one small dense Llama-config model is
trained briefly per domain of the embedded dataset (all from the same initialisation), their
feed-forward blocks become the experts of one Mixtral-config MoE (expert ``e`` = domain ``e``;
attention, norms and embeddings are averaged over the dense models), and the router is
pre-trained for a few steps on a small shared set with everything else frozen. The result is
deterministic for a seed and cached on disk under ``$TESTBED_CACHE`` (else
``~/.cache/satfl-testbed``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from testbed.errors import UserError
from testbed.fl.data import DOMAINS, domain_examples
from testbed.fl.padded_gemm import use_padded_gemms
from testbed.fl.tokenizer import CharTokenizer, TextTokenizer, load_tokenizer
from testbed.fl.train import default_device, train_steps

__all__ = [
    "DefaultModelSpec",
    "build_default_model",
    "cache_dir",
    "load_model",
    "merge_dense_to_moe",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefaultModelSpec:
    """Size and training budget of the embedded default model (all enter the cache key).

    ``version`` changes whenever the build's numerics do (2: padded GEMMs,
    :mod:`testbed.fl.padded_gemm`), so no stale cached model is reused.
    """

    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    top_k: int = 2
    dense_steps: int = 50
    router_steps: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    router_lr: float = 1e-2
    router_scale: float = 2.0
    version: int = 2


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$TESTBED_CACHE``, else ``~/.cache/satfl-testbed``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("TESTBED_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "satfl-testbed"


def _seed_all(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _dense_config(spec: DefaultModelSpec, vocab: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )


def merge_dense_to_moe(dense: Sequence[nn.Module], top_k: int = 2) -> nn.Module:
    """Mixtral-config MoE whose expert ``e`` is the MLP of ``dense[e]`` (Experiment 1).

    Attention, norms, embeddings and LM head are the element-wise mean over the dense models
    (they share their initialisation). The fused stacks are

    .. math::

        W^{gu}_e = [W^{gate}_e ; W^{up}_e] \\in \\mathbb{R}^{2I \\times H}, \\qquad
        W^{down}_e \\in \\mathbb{R}^{H \\times I}.

    The router starts at zero (uniform routing).

    Parameters
    ----------
    dense
        Llama-architecture causal LMs (``mlp.gate_proj/up_proj/down_proj``) of identical shape,
        e.g. loaded from local dense checkpoints.
    top_k
        Experts per token.
    """
    from transformers import MixtralConfig, MixtralForCausalLM

    c = dense[0].config
    if len(dense) < top_k:
        raise ValueError(f"need at least top_k={top_k} dense models, got {len(dense)}")
    cfg = MixtralConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_word_embeddings,
        num_local_experts=len(dense),
        num_experts_per_tok=top_k,
        pad_token_id=c.pad_token_id,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        rope_parameters=getattr(c, "rope_parameters", None),
    )
    moe = MixtralForCausalLM(cfg)
    sds = [d.state_dict() for d in dense]
    new = {}
    for k, v in moe.state_dict().items():
        if k.endswith("mlp.gate.weight"):
            new[k] = torch.zeros_like(v)
        elif k.endswith("experts.gate_up_proj"):
            p = k[: -len("experts.gate_up_proj")]
            new[k] = torch.stack(
                [torch.cat([s[p + "gate_proj.weight"], s[p + "up_proj.weight"]], 0) for s in sds]
            )
        elif k.endswith("experts.down_proj"):
            p = k[: -len("experts.down_proj")]
            new[k] = torch.stack([s[p + "down_proj.weight"] for s in sds])
        else:
            new[k] = torch.stack([s[k].float() for s in sds]).mean(0).to(v.dtype)
    moe.load_state_dict(new)
    return use_padded_gemms(moe)


@torch.no_grad()
def _init_router_centroids(
    moe: nn.Module, tok: CharTokenizer, shared: Sequence[Sequence], scale: float = 2.0
) -> None:
    """Router rows from domain centroids of the router input, layer by layer.

    .. math:: w_e = s \\, \\frac{\\mu_e - \\bar\\mu}{\\lVert \\mu_e - \\bar\\mu \\rVert}

    with :math:`\\mu_e` the mean router input over the non-padding tokens of domain :math:`e`'s
    shared examples and :math:`\\bar\\mu` the mean of the :math:`\\mu_e`.
    """
    from testbed.fl.train import batch_for_lm

    moe.eval()
    for layer in moe.model.layers:
        gate = layer.mlp.gate
        means = []
        for part in shared:
            b = batch_for_lm(tok, list(part), answer_only=False)
            got: list[torch.Tensor] = []
            h = gate.register_forward_pre_hook(lambda _m, args, got=got: got.append(args[0]))
            try:
                moe(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            finally:
                h.remove()
            x = got[0].reshape(-1, got[0].shape[-1])[b["attention_mask"].reshape(-1).bool()]
            means.append(x.mean(0))
        mu = torch.stack(means)
        d = mu - mu.mean(0, keepdim=True)
        gate.weight.copy_(scale * d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6))


def _spec_key(seed: int, spec: DefaultModelSpec) -> str:
    blob = json.dumps({"seed": seed, **asdict(spec)}, sort_keys=True)
    return f"default-moe-s{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def build_default_model(
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    spec: DefaultModelSpec | None = None,
    device: torch.device | None = None,
) -> tuple[nn.Module, TextTokenizer]:
    """The embedded default MoE and its tokenizer, built once per ``(seed, spec)`` and cached.

    Parameters
    ----------
    seed
        Controls data, initialisation and training; the same seed gives the same weights.
    cache
        Cache root (default :func:`cache_dir`); the model lives in a sub-directory keyed by the
        seed and a hash of ``spec``, loadable later with :func:`load_model`.
    spec
        Size and training budget (default :class:`DefaultModelSpec`).
    device
        Where to put the returned model (default CUDA if present, else CPU).

    Returns
    -------
    model, tokenizer
        A ``MixtralForCausalLM`` (``len(DOMAINS)`` experts, top-2) in eval mode and a
        :class:`~testbed.fl.tokenizer.CharTokenizer`.
    """
    spec = spec or DefaultModelSpec()
    target = cache_dir(cache) / _spec_key(seed, spec)
    if not (target / "config.json").is_file():
        _build_default(seed, spec, target)
    return load_model(target, device=device)


def _build_default(seed: int, spec: DefaultModelSpec, target: Path) -> None:
    from transformers import LlamaForCausalLM

    log.info("building the default MoE model (seed %d) into %s", seed, target)
    tok = CharTokenizer()
    nd = len(DOMAINS)
    with torch.random.fork_rng(devices=[]):
        _seed_all(seed)
        init = LlamaForCausalLM(_dense_config(spec, tok.vocab_size)).state_dict()
        dense = []
        for d in range(nd):
            rng = _seed_all(seed * 1000 + d + 1)
            m = use_padded_gemms(LlamaForCausalLM(_dense_config(spec, tok.vocab_size)))
            m.load_state_dict(init)
            data = domain_examples(d, 512, seed, stream=1)
            loss = train_steps(
                m,
                tok,
                data,
                list(m.parameters()),
                spec.dense_steps,
                spec.batch_size,
                spec.lr,
                rng,
                answer_only=False,
                loss="lm",
            )
            log.info("dense expert %s: final mean loss %.3f", DOMAINS[d], loss)
            dense.append(m)
        moe = merge_dense_to_moe(dense, spec.top_k)
        rng = _seed_all(seed * 1000 + 999)
        shared = [domain_examples(d, 16, seed, stream=2) for d in range(nd)]
        _init_router_centroids(moe, tok, shared, spec.router_scale)
        for p in moe.parameters():
            p.requires_grad_(False)
        gates = [layer.mlp.gate.weight for layer in moe.model.layers]
        for g in gates:
            g.requires_grad_(True)
        flat = [ex for part in shared for ex in part]
        loss = train_steps(
            moe,
            tok,
            flat,
            gates,
            spec.router_steps,
            spec.batch_size,
            spec.router_lr,
            rng,
            answer_only=False,
            loss="lm",
        )
        log.info("router pre-training: final mean loss %.3f", loss)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    moe.eval()
    moe.save_pretrained(tmp)
    tok.save(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; keep its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def load_model(
    path: str | os.PathLike, device: torch.device | None = None
) -> tuple[nn.Module, TextTokenizer]:
    """Load a local MoE checkpoint (Mixtral, Qwen-MoE, OLMoE, ...) and its tokenizer, offline.

    Raises
    ------
    UserError
        If ``path`` is not a directory holding a loadable checkpoint.
    """
    from transformers import AutoModelForCausalLM

    p = Path(path)
    if not (p / "config.json").is_file():
        raise UserError(f"{p}: not a model directory (no config.json)")
    device = device or default_device()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"{p}: cannot load model: {exc}".splitlines()[0]) from exc
    tok = load_tokenizer(p)
    use_padded_gemms(model)
    model.to(device).eval()
    return model, tok
