"""`testbed report`: figures and a self-contained HTML page from a run directory.

The run directories are written here by a helper that follows the run-directory layout
(issue 6 contract, section 2): two algorithms, three clusters, a few orbital cycles, some
uploads that need a second pass, and late / lost / not-sent payloads.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from testbed.errors import UserError

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLUSTERS = ("c1", "c2", "c3")
SLOT_S = 120.0
CYCLES = 3
DEVICES = 2


def _slot(cycle: int, ci: int) -> tuple[float, float]:
    """Ideal schedule: one cluster per slot, consecutive; cycles numbered from 1."""
    a = ((cycle - 1) * len(CLUSTERS) + ci) * SLOT_S
    return a, a + SLOT_S


def _write_jsonl(path: Path, rows: list[dict[str, Any]], garbage: list[str] = ()) -> None:
    lines = [json.dumps(r) for r in rows]
    for i, g in enumerate(garbage):  # spread malformed lines through the file
        lines.insert(min(2 * i + 1, len(lines)), g)
    path.write_text("\n".join(lines) + "\n")


def write_algorithm(root: Path, name: str, slow: float, garbage: dict[str, list[str]]) -> dict:
    """One ``RUN/<name>/`` subdirectory; returns the records written (for the assertions).

    ``slow`` scales upload times: with ``slow`` large, some uploads overrun their slot and are
    accepted in the cluster's next slot (2 passes) → "late" at the aggregation.
    """
    d = root / name
    (d / "payloads").mkdir(parents=True)
    (d / "nodes").mkdir()
    windows = {
        cid: [list(_slot(k, i)) for k in range(1, CYCLES + 2)] for i, cid in enumerate(CLUSTERS)
    }
    scenario = "\n".join(
        [
            "[scenario]",
            'name = "unit"',
            "seed = 0",
            "[algorithm]",
            f'name = "{name}"',
            f"cycles = {CYCLES}",
            "target_accuracy = 0.6",
            "[link]",
            "fragment_size = 512",
        ]
        + [f'[[cluster]]\nid = "{c}"\nlat_deg = 0.0\nlon_deg = 0.0\ndevices = 2' for c in CLUSTERS]
    )
    (d / "scenario.toml").write_text(scenario + "\n")
    (d / "emulator.toml").write_text("[emulator]\n")
    (d / "windows.json").write_text(json.dumps(windows))

    uploads, aggs, metrics, link = [], [], [], []
    for k in range(1, CYCLES + 1):
        for i, cid in enumerate(CLUSTERS):
            aos, los = _slot(k, i)
            included, missing = [], []
            for dev in range(DEVICES):
                payload = f"{cid}-d{dev}-r{k}.safetensors"
                (d / "payloads" / payload).write_bytes(b"\0" * 16)
                if (k, cid, dev) == (2, "c3", 1):  # device dropped out: nothing sent
                    missing.append(
                        {"payload": payload, "cluster": cid, "device": dev, "reason": "not_sent"}
                    )
                    continue
                first = aos + 10.0 + 5 * dev
                size = 200_000 + 10_000 * dev
                up = slow * (30.0 + 20 * dev + 15 * i + 5 * k)
                lost = (k, cid, dev) == (1, "c2", 0) and name == "baseline"
                accepted: float | None = first + up
                passes = 1
                if accepted is not None and accepted > los - 5:  # overran: next pass
                    accepted = windows[cid][k][0] + (accepted - los) + 5
                    passes = 2
                if lost:
                    accepted, passes = None, 1
                rec = {
                    "transfer_id": f"{k:02d}{i:02d}{dev:02d}",
                    "sender": f"{cid}-d{dev}",
                    "round": k,
                    "kind": "lora",
                    "size_bytes": size,
                    "sha256": "0" * 64,
                    "status": "accepted" if accepted is not None else "incomplete",
                    "first_tx_s": first,
                    "accepted_s": accepted,
                    "confirmed_s": accepted,
                    "upload_time_s": None if accepted is None else accepted - first,
                    "wall_s": 1.0,
                    "passes_used": passes,
                    "fragments": 200,
                    "fragments_sent": 220,
                    "fragments_retransmitted": 20,
                    "goodput_bps": None if accepted is None else size * 8 / (accepted - first),
                    "airtime_s": 20.0,
                    "predicted_shannon_s": 0.4 * up,
                    "stats": {},
                    "cluster": cid,
                    "device": dev,
                    "cycle": k,
                    "stage": "full",
                    "payload": payload,
                    "ready_s": first - 1.0,
                    "window_los_s": los,
                    **LINK,
                    "shannon_bps": 4.0e6 + 1e5 * k,
                    "occupied_shannon_bps": 3.9e6 + 1e5 * k,
                    "modcod_rate_bps": 2.5e6 + 1e4 * dev,
                    "efficiency_vs_shannon": None
                    if accepted is None
                    else size * 8 / (accepted - first) / (4.0e6 + 1e5 * k),
                }
                uploads.append(rec)
                t_agg = los
                if accepted is not None and accepted <= t_agg:
                    included.append(
                        {"payload": payload, "cluster": cid, "device": dev, "accepted_s": accepted}
                    )
                else:
                    missing.append(
                        {
                            "payload": payload,
                            "cluster": cid,
                            "device": dev,
                            "reason": "lost" if accepted is None else "late",
                        }
                    )
            aggs.append(
                {
                    "cycle": k,
                    "cluster": cid,
                    "stage": "full",
                    "t_agg_s": los,
                    "included": included,
                    "missing": missing,
                }
            )
            for t in range(int(aos) - 120, int(los) + 121, 5):
                x = (t - (aos + los) / 2) / 60
                link.append(
                    {
                        "cluster": cid,
                        "t_s": float(t),
                        "elevation_deg": max(0.0, 60 - 20 * x * x),
                        "snr_db": 12 - 3 * x * x,
                        "doppler_hz": -400 * x,
                        "visible": aos <= t <= los,
                    }
                )
        acc = 0.3 + (0.15 if slow < 1.5 else 0.1) * k
        metrics.append(
            {
                "algorithm": name,
                "cycle": k,
                "t_s": _slot(k, len(CLUSTERS) - 1)[1],
                "wall_s": 10.0 * k,
                "accuracy_global": acc,
                "accuracy_local": [acc - 0.05, acc + 0.02, acc - 0.01],
                "uplink_bytes": 1_000_000 * k,
                "peak_memory_bytes": 1 << 28,
            }
        )
    _write_jsonl(d / "uploads.jsonl", uploads, garbage.get("uploads", []))
    _write_jsonl(d / "aggregations.jsonl", aggs, garbage.get("aggregations", []))
    _write_jsonl(d / "metrics.jsonl", metrics, garbage.get("metrics", []))
    _write_jsonl(d / "link.jsonl", link, garbage.get("link", []))
    bursts = [
        {
            "tx_start": 10.0 + 0.1 * j,
            "snr_db": 3.0,
            "esn0_db": 3.2,
            "esn0_pred_db": 3.1,
            "esn0_est_db": 2.9,
            "modcod": "qpsk-1/2",
        }
        for j in range(20)
    ]
    _write_jsonl(d / "bursts-c1.jsonl", bursts, ['{"tx_start": "soon"}'])
    (d / "events.jsonl").write_text("")
    return {"uploads": uploads, "aggregations": aggs, "metrics": metrics}


# Malformed lines: not JSON, not an object, a required key missing, a time that is not a
# number, a membership that is not a list.
ALGS = {
    "emsfl-enhanced": (
        1.0,
        {
            "metrics": ["{not json"],
            "aggregations": ['{"cycle": 1, "included": "x", "missing": []}'],
        },
    ),
    "baseline": (
        2.2,
        {
            "uploads": ["[1, 2]", '{"status": "accepted"}'],
            "link": ["xx", '{"cluster": "c1", "t_s": null}'],
        },
    ),
}
MALFORMED = {
    "emsfl-enhanced": {"metrics.jsonl": 1, "aggregations.jsonl": 1, "bursts-c1.jsonl": 1},
    "baseline": {"uploads.jsonl": 2, "link.jsonl": 2, "bursts-c1.jsonl": 1},
}


LINK = {
    "bandwidth_hz": 5.0e6,
    "symbol_rate_hz": 5.0e6 / 1.05,
    "rolloff": 0.05,
    "occupied_bandwidth_hz": 5.0e6,
    "modcod_policy": "acm",
    "acm_margin_db": 1.0,
    "acm_prediction": "feedback",
}


def write_run(root: Path) -> dict[str, dict]:
    """A complete run directory under ``root``; returns the records per algorithm."""
    root.mkdir(parents=True, exist_ok=True)
    recs = {n: write_algorithm(root, n, slow, g) for n, (slow, g) in ALGS.items()}
    (root / "run.json").write_text(
        json.dumps(
            {
                "scenario": "unit",
                "algorithms": list(ALGS),
                "started_wall": "2026-01-01T00:00:00Z",
                "finished_wall": "2026-01-01T00:05:00Z",
                "status": "ok",
                "report": None,
            }
        )
    )
    return recs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A run directory and the report written from it (once per module: matplotlib is slow)."""
    from testbed.report import write_report

    root = tmp_path_factory.mktemp("run") / "RUN"
    recs = write_run(root)
    res = write_report(root)
    return root, recs, res


