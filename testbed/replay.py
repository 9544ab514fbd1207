"""Replay a run's recorded payloads through the channel emulator under changed settings.

``testbed replay RUN_DIR --set link.rician_k_db=3`` takes every payload an algorithm run
recorded (``RUN/<algorithm>/payloads/``), applies the overrides to the run's resolved
``scenario.toml`` (:meth:`testbed.scenario.Scenario.with_overrides`), starts one channel
emulator for the changed scenario plus one in-process receiver per cluster, and sends the
payloads again, cluster by cluster, the way the cluster node sent them
(:meth:`nodes.cluster.ClusterNode._on_upload`):

* The run's upload *commands* are rebuilt from the records: for each cluster and each
  ``(cycle, stage)`` the command started at ``t_start`` (the satellite's previous event in that
  connected slot, from ``events.jsonl``) and ran until the slot's LOS. Under the changed
  scenario a command keeps its offset from the slot's AOS,
  :math:`t'_{start} = AOS'_{c,k} + (t_{start} - AOS_{c,k})`, and ends at :math:`LOS'_{c,k}`
  (the changed scenario's slot of that cycle and cluster, :func:`testbed.schedule.cycle_plan`).
* In each command, transfers still open from earlier commands resume first (or are cancelled
  with ``time.late_policy = "drop"``), then the command's new payloads start, one after the
  other on the cluster's uplink, each at :math:`\\max(t, ready'_s)` with
  :math:`ready'_s = ready_s - AOS + AOS'`. A transfer only sends inside the changed
  scenario's windows and freezes outside them (:class:`nodes.sender.SenderDriver`).
* With ``drain``, transfers still open after the last command continue through the remaining
  windows of the schedule (the original run stopped there), so that every payload gets an
  upload time.

The comparison uses each aggregation's recorded ``t_agg_s``: a payload the original run
included is *newly missed* when the replay accepts it after ``t_agg_s`` or not at all; a
payload the original run missed is *newly made* when the replay accepts it by ``t_agg_s``.

Nothing under the run directory is modified except the new ``replays/<name>/`` (or
``sweeps/<name>/``) directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed.errors import UserError

__all__ = [
    "Command",
    "RecordedPayload",
    "RecordedRun",
    "compare",
    "load_recorded",
    "parse_grid",
    "replay_run",
    "run_algorithms",
    "summarise",
    "sweep_run",
    "write_sweep_plot",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The recorded run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedPayload:
    """One payload of the original run and its final upload record.

    Attributes
    ----------
    name : file name under ``payloads/``
    cluster, device, cycle, stage : who sent it, in which cycle, which stage
    ready_s : emulated time it was ready to send [s]
    record : the last record of it in ``uploads.jsonl`` (its final state)
    """

    name: str
    cluster: str
    device: int
    cycle: int
    stage: str
    ready_s: float
    record: dict[str, Any]


@dataclass
class Command:
    """One upload command of a cluster: ``(cycle, stage)`` from ``t_start_s`` to the slot's LOS.

    Attributes
    ----------
    cycle, stage : the command's orbital cycle (1-based) and stage
    t_start_s : emulated start [s] in the original run
    payloads : the payloads it created, in the original send order
    """

    cycle: int
    stage: str
    t_start_s: float
    payloads: list[RecordedPayload] = field(default_factory=list)


@dataclass
class RecordedRun:
    """What one algorithm run recorded: its scenario, payloads, commands and aggregations."""

    algorithm: str
    path: Path
    scenario: Any
    payloads: dict[str, RecordedPayload]
    commands: dict[str, list[Command]]
    aggregations: list[dict[str, Any]]
    t_agg: dict[tuple[int, str, str], float] = field(default_factory=dict)


def algorithm_dirs(run_dir: Path, algorithm: str | None = None) -> list[Path]:
    """The algorithm subdirectories of a run directory (the one named, or all).

    Raises
    ------
    UserError : not a run directory, or no such algorithm
    """
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory")
    subs = sorted(p for p in run_dir.iterdir() if (p / "scenario.toml").is_file())
    if not subs:
        raise UserError(
            f"{run_dir}: not a run directory (no <algorithm>/scenario.toml; "
            "make one with 'testbed run')"
        )
    if algorithm is None:
        return subs
    for p in subs:
        if p.name == algorithm:
            return [p]
    raise UserError(f"{run_dir}: no algorithm {algorithm!r} (have {[p.name for p in subs]})")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise UserError(f"{path}:{i}: not JSON ({e})") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}:{i}: not a JSON object")
        out.append(rec)
    return out


def _command_starts(events: list[dict[str, Any]]) -> dict[tuple[int, str, str], float]:
    """Start of each upload command ``(cycle, cluster, stage)`` from the satellite's events.

    The satellite writes one event per step of a connected slot with the time after the step,
    so a command starts at the previous event of the same cycle and cluster.
    """
    out: dict[tuple[int, str, str], float] = {}
    last: dict[tuple[int, str], float] = {}
    for ev in events:
        cyc, cid = ev.get("cycle"), ev.get("cluster")
        if not isinstance(cyc, int) or not isinstance(cid, str):
            continue
        if ev.get("event") in ("aggregated", "upload_skipped") and (cyc, cid) in last:
            out.setdefault((cyc, cid, str(ev.get("stage"))), last[(cyc, cid)])
        try:
            last[(cyc, cid)] = float(ev["t_s"])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _payload_mismatch(path: Path, rec: dict[str, Any]) -> str | None:
    """Why the payload file is not the one the record describes (None: it is)."""
    if not path.is_file():
        return "is not a regular file"
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    size, digest = rec.get("size_bytes"), rec.get("sha256")
    if isinstance(size, int) and len(data) != size:
        return f"has {len(data)} bytes, its record {size}"
    if isinstance(digest, str) and hashlib.sha256(data).hexdigest() != digest:
        return "differs from its record (sha256)"
    return None


def load_recorded(sub: Path) -> RecordedRun:
    """Read one algorithm run (``RUN/<algorithm>/``) for replay; reads, never writes.

    Raises
    ------
    UserError : no payloads or no upload records, a record naming a missing payload file
    """
    from testbed.scenario import load_scenario

    scn = load_scenario(sub / "scenario.toml")
    pdir = sub / "payloads"
    files = sorted(p.name for p in pdir.glob("*.safetensors")) if pdir.is_dir() else []
    if not files:
        raise UserError(f"{sub}: no payloads recorded (payloads/*.safetensors)")
    uploads = _jsonl(sub / "uploads.jsonl")
    if not uploads:
        raise UserError(f"{sub}: no upload records (uploads.jsonl)")
    final: dict[str, dict[str, Any]] = {}
    for rec in uploads:
        try:
            final[str(rec["payload"])] = rec  # the last record of a payload is its final state
        except KeyError as e:
            raise UserError(f"{sub / 'uploads.jsonl'}: a record without {e}") from e
    payloads: dict[str, RecordedPayload] = {}
    for name, rec in final.items():
        if name not in files:
            log.warning("%s: payload %s has a record but no file; not replayed", sub, name)
            continue
        why = _payload_mismatch(pdir / name, rec)
        if why:
            log.warning("%s: payload %s %s; not replayed", sub, name, why)
            continue
        payloads[name] = RecordedPayload(
            name,
            str(rec["cluster"]),
            int(rec["device"]),
            int(rec["cycle"]),
            str(rec["stage"]),
            float(rec["ready_s"]),
            rec,
        )
    unrecorded = sorted(set(files) - set(payloads))
    if unrecorded:
        log.warning("%s: %d payload file(s) without a record; not replayed", sub, len(unrecorded))
    if not payloads:
        raise UserError(f"{sub}: no payload has both a file and an upload record")
    starts = _command_starts(_jsonl(sub / "events.jsonl"))
    # First-appearance order in uploads.jsonl is the original send order.
    order = {name: i for i, name in enumerate(dict.fromkeys(str(r["payload"]) for r in uploads))}
    cmds: dict[str, dict[tuple[int, str], Command]] = {}
    for p in sorted(payloads.values(), key=lambda q: (q.ready_s, order[q.name])):
        per = cmds.setdefault(p.cluster, {})
        key = (p.cycle, p.stage)
        if key not in per:
            t0 = starts.get((p.cycle, p.cluster, p.stage), p.ready_s)
            per[key] = Command(p.cycle, p.stage, min(t0, p.ready_s))
        per[key].payloads.append(p)
    commands = {
        cid: sorted(per.values(), key=lambda c: (c.t_start_s, c.cycle)) for cid, per in cmds.items()
    }
    aggs = _jsonl(sub / "aggregations.jsonl")
    try:
        t_agg = {
            (int(a["cycle"]), str(a["cluster"]), str(a["stage"])): float(a["t_agg_s"]) for a in aggs
        }
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{sub / 'aggregations.jsonl'}: a malformed aggregation ({e})") from e
    return RecordedRun(sub.name, sub, scn, payloads, commands, aggs, t_agg)


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


def _slot_map(
    scn: Any, windows: dict[str, list[tuple[float, float]]]
) -> dict[tuple[int, str], Any]:
    """(cycle, cluster) → :class:`testbed.schedule.Slot` of the scenario's cycle plan."""
    from testbed.schedule import cycle_plan

    return {(sl.cycle, sl.cluster): sl for cyc in cycle_plan(scn, windows) for sl in cyc}


