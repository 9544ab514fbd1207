"""Embedded dataset, non-IID split and local-file loaders."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from testbed.errors import UserError
from testbed.fl.data import (
    DOMAINS,
    domain_examples,
    federated_split,
    load_mcqa_jsonl,
    load_sentence_pairs,
)


def test_generation_is_deterministic_and_well_formed():
    a = domain_examples(2, 50, seed=5)
    assert a == domain_examples(2, 50, seed=5)
    assert a != domain_examples(2, 50, seed=6)
    for ex in a:
        assert len(ex.options) == 4 and len(set(ex.options)) == 4 and 0 <= ex.answer < 4


def test_domains_have_distinct_templates():
    prefixes = {d: {e.question[:2] for e in domain_examples(d, 30, 0)} for d in range(len(DOMAINS))}
    assert all(len(p) == 1 for p in prefixes.values())
    assert len({next(iter(p)) for p in prefixes.values()}) == len(DOMAINS)


def test_split_is_non_iid():
    clusters, global_test = federated_split(3, 2, 200, 40, seed=1, major_fraction=0.85)
    for k, c in enumerate(clusters):
        counts = Counter(e.domain for dev in c.devices for e in dev)
        assert counts.most_common(1)[0][0] == k
        assert counts[k] / sum(counts.values()) > 0.75
    assert set(Counter(e.domain for e in global_test).values()) == {10}


def test_mcqa_jsonl_loader(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(
        json.dumps({"question": "2+2=", "options": ["3", "4"], "answer": 1})
        + "\n"
        + json.dumps({"question": "sky?", "options": ["blue", "red"], "answer": "blue"})
        + "\n"
    )
    out = load_mcqa_jsonl(f)
    assert [e.answer for e in out] == [1, 0]
    f.write_text(json.dumps({"question": "x", "options": ["a"], "answer": 3}) + "\n")
    with pytest.raises(UserError, match=":1:"):
        load_mcqa_jsonl(f)


def test_sentence_pair_loader(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "label": 1}) + "\n")
    assert load_sentence_pairs(f)[0].label == 1
    with pytest.raises(UserError):
        load_sentence_pairs(tmp_path / "missing.jsonl")
