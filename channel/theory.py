"""Theoretical error rates of the emulator's uncoded modem (for ``testbed channel per``).

Bit error rate in AWGN with Gray mapping and coherent detection, :math:`\\gamma = E_s/N_0`:

.. math::
    P_b^{BPSK} = Q\\big(\\sqrt{2\\gamma}\\big),\\quad
    P_b^{QPSK} = Q\\big(\\sqrt{\\gamma}\\big),\\quad
    P_b^{8PSK} \\approx \\tfrac{2}{3} Q\\big(\\sqrt{2\\gamma}\\sin\\tfrac{\\pi}{8}\\big),\\quad
    P_b^{16QAM} \\approx \\tfrac{3}{4} Q\\big(\\sqrt{\\gamma/5}\\big)

(Proakis, *Digital Communications*, 5th ed., eqs. 4.3-13, 4.3-19 and 4.3-30 with the
Gray approximation :math:`P_b \\approx P_s/\\log_2 M`). Frame error rate of an
:math:`N_b`-bit frame (payload + CRC-32), bit errors independent:

.. math:: \\mathrm{FER} = 1 - (1 - P_b)^{N_b}

Rician block fading (gain constant over a frame, :math:`f_D T_{frame} \\ll 1`), envelope
:math:`r = |h|` with :math:`E r^2 = 1` distributed as ``channel.rice_distribution(K)``:

.. math::
    \\mathrm{FER}_{Rice}(\\bar\\gamma) =
    \\int_0^\\infty \\mathrm{FER}(r^2 \\bar\\gamma)\\, p_K(r)\\,dr
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from channel.rician import rice_distribution

__all__ = ["ber_awgn", "fer_awgn", "fer_from_ber", "fer_rician"]


def _q(x: np.ndarray) -> np.ndarray:
    return 0.5 * special.erfc(np.asarray(x) / math.sqrt(2.0))


def ber_awgn(modulation: str, esn0_db: np.ndarray | float) -> np.ndarray:
    """Bit error rate at Es/N0 ``esn0_db`` [dB] (see the module docstring)."""
    g = 10.0 ** (np.asarray(esn0_db, dtype=float) / 10.0)
    if modulation == "bpsk":
        return _q(np.sqrt(2 * g))
    if modulation == "qpsk":
        return _q(np.sqrt(g))
    if modulation == "8psk":
        return (2.0 / 3.0) * _q(np.sqrt(2 * g) * math.sin(math.pi / 8))
    if modulation == "16qam":
        return 0.75 * _q(np.sqrt(g / 5.0))
    raise ValueError(f"unknown modulation {modulation!r}")


def fer_from_ber(ber: np.ndarray | float, n_bits: int) -> np.ndarray:
    """:math:`1 - (1-P_b)^{N_b}`, computed stably."""
    return -np.expm1(n_bits * np.log1p(-np.minimum(np.asarray(ber, dtype=float), 1.0 - 1e-16)))


def fer_awgn(modulation: str, esn0_db: np.ndarray | float, n_bits: int) -> np.ndarray:
    """FER of an ``n_bits`` frame in AWGN."""
    return fer_from_ber(ber_awgn(modulation, esn0_db), n_bits)


def fer_rician(
    modulation: str, esn0_db: np.ndarray | float, n_bits: int, k_db: float
) -> np.ndarray:
    """FER under Rician block fading with K = ``k_db`` [dB], mean Es/N0 ``esn0_db`` [dB]."""
    dist = rice_distribution(k_db)
    r = np.linspace(1e-6, float(dist.ppf(1 - 1e-9)), 4001)
    w = dist.pdf(r)
    w /= np.trapz(w, r)
    out = []
    for e in np.atleast_1d(np.asarray(esn0_db, dtype=float)):
        f = fer_awgn(modulation, e + 20 * np.log10(r), n_bits)
        out.append(np.trapz(f * w, r))
    res = np.array(out)
    return res if np.ndim(esn0_db) else res[0]
