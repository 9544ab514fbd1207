"""Parity-check tables of the DVB-S2 / DVB-S2X normal-frame (n = 64 800) LDPC codes.

The tables are the standard's data (EN 302 307-1 §5.3.2 and annex B/C; EN 302 307-2 for the
S2X rates). They are not copied from anywhere: they are *derived* at first use by probing
Debian's GNU Radio gr-dtv encoder ``dtv.dvb_ldpc_bb`` and cached on disk.

Structure (IRA, quasi-cyclic with :math:`Z = 360`). With :math:`K` information bits,
:math:`M = N - K` checks and :math:`q = M / 360`, the parity bits of an information word
:math:`u` are

.. math::

    a_j = \\bigoplus_{i:\\,H_1[j, i] = 1} u_i, \\qquad
    p_j = p_{j-1} \\oplus a_j \\quad (p_{-1} = 0),

and column :math:`i = 360 g + m` of :math:`H_1` (group :math:`g`, member :math:`m`) has its
ones in rows :math:`(x + m q) \\bmod M` for the addresses :math:`x \\in X_g` of group
:math:`g`. A table is the list of :math:`X_g`.

Probing. Encoding the unit vector :math:`e_i` gives :math:`p`, and un-accumulating
(:math:`a_j = p_j \\oplus p_{j-1}`) gives column :math:`i` of :math:`H_1`; the columns
:math:`i = 360 g` give :math:`X_g` directly. Every derived table is then checked against
probes of other members (:math:`m \\ne 0`) and random words before it is cached.

DVB-S2X VL-SNR 2/9. gr-dtv transmits :math:`N = 61\\,560` bits: the mother code is the usual
64 800-bit IRA code, and the accumulated parity bits :math:`p_j` for :math:`j = 15 t,\\ t < 3240`
are punctured (not sent). Un-accumulating the sent parity then gives
:math:`a_j \\oplus a_{j-1}` at a row :math:`j` that follows a punctured one, so an address seen
by one member is ambiguous by one row; the addresses are the ones consistent across the probes
of members :math:`m = 0 \\ldots 3`, and the result is checked like every other table.

Cache: ``$TESTBED_CACHE/ldpc/`` else ``~/.cache/satfl-testbed/ldpc/``, one ``.npz`` per rate,
keyed by rate, frame size and GNU Radio version; written to a temporary file and renamed, so
two processes deriving at once both end with a complete file.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FRAME_BITS",
    "RATES",
    "DvbS2Table",
    "LdpcTableError",
    "RateSpec",
    "Z",
    "cache_dir",
    "derive_table",
    "gr_dtv_encode",
    "load_table",
    "reference_encode",
    "supported_rates",
]

log = logging.getLogger("flowgraphs.fec")

FRAME_BITS = 64800
"""Length of the mother code of every normal FECFRAME [bit]."""
Z = 360
"""Circulant size (bits per group of information columns)."""
_FORMAT_VERSION = 1


class LdpcTableError(RuntimeError):
    """A table cannot be derived (gr-dtv missing, refuses the rate, or probes disagree)."""


@dataclass(frozen=True)
class RateSpec:
    """One normal-frame code as gr-dtv knows it.

    Attributes
    ----------
    label
        Rate as written in the standard, e.g. ``"1/2"``, ``"2/9"``, ``"132/180"``.
    dtv_name
        Name of the ``gnuradio.dtv`` code-rate constant, e.g. ``"C1_2"``.
    k
        Information bits per codeword (the BCH codeword length :math:`N_{bch}`).
    punct_period, punct_count
        VL-SNR puncturing: parity bits :math:`p_j,\\ j = P t,\\ t < X_p` are not sent
        (``0, 0`` for every other code).
    """

    label: str
    dtv_name: str
    k: int
    punct_period: int = 0
    punct_count: int = 0

    @property
    def q(self) -> int:
        """:math:`q = (N - K) / 360`."""
        return (FRAME_BITS - self.k) // Z

    def punctured_parity(self) -> np.ndarray:
        """Indices :math:`j` of the parity bits not sent, int64 ascending (mostly empty)."""
        return np.arange(self.punct_count, dtype=np.int64) * self.punct_period


def _specs() -> dict[str, RateSpec]:
    s2 = [
        ("1/4", 16200),
        ("1/3", 21600),
        ("2/5", 25920),
        ("1/2", 32400),
        ("3/5", 38880),
        ("2/3", 43200),
        ("3/4", 48600),
        ("4/5", 51840),
        ("5/6", 54000),
        ("8/9", 57600),
        ("9/10", 58320),
    ]
    s2x = [
        ("13/45", 18720),
        ("9/20", 29160),
        ("90/180", 32400),
        ("96/180", 34560),
        ("11/20", 35640),
        ("100/180", 36000),
        ("104/180", 37440),
        ("26/45", 37440),
        ("18/30", 38880),
        ("28/45", 40320),
        ("23/36", 41400),
        ("116/180", 41760),
        ("20/30", 43200),
        ("124/180", 44640),
        ("25/36", 45000),
        ("128/180", 46080),
        ("13/18", 46800),
        ("132/180", 47520),
        ("22/30", 47520),
        ("135/180", 48600),
        ("140/180", 50400),
        ("7/9", 50400),
        ("154/180", 55440),
    ]
    out = {lab: RateSpec(lab, "C" + lab.replace("/", "_"), k) for lab, k in s2}
    out["2/9"] = RateSpec("2/9", "C2_9_VLSNR", 14400, punct_period=15, punct_count=3240)
    out.update({lab: RateSpec(lab, "C" + lab.replace("/", "_"), k) for lab, k in s2x})
    return out


RATES: dict[str, RateSpec] = _specs()
"""Every normal-frame rate of DVB-S2 and DVB-S2X that gr-dtv 3.10 encodes, by label."""


def supported_rates() -> tuple[str, ...]:
    """Labels of :data:`RATES`, DVB-S2 first, then DVB-S2X."""
    return tuple(RATES)


@dataclass(frozen=True, eq=False)
class DvbS2Table:
    """Addresses :math:`X_g` of one code, as CSR (``xs[group_ptr[g]:group_ptr[g+1]]``).

    Attributes
    ----------
    label, k, q
        Rate label, information bits, :math:`q = (64800 - K)/360`.
    group_ptr
        int32 (K/360 + 1,).
    xs
        int32 check addresses :math:`x \\in [0, M)`, ascending within a group.
    punctured_parity
        int64 ascending indices :math:`j` of the parity bits not sent (VL-SNR 2/9).
    gr_version
        GNU Radio version the table was derived from.
    """

    label: str
    k: int
    q: int
    group_ptr: np.ndarray
    xs: np.ndarray
    punctured_parity: np.ndarray
    gr_version: str

    def __post_init__(self) -> None:
        for arr in (self.group_ptr, self.xs, self.punctured_parity):
            arr.setflags(write=False)

    @property
    def m(self) -> int:
        """Checks of the mother code :math:`M = 64800 - K`."""
        return FRAME_BITS - self.k

    @property
    def n(self) -> int:
        """Transmitted codeword length [bit]: 64 800 minus the punctured parity bits."""
        return FRAME_BITS - self.punctured_parity.size

    def group_degrees(self) -> np.ndarray:
        """Column degree of each group of 360 information columns, int64 (K/360,)."""
        return np.diff(self.group_ptr).astype(np.int64)

    def sent_parity(self) -> np.ndarray:
        """Indices :math:`j` of the parity bits that are sent, int64 ascending."""
        keep = np.ones(self.m, dtype=bool)
        keep[self.punctured_parity] = False
        return np.flatnonzero(keep)


def cache_dir() -> Path:
    """``$TESTBED_CACHE/ldpc`` if set, else ``~/.cache/satfl-testbed/ldpc``."""
    env = os.environ.get("TESTBED_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "satfl-testbed"
    return root / "ldpc"


def _gr_version() -> str:
    try:
        from gnuradio import gr
    except ImportError:
        return "none"
    return gr.version()


def _spec(rate: str) -> RateSpec:
    try:
        return RATES[rate]
    except KeyError:
        raise ValueError(
            f"unknown DVB-S2 LDPC rate {rate!r}; supported: {', '.join(RATES)}"
        ) from None


def gr_dtv_encode(rate: str, info_bits: np.ndarray) -> np.ndarray:
    """Encode with GNU Radio's ``dtv.dvb_ldpc_bb`` (normal frames, ``MOD_OTHER``).

    Parameters
    ----------
    rate
        Label from :data:`RATES`.
    info_bits
        uint8 0/1 of shape (F, K): F information words.

    Returns
    -------
    uint8 (F, n): the systematic codewords ``[u | p]`` as gr-dtv emits them.

    Raises
    ------
    LdpcTableError
        If gr-dtv is not importable, refuses the rate, or emits the wrong number of bits.
    """
    spec = _spec(rate)
    u = np.ascontiguousarray(info_bits, dtype=np.uint8)
    if u.ndim != 2 or u.shape[1] != spec.k:
        raise ValueError(f"rate {rate}: info_bits must be (F, {spec.k}), got {u.shape}")
    n_out = FRAME_BITS - spec.punct_count
    try:
        from gnuradio import blocks, dtv, gr
    except ImportError as e:
        raise LdpcTableError(
            f"DVB-S2 LDPC rate {rate}: GNU Radio gr-dtv is not importable ({e})"
        ) from e
    try:
        code = getattr(dtv, spec.dtv_name)
        enc = dtv.dvb_ldpc_bb(dtv.STANDARD_DVBS2, dtv.FECFRAME_NORMAL, code, dtv.MOD_OTHER)
    except (AttributeError, RuntimeError, ValueError, TypeError) as e:
        raise LdpcTableError(
            f"DVB-S2 LDPC rate {rate}: gr-dtv refuses dtv.{spec.dtv_name} ({e})"
        ) from e
    with tempfile.TemporaryDirectory(prefix="ldpc-probe-") as tmp:
        src_path, out_path = os.path.join(tmp, "in.u8"), os.path.join(tmp, "out.u8")
        u.tofile(src_path)
        tb = gr.top_block()
        src = blocks.file_source(1, src_path, False)
        snk = blocks.file_sink(1, out_path)
        snk.set_unbuffered(False)
        tb.connect(src, enc, snk)
        tb.run()
        snk.close()
        out = np.fromfile(out_path, dtype=np.uint8)
    if out.size != u.shape[0] * n_out:
        raise LdpcTableError(
            f"DVB-S2 LDPC rate {rate}: gr-dtv dtv.{spec.dtv_name} gave {out.size} bits for "
            f"{u.shape[0]} words of {spec.k}, expected {u.shape[0] * n_out}"
        )
    return out.reshape(u.shape[0], n_out)


def reference_encode(table: DvbS2Table, info_bits: np.ndarray) -> np.ndarray:
    """Plain NumPy encoder straight from the definition (slow; for checks only).

    Parameters
    ----------
    info_bits
        uint8 0/1 (K,).

    Returns
    -------
    uint8 (n,) codeword ``[u | p]`` without the punctured parity bits.
    """
    u = np.asarray(info_bits, dtype=np.uint8)
    cols = np.flatnonzero(u)
    g, mem = np.divmod(cols, Z)
    deg = np.diff(table.group_ptr)[g]
    rows = (
        table.xs[np.repeat(table.group_ptr[g], deg) + _ranges(deg)].astype(np.int64)
        + np.repeat(mem, deg) * table.q
    ) % table.m
    a = (np.bincount(rows, minlength=table.m) & 1).astype(np.uint8)
    p = np.bitwise_xor.accumulate(a)[table.sent_parity()]
    return np.concatenate([u, p])


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """``concat([arange(l) for l in lengths])`` without a Python loop."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total) - starts