def _parser() -> argparse.ArgumentParser:
    from testbed.commands import report

    p = argparse.ArgumentParser(prog="testbed")
    report.register(p.add_subparsers(dest="command"))
    return p


# -- the page and the figures -----------------------------------------------------------------
def test_html_is_self_contained(built):
    root, _, res = built
    assert res.report == root / "report" / "index.html"
    page = res.report.read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == len(res.figures)
    assert "href=" not in page and "<script" not in page
    assert "data:image/png;base64," in page


def test_pngs_exist_and_are_png(built):
    root, _, res = built
    names = {p.name for p in res.figures}
    assert {
        "accuracy_cycle.png",
        "accuracy_time.png",
        "upload_times.png",
        "goodput_shannon.png",
        "capacities.png",
        "esn0_emsfl-enhanced.png",
        "esn0_baseline.png",
        "link_emsfl-enhanced.png",
        "link_baseline.png",
        "membership_emsfl-enhanced.png",
        "membership_baseline.png",
    } <= names
    for p in res.figures:
        assert p.parent == root / "report"
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_html_names_algorithms_and_missing_payloads(built):
    _, recs, res = built
    page = res.report.read_text()
    for name, r in recs.items():
        assert name in page
        for agg in r["aggregations"]:
            for m in agg["missing"]:
                row = re.search(
                    rf"<td[^>]*>{re.escape(name)}</td><td[^>]*>{re.escape(m['payload'])}</td>"
                    rf"<td[^>]*>{m['reason']}</td>",
                    page,
                )
                assert row, (name, m)


