"""DVB-S2 / S2X normal-frame LDPC codec: a fast encoder and a layered min-sum decoder.

Both run on the quasi-cyclic form of the code (see :mod:`flowgraphs.fec.dvbs2_tables` for
the tables). Checks and parity bits are permuted alike, :math:`j = r + q s \\mapsto`
(layer :math:`r`, lane :math:`s`), :math:`0 \\le r < q,\\ 0 \\le s < 360`. Information
column :math:`360 g + m` meets check :math:`(x + m q) \\bmod M` for every address
:math:`x = r + q s_0` of group :math:`g`, i.e. lane :math:`s = (s_0 + m) \\bmod 360` of
layer :math:`r`: a circulant block, shift :math:`s_0`. The staircase of parity checks
(:math:`p_{j-1} \\oplus p_j \\oplus a_j = 0`) becomes an identity block to parity layer
:math:`r` and one to layer :math:`r - 1`; for :math:`r = 0` the second block is parity
layer :math:`q - 1` shifted by one lane, whose lane 0 (there is no :math:`p_{-1}`) reads a
dummy variable stored just before that layer with LLR :data:`_BIG` (a sure 0). Every block
therefore reads 360 consecutive variables in at most two contiguous runs, which LLVM
vectorises. Two addresses of one group in the same layer (a weight-2 circulant, as several
DVB-S2 rates have) are handled by updating those posteriors additively.

Decoder: layered (row-layered) offset min-sum in float32. For layer :math:`r` and each of its
edges :math:`(c, v)`, with posteriors :math:`L_v` and check messages :math:`R_{cv}`:

.. math::

    Q_{cv} = L_v - R_{cv}, \\qquad
    R'_{cv} = \\alpha \\max\\!\\left(\\min_{v' \\ne v} |Q_{cv'}| - \\beta,\\ 0\\right)
              \\prod_{v' \\ne v} \\operatorname{sgn} Q_{cv'}, \\qquad
    L_v \\leftarrow Q_{cv} + R'_{cv},

with :math:`\\alpha` = :data:`MIN_SUM_SCALE` (1) and :math:`\\beta` =
:data:`MIN_SUM_OFFSET` (0.4), or :data:`MIN_SUM_OFFSET_LOW_DEGREE` (0.25) for codes whose mean
check degree is below 5.5. All 360 checks of a layer read the posteriors before any is
written. An iteration is one pass over all :math:`q` layers; decoding stops as soon as the
hard decision :math:`\\hat c_v = [L_v < 0]` satisfies every check.

Tuning (``benchmarks/bench_fec.py`` and its history): the normalised variant
(:math:`\\beta = 0`) needs a per-rate :math:`\\alpha` (about 0.94 at rate 1/4, 0.82 at 1/2)
and fails badly when :math:`\\alpha` is too small: at :math:`\\alpha = 0.75`, rate 1/2 and
2/5 frames stall with a few wrong bits in the degree-2 parity chain even 1 dB above
threshold. Offset min-sum with the two :math:`\\beta` above decoded every tested rate at its
threshold. The offset is in LLR units, so the decoder expects true LLRs.

LLR convention: :math:`\\lambda = \\ln P(b = 0) / P(b = 1)` (positive means 0), in codeword
order ``[u | p]`` as :meth:`LdpcCode.encode` emits it. Shortened (known-zero, not sent)
information bits: :data:`LLR_KNOWN_ZERO`; punctured bits: 0.

The kernels are numba ``@njit(nogil=True)``, so decoders in several threads (e.g. GNU Radio
blocks) run in parallel.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from flowgraphs.fec.dvbs2_tables import FRAME_BITS, DvbS2Table, Z, load_table

if TYPE_CHECKING:
    from scipy import sparse

__all__ = [
    "LLR_KNOWN_ZERO",
    "LLR_MAX",
    "LOW_DEGREE_LIMIT",
    "MIN_SUM_OFFSET",
    "MIN_SUM_OFFSET_LOW_DEGREE",
    "MIN_SUM_SCALE",
    "DecodeResult",
    "LdpcCode",
]

LLR_KNOWN_ZERO = 1.0e4
"""LLR to give a shortened information bit (known 0, not sent)."""
LLR_MAX = 1.0e6
"""Input LLRs are clipped to :math:`\\pm` this (keeps the float32 kernel finite)."""
MIN_SUM_SCALE = 1.0
"""Normalisation :math:`\\alpha` of the check update (1: plain offset min-sum)."""
MIN_SUM_OFFSET = 0.4
"""Offset :math:`\\beta` for codes with mean check degree :math:`\\bar d_c \\ge 5.5`."""
MIN_SUM_OFFSET_LOW_DEGREE = 0.25
"""Offset :math:`\\beta` for codes with :math:`\\bar d_c < 5.5` (rates 1/4, 1/3, 2/9, 13/45)."""
LOW_DEGREE_LIMIT = 5.5
"""Mean check degree below which :data:`MIN_SUM_OFFSET_LOW_DEGREE` applies."""

_BIG = np.float32(1.0e30)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract"}


@dataclass(frozen=True)
class DecodeResult:
    """Outcome of :meth:`LdpcCode.decode`.

    Attributes
    ----------
    info_bits
        uint8 0/1 (k,): hard decision on the information bits.
    codeword_ok
        True iff the hard decision on the whole codeword satisfies every parity check.
    iterations
        Layered iterations run (1 … max_iter).
    """

    info_bits: np.ndarray
    codeword_ok: bool
    iterations: int


# --------------------------------------------------------------------------- kernels


# Each loop below touches few arrays, so that LLVM's run-time alias checks stay within its
# limit and the loops over the 360 lanes vectorise (8 float32 per AVX2 instruction); runs are
# slices indexed from 0, so numba emits no negative-index wrap-around per element.


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _sub_run(src, r_old, q):
    """``q = src - r_old`` over one contiguous run of lanes: :math:`Q = L - R`."""
    for i in range(src.size):
        q[i] = src[i] - r_old[i]


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _min_row(q, m1, m2, sg):
    """Running smallest and second-smallest :math:`|Q|` and sign product over 360 lanes."""
    # Written so that every store is unconditional: LLVM turns ``m[i] = min(m[i], a)`` into a
    # masked store, which is microcoded (slow) on AMD Zen.
    for i in range(Z):
        t = q[i]
        a = abs(t)
        lo = m1[i]
        m2[i] = max(lo, min(m2[i], a))
        m1[i] = min(lo, a)
        sg[i] = sg[i] * math.copysign(_ONE, t)


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _sign_into_min2(m2, sg):
    """``m2 <- sgn * m2``: the sign product rides on min2 (a zero min2 means zero messages)."""
    for i in range(Z):
        m2[i] = m2[i] * sg[i]


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _message(t, m1, m2s, scale, offset):
    """:math:`R' = \\operatorname{sgn} \\cdot \\alpha \\max(m - \\beta, 0)` for an edge with
    :math:`Q = t`; :math:`m` is min2 on the edge that holds min1, else min1."""
    mag = (abs(m2s) if abs(t) == m1 else m1) - offset
    mag = scale * mag if mag > _ZERO else _ZERO
    return math.copysign(mag, m2s * t)  # sign: product over the other edges


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _update_row(q, r_old, m1, m2s, scale, offset, additive):
    """New messages :math:`R'` into ``r_old``; ``q`` becomes the new posterior
    :math:`Q + R'`, or the increment :math:`R' - R` where the block's variables recur in the
    layer (``additive``)."""
    if additive:
        for i in range(Z):
            rn = _message(q[i], m1[i], m2s[i], scale, offset)
            q[i] = rn - r_old[i]
            r_old[i] = rn
    else:
        for i in range(Z):
            t = q[i]
            rn = _message(t, m1[i], m2s[i], scale, offset)
            q[i] = t + rn
            r_old[i] = rn


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _store_run(src, dst, additive):
    """Write one run of updated posteriors back (``dst = src``, or ``dst += src``)."""
    if additive:
        for i in range(src.size):
            dst[i] += src[i]
    else:
        for i in range(src.size):
            dst[i] = src[i]


@numba.njit(nogil=True, cache=True, inline="always")
def _syndrome_run(src, acc):
    for i in range(src.size):
        acc[i] ^= np.uint8(src[i] < 0)


@numba.njit(nogil=True, cache=True)
def _checks_ok(v, layer_ptr, base, shift, acc):
    """True iff the hard decision of posteriors ``v`` satisfies every check (early exit)."""
    for r in range(layer_ptr.size - 1):
        acc[:] = 0
        for k in range(layer_ptr[r], layer_ptr[r + 1]):
            b, sh = base[k], shift[k]
            _syndrome_run(v[b + Z - sh : b + Z], acc[:sh])
            _syndrome_run(v[b : b + Z - sh], acc[sh:])
        for s in range(Z):
            if acc[s]:
                return False
    return True


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _decode_kernel(
    llr, perm, v, layer_ptr, base, shift, additive, scale, offset, max_iter, early_stop
):
    """Layered min-sum on the permuted layout; ``v`` (out) ends as the posteriors.

    Returns (iterations run, hard decision satisfies every check). With ``early_stop`` it
    stops after the first iteration whose hard decision is a codeword."""
    v[:] = 0.0
    for i in range(llr.size):
        v[perm[i]] = llr[i]
    v[base[layer_ptr[1] - 1]] = _BIG  # the dummy before parity layer q-1 (see module doc)
    r_msg = np.zeros((base.size, Z), np.float32)
    dmax = 0
    for r in range(layer_ptr.size - 1):
        dmax = max(dmax, layer_ptr[r + 1] - layer_ptr[r])
    q = np.empty((dmax, Z), np.float32)
    m1 = np.empty(Z, np.float32)
    m2 = np.empty(Z, np.float32)
    sg = np.empty(Z, np.float32)
    acc = np.empty(Z, np.uint8)
    # per layer: (1) Q = L - R of every block into q, with running min1 / min2 / sign per
    # lane; (2) the sign onto min2; (3) new messages R' and posteriors Q + R' (or the
    # increments) in q; (4) those written back into v
    for it in range(1, max_iter + 1):
        for r in range(layer_ptr.size - 1):
            b0, b1 = layer_ptr[r], layer_ptr[r + 1]
            m1[:] = _BIG
            m2[:] = _BIG
            sg[:] = 1.0
            for k in range(b0, b1):
                b, sh, e = base[k], shift[k], k - b0
                _sub_run(v[b + Z - sh : b + Z], r_msg[k, :sh], q[e, :sh])
                _sub_run(v[b : b + Z - sh], r_msg[k, sh:], q[e, sh:])
                _min_row(q[e], m1, m2, sg)
            _sign_into_min2(m2, sg)
            for k in range(b0, b1):
                b, sh, e, add = base[k], shift[k], k - b0, additive[k]
                _update_row(q[e], r_msg[k], m1, m2, scale, offset, add)
                _store_run(q[e, :sh], v[b + Z - sh : b + Z], add)
                _store_run(q[e, sh:], v[b : b + Z - sh], add)
        if early_stop and _checks_ok(v, layer_ptr, base, shift, acc):
            return it, True
    return max_iter, _checks_ok(v, layer_ptr, base, shift, acc)


@numba.njit(nogil=True, cache=True, inline="always")
def _xor_run(src, acc):
    """``acc ^= src`` over one contiguous run (indices from 0, so no wrap-around checks)."""
    for i in range(src.size):
        acc[i] ^= src[i]


@numba.njit(nogil=True, cache=True)
def _encode_kernel(u, info_ptr, base, shift, par_pos, out):
    """:math:`a = H_1 u` per layer (XOR of shifted runs of u), then
    :math:`p_j = p_{j-1} \\oplus a_j` in standard order :math:`j = r + q s`, each
    :math:`p_j` stored at ``par_pos[j]`` of the sent parity (punctured ones at the end, cut)."""
    q = info_ptr.size - 1
    k = u.shape[1]
    n_par = out.shape[1] - k
    a = np.empty((q, Z), np.uint8)
    par = np.empty(q * Z + 1, np.uint8)
    for f in range(u.shape[0]):
        uf = u[f]
        for r in range(q):
            ar = a[r]
            ar[:] = 0
            for j in range(info_ptr[r], info_ptr[r + 1]):
                b, sh = base[j], shift[j]
                _xor_run(uf[b + Z - sh : b + Z], ar[:sh])
                _xor_run(uf[b : b + Z - sh], ar[sh:])
        out[f, :k] = uf
        c = np.uint8(0)
        if n_par == q * Z:  # nothing punctured: straight into the codeword
            dst = out[f, k:]
            for s in range(Z):
                for r in range(q):
                    c ^= a[r, s]
                    dst[s * q + r] = c
        else:
            for s in range(Z):
                for r in range(q):
                    c ^= a[r, s]
                    par[par_pos[s * q + r]] = c
            out[f, k:] = par[:n_par]


# --------------------------------------------------------------------------- the code


def _info_blocks(table: DvbS2Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circulant blocks of :math:`H_1` sorted by layer: the address :math:`x = r + q s_0` of
    group :math:`g` is a block of layer :math:`r` reading variables :math:`360 g + m` with
    shift :math:`s_0`. Returns (layer pointer (q+1,), first variable, shift), int64."""
    q = table.q
    g = np.repeat(np.arange(table.k // Z, dtype=np.int64), np.diff(table.group_ptr))
    x = table.xs.astype(np.int64)
    layer, s0 = x % q, x // q
    order = np.lexsort((s0, g, layer))
    layer = layer[order]
    ptr = np.searchsorted(layer, np.arange(q + 1)).astype(np.int64)
    return ptr, g[order] * Z, s0[order]


def _layer_blocks(
    info_ptr: np.ndarray, ib: np.ndarray, ish: np.ndarray, poff: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All blocks of every layer: its info blocks, then parity layer r, then parity layer r-1
    (for layer 0: parity layer q-1 read from the dummy before it on, no wrap). Returns
    (layer pointer, first variable, shift, additive): ``additive`` marks info blocks whose
    group occurs twice in the layer (weight-2 circulant)."""
    q = poff.size
    bases, shifts, adds = [], [], []
    for r in range(q):
        rb, rs = ib[info_ptr[r] : info_ptr[r + 1]], ish[info_ptr[r] : info_ptr[r + 1]]
        uniq, cnt = np.unique(rb, return_counts=True)
        prev = poff[r - 1] if r else poff[q - 1] - 1
        bases.append(np.concatenate([rb, [poff[r], prev]]))
        shifts.append(np.concatenate([rs, [0, 0]]))
        adds.append(np.concatenate([np.isin(rb, uniq[cnt > 1]), [False, False]]))
    sizes = np.array([b.size for b in bases], dtype=np.int64)
    return (
        np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        np.concatenate(bases).astype(np.int64),
        np.concatenate(shifts).astype(np.int64),
        np.concatenate(adds).astype(np.bool_),
    )


class LdpcCode:
    """One DVB-S2/S2X normal-frame LDPC code, ready to encode and decode.

    Attributes
    ----------
    name
        e.g. ``"dvbs2-normal-1/2"``.
    rate_label
        e.g. ``"1/2"``.
    n, k
        Sent codeword length and information bits [bit] (n < 64 800 only for VL-SNR 2/9).
    z, q
        Circulant size 360 and :math:`q = (64800 - k)/360`.
    check_degree
        Mean check-node degree :math:`\\bar d_c` of the mother code.
    min_sum_offset
        The decoder's default :math:`\\beta` for this code.
    table
        The :class:`~flowgraphs.fec.dvbs2_tables.DvbS2Table` it was built from.

    Instances are immutable and thread-safe (every decode allocates its own messages).
    """

    __slots__ = (
        "_add",
        "_base",
        "_info_base",
        "_info_ptr",
        "_info_shift",
        "_layer_ptr",
        "_n_int",
        "_par_pos",
        "_perm",
        "_shift",
        "check_degree",
        "k",
        "min_sum_offset",
        "n",
        "name",
        "q",
        "rate_label",
        "table",
        "z",
    )

    def __init__(self, table: DvbS2Table) -> None:
        self.table = table
        self.rate_label = table.label
        self.name = f"dvbs2-normal-{table.label}"
        self.k, self.q, self.z, self.n = table.k, table.q, Z, table.n
        m = table.m
        self.check_degree = (table.xs.size * Z + 2 * m - 1) / m
        low = self.check_degree < LOW_DEGREE_LIMIT
        self.min_sum_offset = MIN_SUM_OFFSET_LOW_DEGREE if low else MIN_SUM_OFFSET
        # internal layout: [u (k) | parity layers 0..q-2 | dummy | parity layer q-1]
        poff = self.k + Z * np.arange(self.q, dtype=np.int64)
        poff[-1] += 1
        self._n_int = self.k + m + 1
        info_ptr, ib, ish = _info_blocks(table)
        self._info_ptr, self._info_base, self._info_shift = info_ptr, ib, ish
        self._layer_ptr, self._base, self._shift, self._add = _layer_blocks(info_ptr, ib, ish, poff)
        # sent bit -> internal position (decoder); mother parity j -> sent index (encoder)
        j = table.sent_parity()
        self._perm = np.concatenate([np.arange(self.k), poff[j % self.q] + j // self.q])
        self._par_pos = np.full(m, j.size, dtype=np.int64)  # punctured: one slot past the end
        self._par_pos[j] = np.arange(j.size)
        for name in self.__slots__:
            arr = getattr(self, name, None)
            if isinstance(arr, np.ndarray):
                arr.setflags(write=False)

    @classmethod
    def dvbs2(cls, rate: str) -> LdpcCode:
        """The normal-frame code of ``rate`` (a label of
        :data:`flowgraphs.fec.dvbs2_tables.RATES`, e.g. ``"1/2"``); one instance per
        process and rate. Derives and caches the table on first use (needs gr-dtv then)."""
        return _code(rate)

    def __repr__(self) -> str:
        return f"LdpcCode({self.rate_label!r}, n={self.n}, k={self.k})"

    @property
    def rate(self) -> float:
        """k / n."""
        return self.k / self.n

    def encode(self, info_bits: np.ndarray) -> np.ndarray:
        """Systematic codeword(s) ``[u | p]``, bit-exact with gr-dtv's ``dvb_ldpc_bb``.

        Parameters
        ----------
        info_bits
            uint8 0/1 of shape (k,) or (B, k).

        Returns
        -------
        uint8 0/1 of shape (n,) or (B, n).
        """
        u = np.asarray(info_bits)
        single = u.ndim == 1
        u2 = np.ascontiguousarray(u.reshape(1, -1) if single else u, dtype=np.uint8)
        if u2.ndim != 2 or u2.shape[1] != self.k:
            raise ValueError(f"{self.name}: info_bits must be (k,) or (B, k), k={self.k}")
        if u2.size and u2.max() > 1:
            raise ValueError(f"{self.name}: info_bits must be 0/1")
        out = np.empty((u2.shape[0], self.n), dtype=np.uint8)
        _encode_kernel(u2, self._info_ptr, self._info_base, self._info_shift, self._par_pos, out)
        return out[0] if single else out

    def decode(
        self,
        llr: np.ndarray,
        max_iter: int = 50,
        *,
        scale: float = MIN_SUM_SCALE,
        offset: float | None = None,
    ) -> DecodeResult:
        """Layered min-sum decoding of one codeword; the GIL is released while it runs.

        Parameters
        ----------
        llr
            float (n,): :math:`\\ln P(0)/P(1)` of each sent bit, in codeword order, in
            natural units (the offset :math:`\\beta` assumes true LLRs, e.g.
            :math:`2\\sqrt{2}\\,y/N_0` per QPSK axis at :math:`E_s = 1`). Shortened
            information bits :data:`LLR_KNOWN_ZERO`, punctured bits 0. Values are clipped to
            :math:`\\pm` :data:`LLR_MAX`.
        max_iter
            Iteration limit (one iteration = all q layers).
        scale, offset
            Min-sum :math:`\\alpha, \\beta`; ``offset=None`` takes :attr:`min_sum_offset`.
        """
        v, it, ok = self._run(llr, max_iter, scale, offset, early_stop=True)
        bits = (v[: self.k] < 0).astype(np.uint8)
        return DecodeResult(info_bits=bits, codeword_ok=ok, iterations=it)

    def posteriors(
        self,
        llr: np.ndarray,
        iterations: int,
        *,
        scale: float = MIN_SUM_SCALE,
        offset: float | None = None,
    ) -> np.ndarray:
        """Posterior LLRs :math:`L_v` (float32 (n,), codeword order) after exactly
        ``iterations`` layered iterations, without early stopping (soft output, checks)."""
        v, _, _ = self._run(llr, iterations, scale, offset, early_stop=False)
        return v[self._perm]

    def _run(
        self, llr: np.ndarray, max_iter: int, scale: float, offset: float | None, early_stop: bool
    ) -> tuple[np.ndarray, int, bool]:
        lam = np.asarray(llr)
        if lam.shape != (self.n,):
            raise ValueError(f"{self.name}: llr must have shape ({self.n},), got {lam.shape}")
        if max_iter < 1:
            raise ValueError(f"{self.name}: max_iter must be >= 1, got {max_iter}")
        lam = np.clip(lam, -LLR_MAX, LLR_MAX).astype(np.float32, copy=False)
        if np.isnan(lam).any():
            raise ValueError(f"{self.name}: llr contains NaN")
        v = np.empty(self._n_int, dtype=np.float32)
        it, ok = _decode_kernel(
            lam,
            self._perm,
            v,
            self._layer_ptr,
            self._base,
            self._shift,
            self._add,
            np.float32(scale),
            np.float32(self.min_sum_offset if offset is None else offset),
            int(max_iter),
            early_stop,
        )
        return v, int(it), bool(ok)

    def parity_check_matrix(self) -> sparse.csr_matrix:
        """Mother-code :math:`H = [H_1 \\mid H_2]` ((64800-k) × 64800, scipy CSR, uint8) in
        standard bit order; :math:`H_2` is the staircase. For VL-SNR 2/9 the sent codeword
        lacks the punctured parity bits (:meth:`DvbS2Table.sent_parity` lists those sent)."""
        from scipy import sparse

        t = self.table
        m, k, q = t.m, t.k, t.q
        deg = np.diff(t.group_ptr).astype(np.int64)
        col_g = np.repeat(np.arange(k // Z), deg)  # (edges of member 0)
        x = t.xs.astype(np.int64)
        mem = np.arange(Z, dtype=np.int64)
        rows_i = ((x[:, None] + mem[None, :] * q) % m).ravel()
        cols_i = (col_g[:, None] * Z + mem[None, :]).ravel()
        j = np.arange(m, dtype=np.int64)
        rows = np.concatenate([rows_i, j, j[1:]])
        cols = np.concatenate([cols_i, k + j, k + j[:-1]])
        data = np.ones(rows.size, dtype=np.uint8)
        return sparse.csr_matrix((data, (rows, cols)), shape=(m, FRAME_BITS))


@functools.cache
def _code(rate: str) -> LdpcCode:
    return LdpcCode(load_table(rate))