def _unaccumulate(parity: np.ndarray) -> np.ndarray:
    """:math:`a_j = p_j \\oplus p_{j-1}` along the last axis."""
    a = parity.copy()
    a[..., 1:] ^= parity[..., :-1]
    return a


def derive_table(rate: str, seed: int = 2024) -> DvbS2Table:
    """Probe gr-dtv for the addresses of ``rate`` and verify them (one flowgraph run).

    Probes: :math:`e_{360g+m}` for every group and :math:`m = 0` (or :math:`m = 0 \\ldots 3`
    for a code with punctured parity, keeping the addresses all members agree on), then 8
    columns with random :math:`m \\ge 4` and 3 random words as checks.

    Raises
    ------
    LdpcTableError
        If gr-dtv is unavailable or refuses the rate, or a check probe disagrees.
    """
    spec = _spec(rate)
    k, q = spec.k, spec.q
    m_rows = FRAME_BITS - k
    groups = k // Z
    if k % Z or m_rows % Z:
        raise LdpcTableError(f"DVB-S2 LDPC rate {rate}: K={k} is not quasi-cyclic with Z={Z}")
    punct = spec.punctured_parity()
    is_punct = np.zeros(m_rows + 1, dtype=bool)
    is_punct[punct] = True
    sent = np.flatnonzero(~is_punct[:m_rows])
    members = (0, 1, 2, 3) if punct.size else (0,)
    rng = np.random.default_rng(seed)
    probe_cols = [g * Z + m for g in range(groups) for m in members]
    check_cols = (rng.integers(0, groups, 8) * Z + rng.integers(4, Z, 8)).tolist()
    cols = probe_cols + check_cols
    words = np.zeros((len(cols) + 3, k), dtype=np.uint8)
    words[np.arange(len(cols)), cols] = 1
    words[len(cols) :] = rng.integers(0, 2, (3, k), dtype=np.uint8)
    out = gr_dtv_encode(rate, words)
    if not np.array_equal(out[:, :k], words):
        raise LdpcTableError(f"DVB-S2 LDPC rate {rate}: gr-dtv output is not systematic")
    a = _unaccumulate(out[:, k:])
    xs_sets: list[set[int] | None] = [None] * groups
    for f, c in enumerate(probe_cols):
        g, mem = divmod(c, Z)
        rows = sent[np.flatnonzero(a[f])]
        # a one after a punctured parity bit may come from the row before it
        cand = np.concatenate([rows, rows[is_punct[rows - 1]] - 1])
        found = set(((cand - mem * q) % m_rows).tolist())
        prev = xs_sets[g]
        xs_sets[g] = found if prev is None else prev & found
    sets = [s or set() for s in xs_sets]
    if min(len(s) for s in sets) < 1:
        raise LdpcTableError(f"DVB-S2 LDPC rate {rate}: a group has no check (probe failed)")
    group_ptr = np.zeros(groups + 1, dtype=np.int32)
    group_ptr[1:] = np.cumsum([len(s) for s in sets])
    xs = np.concatenate([np.array(sorted(s), dtype=np.int32) for s in sets])
    table = DvbS2Table(rate, k, q, group_ptr, xs, punct, _gr_version())
    for f, c in enumerate(cols):
        if not np.array_equal(reference_encode(table, words[f]), out[f]):
            raise LdpcTableError(
                f"DVB-S2 LDPC rate {rate}: derived table disagrees with gr-dtv at column {c}"
            )
    for f in range(len(cols), words.shape[0]):
        if not np.array_equal(reference_encode(table, words[f]), out[f]):
            raise LdpcTableError(
                f"DVB-S2 LDPC rate {rate}: derived table disagrees with gr-dtv on a random word"
            )
    log.info(
        "derived DVB-S2 LDPC table %s: K=%d q=%d, %d addresses, from GNU Radio %s",
        rate,
        k,
        q,
        xs.size,
        table.gr_version,
    )
    return table