def test_summary_matches_input(built):
    _, recs, res = built
    s = res.summary
    assert set(s["algorithms"]) == set(ALGS)
    for name, r in recs.items():
        a = s["algorithms"][name]
        ups = r["uploads"]
        times = [u["upload_time_s"] for u in ups if u["upload_time_s"] is not None]
        assert a["uploads"] == len(ups)
        assert a["uploads_multi_pass"] == sum(u["passes_used"] > 1 for u in ups)
        assert a["upload_time_mean_s"] == pytest.approx(sum(times) / len(times))
        assert a["upload_time_max_s"] == pytest.approx(max(times))
        missing = [m for g in r["aggregations"] for m in g["missing"]]
        assert a["missed_aggregations"] == len(missing)
        for reason in ("late", "lost", "not_sent"):
            assert a["missing_by_reason"][reason] == sum(m["reason"] == reason for m in missing)
        accs = [m["accuracy_global"] for m in r["metrics"]]
        assert a["final_accuracy"] == pytest.approx(accs[-1])
        first = next((i + 1 for i, x in enumerate(accs) if x >= 0.6), None)
        assert a["cycles_to_target"] == first
        assert a["malformed_lines"] == MALFORMED[name]
    # the fixture is realistic: both kinds of trouble happen
    assert s["algorithms"]["baseline"]["uploads_multi_pass"] > 0
    assert s["algorithms"]["baseline"]["missing_by_reason"]["lost"] == 1
    assert s["algorithms"]["emsfl-enhanced"]["cycles_to_target"] == 2
    assert s["algorithms"]["baseline"]["cycles_to_target"] == 3
    assert s["malformed_lines"] == 8


