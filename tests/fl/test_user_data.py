"""A user's own data and model: JSONL MCQA / sentence pairs split over clusters, the [data]
scenario table, a checkpoint without a tokenizer, and cuda:N devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.errors import ConfigError, UserError
from testbed.fl.user_data import load_user_dataset

REPO = Path(__file__).resolve().parents[2]
MCQA = REPO / "docs" / "examples" / "mcqa.jsonl"
PAIRS = REPO / "docs" / "examples" / "pairs.jsonl"


def _write(tmp_path: Path, rows: list, name: str = "d.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def _key(ex):
    return (ex.question, ex.options, ex.answer)


def test_domains_go_to_their_clusters_and_the_test_set_is_held_out():
    ds = load_user_dataset(MCQA, ["a", "b", "c"], 2, seed=0, major_fraction=1.0)
    assert ds.kind == "mcqa" and ds.groups and len(ds.clusters) == 3
    domain_of = {}
    for line in MCQA.read_text().splitlines():
        r = json.loads(line)
        domain_of[r["question"]] = r["domain"]
    for k, c in enumerate(ds.clusters):
        train = [x for d in c.devices for x in d]
        assert train and c.test and len(c.devices) == 2
        # major fraction 1: cluster k holds only domain k (order of first appearance)
        assert {domain_of[x.question] for x in train + c.test} == {ds.groups[k]}
    seen = {_key(x) for c in ds.clusters for x in c.test + [y for d in c.devices for y in d]}
    assert ds.global_test and not seen & {_key(x) for x in ds.global_test}
    total = len(MCQA.read_text().splitlines())
    assert len(seen) + len(ds.global_test) == total  # nothing lost, nothing duplicated
    # a lower major fraction mixes the domains
    mixed = load_user_dataset(MCQA, ["a", "b", "c"], 2, seed=0, major_fraction=0.5)
    doms = {domain_of[x.question] for d in mixed.clusters[0].devices for x in d}
    assert len(doms) > 1


def test_a_cluster_field_pins_records_and_pairs_become_label_choices(tmp_path):
    rows = [
        {
            "cluster": i % 2,
            "sentence1": f"s {i}",
            "sentence2": f"t {i}",
            "label": "yes" if i % 3 else "no",
        }
        for i in range(40)
    ]
    ds = load_user_dataset(_write(tmp_path, rows), ["x", "y"], 2, seed=1)
    assert ds.kind == "pairs"
    for k, c in enumerate(ds.clusters):
        for ex in [x for d in c.devices for x in d] + c.test:
            assert ex.options == ("no", "yes") and ex.question.endswith(" = ")
            i = int(ex.question.split()[1])
            assert i % 2 == k and ex.options[ex.answer] == ("yes" if i % 3 else "no")
    named = [dict(r, cluster=["x", "y"][r["cluster"]]) for r in rows]
    ds2 = load_user_dataset(_write(tmp_path, named, "n.jsonl"), ["x", "y"], 2, seed=1)
    assert [len(c.test) for c in ds2.clusters] == [len(c.test) for c in ds.clusters]


@pytest.mark.parametrize(
    "rows, what",
    [
        (["{not json"], r"d\.jsonl:1: not a JSON object"),
        ([{"domain": "a", "question": "q", "options": ["x"], "answer": 0}], r":1: options"),
        ([{"domain": "a", "question": "q", "options": ["x", "y"], "answer": "z"}], r":1: answer"),
        ([{"question": "q", "options": ["x", "y"], "answer": 0}], r":1: every record needs"),
        (
            [
                {"cluster": 0, "question": "q", "options": ["x", "y"], "answer": 0},
                {"cluster": 5, "question": "q", "options": ["x", "y"], "answer": 0},
            ],
            r":2: cluster 5 is not",
        ),
        ([{"domain": "a", "sentence1": "s", "sentence2": "t", "label": 1}], "two distinct labels"),
        ([{"domain": "a", "text": "hello"}], r":1: neither an MCQA record"),
        ([], "no records"),
    ],
)
def test_bad_files_give_file_and_line(tmp_path, rows, what):
    with pytest.raises(UserError, match=what) as e:
        load_user_dataset(_write(tmp_path, rows), ["a", "b"], 2, seed=0)
    assert "\n" not in str(e.value)


def test_learn_with_own_data_runs(cli, tmp_path):
    r = cli("learn", "--data", str(MCQA), "--cycles", "1", "--json", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert len(out["cycles"]) == 1 and 0.0 <= out["cycles"][0]["accuracy_global"] <= 1.0
    r = cli("learn", "--data", str(PAIRS), "--cycles", "1", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # the embedded model reads only its character set: other text is named by file and line
    bad = _write(
        tmp_path,
        [
            {"domain": "a", "question": f"café {i} ?", "options": ["x", "y"], "answer": 0}
            for i in range(30)
        ],
    )
    r = cli("learn", "--data", str(bad), "--cycles", "1", timeout=300)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{bad}:" in lines[0] and "'é'" in lines[0]


def test_scenario_data_table(tmp_path):
    from nodes.fl_setup import build_strategy
    from testbed.fl.user_data import load_user_dataset
    from testbed.scenario import load_scenario

    (tmp_path / "q.jsonl").write_text(MCQA.read_text())
    p = tmp_path / "s.toml"
    p.write_text(
        '[scenario]\nname = "own"\n[data]\npath = "q.jsonl"\nkind = "mcqa"\n'
        "[algorithm]\nmajor_fraction = 1.0\n"
        + "".join(f'[[cluster]]\nid = "{c}"\nlat_deg = 48\nlon_deg = 11\n' for c in "abc")
    )
    scn = load_scenario(p)
    assert scn.data.path == tmp_path / "q.jsonl"
    assert load_scenario(p).to_dict()["data"]["path"] == str(tmp_path / "q.jsonl")
    _, global_test = build_strategy(scn, threads=1)
    want = load_user_dataset(tmp_path / "q.jsonl", ["a", "b", "c"], 2, seed=0, major_fraction=1.0)
    assert [_key(x) for x in global_test] == [_key(x) for x in want.global_test]
    bad = tmp_path / "b.toml"
    bad.write_text(p.read_text().replace("q.jsonl", "missing.jsonl"))
    with pytest.raises(ConfigError, match=r"b\.toml: data\.path: no such file"):
        load_scenario(bad)


def test_checkpoint_without_a_tokenizer_is_one_line(cli, tmp_path):
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(
        vocab_size=80, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
        num_experts_per_tok=2, max_position_embeddings=64,
    )  # fmt: skip
    d = tmp_path / "ckpt"
    MixtralForCausalLM(cfg).save_pretrained(d)
    r = cli("learn", "--model", str(d), "--cycles", "1", timeout=300)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert str(d) in lines[0] and "no tokenizer" in lines[0] and "save_pretrained" in lines[0]


def test_cuda_n_devices():
    import torch

    from nodes.fl_setup import torch_device
    from testbed.scenario import load_scenario

    scn = load_scenario("default").with_overrides(['model.device="cuda:1"'])
    assert scn.model.device == "cuda:1"
    with pytest.raises(ConfigError, match="cuda or cuda:N"):
        load_scenario("default").with_overrides(['model.device="cuda:x"'])
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda:1 but no CUDA device"):
            torch_device("cuda:1")
    else:
        n = torch.cuda.device_count()
        assert torch_device("cuda:0").index == 0
        with pytest.raises(RuntimeError, match="only"):
            torch_device(f"cuda:{n}")


@pytest.mark.parametrize(
    "text, what",
    [
        (
            '{"domain":"a","question":"q","options":["a","b"],"answer":' + "9" * 5000 + "}",
            "not a JSON object",
        ),
        ("[" * 5000 + "]" * 5000, "not a JSON object"),
        ("x" * 30_000, "longer than"),
        ('{"domain":"a","cluster":0,"question":"q","options":["a","b"],"answer":0}', "not both"),
        (
            '{"domain":"a","question":"' + "q" * 3000 + '","options":["a","b"],"answer":0}',
            "longer than",
        ),
        (
            '{"domain":"a","sentence1":"s","sentence2":"t","label":1}\n'
            '{"domain":"a","sentence1":"s","sentence2":"t","label":"1"}',
            "not a mix",
        ),
        (
            '{"domain":1,"question":"q","options":["a","b"],"answer":0}\n'
            '{"domain":"1","question":"q","options":["a","b"],"answer":0}',
            "not a mix",
        ),
    ],
)
def test_hostile_files_are_one_line_errors(tmp_path, text, what):
    p = tmp_path / "h.jsonl"
    p.write_text(text + "\n")
    with pytest.raises(UserError, match=what) as e:
        load_user_dataset(p, ["a", "b"], 2, seed=0)
    assert "\n" not in str(e.value)


def test_a_bom_is_fine_and_a_directory_is_named(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + MCQA.read_bytes())
    assert load_user_dataset(p, ["a", "b", "c"], 2, seed=0).kind == "mcqa"
    with pytest.raises(UserError, match="is a directory"):
        load_user_dataset(tmp_path, ["a"], 2, seed=0)


def test_data_can_be_set_from_the_command_line():
    from testbed.scenario import load_scenario

    scn = load_scenario("default").with_overrides([f'data.path="{MCQA}"', 'data.kind="mcqa"'])
    assert scn.data.path == MCQA and scn.data.kind == "mcqa"
