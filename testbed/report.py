"""Run report: figures and one self-contained HTML page from a run directory.

Reads the run directory written by ``testbed run`` (``run.json`` plus one subdirectory per
algorithm with ``uploads.jsonl``, ``aggregations.jsonl``, ``metrics.jsonl``, ``link.jsonl``,
``windows.json`` and ``scenario.toml``) and writes, under ``RUN/report/`` by default:

- ``accuracy_cycle.png``: global accuracy (solid) and per-cluster local accuracy (dashed)
  against the orbital cycle, one colour per algorithm;
- ``accuracy_time.png``: global accuracy against emulated time (``metrics.t_s``);
- ``upload_times.png``: ECDF of the measured upload times and the passes each upload used;
- ``goodput_shannon.png``: achieved goodput against the rate the pass-integrated Shannon
  capacity predicts for the same bytes (``size_bytes·8 / predicted_shannon_s``), per upload;
- ``capacities.png``: per upload, side by side on one scale (logarithmic where they differ
  by more than 100×): the goodput, the rate of the MODCODs its frames used, Shannon over the
  occupied band and Shannon over the whole sub-channel, all over the upload's interval;
- ``link_<algorithm>.png``: elevation, SNR and Doppler per cluster with contact windows
  shaded and each upload drawn as a span from first transmission to acceptance;
- ``esn0_<algorithm>.png``: per delivered frame (``bursts-<cluster>.jsonl``), the link-budget
  SNR, the Es/N0 the channel applied, the Es/N0 ACM chose from and the receiver's estimate,
  with the chosen MODCOD's threshold;
- ``membership_<algorithm>.png``: which payload was included, late, lost or not sent at each
  aggregation;
- ``index.html``: every figure embedded as a ``data:image/png;base64`` URI, the summary table,
  the missing-payload table and the count of malformed input lines.

Malformed JSONL lines are skipped and counted, never fatal; a run directory that is not one
raises :class:`testbed.errors.UserError` with a one-line message.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import UserError

__all__ = [
    "AlgorithmRun",
    "ReportResult",
    "RunData",
    "load_run",
    "needs_log_scale",
    "summarize",
    "write_report",
]

log = logging.getLogger(__name__)

_JSONL_FILES = ("uploads", "aggregations", "metrics", "link")
# Upload-record fields that describe the link (the same in every record of a run).
_LINK_FIELDS = (
    "bandwidth_hz",
    "symbol_rate_hz",
    "rolloff",
    "occupied_bandwidth_hz",
    "modcod_policy",
    "acm_margin_db",
    "acm_prediction",
)
_CAPACITIES = (
    ("goodput_bps", "goodput"),
    ("modcod_rate_bps", "MODCOD rate (on air)"),
    ("occupied_shannon_bps", "Shannon, occupied band"),
    ("shannon_bps", "Shannon, sub-channel"),
)
# Keys without which a line of each file cannot be used (it is counted as malformed).
_REQUIRED = {
    "uploads": ("status", "first_tx_s"),
    "aggregations": ("cycle", "included", "missing"),
    "metrics": ("cycle", "t_s", "accuracy_global"),
    "link": ("cluster", "t_s"),
    "bursts": ("tx_start",),
}
# Of those, keys whose value must be a finite number, and keys whose value must be a list.
_NUMERIC = {
    "uploads": ("first_tx_s",),
    "metrics": ("t_s",),
    "link": ("t_s",),
    "bursts": ("tx_start",),
}
_LISTS = {"aggregations": ("included", "missing")}
_MISSING_REASONS = ("late", "lost", "not_sent")
_STATUS_COLOURS = {
    "accepted": "#2ca02c",
    "incomplete": "#ff7f0e",
    "hash_mismatch": "#d62728",
    "cancelled": "#7f7f7f",
    "rejected": "#9467bd",
}


@dataclass
class AlgorithmRun:
    """Everything read from one ``RUN/<algorithm>/`` subdirectory."""

    name: str
    path: Path
    uploads: list[dict[str, Any]] = field(default_factory=list)  # every record, by first_tx_s
    final_uploads: list[dict[str, Any]] = field(default_factory=list)  # the last one per payload
    aggregations: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    link: list[dict[str, Any]] = field(default_factory=list)
    bursts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # cluster → frames
    link_settings: dict[str, Any] = field(default_factory=dict)
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    clusters: list[str] = field(default_factory=list)
    target_accuracy: float | None = None
    schedule_mode: str = "ideal"  # "ideal" (the paper's slots) or "orbit"
    scenario_link: dict[str, Any] = field(default_factory=dict)  # [link] of scenario.toml
    malformed: dict[str, int] = field(default_factory=dict)  # file name → skipped lines
    absent: list[str] = field(default_factory=list)  # expected files that are not there


@dataclass
class RunData:
    """A run directory: ``run.json`` and one :class:`AlgorithmRun` per algorithm."""

    path: Path
    info: dict[str, Any]
    algorithms: list[AlgorithmRun]


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    report: Path
    figures: list[Path]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``testbed report --json``)."""
        return {
            "report": str(self.report),
            "figures": [str(p) for p in self.figures],
            "summary": self.summary,
        }


# -- reading ----------------------------------------------------------------------------------
def _valid(obj: Any, stem: str) -> bool:
    """Whether one parsed line of ``<stem>.jsonl`` is usable."""
    return (
        isinstance(obj, dict)
        and all(k in obj for k in _REQUIRED[stem])
        and all(_num(obj[k]) is not None for k in _NUMERIC.get(stem, ()))
        and all(isinstance(obj[k], list) for k in _LISTS.get(stem, ()))
    )


def _read_jsonl(path: Path, stem: str) -> tuple[list[dict[str, Any]], int]:
    """Objects of ``<stem>.jsonl`` and the number of malformed lines skipped.

    A line is malformed when it is not JSON, not an object, lacks a required key, or a
    time key is not a number. Blank lines are ignored.
    """
    rows: list[dict[str, Any]] = []
    bad = first_bad = 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from e
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not _valid(obj, stem):
            bad += 1
            first_bad = first_bad or lineno
            continue
        rows.append(obj)
    if bad:
        log.warning("%s: %d malformed line(s) skipped (first: line %d)", path, bad, first_bad)
    return rows, bad