def test_summary_counts_each_payload_once_in_its_final_state(built, tmp_path):
    """uploads.jsonl holds one record per attempt per window; the summary counts payloads."""
    import shutil

    from testbed.report import load_run, summarize

    root, recs, _ = built
    copy = tmp_path / "RUN"
    shutil.copytree(root, copy)
    ups = recs["baseline"]["uploads"]
    multi = [u for u in ups if u["passes_used"] > 1]
    assert multi
    rows = []
    for u in ups:
        if u in multi:  # the attempt in the first window, written when that window closed;
            # nothing had been reported on the air yet, so its first_tx_s is the window's end
            rows.append(
                {
                    **u,
                    "status": "incomplete",
                    "accepted_s": None,
                    "upload_time_s": None,
                    "passes_used": 0,
                    "first_tx_s": u["window_los_s"] + 500.0,
                }
            )
        rows.append(u)
    _write_jsonl(copy / "baseline" / "uploads.jsonl", rows)
    a = summarize(load_run(copy))["algorithms"]["baseline"]
    assert a["uploads"] == len(ups) and a["upload_records"] == len(ups) + len(multi)
    assert a["uploads_accepted"] == sum(u["status"] == "accepted" for u in ups)
    assert a["uploads_multi_pass"] == len(multi)
    assert a["uplink_bytes"] == sum(u["size_bytes"] for u in ups)
    assert sum(a["passes_used"].values()) == len(ups) and "0" not in a["passes_used"]


def test_link_settings_and_capacities_side_by_side(built):
    _, recs, res = built
    for name, r in recs.items():
        a = res.summary["algorithms"][name]
        assert a["link"] == {**LINK, "fragment_size": 512}  # the scenario's, not the default
        acc = [u for u in r["uploads"] if u["status"] == "accepted"]
        for k in ("goodput_bps", "modcod_rate_bps", "shannon_bps", "efficiency_vs_shannon"):
            assert a["capacities"][k] == pytest.approx(sum(u[k] for u in acc) / len(acc))
    page = res.report.read_text()
    assert "<h2>Link</h2>" in page and "goodput / Shannon" in page
    assert re.search(r"baseline</td><td[^>]*>5,000,000</td>", page)


def test_capacities_get_a_log_axis_only_when_they_differ_by_100x():
    from testbed.report import needs_log_scale

    assert not needs_log_scale([2e4, 1.9e6])  # 95×
    assert needs_log_scale([1.9e4, 1.9e6, 4e6])
    assert not needs_log_scale([])


def test_malformed_lines_reported_in_html(built):
    _, _, res = built
    page = res.report.read_text()
    assert "Malformed lines were skipped" in page
    assert re.search(r"baseline</td><td[^>]*>uploads.jsonl</td><td[^>]*>2<", page)
    assert re.search(r"emsfl-enhanced</td><td[^>]*>metrics.jsonl</td><td[^>]*>1<", page)


def test_membership_grid_codes(built):
    from testbed.report import _membership as membership
    from testbed.report import load_run

    root, recs, _ = built
    run = load_run(root)
    alg = next(a for a in run.algorithms if a.name == "baseline")
    rows, cols, grid = membership(alg)
    assert len(cols) == CYCLES * len(CLUSTERS)
    assert rows == sorted(f"{c}/{d}" for c in CLUSTERS for d in range(DEVICES))
    code = {"late": 2, "lost": 3, "not_sent": 4}
    for j, agg in enumerate(recs["baseline"]["aggregations"]):
        for e in agg["included"]:
            assert grid[rows.index(f"{e['cluster']}/{e['device']}")][j] == 1
        for e in agg["missing"]:
            assert grid[rows.index(f"{e['cluster']}/{e['device']}")][j] == code[e["reason"]]


