"""A user's own data set (JSONL) split over the clusters: MCQA or sentence pairs.

One JSON object per line, each with ``cluster`` (an index 0..K−1, or a cluster id of the
scenario) *or* ``domain`` (any string or integer) and either

* **MCQA**: ``question`` (str), ``options`` (list of str), ``answer`` (index or option text);
* **sentence pairs**: ``sentence1``, ``sentence2`` (str), ``label`` (int or str). A pair is
  scored like a multiple-choice question over the label names (the verbaliser): the question
  is ``"<sentence1> ? <sentence2> = "`` and the options are every distinct label of the file,
  so the same length-normalised log-likelihood rule (paper V-B) classifies it.

Split (deterministic in ``seed``): every 7th record of each group (domain or cluster, after a
seeded shuffle) goes to the global test set; with ``cluster`` the rest stays in that cluster;
with ``domain`` cluster k's major domain is domain ``k mod D`` (in order of first appearance)
and each record goes to a cluster of its domain with probability ``major_fraction``, else to
another cluster uniformly. In each cluster 15 % are its local test set, the rest is dealt to
its devices round-robin, and the first 32 training records are its trial set (routing
statistics). Errors name the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from testbed.errors import UserError
from testbed.fl.data import ClusterData, MCQExample

__all__ = ["KINDS", "UserDataset", "load_user_dataset"]

KINDS = ("auto", "mcqa", "pairs")
_TEST_EVERY = 7
_LOCAL_TEST = 0.15
_TRIAL = 32
MAX_LINE_CHARS = 20_000  # one record [characters]
MAX_TEXT_CHARS = 2_000  # one question, option or sentence [characters]
MAX_RECORDS = 1_000_000


@dataclass
class UserDataset:
    """The split: per-cluster data, the global test set, and where each example came from."""

    clusters: list[ClusterData]
    global_test: list[MCQExample]
    kind: str
    groups: list[str]
    lines: dict[int, int]  # id(example) → line number in the file
    path: Path

    def check_tokenizer(self, tok: Any) -> None:
        """Every example must encode with ``tok``; the first that does not is reported with
        its file and line (the embedded model reads only its small character set)."""
        seen = [*self.global_test]
        for c in self.clusters:
            seen += c.test + [x for d in c.devices for x in d]
        seen.sort(key=lambda ex: self.lines.get(id(ex), 0))  # the first bad line is named
        for ex in seen:
            try:
                tok.encode(ex.question)
                for o in ex.options:
                    if not tok.encode(o):
                        raise UserError(
                            f"{self.path}:{self.lines.get(id(ex), 0)}: option {o!r} encodes "
                            "to no tokens; it cannot be scored"
                        )
            except ValueError as e:
                raise UserError(
                    f"{self.path}:{self.lines.get(id(ex), 0)}: {e}; the embedded model reads "
                    "only digits, letters, space and :=#>?- — use your own checkpoint "
                    "(--model / model.path) with its tokenizer for other text"
                ) from None


def _read(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a JSONL file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading BOM is allowed
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text (is it a JSONL file?)") from None
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise UserError(f"{path}:{no}: a record longer than {MAX_LINE_CHARS} characters")
        if len(out) >= MAX_RECORDS:
            raise UserError(f"{path}: more than {MAX_RECORDS} records")
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:
            why = getattr(e, "msg", None) or str(e).split(":")[0] or type(e).__name__
            raise UserError(f"{path}:{no}: not a JSON object ({why})") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}:{no}: expected a JSON object, got {type(rec).__name__}")
        out.append((no, rec))
    if not out:
        raise UserError(f"{path}: no records")
    return out


def _kind_of(path: Path, no: int, rec: dict[str, Any]) -> str:
    if "question" in rec or "options" in rec:
        return "mcqa"
    if "sentence1" in rec or "sentence2" in rec:
        return "pairs"
    raise UserError(
        f"{path}:{no}: neither an MCQA record (question, options, answer) nor a sentence pair "
        "(sentence1, sentence2, label)"
    )


def _mcq(path: Path, no: int, rec: dict[str, Any]) -> MCQExample:
    q, opts, ans = rec.get("question"), rec.get("options"), rec.get("answer")
    if not isinstance(q, str) or not q:
        raise UserError(f"{path}:{no}: question must be a non-empty string")
    if len(q) > MAX_TEXT_CHARS or (
        isinstance(opts, list) and any(isinstance(o, str) and len(o) > MAX_TEXT_CHARS for o in opts)
    ):
        raise UserError(
            f"{path}:{no}: a question or option longer than {MAX_TEXT_CHARS} characters"
        )
    if (
        not isinstance(opts, list)
        or len(opts) < 2
        or not all(isinstance(o, str) and o for o in opts)
        or len(set(opts)) != len(opts)
    ):
        raise UserError(f"{path}:{no}: options must be a list of >= 2 distinct non-empty strings")
    if isinstance(ans, str):
        if ans not in opts:
            raise UserError(f"{path}:{no}: answer {ans!r} is not one of the options")
        idx = opts.index(ans)
    elif isinstance(ans, int) and not isinstance(ans, bool) and 0 <= ans < len(opts):
        idx = ans
    else:
        raise UserError(f"{path}:{no}: answer must be an option's index or text, got {ans!r}")
    return MCQExample(q, tuple(opts), idx)


def _label(path: Path, no: int, rec: dict[str, Any]) -> str:
    lab = rec.get("label")
    if isinstance(lab, bool) or not isinstance(lab, int | str) or lab == "":
        raise UserError(f"{path}:{no}: label must be an integer or a non-empty string")
    return str(lab)


def _pair(path: Path, no: int, rec: dict[str, Any], labels: list[str]) -> MCQExample:
    s1, s2 = rec.get("sentence1"), rec.get("sentence2")
    if not (isinstance(s1, str) and s1 and isinstance(s2, str) and s2):
        raise UserError(f"{path}:{no}: sentence1 and sentence2 must be non-empty strings")
    if len(s1) > MAX_TEXT_CHARS or len(s2) > MAX_TEXT_CHARS:
        raise UserError(f"{path}:{no}: a sentence longer than {MAX_TEXT_CHARS} characters")
    return MCQExample(f"{s1} ? {s2} = ", tuple(labels), labels.index(_label(path, no, rec)))


def load_user_dataset(
    path: str | Path,
    cluster_ids: list[str],
    devices_per_cluster: int,
    seed: int,
    kind: str = "auto",
    major_fraction: float = 0.85,
) -> UserDataset:
    """Read ``path`` and split it over ``len(cluster_ids)`` clusters (see the module docs)."""
    p = Path(path)
    if kind not in KINDS:
        raise UserError(f"data kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not 0.0 <= major_fraction <= 1.0:
        raise UserError(f"major_fraction must be in [0, 1], got {major_fraction}")
    k = len(cluster_ids)
    recs = _read(p)
    kinds = {_kind_of(p, no, r) for no, r in recs}
    if len(kinds) > 1:
        raise UserError(f"{p}: mixes MCQA records and sentence pairs")
    found = kinds.pop()
    if kind != "auto" and kind != found:
        raise UserError(f"{p}: holds {found} records, not {kind}")
    if found == "pairs":
        types = {type(r.get("label")) for _, r in recs}
        if len(types) > 1:
            raise UserError(f"{p}: labels must be all integers or all strings, not a mix")
    labels = sorted({_label(p, no, r) for no, r in recs}) if found == "pairs" else []
    if found == "pairs" and len(labels) < 2:
        raise UserError(f"{p}: sentence pairs need at least two distinct labels")
    # group of each record: a cluster index, or a domain
    by_cluster = "cluster" in recs[0][1]
    groups: list[str] = []
    examples: list[tuple[int, int, MCQExample]] = []  # (group, line, example)
    if not by_cluster and len({type(r.get("domain")) for _, r in recs}) > 1:
        raise UserError(f"{p}: domains must be all integers or all strings, not a mix")
    for no, r in recs:
        if "cluster" in r and "domain" in r:
            raise UserError(f"{p}:{no}: give either cluster or domain, not both")
        if ("cluster" in r) != by_cluster or ("cluster" not in r and "domain" not in r):
            raise UserError(
                f"{p}:{no}: every record needs a cluster field, or every record a domain field"
            )
        if by_cluster:
            c = r["cluster"]
            if isinstance(c, str) and c in cluster_ids:
                g = cluster_ids.index(c)
            elif isinstance(c, int) and not isinstance(c, bool) and 0 <= c < k:
                g = c
            else:
                raise UserError(
                    f"{p}:{no}: cluster {c!r} is not an index 0..{k - 1} or one of {cluster_ids}"
                )
            name = cluster_ids[g]
        else:
            d = r["domain"]
            if isinstance(d, bool) or not isinstance(d, str | int) or d == "":
                raise UserError(f"{p}:{no}: domain must be a non-empty string or an integer")
            name = str(d)
        if name not in groups:
            groups.append(name)
        ex = _mcq(p, no, r) if found == "mcqa" else _pair(p, no, r, labels)
        examples.append((groups.index(name), no, ex))
    rng = np.random.default_rng([seed, 7107])
    lines = {id(ex): no for _, no, ex in examples}
    held: list[MCQExample] = []
    pool: list[tuple[int, MCQExample]] = []
    for gi in range(len(groups)):
        mine = [ex for g, _, ex in examples if g == gi]
        for j, idx in enumerate(rng.permutation(len(mine))):
            if j % _TEST_EVERY == 0:
                held.append(mine[idx])
            else:
                pool.append((gi, mine[idx]))
    per: list[list[MCQExample]] = [[] for _ in range(k)]
    for gi, ex in pool:
        if by_cluster:
            per[gi].append(ex)
            continue
        home = [c for c in range(k) if c % len(groups) == gi]
        others = [c for c in range(k) if c not in home]
        if home and (not others or rng.random() < major_fraction):
            per[int(rng.choice(home))].append(ex)
        else:
            per[int(rng.choice(others if others else list(range(k))))].append(ex)
    clusters = []
    for c in range(k):
        data = per[c]
        if len(data) < devices_per_cluster + 1:
            raise UserError(
                f"{p}: cluster {cluster_ids[c]!r} gets {len(data)} training records, fewer than "
                f"its {devices_per_cluster} devices + 1 (add records or give it its own)"
            )
        n_test = max(1, int(round(_LOCAL_TEST * len(data))))
        test, train = data[:n_test], data[n_test:]
        devices = [train[d::devices_per_cluster] for d in range(devices_per_cluster)]
        clusters.append(ClusterData(devices, test, train[:_TRIAL]))
    return UserDataset(clusters, held, found, groups, lines, p)
