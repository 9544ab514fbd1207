"""DVB-S2 constellations, bit mapping and soft demapping (bit LLRs) for the ACM modem.

Pure NumPy + numba (no GNU Radio): the kernels are ``@njit(nogil=True, cache=True)``, so a
caller may demap several frames in threads.

Labelling. Point ``i`` of :attr:`Constellation.points` carries the label ``i``, bits MSB
first: symbol bits :math:`(b_0, \\dots, b_{m-1})` map to point
:math:`\\sum_k b_k 2^{m-1-k}`. The tables below are the bit mappings of EN 302 307-1 §5.4
(QPSK, 8PSK, 16APSK 4+12, 32APSK 4+12+16, §5.4.1-5.4.4) as implemented in GNU Radio's gr-dtv
``dvbs2_modulator_bc``; they were read from two independent public implementations (gr-dtv /
gr-dvbs2 in C++, and a MATLAB one) that agree, and a test checks them point by point against
the installed gr-dtv. The text of the standard itself could not be read here.

Ring phases: 16APSK inner ring :math:`\\pi/4 + k\\pi/2`, outer :math:`\\pi/12 + k\\pi/6`;
32APSK inner :math:`\\pi/4 + k\\pi/2`, middle :math:`\\pi/12 + k\\pi/6`, outer
:math:`k\\pi/8`. Radii :math:`R_2 = \\gamma R_1` (16APSK), :math:`R_2 = \\gamma_1 R_1`,
:math:`R_3 = \\gamma_2 R_1` (32APSK), scaled to :math:`E|a|^2 = 1`.

Soft demapping in AWGN, :math:`y = a + n`, :math:`n \\sim \\mathcal{CN}(0, N_0)`,
:math:`E_s = 1`; positive LLR means bit 0:

.. math::
    L_k(y) = \\ln \\sum_{a \\in \\mathcal{X}_0^k} e^{-|y-a|^2/N_0}
           - \\ln \\sum_{a \\in \\mathcal{X}_1^k} e^{-|y-a|^2/N_0}
    \\;\\approx\\; \\frac{1}{N_0}\\Big(\\min_{a \\in \\mathcal{X}_1^k} |y-a|^2
                          - \\min_{a \\in \\mathcal{X}_0^k} |y-a|^2\\Big) \\text{ (max-log)}

(:math:`\\mathcal{X}_b^k`: the points whose label has bit :math:`k` equal to :math:`b`).
Since :math:`\\max_i x_i \\le \\ln\\sum_{i=1}^{K} e^{x_i} \\le \\max_i x_i + \\ln K`, the
max-log error is at most :math:`\\ln(M/2)`. For Gray QPSK with points
:math:`(\\pm 1 \\pm j)/\\sqrt 2` both are exact and equal :math:`2\\sqrt2\\,y_{I,Q}/N_0`.

Both kernels compute the :math:`M` metrics once and then the per-bit minima (or sums) by
halving: the first half of the label range has :math:`b_0 = 0`, the second :math:`b_0 = 1`;
the elementwise minimum of the halves is indexed by the remaining :math:`m-1` bits, and so on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "APSK16_GAMMA",
    "APSK32_GAMMA",
    "MODCOD_KEYS",
    "Constellation",
    "apsk16",
    "apsk32",
    "binary_switching",
    "for_modcod",
    "hard_decision",
    "llr",
    "llr_exact",
    "llr_maxlog",
    "map_bits",
    "psk8",
    "qpsk",
]

#: 16APSK ring ratio :math:`\gamma = R_2/R_1` per code rate: the commonly quoted values of
#: EN 302 307-1 table 9 (§5.4.3), the same in gr-dtv (checked by a test against the installed
#: GNU Radio) and in an independent MATLAB implementation; not read from the standard itself.
APSK16_GAMMA: dict[str, float] = {
    "2/3": 3.15,
    "3/4": 2.85,
    "4/5": 2.75,
    "5/6": 2.70,
    "8/9": 2.60,
    "9/10": 2.57,
}

#: 32APSK ring ratios :math:`(\gamma_1, \gamma_2) = (R_2/R_1, R_3/R_1)` per code rate: the
#: commonly quoted values of EN 302 307-1 table 10 (§5.4.4), sourced as :data:`APSK16_GAMMA`.
APSK32_GAMMA: dict[str, tuple[float, float]] = {
    "3/4": (2.84, 5.27),
    "4/5": (2.72, 4.87),
    "5/6": (2.64, 4.64),
    "8/9": (2.54, 4.33),
    "9/10": (2.53, 4.30),
}

#: The DVB-S2 MODCODs (constellation, code rate) of EN 302 307-1, normal and short frames.
MODCOD_KEYS: tuple[tuple[str, str], ...] = (
    *(
        ("qpsk", r)
        for r in ("1/4", "1/3", "2/5", "1/2", "3/5", "2/3", "3/4", "4/5", "5/6", "8/9", "9/10")
    ),
    *(("8psk", r) for r in ("3/5", "2/3", "3/4", "5/6", "8/9", "9/10")),
    *(("16apsk", r) for r in APSK16_GAMMA),
    *(("32apsk", r) for r in APSK32_GAMMA),
)

# Bit mapping tables: (ring, phase numerator) per label; ring 0 is the innermost.
# 8PSK phase in units of pi/4.
_PSK8_PHASE = (1, 0, 4, 5, 2, 7, 3, 6)
# 16APSK phase in units of pi/12; labels 0-11 on the outer ring, 12-15 on the inner.
_APSK16_TABLE = (
    *((1, p) for p in (3, -3, 9, -9, 1, -1, 11, -11, 5, -5, 7, -7)),
    *((0, p) for p in (3, -3, 9, -9)),
)
# 32APSK phase in units of pi/24 (so that pi/12 and pi/8 steps are both integers).
_APSK32_TABLE = (
    *((1, 2 * p) for p in (3, 5, -3, -5, 9, 7, -9, -7)),
    *((2, 3 * p) for p in (1, 3, -2, -4, 6, 4, -7, -5)),
    (1, 2),
    (0, 6),
    (1, -2),
    (0, -6),
    (1, 22),
    (0, 18),
    (1, -22),
    (0, -18),
    *((2, 3 * p) for p in (0, 2, -1, -3, 7, 5, 8, -6)),
)


@dataclass(frozen=True, eq=False)
class Constellation:
    """A labelled constellation.

    Attributes
    ----------
    name : "qpsk", "8psk", "16apsk", "32apsk" (or any name for a custom one)
    points : complex64 (M,), read-only; point ``i`` has label ``i`` (bits MSB first);
        unit average energy :math:`E|a|^2 = 1` over equiprobable points
    bits_per_symbol : m, with :math:`M = 2^m`

    Equality is identity (``eq=False``): the points are an array.
    """

    name: str
    points: np.ndarray
    bits_per_symbol: int

    def __post_init__(self) -> None:
        pts = np.array(self.points, dtype=np.complex64).reshape(-1)
        m = int(self.bits_per_symbol)
        if m < 1 or m > 8 or pts.size != 1 << m:
            raise ValueError(
                f"constellation {self.name!r}: {pts.size} points do not match "
                f"bits_per_symbol={self.bits_per_symbol} (need 2**m, 1 <= m <= 8)"
            )
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"constellation {self.name!r}: points must be finite")
        energy = float(np.mean(np.abs(pts.astype(np.complex128)) ** 2))
        if abs(energy - 1.0) > 1e-4:
            raise ValueError(f"constellation {self.name!r}: average energy {energy:.6f}, must be 1")
        pts.flags.writeable = False
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "bits_per_symbol", m)

    @property
    def order(self) -> int:
        """M, the number of points."""
        return self.points.size

    def relabelled(self, order: np.ndarray, name: str | None = None) -> Constellation:
        """The same points with label ``i`` moved to the point ``order[i]``."""
        order = np.asarray(order)
        if sorted(order.tolist()) != list(range(self.order)):
            raise ValueError("order must be a permutation of range(M)")
        return Constellation(name or self.name, self.points[order], self.bits_per_symbol)


def _unit(points: np.ndarray) -> np.ndarray:
    return points / np.sqrt(np.mean(np.abs(points) ** 2))


def qpsk() -> Constellation:
    """Gray QPSK :math:`((1-2b_0) + j(1-2b_1))/\\sqrt2` (EN 302 307-1 §5.4.1)."""
    v = np.arange(4)
    pts = ((1 - 2 * (v >> 1)) + 1j * (1 - 2 * (v & 1))) / math.sqrt(2.0)
    return Constellation("qpsk", pts, 2)


def psk8() -> Constellation:
    """Gray 8PSK of EN 302 307-1 §5.4.2: label 0 at :math:`\\pi/4`, 1 at 0, 4 at
    :math:`\\pi/2`, …; neighbouring points differ in one bit."""
    pts = np.exp(1j * np.pi / 4 * np.array(_PSK8_PHASE, dtype=float))
    return Constellation("8psk", pts, 3)


def apsk16(gamma: float) -> Constellation:
    """4+12 APSK with outer/inner radius ratio ``gamma`` and the DVB-S2 bit mapping."""
    if not gamma > 1.0:
        raise ValueError(f"16APSK ring ratio gamma must be > 1, got {gamma}")
    radius = np.array([1.0, gamma])
    ring, num = np.array(_APSK16_TABLE).T
    pts = radius[ring] * np.exp(1j * np.pi / 12 * num)
    return Constellation("16apsk", _unit(pts), 4)


def apsk32(gamma1: float, gamma2: float) -> Constellation:
    """4+12+16 APSK with radius ratios ``gamma1`` = R2/R1, ``gamma2`` = R3/R1 and the DVB-S2
    bit mapping."""
    if not 1.0 < gamma1 < gamma2:
        raise ValueError(f"32APSK ring ratios need 1 < gamma1 < gamma2, got {gamma1}, {gamma2}")
    radius = np.array([1.0, gamma1, gamma2])
    ring, num = np.array(_APSK32_TABLE).T
    pts = radius[ring] * np.exp(1j * np.pi / 24 * num)
    return Constellation("32apsk", _unit(pts), 5)


def for_modcod(constellation: str, rate: str) -> Constellation:
    """The constellation of the DVB-S2 MODCOD (``constellation``, ``rate``), e.g.
    ``for_modcod("16apsk", "3/4")`` (ring ratios :data:`APSK16_GAMMA`, :data:`APSK32_GAMMA`).

    Raises
    ------
    ValueError : not one of :data:`MODCOD_KEYS`
    """
    key = (str(constellation).lower(), str(rate).replace(" ", ""))
    if key not in MODCOD_KEYS:
        raise ValueError(
            f"no DVB-S2 MODCOD {constellation!r} rate {rate!r}; "
            f"valid: {', '.join(f'{c} {r}' for c, r in MODCOD_KEYS)}"
        )
    name, r = key
    if name == "qpsk":
        return qpsk()
    if name == "8psk":
        return psk8()
    if name == "16apsk":
        return apsk16(APSK16_GAMMA[r])
    return apsk32(*APSK32_GAMMA[r])


def map_bits(bits: np.ndarray, c: Constellation) -> np.ndarray:
    """Map bits to symbols.

    Parameters
    ----------
    bits : uint8 (..., N·m) of 0/1; each group of m bits is one label, MSB first
    c : the constellation

    Returns
    -------
    symbols : complex64 (..., N)
    """
    b = np.asarray(bits)
    m = c.bits_per_symbol
    if b.ndim == 0 or b.shape[-1] % m:
        raise ValueError(f"last axis of bits ({b.shape}) must be a multiple of m={m}")
    if b.size and (b.min() < 0 or b.max() > 1):
        raise ValueError("bits must be 0 or 1")
    flat = np.ascontiguousarray(b.reshape(-1), dtype=np.uint8)
    out = np.empty(flat.size // m, dtype=np.complex64)
    _map_kernel(flat, np.ascontiguousarray(c.points), m, out)
    return out.reshape(*b.shape[:-1], b.shape[-1] // m)


@numba.njit(nogil=True, cache=True)
def _map_kernel(bits, points, m, out):  # pragma: no cover - compiled
    for i in range(out.size):
        lab = 0
        for j in range(m):
            lab = (lab << 1) | bits[i * m + j]
        out[i] = points[lab]


# ----------------------------------------------------------------------------- kernels


@numba.njit(nogil=True, cache=True)
def _maxlog_qpsk(y, n0, n0_step, out):  # pragma: no cover - compiled
    k = np.float32(2.0 * math.sqrt(2.0))
    for i in range(y.size):
        s = k / n0[i * n0_step]
        out[2 * i] = s * y[i].real
        out[2 * i + 1] = s * y[i].imag


# Symbols per block of the max-log kernel: the M x _BLOCK metric table stays in L1 and every
# inner loop runs over the symbols of the block, which the compiler vectorises.
_BLOCK = 64


@numba.njit(inline="always", fastmath=True)
def _fmin(x, y):  # pragma: no cover - compiled
    # min(x, y) as arithmetic: LLVM vectorises this, but not a compare-and-select, here.
    # Rounding error <= 1 ulp of max(x, y), far below the float32 LLR's own resolution.
    return np.float32(0.5) * (x + y - abs(x - y))


@numba.njit(nogil=True, cache=True, fastmath=True)
def _maxlog_kernel(y, pr, pi, m, n0, n0_step, out):  # pragma: no cover - compiled
    M = pr.size
    B = _BLOCK
    d = np.empty((M, B), dtype=np.float32)
    yr = np.empty(B, dtype=np.float32)
    yi = np.empty(B, dtype=np.float32)
    inv = np.empty(B, dtype=np.float32)
    a = np.empty(B, dtype=np.float32)
    b = np.empty(B, dtype=np.float32)
    for start in range(0, y.size, B):
        nb = min(B, y.size - start)
        for s in range(nb):
            yr[s] = y[start + s].real
            yi[s] = y[start + s].imag
            inv[s] = np.float32(1.0) / n0[(start + s) * n0_step]
        for j in range(M):
            for s in range(nb):
                dr = yr[s] - pr[j]
                di = yi[s] - pi[j]
                d[j, s] = dr * dr + di * di
        size = M
        for k in range(m):
            half = size >> 1
            for s in range(nb):
                a[s] = d[0, s]
                b[s] = d[half, s]
            for t in range(1, half):
                for s in range(nb):
                    a[s] = _fmin(a[s], d[t, s])
                    b[s] = _fmin(b[s], d[half + t, s])
            base = start * m + k
            for s in range(nb):
                out[base + s * m] = (b[s] - a[s]) * inv[s]
            for t in range(half):
                for s in range(nb):
                    d[t, s] = _fmin(d[t, s], d[half + t, s])
            size = half


# Below this a subset's sum of exp(metric - max) is recomputed from its own maximum.
_TINY = 1e-250


@numba.njit(nogil=True, cache=True)
def _exact_kernel(y, pr, pi, m, n0, n0_step, out):  # pragma: no cover - compiled
    M = pr.size
    met = np.empty(M, dtype=np.float64)
    e = np.empty(M, dtype=np.float64)
    for i in range(y.size):
        yr = np.float64(y[i].real)
        yi = np.float64(y[i].imag)
        inv = 1.0 / np.float64(n0[i * n0_step])
        g = -np.inf
        for j in range(M):
            dr = yr - pr[j]
            di = yi - pi[j]
            met[j] = -(dr * dr + di * di) * inv
            g = max(g, met[j])
        for j in range(M):
            e[j] = math.exp(met[j] - g)
        size = M
        for k in range(m):
            half = size >> 1
            s0 = 0.0
            s1 = 0.0
            for t in range(half):
                s0 += e[t]
                s1 += e[half + t]
            if s0 > _TINY and s1 > _TINY:
                out[i * m + k] = math.log(s0) - math.log(s1)
            else:  # one subset underflowed: log-sum-exp of each subset from its own maximum
                shift = m - 1 - k
                lse = np.empty(2)
                for v in range(2):
                    mx = -np.inf
                    for j in range(M):
                        if (j >> shift) & 1 == v:
                            mx = max(mx, met[j])
                    acc = 0.0
                    for j in range(M):
                        if (j >> shift) & 1 == v:
                            acc += math.exp(met[j] - mx)
                    lse[v] = mx + math.log(acc)
                out[i * m + k] = lse[0] - lse[1]
            for t in range(half):
                e[t] += e[half + t]
            size = half


@numba.njit(nogil=True, cache=True)
def _hard_kernel(y, pr, pi, out):  # pragma: no cover - compiled
    M = pr.size
    for i in range(y.size):
        yr = y[i].real
        yi = y[i].imag
        best = np.inf
        arg = 0
        for j in range(M):
            dr = yr - pr[j]
            di = yi - pi[j]
            dj = dr * dr + di * di
            if dj < best:
                best = dj
                arg = j
        out[i] = arg


# ----------------------------------------------------------------------------- wrappers


def _prepare(y: np.ndarray, n0: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, int]:
    yv = np.ascontiguousarray(y, dtype=np.complex64).reshape(-1)
    n0a = np.asarray(n0, dtype=np.float32)
    if n0a.ndim == 0:
        n0v, step = n0a.reshape(1), 0
    else:
        try:
            n0v = np.ascontiguousarray(np.broadcast_to(n0a, np.shape(y))).reshape(-1)
        except ValueError as e:
            raise ValueError(
                f"n0 of shape {n0a.shape} does not fit the symbols' shape {np.shape(y)}"
            ) from e
        step = 1
    if n0v.size and not (np.all(np.isfinite(n0v)) and np.all(n0v > 0)):
        raise ValueError("n0 must be finite and > 0")
    return yv, n0v, step


_GRAY_QPSK = qpsk().points


def _is_gray_qpsk(c: Constellation) -> bool:
    return c.bits_per_symbol == 2 and np.allclose(c.points, _GRAY_QPSK, atol=1e-6)


def llr_maxlog(y: np.ndarray, c: Constellation, n0: np.ndarray | float) -> np.ndarray:
    """Max-log bit LLRs (see the module docstring); positive = bit 0.

    Parameters
    ----------
    y : complex (..., N) received symbols (:math:`E_s = 1`)
    c : the constellation
    n0 : noise variance per complex sample, :math:`N_0 = E|n|^2`; a float or an array of the
        shape of ``y`` (per symbol)

    Returns
    -------
    llr : float32 (..., N·m), bits in the order of :func:`map_bits`

    For Gray QPSK the closed form :math:`2\\sqrt2\\,y_{I,Q}/N_0` (exact) is used. ``y`` must be
    finite (the kernel is compiled with fast-math).
    """
    yv, n0v, step = _prepare(y, n0)
    m = c.bits_per_symbol
    out = np.empty(yv.size * m, dtype=np.float32)
    if _is_gray_qpsk(c):
        _maxlog_qpsk(yv, n0v, step, out)
    else:
        pr = np.ascontiguousarray(c.points.real, dtype=np.float32)
        pi = np.ascontiguousarray(c.points.imag, dtype=np.float32)
        _maxlog_kernel(yv, pr, pi, m, n0v, step, out)
    return out.reshape(*np.shape(y)[:-1], -1) if np.ndim(y) > 1 else out


def llr_exact(y: np.ndarray, c: Constellation, n0: np.ndarray | float) -> np.ndarray:
    """Exact AWGN bit LLRs (log-sum-exp in float64, returned as float32); positive = bit 0.

    Parameters and returns as :func:`llr_maxlog`. Numerically stable: the metrics are shifted by
    their maximum before exponentiation, and a bit whose subset sum underflows (|LLR| beyond
    ~575) is recomputed from that subset's own maximum. Gray QPSK uses the (exact) closed form.
    """
    yv, n0v, step = _prepare(y, n0)
    m = c.bits_per_symbol
    out = np.empty(yv.size * m, dtype=np.float32)
    if _is_gray_qpsk(c):  # the closed form is exact
        _maxlog_qpsk(yv, n0v, step, out)
    else:
        pr = np.ascontiguousarray(c.points.real, dtype=np.float64)
        pi = np.ascontiguousarray(c.points.imag, dtype=np.float64)
        _exact_kernel(yv, pr, pi, m, n0v, step, out)
    return out.reshape(*np.shape(y)[:-1], -1) if np.ndim(y) > 1 else out


def llr(
    y: np.ndarray, c: Constellation, n0: np.ndarray | float, method: str = "maxlog"
) -> np.ndarray:
    """Bit LLRs by ``method`` "maxlog" (:func:`llr_maxlog`) or "exact" (:func:`llr_exact`)."""
    if method == "maxlog":
        return llr_maxlog(y, c, n0)
    if method == "exact":
        return llr_exact(y, c, n0)
    raise ValueError(f"unknown LLR method {method!r}; choose 'maxlog' or 'exact'")


def hard_decision(y: np.ndarray, c: Constellation) -> np.ndarray:
    """Labels of the nearest points (minimum Euclidean distance): uint8 of the shape of ``y``
    (labels fit, as m <= 8)."""
    yv = np.ascontiguousarray(y, dtype=np.complex64).reshape(-1)
    out = np.empty(yv.size, dtype=np.uint8)
    pr = np.ascontiguousarray(c.points.real, dtype=np.float32)
    pi = np.ascontiguousarray(c.points.imag, dtype=np.float32)
    _hard_kernel(yv, pr, pi, out)
    return out.reshape(np.shape(y))


# ----------------------------------------------------------------------------- labelling search


def _bsa_cost(lab: np.ndarray, kernel: np.ndarray, hamming: np.ndarray) -> float:
    """Total cost :math:`\\sum_p \\sum_q d_H(l_p, l_q)\\,K_{pq}`."""
    return float(np.sum(hamming[lab[:, None], lab[None, :]] * kernel))


def _bsa_swap_gain(p: int, g: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Change of :func:`_bsa_cost` (M,) when the labels of ``p`` and each ``q`` are swapped;
    ``g[a, b]`` = Hamming distance of the labels of a and b. Only rows and columns p, q change:

    .. math::
        \\Delta_q = 2\\sum_{r \\ne p,q} (K_{pr} - K_{qr})(g_{qr} - g_{pr})
    """
    diff = (kernel[p][None, :] - kernel) * (g - g[p][None, :])
    delta = 2.0 * (diff.sum(axis=1) + 2.0 * kernel[p] * g[p])
    delta[p] = 0.0
    return delta


