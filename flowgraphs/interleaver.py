"""DVB-S2 bit interleaver (block interleaver of EN 302 307-1 §5.3.3), pure NumPy.

What is implemented. For 8PSK, 16APSK and 32APSK the LDPC codeword of ``n`` bits (normal
frames: 64 800; short frames 16 200 work the same) is written serially *column-wise* into an
interleaver of ``m`` columns (m = bits per symbol) and ``n/m`` rows, and read out serially
*row-wise*; each row read out is one symbol's label, MSB first (§5.4: the m bits of a row
address one point). So codeword bit ``i`` sits in column ``c = i // (n/m)``, row
``r = i % (n/m)``, and symbol ``r`` carries ``(col_0[r], col_1[r], …, col_{m-1}[r])``. The one
exception in DVB-S2 (not S2X) is 8PSK rate 3/5, where the standard reads the columns in the
order 3, 2, 1 (the MSB of the BBHEADER is read out third): ``reverse_columns=True``. QPSK
(and BPSK) have no bit interleaver: for ``m <= 2`` the permutation is the identity (a
2-column block interleaver would *not* be, so this is a rule, not a special case of it).

Sources and what is uncertain. The statement above is the commonly quoted text of §5.3.3 and
its table of interleaver sizes (rows 21 600 / 16 200 / 12 960 for 8PSK / 16APSK / 32APSK normal
frames); the text of the standard itself was not available here. It agrees with GNU Radio's
gr-dtv ``dvbs2_interleaver_bb`` (checked by a test against the installed GNU Radio): column
order 0,1,2 for every DVB-S2 8PSK rate but 3/5 (2,1,0), and 0…3 / 0…4 for all DVB-S2 16APSK
/ 32APSK rates. The DVB-S2X column twists (e.g. 16APSK 26/45) are not implemented.

Conventions: ``permutation`` returns ``perm`` with ``interleaved[k] = codeword[perm[k]]``;
:func:`deinterleave` applies the inverse, so it restores the codeword order of bits or LLRs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["deinterleave", "interleave", "needs_reversed_columns", "permutation"]


def needs_reversed_columns(constellation: str, rate: str) -> bool:
    """True for the DVB-S2 MODCOD whose columns are read in reverse order (8PSK rate 3/5)."""
    return constellation.lower() == "8psk" and rate.replace(" ", "") == "3/5"


@lru_cache(maxsize=256)
def _perm_cached(n: int, m: int, reverse_columns: bool) -> tuple[np.ndarray, np.ndarray]:
    perm = _permutation(n, m, reverse_columns)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size, dtype=perm.dtype)
    perm.setflags(write=False)
    inv.setflags(write=False)
    return perm, inv


def permutation(n: int, m: int, reverse_columns: bool = False) -> np.ndarray:
    """Index array of the block interleaver (cached, read-only); see :func:`_permutation`."""
    return _perm_cached(int(n), int(m), bool(reverse_columns))[0]


def _permutation(n: int, m: int, reverse_columns: bool = False) -> np.ndarray:
    """Index array of the block interleaver.

    Parameters
    ----------
    n : codeword length [bits], a multiple of ``m``
    m : number of columns = bits per symbol; ``m <= 2`` gives the identity (no interleaver,
        as for DVB-S2 QPSK)
    reverse_columns : read the columns in the order m-1, …, 0 (8PSK rate 3/5)

    Returns
    -------
    perm : intp (n,), ``interleaved[k] = codeword[perm[k]]``; with ``R = n // m`` rows,

    .. math:: \\mathrm{perm}[r m + j] = \\mathrm{col}(j)\\,R + r,\\quad
        \\mathrm{col}(j) = j \\text{ (or } m-1-j \\text{ reversed)}
    """
    if n <= 0 or m <= 0 or n % m:
        raise ValueError(f"codeword length {n} must be a positive multiple of m={m}")
    if m <= 2:
        return np.arange(n, dtype=np.intp)
    rows = n // m
    cols = np.arange(m)[::-1] if reverse_columns else np.arange(m)
    return (cols[None, :] * rows + np.arange(rows)[:, None]).reshape(-1).astype(np.intp)


def interleave(bits: np.ndarray, m: int, reverse_columns: bool = False) -> np.ndarray:
    """Interleave codeword(s) ``bits`` (..., n) along the last axis (any dtype: bits, LLRs);
    the result feeds :func:`flowgraphs.constellation.map_bits` directly."""
    x = np.asarray(bits)
    return x[..., permutation(x.shape[-1], m, reverse_columns)]


def deinterleave(values: np.ndarray, m: int, reverse_columns: bool = False) -> np.ndarray:
    """Inverse of :func:`interleave` along the last axis: LLRs (or bits) in symbol order
    (..., n) back to codeword order, dtype kept (uint8 bits, float32 LLRs), batched."""
    x = np.asarray(values)
    inv = _perm_cached(int(x.shape[-1]), int(m), bool(reverse_columns))[1]
    return x[..., inv]
