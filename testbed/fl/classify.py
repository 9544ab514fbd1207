"""Sentence-pair classification with a classification head (paper V-C).

The MoE body is loaded from a local checkpoint and a linear head on the last non-padding token
is added by transformers (``AutoModelForSequenceClassification``); LoRA and the strategies apply
to the body exactly as for causal LMs (the head is trained locally with it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from testbed.errors import UserError
from testbed.fl.data import PairExample
from testbed.fl.tokenizer import TextTokenizer

__all__ = ["SEPARATOR", "build_pair_classifier", "pair_accuracy", "pair_batch"]

#: Text placed between the two sentences.
SEPARATOR = " ? "


def build_pair_classifier(
    path: str | os.PathLike, num_labels: int, device: torch.device | None = None
) -> nn.Module:
    """Local checkpoint at ``path`` with a fresh ``num_labels``-way head (offline)."""
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=num_labels, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot load a classifier: {exc}".splitlines()[0]) from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    from testbed.fl.padded_gemm import use_padded_gemms
    from testbed.fl.train import default_device

    use_padded_gemms(model)
    return model.to(device or default_device())


def pair_batch(tok: TextTokenizer, pairs: Sequence[PairExample]) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` (right-padded) and ``labels`` for ``pairs``."""
    seqs = [[tok.bos_token_id, *tok.encode(p.sentence1 + SEPARATOR + p.sentence2)] for p in pairs]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor([p.label for p in pairs]),
    }


@torch.no_grad()
def pair_accuracy(
    model: nn.Module, tok: TextTokenizer, pairs: Sequence[PairExample], batch_size: int = 128
) -> float:
    """Fraction of pairs whose arg-max class equals the label."""
    if not pairs:
        return float("nan")
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for i in range(0, len(pairs), batch_size):
        b = {k: v.to(device) for k, v in pair_batch(tok, pairs[i : i + batch_size]).items()}
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        correct += int((logits.argmax(-1) == b["labels"]).sum())
    return correct / len(pairs)
