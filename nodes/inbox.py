"""The aggregator's inbox: payloads from ``accepted/``, each (sender, kind, round) once.

The satellite reads payloads only from a receiver's ``accepted/`` directory. Before a payload
is handed to aggregation it is re-hashed and its safetensors header checked
(:func:`nodes.payload.validate_safetensors`); rejects are logged and counted. The set of
applied (sender, kind, round) keys is persisted (append + fsync) so a restart never applies a
payload twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowgraphs.keys import Keyring
from nodes.payload import PayloadError, validate_safetensors
from nodes.signing import manifest_problem
from nodes.wire import Manifest, WireError

__all__ = ["AcceptedInbox", "InboxItem"]

log = logging.getLogger(__name__)

Expected = Mapping[str, tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class InboxItem:
    """A validated payload ready for aggregation."""

    manifest: Manifest
    tensors: dict[str, np.ndarray]
    path: Path
    tid: str


class AcceptedInbox:
    """Reads ``<receiver dir>/accepted`` and hands out each (sender, kind, round) at most once.

    Parameters
    ----------
    receiver_dir : the receiver's directory (``accepted/`` inside it)
    expected : callable manifest → expected tensor layout (name → (dtype, shape)), or None
    max_bytes : largest payload file accepted
    keys, signer : with keys, a payload whose manifest is not signed by ``signer`` (an
        enrolled node; any enrolled one if None) for its transfer id is rejected
    """

    def __init__(
        self,
        receiver_dir: str | Path,
        expected: Callable[[Manifest], Expected | None] | None = None,
        max_bytes: int = 1 << 30,
        keys: Keyring | None = None,
        signer: str | None = None,
    ) -> None:
        self.keys = keys
        self.signer = signer
        self.dir = Path(receiver_dir) / "accepted"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.expected = expected
        self.max_bytes = max_bytes
        self._applied_path = Path(receiver_dir) / "applied.jsonl"
        self.applied: set[tuple[str, str, int]] = set()
        self.rejected: set[str] = set()
        self._new_rejections: list[dict[str, str]] = []
        self.counters: Counter[str] = Counter()
        if self._applied_path.exists():
            for line in self._applied_path.read_text().splitlines():
                try:
                    d = json.loads(line)
                    self.applied.add((d["sender"], d["kind"], int(d["round"])))
                except (ValueError, KeyError, TypeError):
                    log.warning("unreadable line in %s ignored", self._applied_path)

    def poll(self) -> list[InboxItem]:
        """New, valid payloads not yet applied (oldest round first)."""
        items = []
        seen: set[tuple[str, str, int]] = set()
        for mpath in sorted(self.dir.glob("*.manifest.json")):
            stem = mpath.name[: -len(".manifest.json")]
            ppath = self.dir / f"{stem}.safetensors"
            if stem in self.rejected or not ppath.exists():
                continue
            try:
                m = Manifest.from_dict(json.loads(mpath.read_text()))
            except (OSError, ValueError, WireError) as e:
                self._reject(stem, f"manifest unreadable: {e}")
                continue
            key = (m.sender, m.kind, m.round)
            if key in self.applied or key in seen:
                continue  # each (sender, kind, round) at most once, also within one poll
            if self.keys is not None:
                try:
                    tid = bytes.fromhex(stem.rsplit("__", 1)[-1])
                except ValueError:
                    tid = b""
                why = (
                    manifest_problem(tid, m, self.keys, self.signer)
                    if len(tid) == 16
                    else ("no transfer id in the file name")
                )
                if why is not None:
                    self._reject(stem, f"not authentic: {why}")
                    continue
            try:
                exp = self.expected(m) if self.expected else None
                tensors = validate_safetensors(ppath, exp, m.sha256, self.max_bytes)
            except (OSError, PayloadError) as e:
                self._reject(stem, str(e))
                continue
            seen.add(key)
            items.append(InboxItem(m, tensors, ppath, stem.rsplit("__", 1)[-1]))
        items.sort(key=lambda it: (it.manifest.round, it.manifest.sender))
        return items

    def mark_applied(self, item: InboxItem) -> None:
        """Record durably that ``item`` was aggregated (never handed out again)."""
        m = item.manifest
        key = (m.sender, m.kind, m.round)
        if key in self.applied:
            raise ValueError(f"payload {key} was already applied")
        with open(self._applied_path, "a") as f:
            f.write(
                json.dumps({"sender": m.sender, "kind": m.kind, "round": m.round, "tid": item.tid})
                + "\n"
            )
            f.flush()
            os.fsync(f.fileno())
        self.applied.add(key)
        self.counters["applied"] += 1

    def pop_rejections(self) -> list[dict[str, str]]:
        """The payloads rejected since the last call, ``{"payload", "reason"}`` each (for the
        aggregation record; a rejected file is never handed out again)."""
        out, self._new_rejections = self._new_rejections, []
        return out

    def _reject(self, stem: str, why: str) -> None:
        self._new_rejections.append({"payload": stem, "reason": why})
        self.rejected.add(stem)
        self.counters["rejected"] += 1
        log.warning("inbox: rejected %s: %s", stem, why)
