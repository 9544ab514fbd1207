"""Multiple-choice scoring and the cross-entropy-over-options loss (paper V-B)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from testbed.fl.data import domain_examples
from testbed.fl.lora import attach_lora, set_trainable
from testbed.fl.train import mcq_accuracy, option_scores, options_loss, train_steps

pytestmark = pytest.mark.integration


def _alone(model, tok, ex, j) -> float:
    """Mean log-probability of option j's tokens, the sequence run alone (no padding)."""
    q = [tok.bos_token_id, *tok.encode(ex.question)]
    seq = q + tok.encode(ex.options[j])
    ids = torch.tensor([seq])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    tgt = logp[:-1].gather(-1, ids[0, 1:, None])[:, 0]
    return float(tgt[len(q) - 1 :].mean())


def test_option_scores_are_length_normalised_and_ignore_padding(fresh_model):
    model, tok = fresh_model
    model.eval()
    ex = domain_examples(0, 3, 0, stream=7) + domain_examples(2, 3, 0, stream=7)
    with torch.no_grad():
        s = option_scores(model, tok, ex, batch_size=5)  # batches cut across examples
    assert s.shape == (len(ex), max(len(e.options) for e in ex))
    for i, e in enumerate(ex):
        for j in range(len(e.options)):
            assert float(s[i, j]) == pytest.approx(_alone(model, tok, e, j), abs=1e-4)
    pred = s.argmax(1)
    truth = torch.tensor([e.answer for e in ex])
    assert mcq_accuracy(model, tok, ex) == pytest.approx(float((pred == truth).float().mean()))


def test_options_loss_is_cross_entropy_over_the_scores(fresh_model):
    model, tok = fresh_model
    ex = domain_examples(1, 6, 0, stream=8)
    loss = options_loss(model, tok, ex)
    with torch.no_grad():
        s = option_scores(model, tok, ex)
    gold = torch.tensor([e.answer for e in ex])
    expect = -torch.log_softmax(s, dim=1)[torch.arange(len(ex)), gold].mean()
    assert float(loss.detach()) == pytest.approx(float(expect), rel=1e-5)
    loss.backward()  # differentiable through the scores
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_training_on_the_options_loss_lowers_it(fresh_model):
    model, tok = fresh_model
    model = attach_lora(model, 4, 8.0)
    data = domain_examples(3, 32, 0, stream=9)
    params = set_trainable(model, experts=True, gate=True)
    with torch.no_grad():
        before = float(options_loss(model, tok, data))
    rng = np.random.default_rng(0)
    train_steps(model, tok, data, params, 12, 16, 5e-3, rng, loss="options")
    with torch.no_grad():
        after = float(options_loss(model, tok, data))
    assert after < before - 0.05
    with pytest.raises(ValueError, match="loss"):
        train_steps(model, tok, data, params, 1, 4, 1e-3, rng, loss="mse")


def test_uneven_option_counts_score_minus_infinity_and_train(fresh_model):
    from dataclasses import replace

    model, tok = fresh_model
    ex = domain_examples(0, 4, 0, stream=10)
    # drop a wrong option of the first question: 3 options beside 4-option questions
    first = ex[0]
    keep = [j for j in range(len(first.options)) if j != (first.answer + 1) % len(first.options)]
    ex[0] = replace(
        first, options=[first.options[j] for j in keep], answer=keep.index(first.answer)
    )
    with torch.no_grad():
        s = option_scores(model, tok, ex)
    assert s.shape == (4, 4) and s[0, 3] == float("-inf") and torch.isfinite(s[1:]).all()
    loss = options_loss(model, tok, ex)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