def _num(x: Any) -> float | None:
    """``x`` as a finite float, or None."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _read_scenario(alg: AlgorithmRun) -> None:
    """Cluster ids and target accuracy from ``scenario.toml`` (optional)."""
    path = alg.path / "scenario.toml"
    if not path.is_file():
        alg.absent.append("scenario.toml")
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        log.warning("%s: unreadable scenario (%s); cluster names and target unknown", path, e)
        alg.malformed["scenario.toml"] = 1
        return
    clusters = data.get("cluster")
    if isinstance(clusters, list):
        alg.clusters = [str(c.get("id")) for c in clusters if isinstance(c, dict) and "id" in c]
    algo = data.get("algorithm")
    if isinstance(algo, dict):
        alg.target_accuracy = _num(algo.get("target_accuracy"))
    link = data.get("link")
    if isinstance(link, dict) and _num(link.get("fragment_size")) is not None:
        alg.link_settings["fragment_size"] = int(link["fragment_size"])
    if isinstance(link, dict):
        alg.scenario_link = dict(link)
    sched = data.get("schedule")
    if isinstance(sched, dict) and sched.get("mode") in ("ideal", "orbit"):
        alg.schedule_mode = str(sched["mode"])


def _read_windows(alg: AlgorithmRun) -> None:
    """Contact windows from ``windows.json`` (optional)."""
    path = alg.path / "windows.json"
    if not path.is_file():
        alg.absent.append("windows.json")
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        alg.windows = {
            str(cid): [(float(a), float(b)) for a, b in wins] for cid, wins in data.items()
        }
    except (OSError, ValueError, TypeError) as e:
        log.warning("%s: malformed windows file skipped (%s)", path, e)
        alg.malformed["windows.json"] = 1
        alg.windows = {}


def _load_algorithm(name: str, path: Path) -> AlgorithmRun:
    alg = AlgorithmRun(name=name, path=path)
    for stem in _JSONL_FILES:
        f = path / f"{stem}.jsonl"
        if not f.is_file():
            alg.absent.append(f.name)
            continue
        rows, bad = _read_jsonl(f, stem)
        setattr(alg, stem, rows)
        if bad:
            alg.malformed[f.name] = bad
    for f in sorted(path.glob("bursts-*.jsonl")):
        rows, bad = _read_jsonl(f, "bursts")
        alg.bursts[f.name[len("bursts-") : -len(".jsonl")]] = sorted(
            rows, key=lambda r: float(r["tx_start"])
        )
        if bad:
            alg.malformed[f.name] = bad
    _read_scenario(alg)
    if "fragment_size" not in alg.link_settings:
        from testbed.scenario import LinkSpec

        alg.link_settings["fragment_size"] = LinkSpec.fragment_size
    for u in alg.uploads:  # the link as the nodes ran it
        for k in _LINK_FIELDS:
            if k in u and k not in alg.link_settings:
                alg.link_settings[k] = u[k]
    _read_windows(alg)
    alg.metrics.sort(key=lambda m: (_num(m.get("cycle")) or 0.0, _num(m.get("t_s")) or 0.0))
    alg.aggregations.sort(key=lambda a: (_num(a.get("t_agg_s")) or 0.0, str(a.get("cycle"))))
    alg.final_uploads = _final_uploads(alg.uploads)  # in file order, before sorting
    for ups in (alg.uploads, alg.final_uploads):
        ups.sort(key=lambda u: _num(u.get("first_tx_s")) or 0.0)
    alg.link.sort(key=lambda r: (str(r.get("cluster")), _num(r.get("t_s")) or 0.0))
    if not alg.clusters:  # fall back to what the records name
        seen = {str(r["cluster"]) for r in alg.link}
        seen |= {str(u["cluster"]) for u in alg.uploads if "cluster" in u}
        seen |= set(alg.windows)
        alg.clusters = sorted(seen)
    return alg


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory.

    Algorithms are those ``run.json`` lists whose subdirectory exists; without that list,
    every subdirectory holding a ``metrics.jsonl`` or ``uploads.jsonl``.

    Raises
    ------
    UserError
        ``run_dir`` is not a directory, has no readable ``run.json``, or no algorithm
        subdirectory.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"{root}: not a run directory (no such directory)")
    info_path = root / "run.json"
    if not info_path.is_file():
        raise UserError(f"{root}: not a run directory (no run.json)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{info_path}: not valid JSON ({e})") from e
    if not isinstance(info, dict):
        raise UserError(f"{info_path}: expected a JSON object")
    listed = info.get("algorithms")
    names: list[str] = []
    if isinstance(listed, list) and listed:
        for n in listed:
            if (root / str(n)).is_dir():
                names.append(str(n))
            else:
                log.warning("%s: algorithm %s listed in run.json has no subdirectory", root, n)
    else:
        names = sorted(
            d.name
            for d in root.iterdir()
            if d.is_dir() and ((d / "metrics.jsonl").is_file() or (d / "uploads.jsonl").is_file())
        )
    if not names:
        raise UserError(f"{root}: no algorithm subdirectory with run records")
    return RunData(path=root, info=info, algorithms=[_load_algorithm(n, root / n) for n in names])


# -- summary ----------------------------------------------------------------------------------
def _missing_entries(alg: AlgorithmRun) -> list[dict[str, Any]]:
    """One row per payload missing from an aggregation, with its upload record if any."""
    by_payload = {u.get("payload"): u for u in alg.uploads if u.get("payload")}
    rows = []
    for agg in alg.aggregations:
        for m in agg.get("missing") or []:
            if not isinstance(m, dict):
                continue
            up = by_payload.get(m.get("payload"))
            rows.append(
                {
                    "algorithm": alg.name,
                    "cycle": agg.get("cycle"),
                    "phase_cluster": agg.get("cluster"),
                    "stage": agg.get("stage"),
                    "t_agg_s": _num(agg.get("t_agg_s")),
                    "payload": m.get("payload"),
                    "cluster": m.get("cluster"),
                    "device": m.get("device"),
                    "reason": m.get("reason"),
                    "upload_status": None if up is None else up.get("status"),
                    "accepted_s": None if up is None else _num(up.get("accepted_s")),
                    "passes_used": None if up is None else up.get("passes_used"),
                }
            )
    return rows


def _algorithm_summary(alg: AlgorithmRun) -> dict[str, Any]:
    accs = [(m, _num(m.get("accuracy_global"))) for m in alg.metrics]
    accs = [(m, a) for m, a in accs if a is not None]
    cycles_to_target = time_to_target = None
    if alg.target_accuracy is not None:
        for i, (m, a) in enumerate(accs):
            if a >= alg.target_accuracy:
                cycles_to_target = i + 1
                time_to_target = _num(m.get("t_s"))
                break
    finals = alg.final_uploads
    times = [t for u in finals if (t := _num(u.get("upload_time_s"))) is not None]
    missing = _missing_entries(alg)
    reasons = Counter(str(m["reason"]) for m in missing)
    passes = Counter(int(p) for u in finals if (p := _num(u.get("passes_used"))) is not None)
    return {
        "cycles": len(alg.metrics),
        "target_accuracy": alg.target_accuracy,
        "cycles_to_target": cycles_to_target,
        "time_to_target_s": time_to_target,
        "final_accuracy": accs[-1][1] if accs else None,
        "final_t_s": _num(accs[-1][0].get("t_s")) if accs else None,
        "uploads": len(finals),
        "upload_records": len(alg.uploads),
        "uploads_accepted": sum(1 for u in finals if u.get("status") == "accepted"),
        "upload_time_mean_s": sum(times) / len(times) if times else None,
        "upload_time_max_s": max(times) if times else None,
        "uploads_multi_pass": sum(1 for u in finals if (_num(u.get("passes_used")) or 0) > 1),
        "passes_used": {str(k): v for k, v in sorted(passes.items())},
        "aggregations": len(alg.aggregations),
        "aggregations_incomplete": sum(1 for a in alg.aggregations if a.get("missing")),
        "missed_aggregations": len(missing),
        "missing_by_reason": {r: reasons.get(r, 0) for r in (*_MISSING_REASONS,)}
        | {r: n for r, n in reasons.items() if r not in _MISSING_REASONS},
        "uplink_bytes": sum(
            int(u["size_bytes"]) for u in finals if _num(u.get("size_bytes")) is not None
        ),
        "link": dict(alg.link_settings),
        "capacities": _capacity_means(alg),
        "malformed_lines": dict(alg.malformed),
        "absent_files": list(alg.absent),
    }


def _final_uploads(uploads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The final record of each payload: ``uploads.jsonl`` holds one record per attempt per
    window, and the last one of a payload (by transfer id, else by payload name) is final."""
    last: dict[Any, dict[str, Any]] = {}
    for i, u in enumerate(uploads):
        key = u.get("transfer_id") or u.get("payload") or ("record", i)
        last.pop(key, None)  # re-insert: order of the final records is their last appearance
        last[key] = u
    return list(last.values())