class _Emulator:
    """One ``testbed channel serve`` child plus one receiver thread per cluster."""

    def __init__(
        self,
        scn: Any,
        windows: dict[str, list[tuple[float, float]]],
        out: Path,
        run_keys: Path | None = None,
    ) -> None:
        from flowgraphs.keys import KeysError, create_keys, list_keys
        from testbed.run import run_nodes

        self.scn = scn
        self.out = out
        self.token = secrets.token_hex(4)
        # the recorded run's own keys when it has them all (the same signatures, so the same
        # bytes on the air as in the run), else fresh ones for this replay
        keys = out / "keys"
        try:
            if run_keys is not None and set(run_nodes(scn)) <= {
                k.name for k in list_keys(run_keys)
            }:
                keys = run_keys
        except KeysError:
            pass
        if keys == out / "keys":
            create_keys(keys, run_nodes(scn))
        self.keys_dir = keys.absolute()
        self._keyrings: dict[str, Any] = {}
        sched = windows if scn.schedule.mode == "ideal" else None
        (out / "emulator.toml").write_text(
            scn.emulator_config_toml(self.token, sched, self.keys_dir)
        )
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.stores: dict[str, Any] = {}

    def keyring(self, node: str) -> Any:
        """Node ``node``'s :class:`flowgraphs.keys.Keyring` (this process plays every node)."""
        from flowgraphs.keys import Keyring

        if node not in self._keyrings:
            self._keyrings[node] = Keyring(self.keys_dir, node)
        return self._keyrings[node]

    def __enter__(self) -> _Emulator:
        from nodes.receiver import ReceiverConfig, ReceiverEngine
        from nodes.store import ReceiverStore
        from nodes.zmq_link import LinkEndpoints, serve_receiver
        from testbed.run import ChildFailedError, _Children, _wait_for_ipc

        (self.out / "nodes").mkdir(exist_ok=True)
        self.kids = _Children()
        try:
            self.kids.start(
                "channel emulator",
                ["channel", "serve", "--config", str(self.out / "emulator.toml")],
                self.out / "nodes" / "channel.log",
            )
            addrs = [
                self.scn.link_endpoints(lid, self.token)[0]
                for c in self.scn.clusters
                for lid in (c.id, f"{c.id}-down")
            ]
            _wait_for_ipc(addrs, self.kids, 120.0)
        except ChildFailedError as e:
            self.kids.stop_all()
            raise UserError(f"{e}: {_last_line(self.out / 'nodes' / 'channel.log')}") from e
        except BaseException:
            self.kids.stop_all()
            raise
        frame = self.scn.link.fragment_size + 128
        for c in self.scn.clusters:
            store = ReceiverStore(self.out / f"rx-{c.id}")
            self.stores[c.id] = store
            eng = ReceiverEngine(
                store,
                ReceiverConfig(frame_bytes=frame, supersede="keep"),
                keys=self.keyring("satellite"),
                signer=c.id,
            )
            up = LinkEndpoints(*self.scn.link_endpoints(c.id, self.token))
            down = LinkEndpoints(*self.scn.link_endpoints(f"{c.id}-down", self.token))
            th = threading.Thread(
                target=serve_receiver,
                name=f"replay-rx-{c.id}",
                daemon=True,
                args=(eng, up.out_addr, down.in_addr, down.status_addr),
                kwargs={
                    "node_id": "satellite",
                    "stop": self.stop,
                    "stats_every_s": 30.0,
                    "keys": self.keyring("satellite"),
                },
            )
            th.start()
            self.threads.append(th)
        return self

    def check(self) -> None:
        """Raise if the emulator died: a replay through a dead emulator measures nothing."""
        from testbed.run import ChildFailedError

        bad = self.kids.first_failed(ignore="")
        if bad:
            raise ChildFailedError(
                f"{bad[0]} exited with status {bad[1]} during the replay; see {bad[2]}"
            )

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(5.0)
        self.kids.stop_all()
        bad = self.kids.first_failed(ignore="channel emulator")
        if bad:
            log.warning("%s exited with status %s; see %s", *bad)


