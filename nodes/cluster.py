"""The ground cluster node: local training on command, uploads through the channel emulator.

``testbed node cluster --id ID --scenario FILE --out DIR --token T`` connects a DEALER to the
satellite's control ROUTER and serves its commands (nodes/control.py). Training runs for real;
its emulated duration is the scenario's ``time.round_s`` (``fixed``) or the measured wall
compute × ``time.device_speed_factor`` (``measured``; devices of a cluster train in parallel in
the field, so the measured time of the sequential loop is divided by the device count).

Uploads: every device's payload is written to ``DIR/payloads/`` (bytes + manifest) and sent
through the emulator, one after the other on the cluster's uplink, inside the cluster's
windows; a transfer still open at the window's LOS is frozen and — with
``time.late_policy = "next"`` — resumed first at the next window, or cancelled with ``drop``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from flowgraphs.keys import Keyring, curve_client
from nodes import control
from nodes.link_profile import capacity_fields, sender_config
from nodes.payload import derived_transfer_id, manifest_for
from nodes.sender import SenderDriver, SenderEngine
from nodes.signing import signed
from nodes.wire import Finished, FinishedStatus
from nodes.zmq_link import EmulatorSenderLink, LinkEndpoints, LinkMux

__all__ = ["ClusterNode"]

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    driver: SenderDriver
    meta: dict[str, Any]


class ClusterNode:
    """One cluster's process state (see the module docstring)."""

    def __init__(
        self,
        scn: Any,
        cluster_id: str,
        out: Path,
        token: str,
        windows: list[tuple[float, float]],
        geometry: Any,
        keys: Keyring | None = None,
    ) -> None:
        from nodes.fl_setup import build_strategy

        self.scn = scn
        self.cid = cluster_id
        self.keys = keys  # CURVE on every socket and signed manifests (docs/security.md)
        self.k = scn.cluster_index(cluster_id)
        self.out = out
        self.windows = windows
        self.geometry = geometry
        self.payload_dir = out / "payloads"
        self.payload_dir.mkdir(parents=True, exist_ok=True)
        self.strategy, _ = build_strategy(scn)
        up = LinkEndpoints(*scn.link_endpoints(cluster_id, token))
        down = LinkEndpoints(*scn.link_endpoints(f"{cluster_id}-down", token))
        self.link_cfg = scn.uplink_config(cluster_id, token)
        self.sender_cfg = sender_config(self.link_cfg, fragment_size=scn.link.fragment_size)
        self.link = EmulatorSenderLink(up, down, src=cluster_id, keys=keys)
        self.mux = LinkMux(self.link)
        self.pending: list[_Pending] = []
        self.uplink_free_s = float("-inf")  # emulated end of this cluster's last uplink use
        self._hint: tuple[float, float] | None = None  # the link as the last transfer knew it
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:  # the certificate names this cluster; the routing id is random
            curve_client(self.sock, keys, "satellite")
        else:
            self.sock.setsockopt(zmq.IDENTITY, cluster_id.encode())
        self.sock.connect(scn.control_endpoint(token))

    # -- commands -------------------------------------------------------------------------
    def serve(self) -> int:
        """Serve control commands until ``stop``; returns an exit status."""
        self.sock.send_multipart(control.encode("hello", cluster=self.cid))
        silent_s = float(os.environ.get("SATFL_SATELLITE_SILENCE_S", "3600"))
        while True:
            if not self.sock.poll(int(silent_s * 1000)):
                log.error("no command from the satellite for %g s; giving up", silent_s)
                self.link.close()
                return 1
            frames = self.sock.recv_multipart()
            try:
                msg, blob = control.decode(frames)
            except control.ControlError as e:
                log.warning("bad control message dropped: %s", e)
                continue
            t = msg["type"]
            if t == "stop":
                self.link.close()
                return 0
            try:
                reply = getattr(self, f"_on_{t}")(msg, blob)
            except Exception as e:  # report, then fail: the satellite stops the run
                log.exception("command %s failed", t)
                self.sock.send_multipart(control.encode("error", message=f"{t}: {e}"))
                return 1
            if reply is not None:
                self.sock.send_multipart(reply)

    def _on_assign(self, msg: dict[str, Any], blob: bytes | None) -> None:
        self.strategy.assignment = {int(k): list(v) for k, v in msg["assignment"].items()}
        return None

    def _on_train(self, msg: dict[str, Any], blob: bytes | None) -> list[bytes]:
        from testbed.fl.strategy import peak_memory_bytes

        w0 = time.perf_counter()
        loss = self.strategy.train(self.k, msg["mode"])
        wall = time.perf_counter() - w0
        tm = self.scn.time
        if tm.compute == "fixed":
            dt = tm.round_s
        else:
            dt = wall / max(1, len(self.strategy.device_states[self.k])) * tm.device_speed_factor
        return control.encode(
            "trained",
            cycle=msg["cycle"],
            mode=msg["mode"],
            t_end=msg["t_start"] + dt,
            wall_s=wall,
            loss=loss if loss == loss else None,
            peak_memory_bytes=peak_memory_bytes(self.strategy.device),
        )

    def _on_download(self, msg: dict[str, Any], blob: bytes | None) -> list[bytes]:
        from testbed.fl.payload import Payload

        if blob is None:
            raise ValueError("download without a payload frame")
        self.strategy.receive(self.k, Payload.from_bytes(blob))
        return control.encode("downloaded", cycle=msg["cycle"], stage=msg["stage"])

    def _on_upload(self, msg: dict[str, Any], blob: bytes | None) -> list[bytes]:
        """Resume the transfers frozen at an earlier LOS, then (unless ``stage`` is null: the
        resume at AOS) send this stage's payloads, one after another on the uplink.

        Every transfer runs on the emulated clock under conservative synchronisation
        (nodes/sender.py), so the records depend only on the inputs. At the end the cluster
        promises the uplink its end time, so the satellite's receiver can know that it has
        seen everything sent before it.
        """
        cycle, stage = int(msg["cycle"]), msg["stage"]
        t = max(float(msg["t_start"]), self.uplink_free_s)
        deadline = float(msg["deadline"])
        records: list[dict[str, Any]] = []
        # Late transfers of earlier windows go first (or are cancelled).
        still: list[_Pending] = []
        for p in self.pending:
            if self.scn.time.late_policy == "drop":
                fin = self._cancel(p, t)
                rec = p.driver._record(0.0).to_dict()
                t = max(t, min(p.driver.now, deadline))
                if fin is not None and fin.status is FinishedStatus.ACCEPTED:
                    # It had arrived; only the FINISHED was lost. The receiver's record wins.
                    rec.update(
                        status="accepted",
                        accepted_s=fin.accepted_s,
                        upload_time_s=fin.accepted_s - rec["first_tx_s"],
                    )
                else:
                    rec["status"] = "cancelled"
                records.append({**p.meta, **self._finish(rec)})
                self.mux.close_view(p.driver.e.tid)
                continue
            p.driver.now = max(p.driver.now, t)
            r = p.driver.run(deadline_s=deadline)
            t = max(t, min(p.driver.now, deadline))
            self._hint = p.driver.hint()
            records.append({**p.meta, **self._finish(r.to_dict())})
            if r.status == "incomplete":
                still.append(p)
            else:
                self.mux.close_view(p.driver.e.tid)
        self.pending = still
        payloads = self.strategy.upload(self.k, stage, cycle) if stage else []
        for p in payloads:
            data = p.to_bytes()
            name = f"{self.cid}_d{p.device}_c{cycle:03d}_{stage}"
            m = manifest_for(
                data,
                f"{self.cid}-d{p.device}",
                cycle,
                self.scn.link.fragment_size,
                p.expert_ids,
                kind=stage,
                name=f"{name}.safetensors",
                created_s=t,
            )
            tid = derived_transfer_id(m, self.scn.seed)
            m, cancel_signer = signed(tid, m, self.keys)
            (self.payload_dir / f"{name}.safetensors").write_bytes(data)
            (self.payload_dir / f"{name}.manifest.json").write_text(json.dumps(m.to_dict()))
            drv = SenderDriver(
                SenderEngine(tid, m, data, cancel_signer),
                self.mux.view(tid),
                self.sender_cfg,
                windows=self.windows,
                start_s=t,
                hint=self._hint,
            )
            meta = {
                "cluster": self.cid,
                "device": p.device,
                "cycle": cycle,
                "stage": stage,
                "payload": f"{name}.safetensors",
                "ready_s": t,
                "window_los_s": deadline,
            }
            r = drv.run(deadline_s=deadline)
            t = max(t, min(drv.now, deadline))
            self._hint = drv.hint()
            records.append({**meta, **self._finish(r.to_dict())})
            if r.status == "incomplete":
                self.pending.append(_Pending(drv, meta))
            else:
                self.mux.close_view(tid)
        self.uplink_free_s = t
        # nothing more comes on this uplink before t: the satellite's receiver learns so
        self.link.advance(t)
        return control.encode("uploaded", cycle=cycle, stage=stage, t_end=t, records=records)

    def _finish(self, d: dict[str, Any]) -> dict[str, Any]:
        from channel import time_to_deliver_s

        d["predicted_shannon_s"] = time_to_deliver_s(
            self.geometry, d["first_tx_s"], d["size_bytes"]
        )
        d.update(capacity_fields(d, self.geometry, self.link_cfg))
        return d

    def _cancel(self, p: _Pending, t: float) -> Finished | None:
        """Tell the receiver the transfer is abandoned; return its answer if one comes.

        The receiver answers from its record, so a payload it had accepted (FINISHED lost on
        the way back) is reported as accepted, not cancelled.
        """
        drv = p.driver
        if drv._window(t) is None:
            return None
        return drv.cancel(t, self.sender_cfg.ack_timer_s)
