"""Local training (cross-entropy over the options, or LM loss) and multiple-choice scoring
(paper V-B)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from testbed.fl.config import LOSSES
from testbed.fl.data import MCQExample
from testbed.fl.tokenizer import TextTokenizer

__all__ = [
    "LOSSES",
    "batch_for_lm",
    "default_device",
    "mcq_accuracy",
    "option_scores",
    "options_loss",
    "train_steps",
    "trial_batches",
]


def default_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def batch_for_lm(
    tok: TextTokenizer, examples: Sequence[MCQExample], answer_only: bool = True
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` (``-100`` outside the scored part).

    Sequences are ``<bos> question answer``, right-padded.
    """
    seqs, labels = [], []
    for ex in examples:
        q = [tok.bos_token_id, *tok.encode(ex.question)]
        a = tok.encode(ex.options[ex.answer])
        seqs.append(q + a)
        labels.append(([-100] * len(q) if answer_only else [-100, *q[1:]]) + a)
    ids, mask = _pad(seqs, tok.pad_token_id)
    lab = torch.full_like(ids, -100)
    for i, lbl in enumerate(labels):
        lab[i, : len(lbl)] = torch.tensor(lbl)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def trial_batches(
    tok: TextTokenizer, examples: Sequence[MCQExample], device: torch.device, batch_size: int = 64
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(input_ids, attention_mask)`` batches of the question+answer texts (routing statistics)."""
    out = []
    for i in range(0, len(examples), batch_size):
        b = batch_for_lm(tok, examples[i : i + batch_size])
        out.append((b["input_ids"].to(device), b["attention_mask"].to(device)))
    return out


def train_steps(
    model: nn.Module,
    tok: TextTokenizer,
    examples: Sequence[MCQExample],
    params: list[nn.Parameter],
    steps: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    answer_only: bool = True,
    before_step: Callable[[], None] | None = None,
    loss: str = "options",
) -> float:
    """``steps`` Adam steps on mini-batches sampled from ``examples``; returns the mean loss.

    ``loss``: ``"options"`` — cross-entropy over the options' length-normalised
    log-likelihoods (:func:`options_loss`, the paper's Exp. 1); ``"lm"`` — causal-LM loss on
    the gold answer (on the question too with ``answer_only=False``). A fresh Adam is created
    per call (a local round), so parameters whose gradient is zeroed by ``before_step`` stay
    bit-identical.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if not params or steps <= 0 or not examples:
        return float("nan")
    device = params[0].device
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(examples), size=min(batch_size, len(examples)), replace=False)
        chosen = [examples[int(i)] for i in idx]
        if loss == "options":
            value = options_loss(model, tok, chosen)
        else:
            batch = {k: v.to(device) for k, v in batch_for_lm(tok, chosen, answer_only).items()}
            value = model(**batch).loss
        opt.zero_grad(set_to_none=False)
        value.backward()
        if before_step is not None:
            before_step()
        opt.step()
        losses.append(float(value.detach()))
    return float(np.mean(losses))


def option_scores(
    model: nn.Module, tok: TextTokenizer, examples: Sequence[MCQExample], batch_size: int = 256
) -> torch.Tensor:
    """Length-normalised log-likelihood of every option given its question (paper V-B).

    .. math::

        s_{i,j} = \\frac{1}{|o_{ij}|} \\sum_{t=1}^{|o_{ij}|} \\log p(o_{ij,t} \\mid q_i, o_{ij,<t})

    Returns ``(len(examples), max options)`` float32 on the model's device, ``-inf`` where an
    example has fewer options; differentiable unless called under ``torch.no_grad``.
    """
    device = next(model.parameters()).device
    rows: list[tuple[int, int, list[int], int]] = []  # (example, option, seq, answer start)
    for i, ex in enumerate(examples):
        q = [tok.bos_token_id, *tok.encode(ex.question)]
        for j, o in enumerate(ex.options):
            rows.append((i, j, q + tok.encode(o), len(q)))
    n_opt = max(len(e.options) for e in examples)
    flat = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        ids, mask = _pad([r[2] for r in chunk], tok.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        # only the positions that predict an option token: from the earliest answer start on,
        # log p = logit[target] − logsumexp(logits), without a full log-softmax tensor
        s0 = min(r[3] for r in chunk) - 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, s0:-1].float()
        tgt = ids[:, s0 + 1 :, None]
        tgt_lp = logits.gather(-1, tgt)[..., 0] - torch.logsumexp(logits, dim=-1)
        pos = s0 + torch.arange(tgt_lp.shape[1], device=device)
        start = torch.tensor([r[3] - 1 for r in chunk], device=device)
        end = torch.tensor([len(r[2]) - 1 for r in chunk], device=device)
        sel = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
        if not bool(sel.any(1).all()):
            raise ValueError("an option encodes to no tokens; it cannot be scored")
        total = torch.where(sel, tgt_lp, torch.zeros((), device=device)).sum(1)
        flat.append(total / sel.sum(1))
    values = torch.cat(flat)
    index = torch.tensor([r[0] * n_opt + r[1] for r in rows], device=device)
    scores = torch.full((len(examples) * n_opt,), float("-inf"), device=device)
    scores = scores.index_put((index,), values)
    return scores.reshape(len(examples), n_opt)


def options_loss(
    model: nn.Module, tok: TextTokenizer, examples: Sequence[MCQExample]
) -> torch.Tensor:
    """Cross-entropy over the options' scores against the gold answer (paper V-B).

    .. math:: \\mathcal{L} = -\\frac{1}{N} \\sum_i \\log
              \\frac{e^{s_{i,a_i}}}{\\sum_j e^{s_{i,j}}}

    with :math:`s_{i,j}` from :func:`option_scores`.
    """
    scores = option_scores(model, tok, examples)
    truth = torch.tensor([e.answer for e in examples], device=scores.device)
    return torch.nn.functional.cross_entropy(scores, truth)


@torch.no_grad()
def mcq_accuracy(
    model: nn.Module, tok: TextTokenizer, examples: Sequence[MCQExample], batch_size: int = 256
) -> float:
    """Fraction answered correctly: the option with the largest :func:`option_scores`."""
    if not examples:
        return float("nan")
    model.eval()
    scores = option_scores(model, tok, examples, batch_size).cpu()
    pred = scores.argmax(dim=1)
    truth = torch.tensor([e.answer for e in examples])
    return float((pred == truth).float().mean())