def _last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    return lines[-1].removeprefix("testbed: error: ") if lines else "no message"


@dataclass
class _Open:
    driver: Any
    payload: RecordedPayload
    ready_s: float
    wall_s: float = 0.0


def _replay_cluster(
    rec: RecordedRun,
    scn: Any,
    cid: str,
    emu: _Emulator,
    windows: dict[str, list[tuple[float, float]]],
    slots_old: dict[tuple[int, str], Any],
    slots_new: dict[tuple[int, str], Any],
    drain: bool,
    progress: Any = None,
) -> tuple[list[dict[str, Any]], dict[tuple[int, str], float], dict[str, Any]]:
    """Send one cluster's payloads as its node did.

    Returns
    -------
    (the final record per payload, (cycle, stage) → the aggregation time the satellite's rule
    gives under the replay [s], the emulator's counters of the cluster's uplink — frames
    built, delivered and lost by reason)
    """
    from channel import time_to_deliver_s
    from nodes.link_profile import capacity_fields, sender_config
    from nodes.payload import derived_transfer_id, manifest_for
    from nodes.sender import SenderDriver, SenderEngine, TransferError
    from nodes.signing import signed
    from nodes.wire import Manifest
    from nodes.zmq_link import EmulatorSenderLink, LinkEndpoints, LinkMux
    from testbed.schedule import run_geometry

    up = LinkEndpoints(*scn.link_endpoints(cid, emu.token))
    down = LinkEndpoints(*scn.link_endpoints(f"{cid}-down", emu.token))
    link = EmulatorSenderLink(up, down, src=cid, keys=emu.keyring(cid))
    lc = scn.uplink_config(cid, emu.token)
    scfg = sender_config(lc, fragment_size=scn.link.fragment_size)
    mux = LinkMux(link)
    geo = run_geometry(scn, cid, windows)
    wins = windows[cid]
    pending: list[_Open] = []
    done: list[_Open] = []
    t_aggs: dict[tuple[int, str], float] = {}

    def run(o: _Open, deadline: float | None) -> None:
        w0 = time.monotonic()
        try:
            o.driver.run(deadline_s=deadline)
        except TransferError as e:
            emu.check()  # a dead emulator is an error, not a lost payload
            log.warning("replay of %s stopped: %s", o.payload.name, e)
            o.driver.now = math.inf
        o.wall_s += time.monotonic() - w0
        if progress is not None:
            progress(o.payload.name, finished(o))

    def finished(o: _Open) -> bool:
        return o.driver.e.done or o.driver.now == math.inf

    try:
        anchor: dict[int, tuple[float, float]] = {}  # cycle → (original, replay) anchor [s]
        last_cycle: int | None = None
        uplink_free = -math.inf  # emulated end of the cluster's last uplink use [s]

        def resume(opened: list[_Open], t: float, deadline: float) -> list[_Open]:
            nonlocal uplink_free
            still = []
            for o in opened:
                if scn.time.late_policy == "drop":
                    o.driver.now = math.inf
                    done.append(o)
                    continue
                o.driver.now = max(o.driver.now, t)
                run(o, deadline)
                t = max(t, min(o.driver.now, deadline))
                (done if finished(o) else still).append(o)
            uplink_free = max(uplink_free, t)
            return still

        for cmd in rec.commands.get(cid, []):
            old = slots_old.get((cmd.cycle, cid))
            new = slots_new.get((cmd.cycle, cid))
            if new is None:
                log.warning("%s: no slot for cycle %d in the changed scenario", cid, cmd.cycle)
                a_old = a_new = 0.0
                deadline = cmd.t_start_s
            else:
                a_old, a_new = anchor.get(
                    cmd.cycle, (old.aos_s if old is not None else new.aos_s, new.aos_s)
                )
                deadline = new.los_s
            shift = a_new - a_old
            if new is not None and cmd.cycle != last_cycle:
                # At AOS the node resumes its frozen transfers (satellite ``_resume``).
                last_cycle = cmd.cycle
                t = max(new.aos_s, uplink_free)
                pending = resume(pending, t, new.los_s)
            t = max(cmd.t_start_s + shift, uplink_free)
            still: list[_Open] = []
            for o in pending:
                if scn.time.late_policy == "drop":
                    o.driver.now = math.inf  # cancelled; stays unaccepted
                    done.append(o)
                    continue
                o.driver.now = max(o.driver.now, t)
                run(o, deadline)
                t = max(t, min(o.driver.now, deadline))
                (done if finished(o) else still).append(o)
            pending = still
            mine: list[_Open] = []
            for p in cmd.payloads:
                data = (rec.path / "payloads" / p.name).read_bytes()
                mpath = rec.path / "payloads" / p.name.replace(".safetensors", ".manifest.json")
                try:
                    m0 = Manifest.from_dict(json.loads(mpath.read_text()))
                    sender, rnd, experts, kind = m0.sender, m0.round, m0.expert_ids, m0.kind
                except (OSError, ValueError) as e:
                    log.warning("%s: manifest unreadable (%s); rebuilt from the record", mpath, e)
                    sender, rnd, experts = f"{cid}-d{p.device}", p.cycle, ()
                    kind = p.stage
                t = max(t, p.ready_s + shift)
                m = manifest_for(
                    data,
                    sender,
                    rnd,
                    scn.link.fragment_size,
                    experts,
                    kind=kind,
                    name=p.name,
                    created_s=t,
                )
                tid = derived_transfer_id(m, scn.seed)
                m, cancel_signer = signed(tid, m, emu.keyring(cid))
                drv = SenderDriver(
                    SenderEngine(tid, m, data, cancel_signer),
                    mux.view(tid),
                    scfg,
                    windows=wins,
                    start_s=t,
                )
                o = _Open(drv, p, t)
                mine.append(o)
                run(o, deadline)
                t = max(t, min(drv.now, deadline))
                (done if finished(o) else pending).append(o)
            # The satellite's rule (nodes/satellite.py): aggregate as soon as all of this
            # command's payloads are in, else at LOS.
            acc = [_accepted_s(o) for o in mine]
            los = deadline if new is not None else math.inf
            if mine and all(x is not None for x in acc):
                t_agg = min(los, max([t, *acc]))  # type: ignore[list-item]
            else:
                t_agg = los
            t_aggs[(cmd.cycle, cmd.stage)] = t_agg
            uplink_free = t
            orig = rec.t_agg.get((cmd.cycle, cid, cmd.stage))
            if orig is not None and math.isfinite(t_agg):
                anchor[cmd.cycle] = (orig, t_agg)  # the next step of the slot starts from here
        if drain and pending:
            end = wins[-1][1] if wins else None
            for o in pending:
                o.driver.now = max(o.driver.now, t)
                run(o, end)
                if o.driver.now != math.inf:
                    t = max(t, min(o.driver.now, end if end is not None else o.driver.now))
        done.extend(pending)
        try:  # this uplink's counters: the emulator ran for this replay only
            link.link_clock()
            frame_stats = dict(link.last_stats or {})
        except TimeoutError:
            log.warning("%s: the emulator did not report its counters", cid)
            frame_stats = {}
    finally:
        link.close()
    out = []
    for o in done:
        r = o.driver._record(o.wall_s).to_dict()
        if (
            r["status"] == "incomplete"
            and o.driver.now == math.inf
            and scn.time.late_policy == "drop"
        ):
            r["status"] = "cancelled"
        r["predicted_shannon_s"] = time_to_deliver_s(geo, r["first_tx_s"], r["size_bytes"])
        r.update(capacity_fields(r, geo, lc))
        p = o.payload
        out.append(
            {
                "cluster": p.cluster,
                "device": p.device,
                "cycle": p.cycle,
                "stage": p.stage,
                "payload": p.name,
                "ready_s": o.ready_s,
                **r,
            }
        )
    return out, t_aggs, frame_stats


