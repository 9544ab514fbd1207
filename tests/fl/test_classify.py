"""Sentence-pair classification head (paper V-C) on the default MoE body."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from testbed.fl.classify import build_pair_classifier, pair_accuracy, pair_batch
from testbed.fl.data import PairExample
from testbed.fl.lora import attach_lora
from testbed.fl.tokenizer import CharTokenizer

pytestmark = pytest.mark.integration


def _pairs(n: int, seed: int) -> list[PairExample]:
    # label 1 iff the two words are equal
    rng = np.random.default_rng(seed)
    words = ["zo", "ki", "pa", "lu", "me", "ra"]
    out = []
    for _ in range(n):
        a = str(rng.choice(words))
        same = bool(rng.random() < 0.5)
        b = a if same else str(rng.choice([w for w in words if w != a]))
        out.append(PairExample(a, b, int(same)))
    return out


def test_classifier_head_trains_with_lora_body(default_model_dir):
    # Prepare
    tok = CharTokenizer.load(default_model_dir)
    torch.manual_seed(0)
    model = build_pair_classifier(default_model_dir, 2, torch.device("cpu"))
    model = attach_lora(model, rank=4)
    head = [p for n, p in model.named_parameters() if "score" in n]
    for p in head:
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    train, test = _pairs(256, 1), _pairs(128, 2)
    opt = torch.optim.Adam(params, lr=1e-2)
    # Execute
    model.train()
    for i in range(60):
        b = pair_batch(tok, train[(i * 32) % 256 : (i * 32) % 256 + 32])
        loss = model(**b).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Assert
    assert head and model.config.num_labels == 2
    assert pair_accuracy(model, tok, test) > 0.7