def _capacity_means(alg: AlgorithmRun) -> dict[str, float | None]:
    """Means over the accepted uploads of each capacity and of the efficiency [bit/s]."""
    acc = [u for u in alg.uploads if u.get("status") == "accepted"]
    out: dict[str, float | None] = {}
    for k in (*(c for c, _ in _CAPACITIES), "efficiency_vs_shannon"):
        vals = [v for u in acc if (v := _num(u.get(k))) is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


def _run_end_s(alg: AlgorithmRun) -> float:
    """The emulated end of the run: the last cycle's end (metrics), else the last record."""
    ts = [x for m in alg.metrics if (x := _num(m.get("t_s"))) is not None]
    ts += [x for u in alg.uploads for k in ("accepted_s", "first_tx_s") if (x := _num(u.get(k)))]
    return max(ts, default=0.0)


def _window_capacity_bytes(alg: AlgorithmRun) -> dict[tuple[str, int], float]:
    """Shannon bound of each window [bytes]: :math:`\\frac18\\int_{AOS}^{LOS} B\\log_2(1 +
    \\mathrm{SNR}(t))\\,dt` with the run's link geometry (shadowing included), or {} when the
    scenario cannot be loaded."""
    try:
        from channel import mean_capacity_bps
        from testbed.scenario import load_scenario
        from testbed.schedule import run_geometry

        scn = load_scenario(alg.path / "scenario.toml")
        out = {}
        end = _run_end_s(alg)
        for cid, ws in alg.windows.items():
            geo = run_geometry(scn, cid, alg.windows)
            for i, (a, b) in enumerate(ws):
                if a >= end:
                    break
                out[(cid, i)] = mean_capacity_bps(geo, a, b, step_s=0.1) * (b - a) / 8.0
        return out
    except Exception as e:  # the report must not fail on an odd scenario: leave it blank
        log.warning("%s: window capacities not computed (%s)", alg.path, e)
        return {}


def pass_rows(alg: AlgorithmRun) -> list[dict[str, Any]]:
    """One row per contact window up to the run's end: its capacity (Shannon bound), the
    payload bytes whose transmission began in it (offered), the bytes accepted in it, and
    the MODCODs of the uploads that began in it (frames per MODCOD)."""
    caps = _window_capacity_bytes(alg)
    end = _run_end_s(alg)
    rows = []
    for cid, ws in alg.windows.items():
        for i, (a, b) in enumerate(ws):
            if a >= end:
                break
            began = [
                u
                for u in alg.final_uploads
                if str(u.get("cluster")) == cid
                and (t := _num(u.get("first_tx_s"))) is not None
                and a <= t < b
            ]
            acc = [
                u
                for u in alg.final_uploads
                if str(u.get("cluster")) == cid
                and u.get("status") == "accepted"
                and (t := _num(u.get("accepted_s"))) is not None
                and a <= t <= b
            ]
            mods: Counter[str] = Counter()
            for u in began:
                m = u.get("modcods")
                if isinstance(m, dict):
                    mods.update({str(k): int(v) for k, v in m.items() if _num(v) is not None})
            rows.append(
                {
                    "cluster": cid,
                    "window": i,
                    "aos_s": a,
                    "los_s": b,
                    "duration_s": b - a,
                    "capacity_bytes": caps.get((cid, i)),
                    "offered_bytes": sum(int(_num(u.get("size_bytes")) or 0) for u in began),
                    "accepted_bytes": sum(int(_num(u.get("size_bytes")) or 0) for u in acc),
                    "uploads_begun": len(began),
                    "uploads_accepted": len(acc),
                    "modcods": dict(sorted(mods.items())),
                }
            )
    rows.sort(key=lambda r: (r["aos_s"], r["cluster"]))
    return rows


def _upload_observations(alg: AlgorithmRun) -> list[tuple[float, bool]]:
    """(time [s], accepted) per upload that was on the way: an accepted upload at its upload
    time; one never accepted at the time it had been in flight when the run ended."""
    end = _run_end_s(alg)
    obs: list[tuple[float, bool]] = []
    for u in alg.final_uploads:
        t = _num(u.get("upload_time_s"))
        if u.get("status") == "accepted" and t is not None:
            obs.append((t, True))
        elif (t0 := _num(u.get("first_tx_s"))) is not None and not u.get("already_accepted"):
            obs.append((max(0.0, end - t0), False))
    return obs


def accepted_fraction(alg: AlgorithmRun) -> tuple[list[float], list[float]]:
    """Upload times of the accepted uploads (sorted) and the fraction of *all* uploads
    accepted within each: :math:`F_{obs}(t) = \\#\\{\\text{accepted}, T_i \\le t\\} / N`,
    which ends at n/N < 1 when some uploads never finished."""
    obs = _upload_observations(alg)
    acc = sorted(t for t, accepted in obs if accepted)
    return acc, [(i + 1) / len(obs) for i in range(len(acc))]


def upload_time_km(alg: AlgorithmRun) -> tuple[list[float], list[float], int, int]:
    """Kaplan–Meier estimate of the upload-time distribution F(t) = P(upload time ≤ t).

    An accepted upload is an event at its upload time; one never accepted is *censored* at
    the time it had been in flight when the run ended (run end − first transmission). F
    reaches 1 only when every upload still at risk at the last event was accepted, which is
    why the report's main curve is :func:`accepted_fraction`:

    .. math:: \\hat S(t) = \\prod_{t_i \\le t} \\left(1 - \\frac{d_i}{n_i}\\right),
              \\quad \\hat F = 1 - \\hat S,

    with :math:`d_i` uploads accepted at :math:`t_i` and :math:`n_i` still at risk.

    Returns
    -------
    (event times [s], F at each, accepted n, all N)
    """
    obs = _upload_observations(alg)
    obs.sort(key=lambda x: (x[0], not x[1]))  # events before censorings at the same time
    at_risk = len(obs)
    surv = 1.0
    ts, fs = [], []
    i = 0
    while i < len(obs):
        t = obs[i][0]
        d = c = 0
        while i < len(obs) and obs[i][0] == t:
            d += obs[i][1]
            c += not obs[i][1]
            i += 1
        if d:
            surv *= 1.0 - d / at_risk
            ts.append(t)
            fs.append(1.0 - surv)
        at_risk -= d + c
    return ts, fs, sum(1 for _, e in obs if e), len(obs)


def summarize(run: RunData) -> dict[str, Any]:
    """Per-algorithm summary numbers of a run (the ``summary`` of ``--json``).

    ``cycles_to_target`` is the number of completed orbital cycles (metrics rows, in cycle
    order) when the global accuracy first reached the scenario's target; ``missed_aggregations``
    counts (aggregation, payload) pairs in which the payload was missing, for any reason.
    """
    return {
        "run": str(run.path),
        "scenario": run.info.get("scenario"),
        "status": run.info.get("status"),
        "algorithms": {a.name: _algorithm_summary(a) for a in run.algorithms},
        "missing_payloads": sum(len(_missing_entries(a)) for a in run.algorithms),
        "malformed_lines": sum(sum(a.malformed.values()) for a in run.algorithms),
    }


# -- figures ----------------------------------------------------------------------------------
def _time_unit(t_max: float) -> tuple[float, str]:
    """Divisor and label for an emulated time axis spanning ``[0, t_max]`` seconds."""
    if t_max > 3 * 3600:
        return 3600.0, "h"
    if t_max > 180:
        return 60.0, "min"
    return 1.0, "s"


def _colours(n: int) -> list[str]:
    base = [f"C{i}" for i in range(10)]
    return [base[i % 10] for i in range(n)]


def _new_figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    log.info("wrote %s", path)
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _local_acc(m: dict[str, Any], clusters: list[str]) -> dict[str, float]:
    loc = m.get("accuracy_local")
    out: dict[str, float] = {}
    if isinstance(loc, dict):
        out = {str(k): v for k, v in loc.items() if _num(v) is not None}
    elif isinstance(loc, list):
        for i, v in enumerate(loc):
            if _num(v) is not None:
                out[clusters[i] if i < len(clusters) else f"cluster {i}"] = float(v)
    return out


def _fig_accuracy_cycle(run: RunData, path: Path) -> Path:
    fig = _new_figure(8, 4.5)
    ax = fig.add_subplot()
    any_data = False
    for alg, col in zip(run.algorithms, _colours(len(run.algorithms)), strict=True):
        pts = [(m["cycle"], _num(m["accuracy_global"])) for m in alg.metrics]
        pts = [(c, a) for c, a in pts if a is not None and _num(c) is not None]
        if not pts:
            continue
        any_data = True
        ax.plot(*zip(*pts, strict=True), "-o", color=col, lw=2, label=f"{alg.name} (global)")
        per: dict[str, list[tuple[float, float]]] = {}
        for m in alg.metrics:
            if _num(m["cycle"]) is None:
                continue
            for cid, a in _local_acc(m, alg.clusters).items():
                per.setdefault(cid, []).append((m["cycle"], a))
        markers = "sv^Dpx*"
        for i, (cid, cp) in enumerate(sorted(per.items())):
            ax.plot(
                *zip(*cp, strict=True),
                "--",
                marker=markers[i % len(markers)],
                ms=3,
                color=col,
                alpha=0.55,
                lw=1,
                label=f"{alg.name} local {cid}",
            )
        if alg.target_accuracy is not None:
            ax.axhline(alg.target_accuracy, color="0.5", ls=":", lw=1)
    if not any_data:
        _empty(ax, "no metrics recorded")
    else:
        ax.legend(fontsize=7, ncol=2)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("orbital cycle")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per orbital cycle (solid: global, dashed: local per cluster)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _fig_accuracy_time(run: RunData, path: Path) -> Path:
    fig = _new_figure(8, 4.5)
    ax = fig.add_subplot()
    t_max = max((_num(m["t_s"]) or 0.0 for a in run.algorithms for m in a.metrics), default=0.0)
    div, unit = _time_unit(t_max)
    any_data = False
    for alg, col in zip(run.algorithms, _colours(len(run.algorithms)), strict=True):
        pts = [(_num(m["t_s"]), _num(m["accuracy_global"])) for m in alg.metrics]
        pts = sorted((t, a) for t, a in pts if t is not None and a is not None)
        if not pts:
            continue
        any_data = True
        ax.step(
            [t / div for t, _ in pts],
            [a for _, a in pts],
            "-o",
            where="post",
            color=col,
            label=alg.name,
        )
        if alg.target_accuracy is not None:
            ax.axhline(alg.target_accuracy, color="0.5", ls=":", lw=1)
    if any_data:
        ax.legend()
    else:
        _empty(ax, "no metrics recorded")
    ax.set_xlabel(f"emulated time [{unit}]")
    ax.set_ylabel("global accuracy")
    ax.set_title("Global accuracy over emulated time (end of each orbital cycle)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _fig_upload_times(run: RunData, path: Path) -> Path:
    fig = _new_figure(10, 4.2)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    cols = _colours(len(run.algorithms))
    any_t = False
    for alg, col in zip(run.algorithms, cols, strict=True):
        t, y, n, total = upload_time_km(alg)
        if not total:
            continue
        any_t = True
        # solid: accepted by t, as a fraction of all N uploads (stays at n/N < 1 when some
        # never finished); dashed: the Kaplan–Meier estimate with those censored at the end
        acc, frac = accepted_fraction(alg)
        ax1.step([0.0, *acc], [0.0, *frac], where="post", color=col,
                 label=f"{alg.name}: {n} accepted of {total}")  # fmt: skip
        if acc:
            ax1.plot(acc, frac, "o", ms=3, color=col)
        if n < total and t:
            ax1.step([0.0, *t], [0.0, *y], where="post", color=col, ls="--", lw=0.9,
                     label=f"{alg.name}: Kaplan–Meier, unfinished censored")  # fmt: skip
    if any_t:
        ax1.legend(fontsize=7)
    else:
        _empty(ax1, "no uploads")
    ax1.set_ylim(0, 1.02)
    ax1.set_xlabel("upload time, first transmission → accepted [s, emulated]")
    ax1.set_ylabel("fraction of all uploads accepted by t")
    ax1.set_title("Upload-time distribution (unfinished uploads never reach it)")
    ax1.grid(alpha=0.3)

    counts = [
        Counter(int(p) for u in a.final_uploads if (p := _num(u.get("passes_used"))) is not None)
        for a in run.algorithms
    ]
    keys = sorted(set().union(*counts)) if counts else []
    n = max(len(run.algorithms), 1)
    width = 0.8 / n
    for i, (alg, cnt, col) in enumerate(zip(run.algorithms, counts, cols, strict=True)):
        ax2.bar(
            [k + (i - (n - 1) / 2) * width for k in keys],
            [cnt.get(k, 0) for k in keys],
            width=width,
            color=col,
            label=alg.name,
        )
    if keys:
        ax2.set_xticks(keys)
        ax2.legend()
    else:
        _empty(ax2, "no uploads")
    ax2.set_xlabel("passes used")
    ax2.set_ylabel("uploads")
    ax2.set_title("Passes used per upload")
    ax2.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _rates(u: dict[str, Any]) -> tuple[float, float] | None:
    """(achieved goodput, Shannon-predicted rate) of one upload [bit/s]."""
    g = _num(u.get("goodput_bps"))
    size = _num(u.get("size_bytes"))
    pred = _num(u.get("predicted_shannon_s"))
    if g is None or size is None or pred is None or pred <= 0 or g <= 0:
        return None
    return g, size * 8 / pred


def _fig_goodput(run: RunData, path: Path) -> Path:
    fig = _new_figure(11, 4.5)
    ax1, ax2 = fig.subplots(1, 2)
    cols = _colours(len(run.algorithms))
    t_max = max(
        (_num(u.get("first_tx_s")) or 0 for a in run.algorithms for u in a.uploads), default=0.0
    )
    div, unit = _time_unit(t_max)
    lo, hi = math.inf, 0.0
    for alg, col in zip(run.algorithms, cols, strict=True):
        pts = [(u, r) for u in alg.uploads if (r := _rates(u)) is not None]
        if not pts:
            continue
        g = [r[0] / 1e3 for _, r in pts]
        s = [r[1] / 1e3 for _, r in pts]
        lo, hi = min(lo, *g, *s), max(hi, *g, *s)
        ax1.scatter(s, g, color=col, s=18, label=alg.name)
        t = [(_num(u.get("first_tx_s")) or 0.0) / div for u, _ in pts]
        ax2.vlines(t, g, s, color=col, alpha=0.4, lw=1)
        ax2.scatter(t, s, marker="_", color=col, s=60)
        ax2.scatter(t, g, marker="o", color=col, s=14, label=f"{alg.name}: achieved")
    if hi > 0:
        ax1.plot([lo, hi], [lo, hi], color="0.4", ls="--", lw=1, label="achieved = Shannon")
        ax1.legend(fontsize=8)
        ax2.legend(fontsize=8)
    else:
        _empty(ax1, "no upload with goodput and Shannon prediction")
        _empty(ax2, "no upload with goodput and Shannon prediction")
    ax1.set_xlabel("Shannon-predicted rate over the pass [kbit/s]")
    ax1.set_ylabel("achieved goodput [kbit/s]")
    ax1.set_title("Per upload: achieved vs Shannon (gap = below diagonal)")
    ax2.set_xlabel(f"first transmission [{unit}, emulated]")
    ax2.set_ylabel("rate [kbit/s]")
    ax2.set_title("Over time: dot achieved, bar Shannon, line = gap")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def needs_log_scale(values: list[float], ratio: float = 100.0) -> bool:
    """Whether positive ``values`` spread over more than ``ratio``× (then a log axis)."""
    pos = [v for v in values if v > 0]
    return bool(pos) and max(pos) / min(pos) > ratio


def _fig_capacities(run: RunData, path: Path) -> Path:
    """Per upload: goodput, MODCOD rate, Shannon over the occupied band and the sub-channel."""
    from matplotlib.ticker import MaxNLocator

    fig = _new_figure(12, 4.8)
    axes = fig.subplots(1, max(1, len(run.algorithms)), squeeze=False)[0]
    markers = ("o", "s", "^", "_")
    vals_all = [
        v
        for a in run.algorithms
        for u in a.uploads
        for k, _ in _CAPACITIES
        if (v := _num(u.get(k))) is not None and v > 0
    ]
    log_scale = needs_log_scale(vals_all)
    div, unit = (1e6, "Mbit/s") if vals_all and max(vals_all) >= 1e6 else (1e3, "kbit/s")
    for ax, alg in zip(axes, run.algorithms, strict=False):
        ups = [u for u in alg.uploads if _num(u.get("shannon_bps"))]
        if not ups:
            _empty(ax, "no upload with capacities (older run?)")
            ax.set_title(alg.name)
            continue
        x = list(range(1, len(ups) + 1))
        for (k, label), mk in zip(_CAPACITIES, markers, strict=True):
            ys = [(_num(u.get(k)) or math.nan) / div for u in ups]
            ax.scatter(x, ys, marker=mk, s=40 if mk == "_" else 16, label=label)
        if log_scale:
            ax.set_yscale("log")
        eff = [e for u in ups if (e := _num(u.get("efficiency_vs_shannon"))) is not None]
        mean = f", mean goodput/Shannon {sum(eff) / len(eff):.2f}" if eff else ""
        ax.set_title(f"{alg.name}{mean}", fontsize=10)
        ax.set_xlabel("upload (in order of first transmission)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"rate [{unit}]{' (log)' if log_scale else ''}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, path)


def _fig_esn0(alg: AlgorithmRun, path: Path) -> Path:
    """Per delivered frame: link-budget SNR, applied Es/N0, ACM's Es/N0, receiver estimate."""
    from flowgraphs import modcod

    fig = _new_figure(12, 3.2 * max(1, len(alg.bursts)))
    axes = fig.subplots(max(1, len(alg.bursts)), 1, squeeze=False)[:, 0]
    if not alg.bursts:
        _empty(axes[0], "no bursts-<cluster>.jsonl in this run")
        return _save(fig, path)
    t_max = max(float(r["tx_start"]) for rows in alg.bursts.values() for r in rows)
    div, unit = _time_unit(t_max)
    thresholds = modcod.measured_thresholds()
    for ax, (cid, rows) in zip(axes, alg.bursts.items(), strict=True):
        t = [float(r["tx_start"]) / div for r in rows]
        series = (
            ("snr_db", "link-budget SNR in B", "-"),
            ("esn0_db", "Es/N0 applied (large scale)", "-"),
            ("esn0_pred_db", "Es/N0 ACM chose from", "--"),
        )
        for k, label, ls in series:
            ys = [v if (v := _num(r.get(k))) is not None else math.nan for r in rows]
            tt, yy = _break_gaps(t, ys, 2.0 / div)  # no line across a gap between passes
            ax.plot(tt, yy, ls=ls, lw=1, label=label)
        est = [v if (v := _num(r.get("esn0_est_db"))) is not None else math.nan for r in rows]
        ax.scatter(t, est, s=3, color="0.3", label="receiver estimate (incl. fading)")
        thr = [thresholds.get(str(r.get("modcod")), math.nan) for r in rows]
        ax.scatter(t, thr, s=4, marker="_", color="#d62728", label="chosen MODCOD's threshold")
        ax.set_ylabel("dB")
        ax.set_title(f"{alg.name} · uplink {cid}: {len(rows)} delivered frames", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
    axes[-1].set_xlabel(f"frame start [{unit}, emulated]")
    return _save(fig, path)


def _break_gaps(ts: list[float], ys: list[float], gap: float) -> tuple[list[float], list[float]]:
    """Insert NaN where consecutive samples are more than ``gap`` apart (no line across)."""
    ot: list[float] = []
    oy: list[float] = []
    for i, (t, y) in enumerate(zip(ts, ys, strict=True)):
        if i and t - ts[i - 1] > gap:
            ot.append(math.nan)
            oy.append(math.nan)
        ot.append(t)
        oy.append(y)
    return ot, oy


def _fig_link(alg: AlgorithmRun, path: Path) -> Path:
    clusters = list(alg.clusters)
    for r in alg.link:
        if str(r["cluster"]) not in clusters:
            clusters.append(str(r["cluster"]))
    ccol = dict(zip(clusters, _colours(len(clusters)), strict=True))
    fig = _new_figure(12, 9)
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[3, 3, 3, 2])
    t_all = [_num(r["t_s"]) or 0.0 for r in alg.link]
    t_all += [
        x
        for u in alg.uploads
        for k in ("first_tx_s", "accepted_s")
        if (x := _num(u.get(k))) is not None
    ]
    div, unit = _time_unit(max(t_all, default=0.0))
    for cid in clusters:
        rows = [r for r in alg.link if str(r["cluster"]) == cid]
        ts = [float(r["t_s"]) for r in rows]
        for ax, key in zip(axes[:3], ("elevation_deg", "snr_db", "doppler_hz"), strict=True):
            ys = [_num(r.get(key)) for r in rows]
            tt, yy = _break_gaps(
                [t / div for t in ts], [math.nan if y is None else y for y in ys], 30.0 / div
            )
            ax.plot(tt, yy, color=ccol[cid], lw=1.2, label=cid)
        for a, b in alg.windows.get(cid, []):
            for ax in axes[:3]:
                ax.axvspan(a / div, b / div, color=ccol[cid], alpha=0.07, lw=0)
    axes[0].set_ylabel("elevation [deg]")
    axes[1].set_ylabel("SNR [dB]")
    axes[2].set_ylabel("Doppler [Hz]")
    if alg.link:
        axes[0].legend(title="cluster", fontsize=8, loc="upper right")
    else:
        _empty(axes[0], "no link samples (link.jsonl)")
    # Upload lane: one row per cluster (one sub-row per device), span first_tx → accepted
    # (or confirmed, or the end of the run when never accepted); colour = final status.
    lane = axes[3]
    devices: dict[str, list[str]] = {}
    for u in alg.uploads:
        devices.setdefault(str(u.get("cluster", u.get("sender", "?"))), [])
        dl = devices[str(u.get("cluster", u.get("sender", "?")))]
        if str(u.get("device")) not in dl:
            dl.append(str(u.get("device")))
    seen_status: set[str] = set()
    t_end = max((x for m in alg.metrics if (x := _num(m.get("t_s"))) is not None), default=0.0)
    for u in alg.final_uploads:  # each payload once, in its final state
        cid = str(u.get("cluster", u.get("sender", "?")))
        t0 = _num(u.get("first_tx_s"))
        if cid not in ccol or t0 is None:
            continue
        t1 = _num(u.get("accepted_s"))
        if t1 is None:  # never accepted: until it was confirmed or abandoned, else the run's end
            t1 = _num(u.get("confirmed_s")) or max(t_end, _num(u.get("window_los_s")) or t0)
        status = str(u.get("status"))
        col = _STATUS_COLOURS.get(status, "#d62728")
        dl = devices[cid]
        h = 0.8 / len(dl)
        y = clusters.index(cid) - 0.4 + h * (dl.index(str(u.get("device"))) + 0.5)
        lane.barh(
            y,
            max(t1 - t0, 0.0) / div,
            left=t0 / div,
            height=h * 0.85,
            color=col,
            alpha=0.75,
            edgecolor="k",
            lw=0.3,
            label=None if status in seen_status else status,
        )
        seen_status.add(status)
        axes[0].plot([t0 / div], [0], marker="^", ms=5, color=col, clip_on=False)
    lane.set_yticks(range(len(clusters)), clusters)
    lane.set_ylabel("uploads\n(per device)")
    if seen_status:
        lane.legend(fontsize=8, loc="upper right", title="status")
    lane.set_xlabel(f"emulated time [{unit}]")
    for ax in axes:
        ax.grid(alpha=0.3)
    title = (
        f"{alg.name}: link state per cluster (contact windows shaded), uploads first tx → accepted"
    )
    if alg.schedule_mode == "ideal":
        title += (
            "\nidealised schedule (the paper's slots): a fixed elevation inside a slot, below "
            "the horizon outside, no Doppler — not an orbit"
        )
    fig.suptitle(title)
    return _save(fig, path)


def _fig_wall(run: RunData, path: Path) -> Path:
    """Wall time beside emulated time: per cycle, and per upload."""
    fig = _new_figure(10, 4.0)
    ax1, ax2 = fig.subplots(1, 2)
    cols = _colours(len(run.algorithms))
    any1 = any2 = False
    for alg, col in zip(run.algorithms, cols, strict=True):
        prev = None
        xs, emu, wall = [], [], []
        for m in alg.metrics:
            t, w = _num(m.get("t_s")), _num(m.get("wall_s"))
            if t is None or w is None:
                continue
            if prev is not None:
                xs.append(_num(m.get("cycle")) or len(xs) + 1)
                emu.append(t - prev)
                wall.append(w)
            prev = t
        if xs:
            any1 = True
            ax1.plot(xs, emu, "o-", color=col, label=f"{alg.name}: emulated")
            ax1.plot(xs, wall, "s--", color=col, label=f"{alg.name}: wall")
        pts = [
            (e, w)
            for u in alg.final_uploads
            if (e := _num(u.get("upload_time_s"))) is not None
            and (w := _num(u.get("wall_s"))) is not None
        ]
        if pts:
            any2 = True
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o", ms=4, color=col, label=alg.name)
    if any1:
        ax1.legend(fontsize=7)
    else:
        _empty(ax1, "one cycle or no metrics")
    ax1.set_xlabel("orbital cycle")
    ax1.set_ylabel("seconds per cycle")
    ax1.set_title("Cycle duration: emulated vs wall")
    ax1.grid(alpha=0.3)
    if any2:
        ax2.legend(fontsize=7)
    else:
        _empty(ax2, "no accepted uploads")
    ax2.set_xlabel("upload time [s, emulated]")
    ax2.set_ylabel("wall seconds of the transfer")
    ax2.set_title("Per upload: wall time to emulate it")
    ax2.grid(alpha=0.3)
    return _save(fig, path)


def _membership(alg: AlgorithmRun) -> tuple[list[str], list[str], list[list[int]]]:
    """Rows (cluster/device), columns (aggregations) and cell codes.

    Codes: 0 no entry, 1 included, 2 late, 3 lost, 4 not sent, 5 other reason.
    """
    code = {"late": 2, "lost": 3, "not_sent": 4}
    rows: list[str] = []
    cols: list[str] = []
    cells: list[dict[str, int]] = []
    for agg in alg.aggregations:
        cell: dict[str, int] = {}
        for key, entries in (("included", agg.get("included")), ("missing", agg.get("missing"))):
            for e in entries or []:
                if not isinstance(e, dict):
                    continue
                r = f"{e.get('cluster')}/{e.get('device')}"
                if r not in rows:
                    rows.append(r)
                cell[r] = 1 if key == "included" else code.get(str(e.get("reason")), 5)
        stage = agg.get("stage")
        cols.append(
            f"c{agg.get('cycle')} {agg.get('cluster', '')}" + (f"\n{stage}" if stage else "")
        )
        cells.append(cell)
    rows.sort()
    grid = [[c.get(r, 0) for c in cells] for r in rows]
    return rows, cols, grid


def _fig_membership(alg: AlgorithmRun, path: Path) -> Path:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, cols, grid = _membership(alg)
    colours = ["#ffffff", "#2ca02c", "#ff7f0e", "#d62728", "#9e9e9e", "#9467bd"]
    names = ["no entry", "included", "late", "lost", "not sent", "other"]
    fig = _new_figure(max(6.0, 0.45 * len(cols) + 3), max(3.0, 0.35 * len(rows) + 2))
    ax = fig.add_subplot()
    if rows and cols:
        ax.imshow(
            grid,
            cmap=ListedColormap(colours),
            vmin=-0.5,
            vmax=5.5,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=90)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xticks([x - 0.5 for x in range(1, len(cols))], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
        ax.grid(which="minor", color="0.85", lw=0.5)
        ax.tick_params(which="minor", length=0)
        used = sorted({v for r in grid for v in r} - {0})
        ax.legend(
            handles=[Patch(color=colours[v], label=names[v]) for v in used],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
        )
    else:
        _empty(ax, "no aggregations recorded")
    ax.set_xlabel("aggregation (cycle, connected cluster, stage)")
    ax.set_ylabel("cluster/device")
    ax.set_title(f"{alg.name}: aggregation membership")
    return _save(fig, path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def make_figures(run: RunData, out_dir: Path) -> list[tuple[str, Path]]:
    """Write every figure as PNG under ``out_dir``; returns (caption, path) pairs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = [
        ("Accuracy vs orbital cycle", _fig_accuracy_cycle(run, out_dir / "accuracy_cycle.png")),
        ("Accuracy vs emulated time", _fig_accuracy_time(run, out_dir / "accuracy_time.png")),
        (
            "Upload-time distribution and passes used",
            _fig_upload_times(run, out_dir / "upload_times.png"),
        ),
        (
            "Achieved goodput vs predicted Shannon capacity",
            _fig_goodput(run, out_dir / "goodput_shannon.png"),
        ),
        (
            "Capacities per upload: goodput, MODCOD rate, Shannon (occupied band, sub-channel)",
            _fig_capacities(run, out_dir / "capacities.png"),
        ),
        ("Wall time beside emulated time", _fig_wall(run, out_dir / "wall_time.png")),
    ]
    for alg in run.algorithms:
        figs.append(
            (
                f"{alg.name}: Es/N0 the modem saw beside the link-budget SNR",
                _fig_esn0(alg, out_dir / f"esn0_{_safe(alg.name)}.png"),
            )
        )
    for alg in run.algorithms:
        ideal = " (IDEALISED SCHEDULE: not an orbit)" if alg.schedule_mode == "ideal" else ""
        figs.append(
            (
                f"{alg.name}: elevation / SNR / Doppler with uploads{ideal}",
                _fig_link(alg, out_dir / f"link_{_safe(alg.name)}.png"),
            )
        )
    for alg in run.algorithms:
        figs.append(
            (
                f"{alg.name}: aggregation membership per cycle",
                _fig_membership(alg, out_dir / f"membership_{_safe(alg.name)}.png"),
            )
        )
    return figs


# -- HTML -------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
figure{margin:2em 0}img{max-width:100%;border:1px solid #eee}
figcaption{font-weight:600;margin-bottom:.4em}.warn{color:#a33}
figure p{margin:.2em 0 .6em;color:#555;font-size:.9em}
"""


_NOTES = {
    "accuracy_cycle": "Global accuracy (solid) and each cluster's local accuracy (dashed) at "
    "the end of each orbital cycle; dotted line: target accuracy.",
    "accuracy_time": "Global accuracy against emulated time (end of each cycle): link delays "
    "stretch the time axis.",
    "upload_times": "Left: upload time (first transmission to hash-verified acceptance). "
    "Solid: the fraction of all N uploads accepted within t — it ends at n/N, below 1, when "
    "some never finished (the legend says n accepted of N). Dashed, where some never "
    "finished: the Kaplan–Meier estimate with each unfinished upload censored at the time it "
    "had been in flight when the run ended. Right: how many contact windows each upload "
    "needed.",
    "wall_time": "Wall-clock seconds beside emulated seconds: per cycle (the satellite's wall "
    "time for the cycle) and per upload (wall seconds the transfer took to emulate). Emulated "
    "times never depend on these (docs/clock.md).",
    "goodput_shannon": "Achieved goodput (size·8 / upload time) against the rate predicted by "
    "the pass-integrated Shannon capacity for the same bytes (size·8 / predicted_shannon_s).",
    "capacities": "Per accepted upload, over the same interval (first transmission to "
    "acceptance): goodput; the airtime-weighted full-frame rate of the MODCODs its frames used; "
    "Shannon B log2(1+SNR) over the occupied band R_s(1+α) and over the whole sub-channel B. "
    "Logarithmic axis when the values differ by more than 100×.",
    "esn0_": "Every delivered frame: the link-budget SNR (in the sub-channel B), the Es/N0 the "
    "channel applied (SNR + 10 log10(B/R_s)), the Es/N0 ACM chose the MODCOD from (feedback, "
    "prediction or genie), the receiver's own estimate (which includes the fast fading) and the "
    "chosen MODCOD's measured threshold. Frames that were lost are not in the file.",
    "link_": "Elevation, SNR and Doppler per cluster (contact windows shaded in the cluster's "
    "colour); bottom: each upload from first transmission to acceptance (to the LOS of its "
    "window when never accepted), coloured by status; triangles mark first transmissions.",
    "membership_": "Each aggregation (column) and each cluster/device (row): included, late, "
    "lost or not sent; white: no entry for that device in that aggregation.",
}


_IDEAL_NOTE = (
    "Idealised schedule (the paper's slots): the elevation is a synthetic square wave — a "
    "fixed elevation inside each slot, below the horizon outside — and the Doppler is 0; the "
    'slots are not an orbit (schedule.mode = "orbit" runs real passes).'
)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.{digits}g}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    h = "".join(
        f'<th class="l">{html.escape(x)}</th>' if i < left else f"<th>{html.escape(x)}</th>"
        for i, x in enumerate(headers)
    )
    body = []
    for r in rows:
        tds = "".join(
            f'<td class="l">{_fmt(x)}</td>' if i < left else f"<td>{_fmt(x)}</td>"
            for i, x in enumerate(r)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><tr>{h}</tr>{''.join(body)}</table>"


def _html(run: RunData, summary: dict[str, Any], figs: list[tuple[str, Path]]) -> str:
    e = html.escape
    info = run.info
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Run report: {e(str(info.get('scenario', run.path.name)))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Run report: {e(str(info.get('scenario', run.path.name)))}</h1>",
        _table(
            ["run", "scenario", "algorithms", "status", "started", "finished"],
            [
                [
                    str(run.path),
                    info.get("scenario"),
                    ", ".join(a.name for a in run.algorithms),
                    info.get("status"),
                    info.get("started_wall"),
                    info.get("finished_wall"),
                ]
            ],
            left=6,
        ),
        "<h2>Summary</h2>",
    ]
    rows = []
    for alg in run.algorithms:
        s = summary["algorithms"][alg.name]
        reasons = ", ".join(f"{k} {v}" for k, v in s["missing_by_reason"].items() if v)
        rows.append(
            [
                alg.name,
                s["cycles"],
                s["target_accuracy"],
                s["cycles_to_target"] if s["cycles_to_target"] is not None else "not reached",
                s["time_to_target_s"],
                s["final_accuracy"],
                s["uploads"],
                s["uploads_accepted"],
                s["upload_time_mean_s"],
                s["upload_time_max_s"],
                s["uploads_multi_pass"],
                s["aggregations"],
                s["missed_aggregations"],
                reasons or "–",
            ]
        )
    parts.append(
        _table(
            [
                "algorithm",
                "cycles",
                "target",
                "cycles to target",
                "time to target [s]",
                "final accuracy",
                "uploads",
                "accepted",
                "mean upload [s]",
                "max upload [s]",
                "uploads > 1 pass",
                "aggregations",
                "missed (payload × aggregation)",
                "by reason",
            ],
            rows,
        )
    )
    parts.append("<h2>Link</h2>")
    lrows = []
    for alg in run.algorithms:
        ls = alg.link_settings
        cap = summary["algorithms"][alg.name]["capacities"]
        lrows.append(
            [
                alg.name,
                ls.get("bandwidth_hz"),
                ls.get("symbol_rate_hz"),
                ls.get("rolloff"),
                ls.get("modcod_policy"),
                ls.get("acm_prediction"),
                ls.get("acm_margin_db"),
                ls.get("fragment_size"),
                *(None if cap.get(k) is None else cap[k] / 1e3 for k, _ in _CAPACITIES),
                cap.get("efficiency_vs_shannon"),
            ]
        )
    parts.append(
        _table(
            [
                "algorithm",
                "B [Hz]",
                "R_s [Bd]",
                "α",
                "MODCOD",
                "ACM from",
                "margin [dB]",
                "fragment [B]",
                *(f"{label} [kbit/s]" for _, label in _CAPACITIES),
                "goodput / Shannon",
            ],
            lrows,
            left=1,
        )
    )
    parts.append(
        "<p>Capacities: means over the accepted uploads, each over its own interval from first "
        "transmission to acceptance.</p>"
    )
    parts.append("<h3>Link settings</h3>")
    keys = [
        ("carrier_hz", "f_c [Hz]"),
        ("bandwidth_hz", "B [Hz]"),
        ("tx_power_dbm", "P_t [dBm]"),
        ("tx_antenna_gain_dbi", "G_t [dBi]"),
        ("rx_antenna_gain_dbi", "G_r [dBi]"),
        ("noise_figure_db", "NF [dB]"),
        ("rician_k_db", "K [dB]"),
        ("shadowing_sigma_db", "σ shadowing [dB]"),
        ("min_elevation_deg", "θ_min [deg]"),
        ("modcod", "MODCOD"),
        ("fading_max_doppler_hz", "f_D [Hz]"),
    ]
    parts.append(
        _table(
            ["algorithm", "schedule", *(label for _, label in keys)],
            [
                [
                    alg.name,
                    "idealised slots" if alg.schedule_mode == "ideal" else "orbit passes",
                    *(alg.scenario_link.get(k) for k, _ in keys),
                ]
                for alg in run.algorithms
            ],
            left=2,
        )
    )
    parts.append("<h2>Passes</h2>")
    for alg in run.algorithms:
        rows = pass_rows(alg)
        parts.append(f"<h3>{e(alg.name)}</h3>")
        if not rows:
            parts.append("<p>No contact windows recorded (windows.json).</p>")
            continue
        parts.append(
            _table(
                [
                    "cluster",
                    "window",
                    "AOS [s]",
                    "LOS [s]",
                    "duration [s]",
                    "capacity [kB] (Shannon)",
                    "offered [kB]",
                    "accepted [kB]",
                    "offered / capacity",
                    "uploads begun",
                    "accepted",
                    "MODCODs (frames)",
                ],
                [
                    [
                        r["cluster"],
                        r["window"],
                        r["aos_s"],
                        r["los_s"],
                        r["duration_s"],
                        None if r["capacity_bytes"] is None else r["capacity_bytes"] / 1e3,
                        r["offered_bytes"] / 1e3,
                        r["accepted_bytes"] / 1e3,
                        None
                        if not r["capacity_bytes"]
                        else r["offered_bytes"] / r["capacity_bytes"],
                        r["uploads_begun"],
                        r["uploads_accepted"],
                        ", ".join(f"{k}×{v}" for k, v in r["modcods"].items()) or "–",
                    ]
                    for r in rows
                ],
                left=2,
            )
        )
    parts.append(
        "<p>Per contact window up to the run's end: capacity is the Shannon bound "
        "∫B·log2(1+SNR)dt/8 of the run's link over the window (shadowing included, no fading); "
        "offered: bytes of the payloads whose first transmission was in the window; accepted: "
        "bytes of the payloads the satellite accepted in it; MODCODs: frames per MODCOD of the "
        "uploads that began in it.</p>"
    )
    parts.append("<h2>Missing payloads</h2>")
    missing = [m for a in run.algorithms for m in _missing_entries(a)]
    if missing:
        parts.append(
            _table(
                [
                    "algorithm",
                    "payload",
                    "reason",
                    "cycle",
                    "aggregation (cluster)",
                    "stage",
                    "t_agg [s]",
                    "cluster",
                    "device",
                    "upload status",
                    "accepted [s]",
                    "passes used",
                ],
                [
                    [
                        m["algorithm"],
                        m["payload"],
                        m["reason"],
                        m["cycle"],
                        m["phase_cluster"],
                        m["stage"],
                        m["t_agg_s"],
                        m["cluster"],
                        m["device"],
                        m["upload_status"],
                        m["accepted_s"],
                        m["passes_used"],
                    ]
                    for m in missing
                ],
                left=3,
            )
        )
    else:
        parts.append("<p>Every aggregation included every expected payload.</p>")
    bad = [(a.name, f, n) for a in run.algorithms for f, n in sorted(a.malformed.items())]
    absent = [(a.name, f) for a in run.algorithms for f in a.absent]
    if bad or absent:
        parts.append("<h2>Input problems</h2>")
        if bad:
            parts.append('<p class="warn">Malformed lines were skipped:</p>')
            parts.append(_table(["algorithm", "file", "malformed lines skipped"], bad, left=2))
        if absent:
            parts.append(_table(["algorithm", "file not found"], absent, left=2))
    parts.append("<h2>Figures</h2>")
    for caption, path in figs:
        b64 = base64.b64encode(path.read_bytes()).decode("ascii")
        note = next((t for k, t in _NOTES.items() if path.name.startswith(k)), "")
        if "IDEALISED" in caption:
            note = _IDEAL_NOTE + " " + note
        parts.append(
            f"<figure><figcaption>{e(caption)}</figcaption><p>{e(note)}</p>"
            f'<img alt="{e(caption)}" src="data:image/png;base64,{b64}"></figure>'
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> ReportResult:
    """Read ``run_dir``, write the figures and ``index.html`` under ``out_dir``.

    Parameters
    ----------
    run_dir : the run directory (``run.json`` + one subdirectory per algorithm)
    out_dir : where to write; default ``run_dir/report``

    Returns
    -------
    ReportResult
        path of ``index.html``, the PNG paths and the summary (see :func:`summarize`).
    """
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise UserError(f"{out}: cannot create output directory: {ex.strerror or ex}") from ex
    summary = summarize(run)
    figs = make_figures(run, out)
    index = out / "index.html"
    index.write_text(_html(run, summary, figs), encoding="utf-8")
    log.info("wrote %s", index)
    return ReportResult(report=index, figures=[p for _, p in figs], summary=summary)
