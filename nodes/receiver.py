"""Receiver side of the payload transfer: a sans-IO protocol engine over a ReceiverStore.

:meth:`ReceiverEngine.handle` takes one delivered message (bytes) and the emulated time it
finished arriving, and returns the replies to send on the feedback (downlink) path. It
never raises on bad input: malformed or unexpected messages are counted in
:attr:`ReceiverEngine.counters` and dropped.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from flowgraphs.keys import Keyring
from nodes.signing import cancel_bytes, manifest_problem
from nodes.store import PartialTransfer, ReceiverStore, Record
from nodes.wire import (
    Cancel,
    Eof,
    Finished,
    FinishedStatus,
    Fragment,
    Message,
    MetadataMsg,
    Nak,
    NakKind,
    Prompt,
    WireError,
    decode,
    max_nak_ranges,
)

__all__ = ["ReceiverConfig", "ReceiverEngine"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiverConfig:
    """Receiver limits and policies.

    max_payload_bytes : largest manifest size accepted [bytes]
    frame_bytes : largest message the feedback link carries (bounds NAK size) [bytes]
    flush_every : fragments between durability flushes (always flushed before a reply)
    supersede : "cancel" — a newer round from the same sender and kind cancels older open
        transfers and older rounds are refused; "keep" — every round completes
    immediate_naks : send a NAK as soon as a gap is seen during the pass
    max_open_transfers : open (partial) transfers at most; more METADATA is refused until
        one finishes or expires (bounded memory and file descriptors)
    max_open_per_sender : open transfers of one sender at most (one sender cannot fill the
        table for the others)
    max_refetch : on a SHA-256 mismatch, fetch all fragments again this many times before the
        transfer ends as ``hash_mismatch`` (a forged fragment that arrived first is replaced)
    open_ttl_s : an open transfer that received nothing for this long in emulated time
        expires (cancelled, with a record), so abandoned ones never hold the table [s]
    max_records_per_sender : terminal records one sender may create in ``records.jsonl``;
        beyond it its new transfers are refused without a record (bounded growth)
    """

    max_payload_bytes: int = 64 * 1024 * 1024
    frame_bytes: int = 1024
    flush_every: int = 64
    supersede: str = "cancel"
    immediate_naks: bool = True
    max_open_transfers: int = 64
    max_open_per_sender: int = 8
    open_ttl_s: float = 2 * 86400.0
    max_refetch: int = 2
    max_records_per_sender: int = 100_000

    def __post_init__(self) -> None:
        if self.supersede not in ("cancel", "keep"):
            raise ValueError(f"supersede policy must be 'cancel' or 'keep', got {self.supersede!r}")
        if self.max_open_per_sender < 1 or not self.open_ttl_s > 0:
            raise ValueError("max_open_per_sender must be >= 1 and open_ttl_s > 0")
        if self.max_records_per_sender < 1:
            raise ValueError("max_records_per_sender must be >= 1")


class ReceiverEngine:
    """Protocol logic of the receiver (CFDP class-2 style, NAK driven).

    With ``keys`` (the enrolled nodes, :class:`flowgraphs.keys.Keyring`) only manifests
    signed by an enrolled node that may sign for their sender are opened (and, with
    ``signer``, only that node's), and a CANCEL must carry the transfer's signer's signature
    (:mod:`nodes.signing`): anything else is counted under ``bad_signature`` and dropped
    without a reply or a record, so a forgery can neither open, supersede, cancel nor end
    another sender's transfer.
    """

    def __init__(
        self,
        store: ReceiverStore,
        config: ReceiverConfig | None = None,
        keys: Keyring | None = None,
        signer: str | None = None,
    ) -> None:
        self.store = store
        self.cfg = config or ReceiverConfig()
        self.keys = keys
        self.signer = signer
        self.counters: Counter[str] = Counter()
        self._max_ranges = max_nak_ranges(self.cfg.frame_bytes)
        self._need_meta_sent: dict[bytes, int] = {}
        self._last_seen: dict[bytes, float] = {}  # open transfer → last emulated activity [s]
        self._refetched: dict[bytes, int] = {}  # transfer → times all fragments were re-fetched
        self._finished_replies: Counter[bytes] = Counter()
        self.now_s = 0.0
        #: the latest safe time of the uplink: every delivery with rx_end below it has been
        #: handled (set by the process loop from the emulator's markers)
        self.safe_time_s = float("-inf")
        # Work a crash left (a complete partial, a commit without its record) is finished
        # when the first message arrives, stamped with its emulated time.
        self._recovery_due = True

    # -- entry point ------------------------------------------------------------------
    def handle(self, buf: bytes, rx_end_s: float) -> list[Message]:
        """Process one delivered message; return the replies (emulated time ``rx_end_s``)."""
        self.now_s = max(self.now_s, rx_end_s)
        try:
            return self._handle(buf)
        except Exception:
            self.counters["internal_error"] += 1
            log.exception("internal error while handling a message; dropped")
            return []

    def _recover(self) -> None:
        self._recovery_due = False
        self.store.record_recovered(self.now_s)
        for p in list(self.store.partials.values()):
            if p.complete:
                self._complete(p, self.now_s)  # a failing one is rejected, the rest go on

    def _handle(self, buf: bytes) -> list[Message]:
        if self._recovery_due:
            self._recover()
        try:
            msg = decode(buf)
        except WireError as e:
            self.counters["malformed"] += 1
            n = self.counters["malformed"]
            if n <= 10 or n % 1000 == 0:  # a frame that passed the CRC: a sender's fault
                log.warning("dropped malformed message (#%d): %s", n, e)
            return []
        self.counters[f"rx_{type(msg).__name__.lower()}"] += 1
        if isinstance(msg, Fragment):
            return self._fragment(msg)
        if isinstance(msg, MetadataMsg):
            return self._metadata(msg)
        if isinstance(msg, Eof | Prompt):
            return self._eof_or_prompt(msg)
        if isinstance(msg, Cancel):
            return self._cancel(msg)
        self.counters["unexpected_type"] += 1
        return []

    # -- handlers ---------------------------------------------------------------------
    def _from_record(self, rec: Record) -> list[Message]:
        sha = bytes.fromhex(rec.sha256) if rec.sha256 else bytes(32)
        return [Finished(rec.tid, FinishedStatus(rec.status), sha, rec.accepted_s)]

    def _forged(self, what: str, why: str) -> list[Message]:
        self.counters["bad_signature"] += 1
        n = self.counters["bad_signature"]
        if n <= 10 or n % 1000 == 0:
            log.warning("dropped %s (#%d): %s", what, n, why)
        return []

    def _metadata(self, msg: MetadataMsg) -> list[Message]:
        tid, m = msg.transfer_id, msg.manifest
        if self.keys is not None:
            why = manifest_problem(tid, m, self.keys, self.signer)
            if why is not None:
                return self._forged(f"METADATA of {m.sender!r}", why)
        rec = self.store.records.get(tid)
        if rec is not None:
            self.counters["duplicate_after_finish"] += 1
            return self._from_record(rec)
        p = self.store.partials.get(tid)
        if p is not None:
            if p.manifest != m:
                self.counters["conflicting_metadata"] += 1
                return []
            self.counters["duplicate_metadata"] += 1
            return []
        same = self.store.by_content.get((m.sender, m.kind, m.round, m.sha256))
        if same is not None:  # the same payload again under a new id: answer from the record
            self.counters["duplicate_content"] += 1
            rec = self.store.finish_without_file(tid, 0, m, same.accepted_s)
            return [
                Finished(tid, FinishedStatus.ACCEPTED, bytes.fromhex(m.sha256), same.accepted_s)
            ]
        if self.store.records_of(m.sender) >= self.cfg.max_records_per_sender:
            self.counters["too_many_records_sender"] += 1
            return [Finished(tid, FinishedStatus.REJECTED, bytes.fromhex(m.sha256), self.now_s)]
        if m.size > self.cfg.max_payload_bytes or m.fragment_size > self.cfg.frame_bytes:
            self.counters["rejected_manifest"] += 1
            rec = self.store.finish_without_file(tid, int(FinishedStatus.REJECTED), m, self.now_s)
            return self._from_record(rec)
        self._expire()
        if len(self.store.partials) >= self.cfg.max_open_transfers:
            self.counters["too_many_open"] += 1
            return [Finished(tid, FinishedStatus.REJECTED, bytes.fromhex(m.sha256), self.now_s)]
        mine = sum(1 for q in self.store.partials.values() if q.manifest.sender == m.sender)
        if mine >= self.cfg.max_open_per_sender:
            self.counters["too_many_open_sender"] += 1
            return [Finished(tid, FinishedStatus.REJECTED, bytes.fromhex(m.sha256), self.now_s)]
        if self.cfg.supersede == "cancel":
            newer = [
                r
                for r in self.store.records.values()
                if r.sender == m.sender
                and r.kind == m.kind
                and r.round > m.round
                and r.status == int(FinishedStatus.ACCEPTED)  # only a delivered round wins
            ]
            newer += [
                q.manifest
                for q in self.store.partials.values()
                if q.manifest.sender == m.sender
                and q.manifest.kind == m.kind
                and q.manifest.round > m.round
            ]  # type: ignore[misc]
            if newer:
                self.counters["stale_round"] += 1
                rec = self.store.finish_without_file(
                    tid, int(FinishedStatus.CANCELLED), m, self.now_s
                )
                return self._from_record(rec)
            for q in list(self.store.partials.values()):
                qm = q.manifest
                if qm.sender == m.sender and qm.kind == m.kind and qm.round < m.round:
                    self.counters["superseded"] += 1
                    self.store.finish_without_file(
                        q.tid, int(FinishedStatus.CANCELLED), qm, self.now_s
                    )
        self.store.open(tid, m)
        self._last_seen[tid] = self.now_s
        self._need_meta_sent.pop(tid, None)
        return []

    def _expire(self) -> None:
        """Cancel open transfers idle for longer than ``open_ttl_s`` of emulated time (a
        transfer found open after a restart counts from the first message after it)."""
        for q in list(self.store.partials.values()):
            seen = self._last_seen.setdefault(q.tid, self.now_s)
            if self.now_s - seen > self.cfg.open_ttl_s:
                self.counters["expired"] += 1
                log.info("transfer %s idle for %.0f s: expired", q.tid.hex(), self.now_s - seen)
                self.store.finish_without_file(
                    q.tid, int(FinishedStatus.CANCELLED), q.manifest, self.now_s
                )
                self._last_seen.pop(q.tid, None)

    def _fragment(self, f: Fragment) -> list[Message]:
        tid = f.transfer_id
        p = self.store.partials.get(tid)
        if p is None:
            rec = self.store.records.get(tid)
            if rec is not None:
                self.counters["duplicate_after_finish"] += 1
                self._finished_replies[tid] += 1
                # Answer now and then, not to every late fragment.
                return self._from_record(rec) if self._finished_replies[tid] % 64 == 1 else []
            self.counters["unknown_transfer"] += 1
            n = self._need_meta_sent.get(tid, 0)
            self._need_meta_sent[tid] = n + 1
            if len(self._need_meta_sent) > 1024:
                self._need_meta_sent.pop(next(iter(self._need_meta_sent)))
            return [Nak(tid, NakKind.NEED_METADATA, ())] if n % 32 == 0 else []
        m = p.manifest
        last = p.n - 1
        expect_len = m.size - last * m.fragment_size if f.index == last else m.fragment_size
        if f.count != p.n or f.offset != f.index * m.fragment_size or len(f.data) != expect_len:
            self.counters["bad_fragment"] += 1
            return []
        if p.has(f.index):
            self.counters["duplicate_fragment"] += 1
            return []
        prev_highest = p.highest
        self._last_seen[tid] = self.now_s
        p.write(f.index, f.data)
        self.counters["fragments_stored"] += 1
        if p.complete:
            return self._complete(p, self.now_s)
        replies: list[Message] = []
        if self.cfg.immediate_naks and f.index > prev_highest + 1:
            gap = [(a, b) for a, b in [(prev_highest + 1, f.index)] if b > a]
            p.flush()
            replies.append(Nak(tid, NakKind.IMMEDIATE, tuple(gap[: self._max_ranges])))
            self.counters["tx_nak_immediate"] += 1
        elif p.dirty >= self.cfg.flush_every:
            p.flush()
        return replies

    def _complete(self, p: PartialTransfer, t_s: float) -> list[Message]:
        digest = p.sha256()
        if digest != p.manifest.sha256:
            self.counters["hash_mismatch"] += 1
            n = self._refetched.get(p.tid, 0)
            if n < self.cfg.max_refetch:
                # a forged or corrupted fragment got in first: fetch every fragment again
                # (the link and the emulator are an untrusted pipe); bounded
                self._refetched[p.tid] = n + 1
                self.counters["refetch"] += 1
                log.warning(
                    "transfer %s: SHA-256 mismatch; fetching all fragments again (%d/%d)",
                    p.tid.hex(),
                    n + 1,
                    self.cfg.max_refetch,
                )
                p.reset()
                return [Nak(p.tid, NakKind.EOF_GAPS, ((0, p.n),))]
            log.warning("transfer %s: SHA-256 mismatch; rejected", p.tid.hex())
            rec = self.store.finish_without_file(
                p.tid, int(FinishedStatus.HASH_MISMATCH), p.manifest, t_s
            )
            self._refetched.pop(p.tid, None)
            return self._from_record(rec)
        try:
            rec = self.store.commit(p, t_s)
        except OSError as e:
            # e.g. the disk is full: this transfer ends (rejected, with the reason in the log
            # and a durable record), and it never blocks the others, nor their recovery
            self.counters["commit_failed"] += 1
            log.error("transfer %s: commit failed (%s); rejected", p.tid.hex(), e)
            try:
                rec = self.store.finish_without_file(
                    p.tid, int(FinishedStatus.REJECTED), p.manifest, t_s
                )
            except OSError as e2:
                log.error("transfer %s: cannot record the rejection either (%s)", p.tid.hex(), e2)
                return []
            return self._from_record(rec)
        self.counters["accepted"] += 1
        log.info("accepted %s (%d bytes) at t=%.3f s", rec.file, p.manifest.size, t_s)
        return self._from_record(rec)

    def _eof_or_prompt(self, msg: Eof | Prompt) -> list[Message]:
        tid = msg.transfer_id
        rec = self.store.records.get(tid)
        if rec is not None:
            return self._from_record(rec)
        p = self.store.partials.get(tid)
        if p is None:
            self.counters["unknown_transfer"] += 1
            return [Nak(tid, NakKind.NEED_METADATA, ())]
        if isinstance(msg, Eof) and (
            msg.count != p.n or msg.size != p.manifest.size or msg.sha256.hex() != p.manifest.sha256
        ):
            self.counters["eof_mismatch"] += 1
            return []
        p.flush()
        ranges, more = p.gaps(self._max_ranges)
        kind = NakKind.EOF_GAPS if isinstance(msg, Eof) else NakKind.PROMPT_GAPS
        self.counters["tx_nak_full"] += 1
        return [Nak(tid, kind, tuple(ranges), more)]

    def _cancel(self, msg: Cancel) -> list[Message]:
        tid = msg.transfer_id
        rec = self.store.records.get(tid)
        if rec is None:
            p = self.store.partials.get(tid)
            if self.keys is not None:
                if p is None:  # an unknown transfer's signer is unknown: nothing to verify
                    return self._forged("CANCEL of an unknown transfer", "cannot be verified")
                sig_ok = self.keys.verify(
                    p.manifest.signer, cancel_bytes(tid, msg.reason), msg.signature
                )
                if not sig_ok:
                    return self._forged(f"CANCEL of {p.manifest.sender!r}", "bad signature")
            if p is None:  # nothing to cancel: answer, but keep no record of an unknown id
                self.counters["cancel_unknown"] += 1
                return [Finished(tid, FinishedStatus.CANCELLED, bytes(32), self.now_s)]
            rec = self.store.finish_without_file(
                tid, int(FinishedStatus.CANCELLED), p.manifest, self.now_s
            )
            self.counters["cancelled"] += 1
        return self._from_record(rec)