def binary_switching(
    points: np.ndarray, esn0_db: float, *, seed: int = 0, n_restarts: int = 16
) -> np.ndarray:
    """Search a labelling by the binary switching algorithm (BSA).

    Schreckenbach, Görtz, Hagenauer, Bauch, "Optimization of symbol mappings for
    bit-interleaved coded modulation with iterative decoding", IEEE Commun. Lett. 7(12), 2003:
    starting from a random labelling, repeatedly take the point of highest cost and swap its
    label with the partner that lowers the total cost most; when no swap of any point lowers it,
    stop; keep the best of ``n_restarts`` seeded starts. Cost (a pairwise bound on the bit error
    rate of non-iterative BICM, :math:`N_0 = 10^{-E_s/N_0/10}` for unit-energy ``points``):

    .. math::
        C = \\sum_p \\sum_{q \\ne p} d_H(l_p, l_q)\\, e^{-|x_p - x_q|^2 / (4 N_0)}

    Parameters
    ----------
    points : complex (M,), unit average energy, in any order
    esn0_db : Es/N0 [dB] the cost is evaluated at (near the MODCOD's threshold)
    seed, n_restarts : the deterministic random starts

    Returns
    -------
    order : intp (M,) such that ``points[order]`` puts label ``i`` on point ``order[i]``
        (use with :meth:`Constellation.relabelled`)
    """
    x = np.asarray(points, dtype=np.complex128).reshape(-1)
    M = x.size
    n0 = 10.0 ** (-esn0_db / 10.0)
    kernel = np.exp(-(np.abs(x[:, None] - x[None, :]) ** 2) / (4.0 * n0))
    np.fill_diagonal(kernel, 0.0)
    v = np.arange(M)
    hamming = np.array([[bin(a ^ b).count("1") for b in v] for a in v], dtype=float)
    rng = np.random.default_rng(seed)
    best_lab, best_cost = None, np.inf
    for _ in range(n_restarts):
        lab = rng.permutation(M)
        g = hamming[lab[:, None], lab[None, :]]
        while True:
            point_cost = np.sum(g * kernel, axis=1)
            for p in np.argsort(-point_cost, kind="stable"):
                delta = _bsa_swap_gain(int(p), g, kernel)
                q = int(np.argmin(delta))
                if delta[q] < -1e-12 * point_cost.sum():
                    lab[[p, q]] = lab[[q, p]]
                    g = hamming[lab[:, None], lab[None, :]]
                    break
            else:
                break  # no swap of any point lowers the cost: a local minimum
        cost = _bsa_cost(lab, kernel, hamming)
        if cost < best_cost:
            best_cost, best_lab = cost, lab.copy()
    order = np.empty(M, dtype=np.intp)
    order[best_lab] = v  # point p carries label best_lab[p]
    return order
