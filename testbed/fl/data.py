"""Embedded synthetic multiple-choice dataset, non-IID cluster split, and local-file loaders.

Four synthetic domains with clearly different structure (alphabet, template and rule), so that
experts specialise. Each question is answered by a rule of the domain applied to the key at the
end of the question; the model picks one of four options by length-normalised log-likelihood
(paper V-B).

========  =================  ==========================================================
domain    example            rule
========  =================  ==========================================================
succ      ``s:c=`` → ``d``   next lowercase letter
mul3      ``m#7=`` → ``1``   3·x mod 10 on digits
cipher    ``c>Q=`` → ``k``   fixed seeded permutation from uppercase to lowercase
words     ``w=zor=`` → ...   fixed seeded pairing between made-up words
========  =================  ==========================================================
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from testbed.errors import UserError

if TYPE_CHECKING:
    from testbed.fl.config import FLConfig
    from testbed.fl.tokenizer import TextTokenizer

_T = TypeVar("_T")

__all__ = [
    "DOMAINS",
    "ClusterData",
    "MCQExample",
    "PairExample",
    "cluster_data",
    "domain_examples",
    "federated_split",
    "heterogeneity_xi",
    "load_mcqa_jsonl",
    "load_sentence_pairs",
]

DOMAINS = ("succ", "mul3", "cipher", "words")
_N_OPTIONS = 4
_SYLLABLES = ("zo", "ki", "pa", "lu", "me", "ra", "tu", "ni", "bo", "fe", "xa", "dy")


@dataclass(frozen=True)
class MCQExample:
    """One multiple-choice question.

    Attributes
    ----------
    question
        Prompt text; the chosen option is appended to it directly.
    options
        Candidate answers.
    answer
        Index of the correct option.
    domain
        Domain index into :data:`DOMAINS` (``-1`` for loaded files).
    """

    question: str
    options: tuple[str, ...]
    answer: int
    domain: int = -1

    @property
    def text(self) -> str:
        """Question followed by the correct answer (the training sequence)."""
        return self.question + self.options[self.answer]


@dataclass(frozen=True)
class PairExample:
    """A sentence pair with an integer class label (paper V-C)."""

    sentence1: str
    sentence2: str
    label: int


@dataclass
class ClusterData:
    """Data of one cluster: one training shard per device and a held-out set.

    Attributes
    ----------
    devices
        ``devices[d]`` is the training list of device ``d``.
    test
        Held-out questions drawn from the same (non-IID) mixture as the training shards.
    trial
        Small trial set used for routing statistics (Algo 1, eq. 29).
    """

    devices: list[list[MCQExample]]
    test: list[MCQExample]
    trial: list[MCQExample] = field(default_factory=list)


def heterogeneity_xi(clusters: Sequence[ClusterData]) -> float | None:
    """Measured data heterogeneity ξ of a split: the mean over clusters of the ratio of a
    cluster's share of its major domain to that domain's share of all training data.

    .. math::

        \\xi = \\frac{1}{K} \\sum_k \\frac{n_{k,d_k} / n_k}{\\sum_j n_{j,d_k} / \\sum_j n_j},
        \\qquad d_k = \\arg\\max_d n_{k,d}

    (:math:`n_{k,d}`: training questions of cluster :math:`k` from domain :math:`d`). ξ = 1
    for identical mixtures; one domain per cluster and K = D clusters give ξ = K — the
    extremes of the paper's Theorems 1–2. ``None`` when the examples carry no domain (-1).
    """
    counts: list[dict[int, int]] = []
    for c in clusters:
        n: dict[int, int] = {}
        for dev in c.devices:
            for ex in dev:
                n[ex.domain] = n.get(ex.domain, 0) + 1
        counts.append(n)
    if not counts or any(-1 in n or not n for n in counts):
        return None
    total = sum(sum(n.values()) for n in counts)
    ratios = []
    for n in counts:
        major = max(n, key=lambda d: (n[d], -d))
        local = n[major] / sum(n.values())
        glob = sum(m.get(major, 0) for m in counts) / total
        ratios.append(local / glob)
    return float(np.mean(ratios))


def _domain_tables(seed: int) -> tuple[dict[str, str], dict[str, str]]:
    rng = np.random.default_rng([seed, 7777])
    perm = rng.permutation(26)
    cipher = {string.ascii_uppercase[i]: string.ascii_lowercase[perm[i]] for i in range(26)}
    words: list[str] = []
    while len(words) < 16:
        w = "".join(rng.choice(_SYLLABLES, size=2))
        if w not in words:
            words.append(w)
    pairing = rng.permutation(len(words))
    mapping = {words[i]: words[pairing[i]] for i in range(len(words))}
    return cipher, mapping


def _one(domain: int, rng: np.random.Generator, tables: tuple[dict, dict]) -> MCQExample:
    cipher, mapping = tables
    if domain == 0:
        k = int(rng.integers(0, 25))
        key, ans, pool = (
            string.ascii_lowercase[k],
            string.ascii_lowercase[k + 1],
            string.ascii_lowercase,
        )
        q = f"s:{key}="
    elif domain == 1:
        k = int(rng.integers(0, 10))
        key, ans, pool = str(k), str((3 * k) % 10), string.digits
        q = f"m#{key}="
    elif domain == 2:
        key = string.ascii_uppercase[int(rng.integers(0, 26))]
        ans, pool = cipher[key], string.ascii_lowercase
        q = f"c>{key}="
    elif domain == 3:
        keys = sorted(mapping)
        key = keys[int(rng.integers(0, len(keys)))]
        ans, pool = mapping[key], keys
        q = f"w={key}="
    else:
        raise ValueError(f"unknown domain {domain}")
    distractors = [o for o in pool if o != ans]
    picks = rng.choice(len(distractors), size=_N_OPTIONS - 1, replace=False)
    options = [ans] + [distractors[int(i)] for i in picks]
    order = rng.permutation(_N_OPTIONS)
    options = [options[int(i)] for i in order]
    return MCQExample(q, tuple(options), options.index(ans), domain)


def domain_examples(domain: int, n: int, seed: int, stream: int = 0) -> list[MCQExample]:
    """``n`` deterministic questions of one domain.

    Parameters
    ----------
    domain
        Index into :data:`DOMAINS`.
    n
        Number of questions.
    seed
        Dataset seed (fixes the domain rules and the sample).
    stream
        Independent sub-stream (e.g. pre-training vs federated data).
    """
    rng = np.random.default_rng([seed, stream, domain])
    tables = _domain_tables(seed)
    return [_one(domain, rng, tables) for _ in range(n)]


def federated_split(
    n_clusters: int,
    devices_per_cluster: int,
    examples_per_device: int,
    test_per_cluster: int,
    seed: int,
    major_fraction: float = 0.85,
    trial_per_cluster: int = 32,
) -> tuple[list[ClusterData], list[MCQExample]]:
    """Non-IID split: cluster ``k`` holds mostly domain ``k mod 4``.

    A fraction ``major_fraction`` of every shard comes from the cluster's major domain and the
    rest uniformly from the other domains.

    Returns
    -------
    clusters, global_test
        Per-cluster data and a held-out set uniform over all domains.
    """
    if not 0.0 <= major_fraction <= 1.0:
        raise ValueError("major_fraction must be in [0, 1]")
    rng = np.random.default_rng([seed, 4242])
    tables = _domain_tables(seed)
    nd = len(DOMAINS)

    def draw(major: int, n: int) -> list[MCQExample]:
        out = []
        for _ in range(n):
            if rng.random() < major_fraction:
                d = major
            else:
                d = int(rng.choice([x for x in range(nd) if x != major]))
            out.append(_one(d, rng, tables))
        return out

    clusters = []
    for k in range(n_clusters):
        major = k % nd
        devices = [draw(major, examples_per_device) for _ in range(devices_per_cluster)]
        clusters.append(
            ClusterData(devices, draw(major, test_per_cluster), draw(major, trial_per_cluster))
        )
    per = max(1, test_per_cluster // nd)
    global_test = [_one(d, rng, tables) for d in range(nd) for _ in range(per)]
    return clusters, global_test


def cluster_data(
    config: FLConfig,
    cluster_ids: list[str],
    tok: TextTokenizer,
    data_path: str | Path | None = None,
    data_kind: str = "auto",
) -> tuple[list[ClusterData], list[MCQExample]]:
    """``(clusters, global_test)``: the user's data set split over ``cluster_ids`` and checked
    against the tokenizer ``tok`` (:mod:`testbed.fl.user_data`) when ``data_path`` is given,
    else the embedded non-IID split (:func:`federated_split`) with ``config``'s devices,
    seed, major fraction and shard sizes."""
    if data_path is not None:
        from testbed.fl.user_data import load_user_dataset

        ds = load_user_dataset(
            data_path,
            cluster_ids,
            config.devices_per_cluster,
            config.seed,
            data_kind,
            config.major_fraction,
        )
        ds.check_tokenizer(tok)
        return ds.clusters, ds.global_test
    return federated_split(
        len(cluster_ids),
        config.devices_per_cluster,
        config.examples_per_device,
        config.test_per_cluster,
        config.seed,
        config.major_fraction,
    )


def _load_jsonl(path: str | Path, what: str, parse: Callable[[dict], _T]) -> list[_T]:
    """``parse`` every non-blank JSON line of ``path``; errors name the file, line and kind."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from exc
    out: list[_T] = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(parse(json.loads(line)))
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{path}:{no}: bad {what} record ({exc})") from exc
    return out


def load_mcqa_jsonl(path: str | Path) -> list[MCQExample]:
    """Read multiple-choice questions, one JSON object per line.

    Each line holds ``question`` (str), ``options`` (list of str) and ``answer`` (index of the
    correct option, or the correct option's text).
    """

    def parse(rec: dict) -> MCQExample:
        options = tuple(str(o) for o in rec["options"])
        ans = rec["answer"]
        idx = options.index(ans) if isinstance(ans, str) else int(ans)
        if not 0 <= idx < len(options):
            raise ValueError("answer out of range")
        return MCQExample(str(rec["question"]), options, idx)

    return _load_jsonl(path, "MCQA", parse)


def load_sentence_pairs(path: str | Path) -> list[PairExample]:
    """Read sentence-pair classification data (JSONL: ``sentence1``, ``sentence2``, ``label``)."""

    def parse(rec: dict) -> PairExample:
        return PairExample(str(rec["sentence1"]), str(rec["sentence2"]), int(rec["label"]))

    return _load_jsonl(path, "sentence-pair", parse)
