"""The satellite node: receivers, the emulated timeline, and aggregation of what arrived.

``testbed node satellite --scenario FILE --out DIR --token T`` runs one receiver per cluster
uplink (threads over the emulator's ports, crash-safe stores under ``DIR/satellite/``), binds
the control ROUTER, and conducts the run on one emulated clock:

for each orbital cycle, for each connected phase (slot) in time order, it executes the
algorithm's connected plan with the cluster — ``upload`` (the cluster sends through the
emulator inside the window; the satellite aggregates **exactly the payloads whose transfer had
completed, hash-verified, by its aggregation time**), ``download`` (the aggregated tensors, at
the modem's nominal rate; skipped if the window has closed), ``train`` — while the other
clusters run their disconnected plans. A payload completed after its aggregation counts at
that cluster's next aggregation of the same stage (``late_policy = "next"``) unless a newer
one from the same device arrived too.

It writes ``uploads.jsonl``, ``aggregations.jsonl``, ``metrics.jsonl``, ``events.jsonl``,
``link.jsonl``, ``windows.json`` and ``progress.json`` into ``DIR`` (docs/run-directory.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq

from flowgraphs.keys import Keyring, ZapGuard
from nodes import control
from nodes.inbox import AcceptedInbox
from nodes.receiver import ReceiverConfig, ReceiverEngine
from nodes.store import ReceiverStore
from nodes.zmq_link import LinkEndpoints, serve_receiver

__all__ = ["SatelliteNode"]

log = logging.getLogger(__name__)


class _Jsonl:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "a")

    def write(self, obj: dict[str, Any]) -> None:
        self.f.write(json.dumps(obj) + "\n")
        self.f.flush()


def _device_of(sender: str, cid: str, n_devices: int) -> int | None:
    """Device index of a sender named ``<cid>-d<N>`` with 0 ≤ N < ``n_devices``, else None."""
    head, sep, tail = sender.rpartition("-d")
    if not sep or head != cid or not tail.isascii() or not tail.isdigit():
        return None
    n = int(tail)
    return n if n < n_devices and str(n) == tail else None


class SatelliteNode:
    """The satellite's process state (see the module docstring)."""

    def __init__(
        self,
        scn: Any,
        out: Path,
        token: str,
        hello_timeout_s: float = 300.0,
        keys: Keyring | None = None,
    ) -> None:
        from nodes.fl_setup import build_strategy
        from testbed.schedule import cluster_windows, cycle_plan, run_geometry

        self.scn = scn
        self.out = out
        self.token = token
        self.keys = keys  # CURVE on every socket, signed manifests (docs/security.md)
        self.guard: ZapGuard | None = None
        out.mkdir(parents=True, exist_ok=True)
        self.windows = cluster_windows(scn)
        self.plan = cycle_plan(scn, self.windows)
        self.geoms = {c.id: run_geometry(scn, c.id, self.windows) for c in scn.clusters}
        self.strategy, self.global_test = build_strategy(scn)
        self.bitrate = scn.link.nominal_bitrate_bps
        self.hello_timeout_s = hello_timeout_s
        self.cluster_ids = {c.id for c in scn.clusters}
        self.dropped: Counter[str] = Counter()  # control messages dropped, by reason
        # Wall-clock limit for one command's reply (a cluster on another host may die unseen).
        self.reply_timeout_s = float(os.environ.get("SATFL_REPLY_TIMEOUT_S", "1800"))
        self.stop_event = threading.Event()
        self.engines: dict[str, ReceiverEngine] = {}
        self.inboxes: dict[str, AcceptedInbox] = {}
        self.threads: list[threading.Thread] = []
        frame = scn.link.fragment_size + 128
        for c in scn.clusters:
            d = out / "satellite" / f"rx-{c.id}"
            # with keys, only manifests the cluster itself signed (for its own devices)
            self.engines[c.id] = ReceiverEngine(
                ReceiverStore(d),
                ReceiverConfig(frame_bytes=frame, supersede="keep"),
                keys=keys,
                signer=c.id,
            )
            self.inboxes[c.id] = AcceptedInbox(d, keys=keys, signer=c.id)
        self.uploads = _Jsonl(out / "uploads.jsonl")
        self.aggs = _Jsonl(out / "aggregations.jsonl")
        self.metrics = _Jsonl(out / "metrics.jsonl")
        self.events = _Jsonl(out / "events.jsonl")
        self.wall0 = time.monotonic()
        self.sent: dict[tuple[str, int, str, int], dict[str, Any]] = {}  # last record per payload
        self.t_k = {c.id: scn.schedule.start_s for c in scn.clusters}
        self.progress: dict[str, Any] = {
            "cycle": 0,
            "cycles": scn.algorithm.cycles,
            "t_s": scn.schedule.start_s,
            "t_start_s": scn.schedule.start_s,
            "horizon_s": self.plan[-1][-1].los_s if self.plan else scn.schedule.start_s,
        }
        self._progress_wall = 0.0
        self._early: list[tuple[str, dict[str, Any]]] = []
        self._burst_logs: list[_Jsonl] = []
        self.peak_mem: dict[str, int] = {}  # node → peak memory [bytes] (CUDA or RSS)
        self._norms: dict[str, list[float]] = {}  # stage → norms of accepted updates
        self._routes: dict[str, bytes] = {}  # cluster → routing id of its hello (with keys)

    # -- records ----------------------------------------------------------------------------
    def event(self, t_s: float, name: str, **kw: Any) -> None:
        self.events.write(
            {
                "t_s": t_s,
                "wall": round(time.monotonic() - self.wall0, 3),
                "node": "satellite",
                "event": name,
                **kw,
            }
        )

    def _progress(self, **kw: Any) -> None:
        """Write ``progress.json`` for the orchestrator's display (not a record: its ``t_s``
        during an upload is the receiver's safe time when it was looked at)."""
        self.progress.update(kw)
        self._progress_wall = time.monotonic()
        tmp = self.out / "progress.json.tmp"
        tmp.write_text(json.dumps(self.progress))
        os.replace(tmp, self.out / "progress.json")

    def _write_static(self) -> None:
        (self.out / "windows.json").write_text(json.dumps(self.windows))
        import numpy as np

        with open(self.out / "link.jsonl", "w") as f:
            last = self.plan[-1][-1].los_s if self.plan else 0.0
            for cid, g in self.geoms.items():
                for a, b in self.windows[cid]:
                    if a > last + 120.0:
                        break
                    step = max(0.5, min(5.0, (b - a) / 20.0))
                    t = np.arange(max(0.0, a - 120.0), b + 120.0, step)
                    st = g.state(t)
                    for i in range(t.size):
                        f.write(
                            json.dumps(
                                {
                                    "cluster": cid,
                                    "t_s": float(t[i]),
                                    "elevation_deg": float(st.elevation_deg[i]),
                                    "snr_db": float(st.snr_db[i]),
                                    "doppler_hz": float(st.doppler_hz[i]),
                                    "visible": bool(st.visible[i]),
                                }
                            )
                            + "\n"
                        )

    # -- run --------------------------------------------------------------------------------
    def start_receivers(self) -> None:
        for c in self.scn.clusters:
            up = LinkEndpoints(*self.scn.link_endpoints(c.id, self.token))
            down = LinkEndpoints(*self.scn.link_endpoints(f"{c.id}-down", self.token))
            bursts = _Jsonl(self.out / f"bursts-{c.id}.jsonl")
            self._burst_logs.append(bursts)
            th = threading.Thread(
                target=serve_receiver,
                name=f"rx-{c.id}",
                daemon=True,
                args=(self.engines[c.id], up.out_addr, down.in_addr, down.status_addr),
                kwargs={
                    "node_id": "satellite",
                    "stop": self.stop_event,
                    "stats_every_s": 30.0,
                    "on_delivery": bursts.write,
                    "keys": self.keys,
                },
            )
            th.start()
            self.threads.append(th)

    def run(self) -> int:
        """Conduct the whole run; returns the exit status."""
        self._write_static()
        self.start_receivers()
        ctx = zmq.Context.instance()
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:
            # only the scenario's clusters, each by its own certificate (User-Id = its name)
            self.guard = ZapGuard(ctx, self.keys)
            self.guard.serve(self.router, "control", sorted(self.cluster_ids))
        self.router.bind(self.scn.control_endpoint(self.token))
        try:
            self._await_hellos()
            acc0 = self.strategy.evaluate(self.global_test)
            self.event(self.scn.schedule.start_s, "start", accuracy_global=acc0)
            self._progress(accuracy=acc0, phase="start")
            for cycle_slots in self.plan:
                self._cycle(cycle_slots)
            if self.dropped:  # what no single message was allowed to do: stop the run
                self.event(max(self.t_k.values()), "control_dropped", **dict(self.dropped))
            self.event(max(self.t_k.values()), "finished")
            self._progress(phase="finished")
            return 0
        finally:
            for c in self.scn.clusters:
                self.router.send_multipart([self._route(c.id), *control.encode("stop")])
            time.sleep(0.2)
            self.stop_event.set()
            for th in self.threads:
                th.join(5.0)
            self.router.close(0)
            if self.guard is not None:
                self.guard.close()
            for j in (self.uploads, self.aggs, self.metrics, self.events, *self._burst_logs):
                j.f.close()

    def _await_hellos(self) -> None:
        """Wait until every cluster said hello. Anything else — a frame that is not a control
        message, an identity that is not one of the clusters (or not UTF-8), another type — is
        logged, counted and dropped: no single message stops the run (docs/run-directory.md)."""
        want = {c.id for c in self.scn.clusters}
        end = time.monotonic() + self.hello_timeout_s
        while want:
            if not self.router.poll(int(max(0.0, end - time.monotonic()) * 1000)):
                raise RuntimeError(f"clusters {sorted(want)} did not connect in time")
            msg = self._decode(*self._recv())
            if msg is None:
                continue
            who = msg["_from"]
            if msg["type"] == "hello":
                want.discard(who)
            else:
                self.dropped["unexpected_in_hello"] += 1
                log.warning("%s sent %r before the run started; dropped", who, msg["type"])

    def _recv(self) -> tuple[bytes, list[bytes], str | None]:
        """(routing identity, frames, the sender's authenticated node name or None)."""
        parts = self.router.recv_multipart(copy=False)
        user = None
        if self.keys is not None:
            try:
                user = parts[-1].get("User-Id")
            except zmq.ZMQError:
                user = None
        return parts[0].bytes, [p.bytes for p in parts[1:]], user

    def _route(self, cid: str) -> bytes:
        """The ROUTER routing id of cluster ``cid``: with keys, the connection its certificate
        said hello on (a routing id is the peer's choice, so it is never trusted as a name);
        without, its id."""
        return self._routes.get(cid, cid.encode())

    def _decode(
        self, ident: bytes, frames: list[bytes], user: str | None = None
    ) -> dict[str, Any] | None:
        """The control message from a connection, or None (logged, counted) when its sender is
        not a cluster of the scenario or the frames are not a valid control message.

        The sender is the certificate's node name (``user``, the ZAP User-Id) with keys, the
        routing id without. The message's ``_from`` is the cluster."""
        if self.keys is not None:
            who = user or None
        else:
            try:
                who = ident.decode()
            except UnicodeDecodeError:
                who = None
        if who not in self.cluster_ids:
            self.dropped["unknown_identity"] += 1
            n = self.dropped["unknown_identity"]
            if n <= 10 or n % 1000 == 0:
                log.warning("control message from unknown identity %r dropped (#%d)", ident, n)
            return None
        try:
            msg, _ = control.decode(frames)
        except control.ControlError as e:
            self.dropped["malformed"] += 1
            log.warning("bad control message from %s dropped: %s", who, e)
            return None
        if self.keys is not None:
            if msg["type"] == "hello":
                self._routes[who] = ident  # type: ignore[index]
            elif self._routes.get(who) != ident:  # type: ignore[arg-type]
                self.dropped["not_the_hello_connection"] += 1
                log.warning("%s: message on a connection it did not say hello on; dropped", who)
                return None
        msg["_from"] = who
        return msg

    def _request(
        self, cid: str, mtype: str, reply_type: str, blob: bytes | None = None, **fields: Any
    ) -> dict[str, Any]:
        self.router.send_multipart([self._route(cid), *control.encode(mtype, blob, **fields)])
        return self._await(cid, reply_type)

    def _live_progress(self) -> None:
        """During an upload: the connected cluster's open transfers as the receiver sees
        them (bytes stored of the total, fragments missing below the highest one received)
        and its safe time — at most twice a second."""
        if time.monotonic() - self._progress_wall < 0.5:
            return
        cid = self.progress.get("cluster")
        eng = self.engines.get(cid) if cid else None
        if eng is None or not self.progress.get("uploads_in_flight"):
            self._progress()
            return
        try:
            partials = list(eng.store.partials.values())
        except RuntimeError:  # changed while the receiver thread stored a fragment
            return
        transfers = [
            {
                "sender": p.manifest.sender,
                "kind": p.manifest.kind,
                "size_bytes": p.manifest.size,
                "received_bytes": min(p.n_received * p.manifest.fragment_size, p.manifest.size),
                "missing_fragments": max(0, p.highest + 1 - p.n_received),
            }
            for p in partials
        ]
        t = eng.safe_time_s
        self._progress(transfers=transfers, t_s=t if math.isfinite(t) else self.progress.get("t_s"))

    def _await(self, cid: str, reply_type: str) -> dict[str, Any]:
        """The next ``reply_type`` from ``cid``; replies from others are kept for later."""
        for i, (who, msg) in enumerate(self._early):
            if who == cid and msg["type"] == reply_type:
                return self._early.pop(i)[1]
        while True:
            waited = 0.0
            while not self.router.poll(500):
                waited += 0.5
                self._live_progress()
                if waited >= self.reply_timeout_s:
                    raise RuntimeError(
                        f"cluster {cid} sent no {reply_type!r} within "
                        f"{self.reply_timeout_s:g} s (wall); is it alive?"
                    )
            msg = self._decode(*self._recv())
            if msg is None:
                continue
            who = msg["_from"]
            if msg["type"] == "error":
                raise RuntimeError(f"cluster {who} failed: {msg.get('message')}")
            if who == cid and msg["type"] == reply_type:
                return msg
            self._early.append((who, msg))

    def _cycle(self, slots: list[Any]) -> None:
        st = self.strategy
        cycle = slots[0].cycle
        w0 = time.monotonic()
        st.configure_cycle(cycle)
        assignment = {str(k): list(v) for k, v in st.assignment.items()}
        for c in self.scn.clusters:
            self.router.send_multipart(
                [self._route(c.id), *control.encode("assign", cycle=cycle, assignment=assignment)]
            )
        self.event(slots[0].aos_s, "cycle_start", cycle=cycle, assignment=assignment)
        up_bytes = 0
        peak_mem = 0
        for sl in slots:
            t = max(sl.aos_s, self.t_k[sl.cluster])
            self._progress(cycle=cycle, cluster=sl.cluster, phase="connected", t_s=t)
            self.event(
                t, "connected", cycle=cycle, cluster=sl.cluster, aos_s=sl.aos_s, los_s=sl.los_s
            )
            self._resume(sl, t)
            for step in st.connected_plan(sl.index, cycle):
                if step.kind == "upload":
                    t, nbytes = self._upload(sl, step.stage, t)
                    up_bytes += nbytes
                elif step.kind == "download":
                    t = self._download(sl, step.stage, t)
                elif step.kind == "train":
                    r = self._request(
                        sl.cluster, "train", "trained", cycle=cycle, mode=step.stage, t_start=t
                    )
                    t = float(r["t_end"])
                    peak_mem = max(peak_mem, int(r["peak_memory_bytes"]))
                    self._note_mem(sl.cluster, r)
                    self.event(
                        t,
                        "trained",
                        cycle=cycle,
                        cluster=sl.cluster,
                        mode=step.stage,
                        wall_s=r["wall_s"],
                    )
            self.t_k[sl.cluster] = t
            # The other clusters train disconnected meanwhile (in parallel processes).
            plans = {
                c.id: st.disconnected_plan(self.scn.cluster_index(c.id), cycle)
                for c in self.scn.clusters
                if c.id != sl.cluster
            }
            for i in range(max((len(v) for v in plans.values()), default=0)):
                busy = []
                for cid, steps in plans.items():
                    if i < len(steps):
                        t0 = max(self.t_k[cid], sl.aos_s)
                        self.router.send_multipart(
                            [
                                self._route(cid),
                                *control.encode(
                                    "train", cycle=cycle, mode=steps[i].stage, t_start=t0
                                ),
                            ]
                        )
                        busy.append(cid)
                for cid in busy:
                    r = self._await(cid, "trained")
                    self.t_k[cid] = float(r["t_end"])
                    peak_mem = max(peak_mem, int(r["peak_memory_bytes"]))
                    self._note_mem(cid, r)
        acc_g = st.evaluate(self.global_test)
        acc_l = [st.evaluate(c.test) for c in st.clusters]
        t_end = max(sl.los_s for sl in slots)
        from testbed.fl.strategy import peak_memory_bytes

        self.metrics.write(
            {
                "algorithm": self.scn.algorithm.name,
                "cycle": cycle,
                "t_s": t_end,
                "wall_s": round(time.monotonic() - w0, 3),
                "accuracy_global": acc_g,
                "accuracy_local": acc_l,
                "uplink_bytes": up_bytes,
                "peak_memory_bytes": max(peak_mem, peak_memory_bytes(st.device)),
                "peak_memory_bytes_by_node": {
                    "satellite": peak_memory_bytes(st.device),
                    **self.peak_mem,
                },
            }
        )
        self.event(t_end, "cycle_end", cycle=cycle, accuracy_global=acc_g)
        self._progress(cycle=cycle, accuracy=acc_g, phase="cycle_end", t_s=t_end)
        log.info("cycle %d: global accuracy %.3f", cycle, acc_g)

    def _sync_receiver(self, cid: str, t_s: float, timeout_s: float = 300.0) -> None:
        """Wait until the cluster's receiver has handled everything delivered before ``t_s``.

        The emulator's safe-time markers (forwarded in order behind the deliveries) say that
        no delivery with ``rx_end`` < t will come any more; once the receiver's safe time
        passes ``t_s``, a payload completed by then is certainly committed and recorded
        before the satellite looks — the decision depends on emulated time only.
        """
        eng = self.engines[cid]
        end = time.monotonic() + timeout_s
        while not eng.safe_time_s > t_s:
            self._live_progress()
            if time.monotonic() > end:
                raise RuntimeError(
                    f"the receiver for {cid} had a safe time of {eng.safe_time_s:.3f} s, not "
                    f"beyond {t_s:.3f} s, after {timeout_s:g} s (wall); is the emulator alive?"
                )
            time.sleep(0.005)

    def _note_mem(self, node: str, reply: dict[str, Any]) -> None:
        """Keep each node's peak memory (CUDA max allocated on GPU, peak RSS on CPU)."""
        self.peak_mem[node] = max(self.peak_mem.get(node, 0), int(reply["peak_memory_bytes"]))

    def _record_upload(self, rec: dict[str, Any]) -> None:
        """Append an upload record and remember it as that payload's latest state."""
        self.uploads.write(rec)
        self.sent[(rec["cluster"], int(rec["device"]), rec["stage"], int(rec["cycle"]))] = rec

    def _resume(self, sl: Any, t: float) -> None:
        """At AOS the cluster's frozen transfers wake up on the uplink (the download runs on
        the separate downlink meanwhile, so the conductor's clock does not wait for them)."""
        r = self._request(
            sl.cluster,
            "upload",
            "uploaded",
            cycle=sl.cycle,
            stage=None,
            t_start=t,
            deadline=sl.los_s,
        )
        self._sync_receiver(sl.cluster, float(r["t_end"]))
        for rec in r["records"]:
            self._record_upload(rec)
            self.event(
                rec["accepted_s"] or t, "resumed", payload=rec["payload"], status=rec["status"]
            )

    def _upload(self, sl: Any, stage: str, t: float) -> tuple[float, int]:
        cycle = sl.cycle
        if t >= sl.los_s:
            self.event(
                t,
                "upload_skipped",
                cycle=cycle,
                cluster=sl.cluster,
                stage=stage,
                reason="window closed",
            )
            self._aggregate(sl, stage, t)
            return t, 0
        self._progress(uploads_in_flight=self.scn.cluster(sl.cluster).devices)
        r = self._request(
            sl.cluster, "upload", "uploaded", cycle=cycle, stage=stage, t_start=t, deadline=sl.los_s
        )
        self._sync_receiver(sl.cluster, float(r["t_end"]))
        self._progress(uploads_in_flight=0, transfers=[], t_s=float(r["t_end"]))
        recs = r["records"]
        nbytes = 0
        for rec in recs:
            self._record_upload(rec)
            if rec["cycle"] == cycle and rec["stage"] == stage:
                nbytes += int(rec["size_bytes"])
        mine = [x for x in recs if x["cycle"] == cycle and x["stage"] == stage]
        done = [x["accepted_s"] for x in mine if x["status"] == "accepted"]
        if any(x["status"] == "incomplete" for x in mine):
            t_agg = sl.los_s  # waits until the window closes for what is still in flight
        else:  # all arrived, or ended for good (rejected, hash mismatch): nothing to wait for
            t_agg = min(sl.los_s, max([t, *done]))
        self._aggregate(sl, stage, t_agg)
        return t_agg, nbytes

    def _aggregate(self, sl: Any, stage: str, t_agg: float) -> None:
        """Aggregate the cluster's payloads of ``stage`` completed by ``t_agg``."""
        from testbed.fl.payload import Payload

        cid, cycle = sl.cluster, sl.cycle
        eng = self.engines[cid]
        inbox = self.inboxes[cid]
        newest: dict[int, tuple[Any, float]] = {}
        superseded: list[str] = []
        bad: list[dict[str, Any]] = []
        n_dev = self.scn.cluster(cid).devices
        items = inbox.poll()
        bad += inbox.pop_rejections()  # not authentic, hash or header wrong: never retried
        for item in items:
            m = item.manifest
            if m.kind != stage:
                continue
            rec = eng.store.records.get(bytes.fromhex(item.tid))
            acc = rec.accepted_s if rec is not None else float("inf")
            if not acc <= t_agg:
                continue  # not yet there at the aggregation time
            dev = _device_of(m.sender, cid, n_dev)
            if dev is None:  # not a device of the cluster whose link it came on
                log.warning("payload %s from %r on %s's link rejected", m.name, m.sender, cid)
                inbox.mark_applied(item)
                bad.append({"payload": m.name, "sender": m.sender, "reason": "sender"})
                continue
            prev = newest.get(dev)
            if prev is None or m.round > prev[0].manifest.round:
                if prev is not None:
                    inbox.mark_applied(prev[0])
                    superseded.append(prev[0].manifest.name)
                newest[dev] = (item, acc)
            else:
                inbox.mark_applied(item)
                superseded.append(item.manifest.name)
        payloads, included = [], []
        rejected: set[int] = set()
        # what the strategy will use of a payload: the keys this stage allows this cluster now
        # (a late payload may carry an expert re-assigned since; those keys are dropped)
        allowed = set(self.strategy._upload_keys(self.scn.cluster_index(cid), stage))
        for dev, (item, acc) in sorted(newest.items()):
            try:
                p = Payload.from_bytes(item.path.read_bytes())
            except Exception as e:  # any malformed file: safetensors, JSON or metadata errors
                p, why = None, f"unreadable payload ({type(e).__name__}: {e})"
            else:
                why = self._payload_problem(p, cid, dev, item.manifest.round, stage)
            norm = None
            if why is None:
                why, norm = self._norm_problem(p, stage)
            if why is not None:
                log.warning("payload %s rejected: %s", item.path.name, why)
                inbox.mark_applied(item)
                bad.append({"payload": item.manifest.name, "device": dev, "reason": why})
                if item.manifest.round == cycle:
                    rejected.add(dev)
                continue
            payloads.append(p)
            self._norms.setdefault(stage, []).append(norm)
            inbox.mark_applied(item)
            used = sum(1 for name in p.tensors if name in allowed)
            included.append(
                {
                    "payload": item.manifest.name,
                    "cluster": cid,
                    "device": dev,
                    "cycle": item.manifest.round,
                    "accepted_s": acc,
                    "tensors_used": used,
                    "tensors_dropped": len(p.tensors) - used,
                    "update_norm": norm,
                }
            )
        self.strategy.aggregate(self.scn.cluster_index(cid), stage, payloads)
        have = {(x["device"], x["cycle"]) for x in included}
        missing = []
        for dev in range(self.scn.cluster(cid).devices):
            if (dev, cycle) in have:
                continue
            rec = self.sent.get((cid, dev, stage, cycle))
            if rec is None:
                reason = "not_sent"
            elif dev in rejected:
                reason = "rejected"  # arrived, failed the aggregator's layout check
            elif rec["status"] == "incomplete" and self.scn.time.late_policy == "drop":
                reason = "dropped"  # will be cancelled at the next window
            elif rec["status"] in ("incomplete", "accepted"):
                reason = "late"
            else:
                reason = "lost"
            missing.append(
                {
                    "payload": rec["payload"] if rec else None,
                    "cluster": cid,
                    "device": dev,
                    "reason": reason,
                }
            )
        self.aggs.write(
            {
                "cycle": cycle,
                "cluster": cid,
                "stage": stage,
                "t_agg_s": t_agg,
                "included": included,
                "missing": missing,
                "superseded": superseded,
                "rejected": bad,
            }
        )
        self.event(
            t_agg,
            "aggregated",
            cycle=cycle,
            cluster=cid,
            stage=stage,
            included=len(included),
            missing=[m["reason"] for m in missing],
        )

    def _payload_problem(
        self, p: Any, cid: str, dev: int, round_: int, stage: str | None = None
    ) -> str | None:
        """Why a payload may not touch the global state, or None when it may.

        Every tensor must be a known LoRA key with the global tensor's exact dtype and shape
        and only finite values; the payload's own cluster, device and cycle must be those of
        the link, the sender and the manifest it arrived with; ``num_samples`` must be in
        [1, the device's data size]."""
        import torch

        k = self.scn.cluster_index(cid)
        if stage is not None and p.stage != stage:
            return f"claims stage {p.stage!r}, arrived as {stage!r}"
        if (p.cluster, p.device, p.cycle) != (k, dev, round_):
            return (
                f"claims cluster {p.cluster} device {p.device} cycle {p.cycle}, arrived as "
                f"cluster {k} device {dev} cycle {round_}"
            )
        n_max = len(self.strategy.clusters[k].devices[dev])
        if isinstance(p.num_samples, bool) or not 1 <= p.num_samples <= n_max:
            return f"num_samples {p.num_samples} outside 1..{n_max}"
        if not p.tensors:
            return "no tensors"
        for name, v in p.tensors.items():
            ref = self.strategy.global_state.get(name)
            if ref is None:
                return f"unexpected tensor {name!r}"
            if v.dtype != ref.dtype or tuple(v.shape) != tuple(ref.shape):
                return f"tensor {name!r} is {v.dtype} {tuple(v.shape)}, not {ref.dtype} " + str(
                    tuple(ref.shape)
                )
            if not torch.isfinite(v).all():
                return f"non-finite values in {name!r}"
        return None

    def _norm_problem(self, p: Any, stage: str) -> tuple[str | None, float]:
        """(why the update is too large or None, its norm ‖w − w_global‖₂ over its tensors).

        Bound: ``update_norm_factor`` × the median norm of the last 64 accepted updates of
        ``stage``; before 3 were accepted, × max(‖w_global‖₂, 1) over the same tensors (so a
        finite but huge first update cannot set the scale). Norms in float64."""
        import statistics

        # exactly rounded sums (math.fsum) of per-element squares: the same bits whatever
        # the order, threads or memory alignment (torch's vectorised sum differs in the last
        # bit between processes, and these norms are in the records)
        d2: list[float] = []
        r2: list[float] = []
        for name, v in p.tensors.items():
            ref = self.strategy.global_state[name].detach().cpu().double().numpy().ravel()
            diff = v.detach().cpu().double().numpy().ravel() - ref
            d2.append(math.fsum(diff * diff))
            r2.append(math.fsum(ref * ref))
        norm = math.sqrt(math.fsum(d2))
        factor = self.scn.algorithm.update_norm_factor
        if factor <= 0:
            return None, norm
        seen = self._norms.get(stage, [])[-64:]
        ref_norm = statistics.median(seen) if len(seen) >= 3 else max(math.sqrt(math.fsum(r2)), 1.0)
        bound = factor * ref_norm
        if not norm <= bound:
            return (
                f"update norm {norm:.4g} above the bound {bound:.4g} ({factor:g} x "
                + (
                    f"the median {ref_norm:.4g} of accepted updates)"
                    if len(seen) >= 3
                    else f"the global norm {ref_norm:.4g})"
                ),
                norm,
            )
        return None, norm

    def _download(self, sl: Any, stage: str, t: float) -> float:
        p = self.strategy.download(sl.index, stage, sl.cycle)
        blob = p.to_bytes()
        dt = len(blob) * 8.0 / self.bitrate
        if t + dt > sl.los_s:
            self.event(
                t,
                "download_skipped",
                cycle=sl.cycle,
                cluster=sl.cluster,
                stage=stage,
                reason="window closed",
            )
            return t
        self._request(
            sl.cluster, "download", "downloaded", blob=blob, cycle=sl.cycle, stage=stage, t=t
        )
        self.event(
            t + dt, "downloaded", cycle=sl.cycle, cluster=sl.cluster, stage=stage, bytes=len(blob)
        )
        return t + dt
