"""Local training (causal-LM loss on the answer) and multiple-choice scoring (paper V-B)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from testbed.fl.data import MCQExample
from testbed.fl.tokenizer import TextTokenizer

__all__ = ["batch_for_lm", "default_device", "mcq_accuracy", "train_steps", "trial_batches"]


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
) -> float:
    """``steps`` Adam steps on mini-batches sampled from ``examples``; returns the mean loss.

    A fresh Adam is created per call (a local round), so parameters whose gradient is zeroed
    by ``before_step`` stay bit-identical.
    """
    if not params or steps <= 0 or not examples:
        return float("nan")
    device = params[0].device
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(examples), size=min(batch_size, len(examples)), replace=False)
        batch = {
            k: v.to(device)
            for k, v in batch_for_lm(tok, [examples[int(i)] for i in idx], answer_only).items()
        }
        out = model(**batch)
        opt.zero_grad(set_to_none=False)
        out.loss.backward()
        if before_step is not None:
            before_step()
        opt.step()
        losses.append(float(out.loss.detach()))
    return float(np.mean(losses))


@torch.no_grad()
def mcq_accuracy(
    model: nn.Module, tok: TextTokenizer, examples: Sequence[MCQExample], batch_size: int = 256
) -> float:
    """Fraction answered correctly by length-normalised option log-likelihood (paper V-B).

    .. math::

        \\hat a = \\arg\\max_j \\frac{1}{|o_j|}
                 \\sum_{t=1}^{|o_j|} \\log p(o_{j,t} \\mid q, o_{j,<t})
    """
    if not examples:
        return float("nan")
    device = next(model.parameters()).device
    model.eval()
    rows: list[tuple[int, int, list[int], int]] = []  # (example, option, seq, answer start)
    for i, ex in enumerate(examples):
        q = [tok.bos_token_id, *tok.encode(ex.question)]
        for j, o in enumerate(ex.options):
            rows.append((i, j, q + tok.encode(o), len(q)))
    scores = torch.full((len(examples), max(len(e.options) for e in examples)), float("-inf"))
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        ids, mask = _pad([r[2] for r in chunk], tok.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        tgt_lp = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].cpu()
        for b, (i, j, seq, start) in enumerate(chunk):
            scores[i, j] = tgt_lp[b, start - 1 : len(seq) - 1].mean()
    pred = scores.argmax(dim=1)
    truth = torch.tensor([e.answer for e in examples])
    return float((pred == truth).float().mean())