# -- command line -----------------------------------------------------------------------------
def test_handler_json_and_out_dir(built, tmp_path, capsys):
    root, _, _ = built
    out = tmp_path / "elsewhere"
    args = _parser().parse_args(["report", str(root), "--out", str(out), "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"] == str(out / "index.html")
    assert all(Path(f).parent == out and Path(f).is_file() for f in doc["figures"])
    assert doc["summary"]["algorithms"]["baseline"]["missing_by_reason"]["lost"] == 1
    # the page works when copied alone
    alone = tmp_path / "alone.html"
    alone.write_bytes(Path(doc["report"]).read_bytes())
    assert alone.read_text().count("data:image/png;base64,") == len(doc["figures"])


def test_handler_text(tmp_path, capsys):
    root = tmp_path / "run"
    (root / "baseline").mkdir(parents=True)
    (root / "baseline" / "metrics.jsonl").write_text(
        json.dumps({"cycle": 1, "t_s": 600.0, "accuracy_global": 0.5}) + "\nnot json\n"
    )
    (root / "run.json").write_text(json.dumps({"scenario": "x", "algorithms": ["baseline"]}))
    args = _parser().parse_args(["report", str(root)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "baseline: final accuracy 0.500" in out
    assert "1 malformed input line(s) skipped" in out
    assert f"report: {root / 'report' / 'index.html'}" in out


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("missing", "not a run directory"),
        ("file", "not a run directory"),
        ("no_run_json", "no run.json"),
        ("bad_run_json", "not valid JSON"),
        ("no_algorithms", "no algorithm subdirectory"),
    ],
)
def test_bad_input_is_one_line_user_error(tmp_path, setup, needle):
    from testbed.report import write_report

    target = tmp_path / "run"
    if setup == "file":
        target.write_text("x")
    elif setup != "missing":
        target.mkdir()
        if setup == "bad_run_json":
            (target / "run.json").write_text("{oops")
        elif setup == "no_algorithms":
            (target / "run.json").write_text(json.dumps({"algorithms": ["baseline"]}))
    with pytest.raises(UserError) as ei:
        write_report(target)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg


def test_partial_run_is_reported(tmp_path):
    """An interrupted run: one algorithm missing, files absent, empty records."""
    from testbed.report import write_report

    root = tmp_path / "run"
    (root / "baseline").mkdir(parents=True)
    (root / "baseline" / "metrics.jsonl").write_text("garbage\n")
    (root / "run.json").write_text(
        json.dumps({"scenario": "x", "algorithms": ["emsfl", "baseline"], "status": "failed"})
    )
    res = write_report(root)
    a = res.summary["algorithms"]["baseline"]
    assert list(res.summary["algorithms"]) == ["baseline"]
    assert a["malformed_lines"] == {"metrics.jsonl": 1} and a["final_accuracy"] is None
    assert "uploads.jsonl" in a["absent_files"]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in res.figures)


