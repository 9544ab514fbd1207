"""Crash-safe on-disk state of a payload receiver.

Layout under the receiver directory::

    partial/<tid>/manifest.json   the transfer's manifest (written atomically)
    partial/<tid>/data            the payload being reassembled (sparse, full size)
    partial/<tid>/bitmap          one bit per fragment received *and synced*
    accepted/<name>.manifest.json committed manifests
    accepted/<name>.safetensors   committed payloads (the commit point)
    records.jsonl                 append-only log of terminal outcomes per transfer id

Ordering (each step durable before the next):

1. fragment bytes are written to ``data``; before any acknowledgement leaves the receiver,
   ``data`` is fsynced and only then is ``bitmap`` replaced atomically (tmp + rename + fsync);
2. commit: fsync ``data`` → manifest renamed into ``accepted/`` → ``data`` renamed into
   ``accepted/`` (commit point) → directory fsynced → record appended and fsynced → partial
   directory removed → only then is FINISHED sent.

Nothing is ever written *inside* ``accepted/`` except by ``rename``, so a kill -9 at any
point leaves either no payload or a complete, hash-verified one there. Recovery on start-up
finishes or rolls back whatever a crash interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.wire import Manifest, WireError

__all__ = ["PartialTransfer", "ReceiverStore", "Record", "accepted_name"]

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def accepted_name(manifest: Manifest, tid: bytes) -> str:
    """File stem in ``accepted/``: ``<sender>__<kind>__r<round>__<tid hex>``."""
    return f"{manifest.sender}__{manifest.kind}__r{manifest.round:06d}__{tid.hex()}"


@dataclass(frozen=True)
class Record:
    """Terminal outcome of one transfer id (survives restarts)."""

    tid: bytes
    status: int  # FinishedStatus value
    sha256: str
    accepted_s: float
    sender: str
    round: int
    kind: str
    file: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "tid": self.tid.hex(),
                "status": self.status,
                "sha256": self.sha256,
                "accepted_s": self.accepted_s,
                "sender": self.sender,
                "round": self.round,
                "kind": self.kind,
                "file": self.file,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> Record:
        d = json.loads(line)
        return cls(
            bytes.fromhex(d["tid"]),
            int(d["status"]),
            d["sha256"],
            float(d["accepted_s"]),
            d["sender"],
            int(d["round"]),
            d["kind"],
            d["file"],
        )


class PartialTransfer:
    """An open transfer: manifest, reassembly file and the synced-fragments bitmap."""

    def __init__(self, root: Path, tid: bytes, manifest: Manifest, bitmap: bytearray) -> None:
        self.dir = root / tid.hex()
        self.tid = tid
        self.manifest = manifest
        self.n = manifest.n_fragments
        self.received = bitmap  # in memory; may be ahead of the file until flush()
        self.n_received = sum(bin(b).count("1") for b in bitmap)
        self.highest = max((i for i in range(self.n) if self.has(i)), default=-1)
        self._fd = os.open(self.dir / "data", os.O_RDWR)
        self._dirty = 0

    def has(self, index: int) -> bool:
        return bool(self.received[index >> 3] & (1 << (index & 7)))

    def write(self, index: int, data: bytes) -> None:
        """Write one fragment's bytes (not yet durable; see :meth:`flush`)."""
        os.pwrite(self._fd, data, index * self.manifest.fragment_size)
        self.received[index >> 3] |= 1 << (index & 7)
        self.n_received += 1
        self.highest = max(self.highest, index)
        self._dirty += 1

    @property
    def dirty(self) -> int:
        return self._dirty

    def flush(self) -> None:
        """Make received fragments durable: fsync data, then replace the bitmap."""
        if not self._dirty:
            return
        os.fsync(self._fd)
        _atomic_write(self.dir / "bitmap", bytes(self.received))
        self._dirty = 0

    @property
    def complete(self) -> bool:
        return self.n_received >= self.n

    def reset(self) -> None:
        """Forget every fragment (durably): the transfer is fetched again from scratch."""
        self.received = bytearray(len(self.received))
        self.n_received = 0
        self.highest = -1
        _atomic_write(self.dir / "bitmap", bytes(self.received))
        self._dirty = 0

    def gaps(self, limit: int) -> tuple[list[tuple[int, int]], bool]:
        """Missing fragment ranges [a, b), lowest first, at most ``limit``; and 'more'."""
        out: list[tuple[int, int]] = []
        i = 0
        while i < self.n:
            if not self.has(i):
                j = i
                while j < self.n and not self.has(j):
                    j += 1
                if len(out) == limit:
                    return out, True
                out.append((i, j))
                i = j
            else:
                i += 1
        return out, False

    def sha256(self) -> str:
        h = hashlib.sha256()
        os.lseek(self._fd, 0, os.SEEK_SET)
        remaining = self.manifest.size
        while remaining > 0:
            chunk = os.read(self._fd, min(1 << 20, remaining))
            if not chunk:
                break
            h.update(chunk)
            remaining -= len(chunk)
        return h.hexdigest()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class ReceiverStore:
    """Durable receiver state; see the module docstring for the layout and ordering."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.partial_dir = self.root / "partial"
        self.accepted_dir = self.root / "accepted"
        for d in (self.root, self.partial_dir, self.accepted_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.records: dict[bytes, Record] = {}
        self._per_sender: Counter[str] = Counter()
        self.by_content: dict[tuple[str, str, int, str], Record] = {}
        self.partials: dict[bytes, PartialTransfer] = {}
        self._records_path = self.root / "records.jsonl"
        self._load()

    # -- recovery ---------------------------------------------------------------------
    def _load(self) -> None:
        self.recovered: list[tuple[bytes, Manifest, str]] = []  # commits whose record is missing
        if self._records_path.exists():
            raw = self._records_path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                # A crash tore the last append: drop the fragment so the next append is clean.
                with open(self._records_path, "r+b") as f:
                    f.truncate(raw.rfind(b"\n") + 1)
                    f.flush()
                    os.fsync(f.fileno())
                log.warning("records.jsonl: a torn last line was removed")
            lines = self._records_path.read_text().splitlines()
            for i, line in enumerate(lines):
                try:
                    self._remember(Record.from_json(line))
                except (ValueError, KeyError, TypeError):
                    log.error("records.jsonl line %d unreadable; ignored", i + 1)
        # Stray temp files: never valid.
        for tmp in list(self.accepted_dir.glob("*.tmp")) + list(self.partial_dir.glob("*/*.tmp")):
            tmp.unlink(missing_ok=True)
        # Committed payloads whose record append was interrupted: the engine appends the
        # record, stamped with the emulated time of the next message it sees.
        for payload in self.accepted_dir.glob("*.safetensors"):
            try:
                tid = bytes.fromhex(payload.stem.rsplit("__", 1)[-1])
                if len(tid) != 16:
                    raise ValueError("not a transfer id")
                if tid in self.records:
                    continue
                mpath = payload.with_name(payload.stem + ".manifest.json")
                m = Manifest.from_dict(json.loads(mpath.read_text()))
            except (OSError, ValueError, WireError) as e:
                log.warning("accepted/%s is not one of ours (%s); left alone", payload.name, e)
                continue
            self.recovered.append((tid, m, payload.name))
        # Manifests without their payload: the crash came between the two renames of a
        # commit; the data is still in the partial, so the manifest goes back there.
        for mpath in self.accepted_dir.glob("*.manifest.json"):
            stem = mpath.name[: -len(".manifest.json")]
            if (self.accepted_dir / f"{stem}.safetensors").exists():
                continue
            pdir = self.partial_dir / stem.rsplit("__", 1)[-1]
            if (pdir / "data").exists() and not (pdir / "manifest.json").exists():
                os.replace(mpath, pdir / "manifest.json")
                _fsync_dir(pdir)
            else:
                mpath.unlink()
        for d in sorted(self.partial_dir.iterdir()):
            try:
                tid = bytes.fromhex(d.name)
            except ValueError:
                continue
            if tid in self.records or len(tid) != 16:
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                m = Manifest.from_dict(json.loads((d / "manifest.json").read_text()))
                if not (d / "data").exists():
                    raise FileNotFoundError("data")
            except (OSError, ValueError, WireError):
                shutil.rmtree(d, ignore_errors=True)  # created but never acknowledged
                continue
            nbytes = (m.n_fragments + 7) // 8
            bm = bytearray(nbytes)
            bpath = d / "bitmap"
            if bpath.exists():
                raw = bpath.read_bytes()
                if len(raw) == nbytes:
                    bm = bytearray(raw)
            self.partials[tid] = PartialTransfer(self.partial_dir, tid, m, bm)
            log.info(
                "resumed partial transfer %s (%d/%d fragments)",
                tid.hex(),
                self.partials[tid].n_received,
                m.n_fragments,
            )

    def record_recovered(self, t_s: float) -> list[Record]:
        """Append the records of commits recovered at start-up, stamped ``t_s`` [emulated s]."""
        out = []
        for tid, m, name in self.recovered:
            rec = Record(tid, 0, m.sha256, t_s, m.sender, m.round, m.kind, name)
            self._append(rec)
            p = self.partials.get(tid)
            if p is not None:
                self._drop_partial(p)
            out.append(rec)
            log.warning("recovered commit of %s (record was missing)", name)
        self.recovered = []
        return out

    def records_of(self, sender: str) -> int:
        """Terminal records of ``sender`` so far."""
        return self._per_sender[sender]

    def _remember(self, rec: Record) -> None:
        if rec.tid not in self.records:
            self._per_sender[rec.sender] += 1
        self.records[rec.tid] = rec
        if rec.status == 0:
            self.by_content[(rec.sender, rec.kind, rec.round, rec.sha256)] = rec

    def _append(self, rec: Record) -> None:
        with open(self._records_path, "a") as f:
            f.write(rec.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._remember(rec)

    # -- operations -------------------------------------------------------------------
    def open(self, tid: bytes, manifest: Manifest) -> PartialTransfer:
        """Create the partial directory for a new transfer (durable before any reply)."""
        d = self.partial_dir / tid.hex()
        d.mkdir(exist_ok=True)
        with open(d / "data", "wb") as f:
            f.truncate(manifest.size)
            os.fsync(f.fileno())
        _atomic_write(d / "manifest.json", json.dumps(manifest.to_dict()).encode())
        _fsync_dir(self.partial_dir)
        p = PartialTransfer(
            self.partial_dir, tid, manifest, bytearray((manifest.n_fragments + 7) // 8)
        )
        self.partials[tid] = p
        return p

    def commit(self, p: PartialTransfer, accepted_s: float) -> Record:
        """Move a complete, hash-verified payload into ``accepted/`` (see ordering)."""
        p.flush()
        os.fsync(p._fd)
        stem = accepted_name(p.manifest, p.tid)
        os.replace(p.dir / "manifest.json", self.accepted_dir / f"{stem}.manifest.json")
        os.replace(p.dir / "data", self.accepted_dir / f"{stem}.safetensors")  # commit point
        _fsync_dir(self.accepted_dir)
        rec = Record(
            p.tid,
            0,
            p.manifest.sha256,
            accepted_s,
            p.manifest.sender,
            p.manifest.round,
            p.manifest.kind,
            f"{stem}.safetensors",
        )
        self._append(rec)
        self._drop_partial(p)
        return rec

    def finish_without_file(
        self, tid: bytes, status: int, manifest: Manifest | None, t_s: float
    ) -> Record:
        """Record a terminal non-accepted outcome (cancelled, rejected, hash mismatch).

        The record is durable before the partial goes: a crash in between never reopens it.
        """
        m = manifest
        rec = Record(
            tid,
            status,
            m.sha256 if m else "",
            t_s,
            m.sender if m else "",
            m.round if m else -1,
            m.kind if m else "",
            None,
        )
        self._append(rec)
        p = self.partials.get(tid)
        if p is not None:
            self._drop_partial(p)
        return rec

    def _drop_partial(self, p: PartialTransfer) -> None:
        p.close()
        self.partials.pop(p.tid, None)
        shutil.rmtree(p.dir, ignore_errors=True)

    def close(self) -> None:
        for p in list(self.partials.values()):
            p.flush()
            p.close()

    def accepted(self) -> list[dict[str, Any]]:
        """Committed payloads (manifest + path), oldest record first."""
        out = []
        for rec in self.records.values():
            if rec.status == 0 and rec.file:
                path = self.accepted_dir / rec.file
                if path.exists():
                    out.append(
                        {
                            "path": str(path),
                            "tid": rec.tid.hex(),
                            "sender": rec.sender,
                            "round": rec.round,
                            "kind": rec.kind,
                            "sha256": rec.sha256,
                            "accepted_s": rec.accepted_s,
                        }
                    )
        return out