#: Why frames were lost, from the emulator's counters (docs/emulator.md).
LOSS_REASONS = {
    "gate": ("lost_gate",),
    "detection": ("lost_no_sync", "lost_header", "lost_truncated"),
    "decoding (LDPC)": ("ldpc_fail",),
    "CRC": ("df_crc_fail", "crc_fail"),
}


def frame_losses(stats: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Totals over the links' counters: ``frames`` sent, ``delivered`` PDUs and frames lost
    by reason (the wholly gated ones, not detected, failed decoding, failed a CRC)."""
    out = {"frames": 0, "delivered_pdus": 0, **{k: 0 for k in LOSS_REASONS}}
    for st in stats.values():
        out["frames"] += int(st.get("frames", 0) or 0)
        out["delivered_pdus"] += int(st.get("delivered", 0) or 0)
        for reason, keys in LOSS_REASONS.items():
            out[reason] += sum(int(st.get(k, 0) or 0) for k in keys)
    return out


def _accepted_s(o: _Open) -> float | None:
    """When the receiver accepted the payload [s], or None (not, or not yet)."""
    from nodes.wire import FinishedStatus

    res = o.driver.e.result
    return res.accepted_s if res is not None and res.status is FinishedStatus.ACCEPTED else None


def _replay_t_agg(
    rec: RecordedRun,
    slots_old: dict[tuple[int, str], Any],
    slots_new: dict[tuple[int, str], Any],
    replayed: dict[tuple[int, str, str], float],
) -> dict[int, float]:
    """Each aggregation's time under the replay.

    The satellite's rule applied to the replayed command where there was one, else the
    recorded time moved with its slot (same offset from AOS).
    """
    out = {}
    for i, a in enumerate(rec.aggregations):
        cyc, cid = int(a["cycle"]), str(a["cluster"])
        if (cyc, cid, str(a["stage"])) in replayed:
            out[i] = replayed[(cyc, cid, str(a["stage"]))]
            continue
        old, new = slots_old.get((cyc, cid)), slots_new.get((cyc, cid))
        shift = (new.aos_s - old.aos_s) if old is not None and new is not None else 0.0
        out[i] = float(a["t_agg_s"]) + shift
    return out


def replay_algorithm(
    rec: RecordedRun,
    overrides: list[str],
    out: Path,
    drain: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Replay one algorithm run under ``overrides``; returns its part of ``replay.json``.

    Parameters
    ----------
    rec : the recorded run (:func:`load_recorded`)
    overrides : ``KEY=VALUE`` scenario overrides (may be empty)
    out : working directory for this replay (emulator config, receivers, logs, uploads.jsonl)
    drain : continue transfers still open after the last command through the remaining windows
    progress : called ``(payload name, finished)`` after each transmission attempt
    """
    from testbed.schedule import cluster_windows

    scn = rec.scenario.with_overrides(overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.toml").write_text(scn.to_toml())
    windows = cluster_windows(scn)
    (out / "windows.json").write_text(json.dumps(windows))
    old_windows = _old_windows(rec)
    slots_old = _slot_map(rec.scenario, old_windows)
    slots_new = _slot_map(scn, windows)
    w0 = time.monotonic()
    records: list[dict[str, Any]] = []
    t_aggs: dict[tuple[int, str, str], float] = {}
    frames: dict[str, dict[str, Any]] = {}
    with _Emulator(scn, windows, out, rec.path / "keys") as emu:
        for c in scn.clusters:
            if c.id in rec.commands:
                named = None
                if progress is not None:

                    def named(n: str, f: bool, a: str = rec.algorithm) -> None:
                        progress(f"{a}/{n}", f)

                rs, ta, fs = _replay_cluster(
                    rec, scn, c.id, emu, windows, slots_old, slots_new, drain, named
                )
                emu.check()
                records += rs
                frames[c.id] = fs
                t_aggs.update({(cyc, c.id, stage): v for (cyc, stage), v in ta.items()})
    with open(out / "uploads.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    t_agg = _replay_t_agg(rec, slots_old, slots_new, t_aggs)
    result = compare(rec, {r["payload"]: r for r in records}, t_agg)
    result["frames"] = frames
    result["summary"]["frame_losses"] = frame_losses(frames)
    result["overrides"] = list(overrides)
    result["wall_s"] = round(time.monotonic() - w0, 3)
    result["dir"] = str(out)
    return result


def _old_windows(rec: RecordedRun) -> dict[str, list[tuple[float, float]]]:
    from testbed.schedule import cluster_windows

    p = rec.path / "windows.json"
    try:
        d = json.loads(p.read_text())
        return {k: [(float(a), float(b)) for a, b in v] for k, v in d.items()}
    except (OSError, ValueError, TypeError):
        return cluster_windows(rec.scenario)


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def compare(
    rec: RecordedRun, replayed: dict[str, dict[str, Any]], t_agg: dict[int, float] | None = None
) -> dict[str, Any]:
    """Side-by-side comparison of the original run and a replay.

    Parameters
    ----------
    rec : the recorded run
    replayed : payload name → final replay record
    t_agg : aggregation index → aggregation time under the changed schedule [s]; default the
        recorded ``t_agg_s``

    Returns
    -------
    ``{"algorithm", "payloads": [...], "aggregations": [...], "summary": {...}}`` (see
    :func:`summarise` for the summary).
    """
    rows = []
    for p in sorted(rec.payloads.values(), key=lambda q: (q.ready_s, q.cluster, q.name)):
        o, r = p.record, replayed.get(p.name, {})
        ot, rt = _num(o.get("upload_time_s")), _num(r.get("upload_time_s"))
        rows.append(
            {
                "payload": p.name,
                "cluster": p.cluster,
                "device": p.device,
                "cycle": p.cycle,
                "stage": p.stage,
                "size_bytes": o.get("size_bytes"),
                "ready_s": p.ready_s,
                "original": {
                    "status": o.get("status"),
                    "accepted_s": _num(o.get("accepted_s")),
                    "upload_time_s": ot,
                    "passes_used": o.get("passes_used"),
                },
                "replay": {
                    "status": r.get("status", "not_replayed"),
                    "ready_s": _num(r.get("ready_s")),
                    "accepted_s": _num(r.get("accepted_s")),
                    "upload_time_s": rt,
                    "passes_used": r.get("passes_used"),
                    "fragments_retransmitted": r.get("fragments_retransmitted"),
                    "goodput_bps": _num(r.get("goodput_bps")),
                },
                "delta_upload_time_s": (rt - ot) if ot is not None and rt is not None else None,
            }
        )
    aggs = []
    for i, a in enumerate(rec.aggregations):
        t0 = float(a["t_agg_s"])
        t1 = t_agg.get(i, t0) if t_agg else t0
        inc = [x["payload"] for x in a.get("included", [])]
        mis = [x["payload"] for x in a.get("missing", [])]
        reasons = {x["payload"]: x.get("reason") for x in a.get("missing", [])}
        missed, made, rep_in, rep_out = [], [], [], []
        for name in inc + mis:
            acc = _num(replayed.get(name, {}).get("accepted_s"))
            ok = acc is not None and acc <= t1
            (rep_in if ok else rep_out).append(name)
            if name in inc and not ok:
                why = (
                    "not_replayed"
                    if name not in replayed
                    else ("late" if acc is not None else "lost")
                )
                missed.append({"payload": name, "replay_accepted_s": acc, "reason": why})
            if name in mis and ok:
                made.append({"payload": name, "replay_accepted_s": acc, "was": reasons[name]})
        aggs.append(
            {
                "cycle": a["cycle"],
                "cluster": a["cluster"],
                "stage": a["stage"],
                "t_agg_s": t0,
                "replay_t_agg_s": t1,
                "original_included": inc,
                "original_missing": mis,
                "replay_included": rep_in,
                "replay_missing": rep_out,
                "newly_missed": missed,
                "newly_made": made,
            }
        )
    res = {"algorithm": rec.algorithm, "payloads": rows, "aggregations": aggs}
    res["summary"] = summarise(res)
    return res


def _stats(xs: list[float]) -> dict[str, float | None]:
    return {
        "mean": sum(xs) / len(xs) if xs else None,
        "max": max(xs) if xs else None,
    }


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """Totals of a comparison: accepted counts, upload-time mean/max, aggregations affected.

    ``*_upload_time_*_s`` are over accepted payloads only; ``*_aggs_incomplete_fraction`` is the
    fraction of aggregations that missed at least one payload (of those they could have had).
    """
    rows, aggs = res["payloads"], res["aggregations"]
    out: dict[str, Any] = {"payloads": len(rows), "aggregations": len(aggs)}
    for side in ("original", "replay"):
        ts = [r[side]["upload_time_s"] for r in rows if r[side]["upload_time_s"] is not None]
        passes = [r[side]["passes_used"] for r in rows if r[side]["upload_time_s"] is not None]
        st = _stats(ts)
        out[f"{side}_accepted"] = len(ts)
        out[f"{side}_upload_time_mean_s"] = st["mean"]
        out[f"{side}_upload_time_max_s"] = st["max"]
        out[f"{side}_passes_max"] = max(passes) if passes else None
    key = {"original": "original_missing", "replay": "replay_missing"}
    for side, k in key.items():
        n = sum(1 for a in aggs if a[k])
        out[f"{side}_aggs_incomplete"] = n
        out[f"{side}_aggs_incomplete_fraction"] = n / len(aggs) if aggs else 0.0
    out["newly_missed"] = sum(len(a["newly_missed"]) for a in aggs)
    out["newly_made"] = sum(len(a["newly_made"]) for a in aggs)
    # why the replay's payloads did not make their aggregation: never delivered, or late
    late: set[str] = set()
    lost: set[str] = set()
    for a in aggs:
        for name in a["replay_missing"]:
            row = next((r for r in rows if r["payload"] == name), None)
            acc = row["replay"]["accepted_s"] if row is not None else None
            (late if acc is not None else lost).add(name)
    out["replay_payloads_late"] = len(late)
    out["replay_payloads_not_delivered"] = len(lost)
    return out


# --------------------------------------------------------------------------------------------
# Replay and sweep over a run directory
# --------------------------------------------------------------------------------------------


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)


def _validate(recs: list[RecordedRun], overrides: list[str]) -> None:
    """Apply the overrides once to every scenario so bad keys fail before any emulator runs."""
    for r in recs:
        r.scenario.with_overrides(overrides)


def run_algorithms(
    run_dir: Path,
    overrides: list[str],
    out: Path,
    algorithm: str | None = None,
    drain: bool = False,
    recs: list[RecordedRun] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Replay every (or one) algorithm run of ``run_dir`` into ``out``; returns the result."""
    recs = (
        recs if recs is not None else [load_recorded(s) for s in algorithm_dirs(run_dir, algorithm)]
    )
    _validate(recs, overrides)
    res: dict[str, Any] = {
        "run_dir": str(run_dir),
        "overrides": list(overrides),
        "drain": drain,
        "created_wall": datetime.now(UTC).isoformat(),
        "algorithms": {},
    }
    for r in recs:
        log.info("replaying %s with %s", r.algorithm, overrides or "unchanged settings")
        res["algorithms"][r.algorithm] = replay_algorithm(
            r, overrides, out / r.algorithm, drain, progress
        )
    return res


def replay_run(
    run_dir: Path,
    overrides: list[str],
    out: Path | None = None,
    algorithm: str | None = None,
    drain: bool = False,
    progress: Any = None,
) -> tuple[dict[str, Any], Path]:
    """``testbed replay``: replay, write ``replay.json``; returns (result, its path).

    ``progress(done, total, note)`` is called as payloads finish (for a live display)."""
    recs = [load_recorded(s) for s in algorithm_dirs(run_dir, algorithm)]
    _validate(recs, overrides)
    out = out if out is not None else run_dir / "replays" / _stamp()
    _check_out(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    res = run_algorithms(
        run_dir, overrides, out, algorithm, drain, recs, _tracker(recs, 1, progress)
    )
    path = out / "replay.json"
    path.write_text(json.dumps(res, indent=1))
    return res, path


class _Tracker:
    """Counts the payloads replayed (each once, when it was first sent; finished or not) for
    a ``progress(done, total, note)`` callback, so the count ends at the total."""

    def __init__(self, total: int, progress: Any) -> None:
        self.total, self.progress = total, progress
        self.point = ""
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, name: str, finished: bool) -> None:
        self._seen.add((self.point, name))
        note = f"{self.point} · {name}" if self.point else name
        self.progress(min(len(self._seen), self.total), self.total, note)


def _tracker(recs: list[RecordedRun], repeats: int, progress: Any) -> _Tracker | None:
    if progress is None:
        return None
    return _Tracker(repeats * sum(len(r.payloads) for r in recs), progress)


def _check_out(run_dir: Path, out: Path) -> None:
    """The output must not be (or hold) one of the run's own files."""
    r, o = run_dir.resolve(), out.resolve()
    if o == r or (o.parent == r and (o / "scenario.toml").exists()):
        raise UserError(f"{out}: would overwrite the run's own files; choose another --out")
    if o.is_relative_to(r) and any(o.is_relative_to(s) for s in algorithm_dirs(run_dir)):
        raise UserError(f"{out}: inside an algorithm run directory; choose another --out")
    if o.exists() and not o.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another --out")
    if o.is_dir() and any(o.iterdir()):
        # an earlier replay's receivers would answer its payloads from their records
        raise UserError(f"{out}: not empty (an earlier replay or sweep?); choose another --out")


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["link.rician_k_db=0,3,10", ...]`` → ``{"link.rician_k_db": ["0", "3", "10"]}``.

    Raises
    ------
    UserError : malformed item (no ``=``, empty key or value, a key given twice)
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, vals = item.partition("=")
        key = key.strip()
        values = [v.strip() for v in vals.split(",")]
        if not sep or not key or not all(values):
            raise UserError(
                f"--grid {item!r}: expected KEY=V1,V2,... (e.g. link.rician_k_db=0,3,10)"
            )
        if key in grid:
            raise UserError(f"--grid {key}: given twice")
        grid[key] = values
    if not grid:
        raise UserError("sweep: give at least one --grid KEY=V1,V2,...")
    return grid


def _value(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def sweep_run(
    run_dir: Path,
    grid: dict[str, list[str]],
    out: Path | None = None,
    algorithm: str | None = None,
    drain: bool = False,
    progress: Any = None,
) -> tuple[dict[str, Any], Path]:
    """``testbed sweep``: replay at every point of the cartesian grid; writes ``sweep.json``.

    ``progress(done, total, note)`` is called as payloads finish, over all points.

    Returns
    -------
    (result, path of sweep.json); the result has ``grid`` (key → values), ``algorithms`` and
    ``points``: one entry per grid point with its ``settings`` and, per algorithm, the
    :func:`summarise` summary.
    """
    recs = [load_recorded(s) for s in algorithm_dirs(run_dir, algorithm)]
    points = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    for pt in points:  # every bad key/value fails before the first emulator starts
        try:
            _validate(recs, [f"{k}={v}" for k, v in pt.items()])
        except UserError as e:
            msg = str(e)
            fixed = "--grid " + msg[len("--set ") :] if msg.startswith("--set ") else msg
            raise UserError(fixed) from None
    out = out if out is not None else run_dir / "sweeps" / _stamp()
    _check_out(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "run_dir": str(run_dir),
        "grid": {k: [_value(v) for v in vs] for k, vs in grid.items()},
        "algorithms": [r.algorithm for r in recs],
        "drain": drain,
        "created_wall": datetime.now(UTC).isoformat(),
        "points": [],
    }
    track = _tracker(recs, len(points), progress)
    for i, pt in enumerate(points):
        ov = [f"{k}={v}" for k, v in pt.items()]
        log.info("sweep point %d/%d: %s", i + 1, len(points), ov)
        if track is not None:
            track.point = f"point {i + 1}/{len(points)} ({' '.join(ov)})"
        r = run_algorithms(run_dir, ov, out / f"point-{i:03d}", algorithm, drain, recs, track)
        (out / f"point-{i:03d}" / "replay.json").write_text(json.dumps(r, indent=1))
        res["points"].append(
            {
                "settings": {k: _value(v) for k, v in pt.items()},
                "dir": f"point-{i:03d}",
                "algorithms": {a: v["summary"] for a, v in r["algorithms"].items()},
            }
        )
    path = out / "sweep.json"
    path.write_text(json.dumps(res, indent=1))
    return res, path


def write_sweep_plot(res: dict[str, Any], path: Path) -> Path:
    """Plot a sweep: one subplot per swept key; upload time (mean, max) and aggregations missed.

    For each value of a key, points that differ in the other keys are pooled: the mean of the
    per-point means, the largest max, and the mean fraction of aggregations that missed a
    payload (right axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(res["grid"])
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.0), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        xs = res["grid"][key]
        numeric = all(isinstance(x, int | float) for x in xs)
        pos = xs if numeric else list(range(len(xs)))
        ax2 = ax.twinx()
        for j, alg in enumerate(res["algorithms"]):
            mean, mx, miss = [], [], []
            for x in xs:
                sums = [p["algorithms"][alg] for p in res["points"] if p["settings"][key] == x]
                ms = [s["replay_upload_time_mean_s"] for s in sums]
                ms = [m for m in ms if m is not None]
                mxs = [s["replay_upload_time_max_s"] for s in sums]
                mxs = [m for m in mxs if m is not None]
                mean.append(sum(ms) / len(ms) if ms else math.nan)
                mx.append(max(mxs) if mxs else math.nan)
                fr = [s["replay_aggs_incomplete_fraction"] for s in sums]
                miss.append(sum(fr) / len(fr) if fr else math.nan)
            color = f"C{j}"
            ax.plot(pos, mean, "o-", color=color, label=f"{alg} mean")
            ax.plot(pos, mx, "s--", color=color, label=f"{alg} max")
            ax2.plot(pos, miss, "^:", color=color, alpha=0.7, label=f"{alg} aggs missed")
        if not numeric:
            ax.set_xticks(pos, [str(x) for x in xs])
        ax.set_xlabel(key)
        ax.set_ylabel("upload time [emulated s]")
        ax2.set_ylabel("fraction of aggregations missing a payload")
        ax2.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="best")
    fig.suptitle(f"sweep of {Path(res['run_dir']).name}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