@pytest.mark.integration
def test_cli_end_to_end(built, tmp_path, cli):
    """``python -m testbed.cli report`` as a user runs it (needs the lead's wiring in cli.py)."""
    root, _, _ = built
    r = cli("report", str(root), "--out", str(tmp_path / "r"), "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["report"] == str(tmp_path / "r" / "index.html")
    bad = cli("report", str(tmp_path / "nope"), timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "not a run directory" in bad.stderr


# -- issue 14: the page parsed as HTML, the per-pass table, censoring, a real browser ----------
def _html_parts(page: str) -> tuple[list[str], list[str], list[list[list[str]]]]:
    """(headings, img srcs, tables as rows of cell texts) with the standard-library parser."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.heads: list[str] = []
            self.imgs: list[str] = []
            self.tables: list[list[list[str]]] = []
            self._h = False
            self._cell: list[str] | None = None

        def handle_starttag(self, tag, attrs):
            if tag in ("h2", "h3"):
                self._h = True
                self.heads.append("")
            elif tag == "img":
                self.imgs.append(dict(attrs).get("src", ""))
            elif tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self._cell = []

        def handle_endtag(self, tag):
            if tag in ("h2", "h3"):
                self._h = False
            elif tag in ("td", "th") and self._cell is not None:
                self.tables[-1][-1].append("".join(self._cell))
                self._cell = None

        def handle_data(self, data):
            if self._h:
                self.heads[-1] += data
            if self._cell is not None:
                self._cell.append(data)

    p = P()
    p.feed(page)
    return p.heads, p.imgs, p.tables


def _kb(text: str) -> float:
    return float(text.replace(",", ""))


def test_every_image_resolves_and_the_tables_are_there(built):
    import base64

    _, _, res = built
    heads, imgs, tables = _html_parts(res.report.read_text())
    assert {"Summary", "Link", "Link settings", "Passes", "Missing payloads", "Figures"} <= set(
        heads
    )
    assert len(imgs) == len(res.figures) and "wall_time.png" in {p.name for p in res.figures}
    for src in imgs:
        head, _, b64 = src.partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(b64, validate=True)[:8] == PNG_MAGIC
    link_settings = next(t for t in tables if t[0][:2] == ["algorithm", "schedule"])
    assert all(row[1] == "idealised slots" for row in link_settings[1:])


def test_pass_table_numbers_match_the_records(built):
    root, recs, res = built
    _, _, tables = _html_parts(res.report.read_text())
    pass_tables = [t for t in tables if t[0][:3] == ["cluster", "window", "AOS [s]"]]
    assert len(pass_tables) == len(recs)
    for (name, r), t in zip(recs.items(), pass_tables, strict=True):
        ups = r["uploads"]
        # the run's end: its last cycle, or a later record (an upload accepted after it)
        end = max(
            [m["t_s"] for m in r["metrics"]]
            + [u[k] for u in ups for k in ("first_tx_s", "accepted_s") if u[k] is not None]
        )
        windows = json.loads((root / name / "windows.json").read_text())
        n_windows = sum(1 for ws in windows.values() for a, _ in ws if a < end)
        assert len(t) - 1 == n_windows
        for row in t[1:]:
            cid, a, b = row[0], _kb(row[2]), _kb(row[3])
            offered = sum(u["size_bytes"] for u in ups if u["cluster"] == cid
                          and a <= u["first_tx_s"] < b)  # fmt: skip
            accepted = sum(
                u["size_bytes"]
                for u in ups
                if u["cluster"] == cid and u["accepted_s"] is not None and a <= u["accepted_s"] <= b
            )
            assert _kb(row[6]) == pytest.approx(offered / 1e3, abs=0.05), (name, row)
            assert _kb(row[7]) == pytest.approx(accepted / 1e3, abs=0.05), (name, row)
            assert row[5] != "–" and _kb(row[5]) > 0  # the Shannon bound of the window


def test_upload_times_are_kaplan_meier_with_censoring():
    from testbed.report import AlgorithmRun, accepted_fraction, upload_time_km

    def alg(censor_first_tx: float) -> AlgorithmRun:
        a = AlgorithmRun("x", Path("."))
        a.metrics = [{"t_s": 100.0}]
        a.final_uploads = [
            {"status": "accepted", "upload_time_s": 10.0, "first_tx_s": 0.0},
            {"status": "accepted", "upload_time_s": 20.0, "first_tx_s": 0.0},
            {"status": "incomplete", "upload_time_s": None, "first_tx_s": censor_first_tx},
        ]
        return a

    # censored after every event (in flight 70 s at the end): F stops at 2/3, never 1
    t, f, n, total = upload_time_km(alg(30.0))
    assert (t, n, total) == ([10.0, 20.0], 2, 3) and f == pytest.approx([1 / 3, 2 / 3])
    # censored at 15 s (first_tx 85, the run ends at 100): by hand, S(10) = 2/3, then one at
    # risk at 20 s: S(20) = 0
    t, f, n, total = upload_time_km(alg(85.0))
    assert f == pytest.approx([1 / 3, 1.0])
    # ...which is why the figure's main curve is the observed fraction of all N: it ends at
    # n/N = 2/3 whatever the censoring times
    assert accepted_fraction(alg(85.0)) == ([10.0, 20.0], pytest.approx([1 / 3, 2 / 3]))
    # all accepted: the plain ECDF
    a = alg(0.0)
    a.final_uploads = a.final_uploads[:2]
    assert upload_time_km(a)[1] == pytest.approx([0.5, 1.0])


def test_idealised_schedule_is_captioned(built):
    _, _, res = built
    page = res.report.read_text()
    caps = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert sum("IDEALISED SCHEDULE" in c for c in caps) == len(ALGS)
    assert all("IDEALISED" not in c for c in caps if "elevation / SNR" not in c)
    assert page.count("synthetic square wave") == len(ALGS)


@pytest.mark.skipif(
    not any(__import__("shutil").which(b) for b in ("chromium", "chromium-browser")),
    reason="needs a Chromium for the headless screenshot",
)
def test_report_renders_in_headless_chromium(built, tmp_path):
    import shutil
    import subprocess

    import matplotlib.image as mpimg
    import numpy as np

    _, _, res = built
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    r = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,2400", res.report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file(), r.stderr[-2000:]
    img = mpimg.imread(shot)
    # not a blank page: text, tables and figures give many distinct colours
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50


def test_passes_used_counts_each_payload_once(built):
    from testbed.report import load_run, summarize

    root, recs, _ = built
    s = summarize(load_run(root))
    for name, r in recs.items():
        assert sum(s["algorithms"][name]["passes_used"].values()) == len(r["uploads"])