def _cache_path(rate: str, gr_version: str) -> Path:
    tag = rate.replace("/", "_")
    return cache_dir() / f"dvbs2-normal-{tag}-gr{gr_version}-v{_FORMAT_VERSION}.npz"


def _read_cached(path: Path, spec: RateSpec) -> DvbS2Table | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            table = DvbS2Table(
                label=str(z["label"]),
                k=int(z["k"]),
                q=int(z["q"]),
                group_ptr=z["group_ptr"].astype(np.int32),
                xs=z["xs"].astype(np.int32),
                punctured_parity=z["punctured_parity"].astype(np.int64),
                gr_version=str(z["gr_version"]),
            )
    except (OSError, KeyError, ValueError) as e:
        log.warning("ignoring unreadable LDPC table cache %s (%s)", path, e)
        return None
    if (
        table.label != spec.label
        or table.k != spec.k
        or table.group_ptr.size != spec.k // Z + 1
        or table.group_ptr[-1] != table.xs.size
        or not np.array_equal(table.punctured_parity, spec.punctured_parity())
    ):
        log.warning("ignoring inconsistent LDPC table cache %s", path)
        return None
    return table


def _write_cached(path: Path, table: DvbS2Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                label=np.array(table.label),
                k=np.array(table.k),
                q=np.array(table.q),
                group_ptr=table.group_ptr,
                xs=table.xs,
                punctured_parity=table.punctured_parity,
                gr_version=np.array(table.gr_version),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.cache
def load_table(rate: str) -> DvbS2Table:
    """The table of ``rate`` from the disk cache, deriving it (and caching it) if absent.

    Cached per process as well. See the module docstring for where the cache lives.

    Raises
    ------
    ValueError
        For a rate not in :data:`RATES`.
    LdpcTableError
        If the table is not cached and cannot be derived.
    """
    spec = _spec(rate)
    version = _gr_version()
    path = _cache_path(rate, version)
    if path.exists():
        table = _read_cached(path, spec)
        if table is not None:
            return table
    if version == "none":
        raise LdpcTableError(
            f"DVB-S2 LDPC rate {rate}: no cached table and GNU Radio gr-dtv is not importable "
            f"to derive one (cache: {cache_dir()})"
        )
    table = derive_table(rate)
    try:
        _write_cached(path, table)
    except OSError as e:
        log.warning("cannot cache LDPC table %s at %s (%s)", rate, path, e)
    return table
