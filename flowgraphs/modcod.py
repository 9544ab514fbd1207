"""The MODCODs of the emulator's modem and the ACM rule that picks one per frame.

The set is DVB-S2's (EN 302 307-1): QPSK, 8PSK, 16APSK and 32APSK with the normal-frame
(n = 64800) LDPC codes, 28 MODCODs spanning Es/N0 ≈ −2.4 … 16 dB. Each MODCOD carries

* its **reference** threshold: the ideal Es/N0 of EN 302 307-1 Table 13 (AWGN, normal
  frames, PER = 1e-7 after BCH, 50 decoder iterations) — the published figure the modem is
  compared against (``testbed channel per``);
* its **measured** threshold: the Es/N0 at which *this* modem, through the real flowgraph,
  reaches FER = 1e-2 (``testbed channel per --modcod all --json`` wrote the shipped table
  ``flowgraphs/data/modcods.json``). This is the table ACM uses.

ACM (:func:`select`) takes the Es/N0 the ground terminal can predict for the frame's start
(link budget and orbit; no fading or shadowing realisation), subtracts a margin, and picks
the highest-throughput MODCOD whose measured threshold is met; below the lowest it uses the
lowest. A link can also be fixed to one MODCOD for experiments.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "MODCODS",
    "Modcod",
    "by_id",
    "by_name",
    "measured_thresholds",
    "select",
]

N_NORMAL = 64800
# K_ldpc of the normal-frame codes (EN 302 307-1 Table 5a)
_K = {
    "1/4": 16200,
    "1/3": 21600,
    "2/5": 25920,
    "1/2": 32400,
    "3/5": 38880,
    "2/3": 43200,
    "3/4": 48600,
    "4/5": 51840,
    "5/6": 54000,
    "8/9": 57600,
    "9/10": 58320,
}
_BITS = {"qpsk": 2, "8psk": 3, "16apsk": 4, "32apsk": 5}
# EN 302 307-1 Table 13: ideal Es/N0 [dB] for QEF (PER 1e-7), AWGN, normal FECFRAMEs
_TABLE13 = [
    ("qpsk", "1/4", -2.35),
    ("qpsk", "1/3", -1.24),
    ("qpsk", "2/5", -0.30),
    ("qpsk", "1/2", 1.00),
    ("qpsk", "3/5", 2.23),
    ("qpsk", "2/3", 3.10),
    ("qpsk", "3/4", 4.03),
    ("qpsk", "4/5", 4.68),
    ("qpsk", "5/6", 5.18),
    ("qpsk", "8/9", 6.20),
    ("qpsk", "9/10", 6.42),
    ("8psk", "3/5", 5.50),
    ("8psk", "2/3", 6.62),
    ("8psk", "3/4", 7.91),
    ("8psk", "5/6", 9.35),
    ("8psk", "8/9", 10.69),
    ("8psk", "9/10", 10.98),
    ("16apsk", "2/3", 8.97),
    ("16apsk", "3/4", 10.21),
    ("16apsk", "4/5", 11.03),
    ("16apsk", "5/6", 11.61),
    ("16apsk", "8/9", 12.89),
    ("16apsk", "9/10", 13.13),
    ("32apsk", "3/4", 12.73),
    ("32apsk", "4/5", 13.64),
    ("32apsk", "5/6", 14.28),
    ("32apsk", "8/9", 15.69),
    ("32apsk", "9/10", 16.05),
]
REFERENCE_SOURCE = (
    "ETSI EN 302 307-1 Table 13 (ideal Es/N0 for PER 1e-7, AWGN, 64800-bit FECFRAMEs)"
)


@dataclass(frozen=True)
class Modcod:
    """One modulation and coding pair.

    Attributes
    ----------
    id : the 6-bit MODCOD id in the PL header (1 … 28, DVB-S2's numbering)
    name : e.g. ``"qpsk-1/2"``
    constellation : ``"qpsk" | "8psk" | "16apsk" | "32apsk"``
    rate : code rate label, e.g. ``"1/2"``
    bits_per_symbol : log2 M
    k, n : LDPC information and codeword length [bits]
    reference_esn0_db : EN 302 307-1 Table 13 threshold [dB]
    """

    id: int
    name: str
    constellation: str
    rate: str
    bits_per_symbol: int
    k: int
    n: int
    reference_esn0_db: float

    @property
    def code_rate(self) -> float:
        """k / n."""
        return self.k / self.n

    @property
    def bits_per_data_symbol(self) -> float:
        """Information bits per data symbol, :math:`\\eta = m\\,k/n` [bit/symbol]."""
        return self.bits_per_symbol * self.k / self.n

    @property
    def data_symbols(self) -> int:
        """Data symbols of a full (unshortened) frame, :math:`\\lceil n/m \\rceil`."""
        return -(-self.n // self.bits_per_symbol)

    @property
    def capacity_bytes(self) -> int:
        """Data field bytes of a full frame (the LDPC information word), k/8."""
        return self.k // 8


MODCODS: tuple[Modcod, ...] = tuple(
    Modcod(i + 1, f"{c}-{r}", c, r, _BITS[c], _K[r], N_NORMAL, esn0)
    for i, (c, r, esn0) in enumerate(_TABLE13)
)
_BY_NAME = {m.name: m for m in MODCODS}
_BY_ID = {m.id: m for m in MODCODS}


def by_name(name: str) -> Modcod:
    """The MODCOD called ``name`` (e.g. ``"8psk-2/3"``); ValueError listing the valid names."""
    m = _BY_NAME.get(name)
    if m is None:
        raise ValueError(f"unknown MODCOD {name!r}; choose one of {', '.join(_BY_NAME)}")
    return m


def by_id(modcod_id: int) -> Modcod | None:
    """The MODCOD with header id ``modcod_id``, or None."""
    return _BY_ID.get(modcod_id)


@cache
def measured_thresholds() -> dict[str, float]:
    """Measured Es/N0 [dB] at FER 1e-2 per MODCOD name, from the shipped table.

    Falls back to the reference threshold for a MODCOD the table lacks (logged by the
    caller through :func:`select`'s ``table`` argument if it matters).
    """
    try:
        text = resources.files("flowgraphs").joinpath("data/modcods.json").read_text()
    except (FileNotFoundError, OSError):
        return {m.name: m.reference_esn0_db for m in MODCODS}
    rows = json.loads(text).get("modcods", [])
    out = {m.name: m.reference_esn0_db for m in MODCODS}
    for r in rows:
        v = r.get("esn0_db_at_fer_1e-2")
        if r.get("name") in out and isinstance(v, int | float) and math.isfinite(v):
            out[r["name"]] = float(v)
    return out


def select(
    esn0_db: float,
    margin_db: float = 1.0,
    allowed: tuple[Modcod, ...] = MODCODS,
    table: dict[str, float] | None = None,
) -> Modcod:
    """ACM: the MODCOD with the most information bits per symbol whose threshold is met.

    .. math:: m^* = \\arg\\max_{m:\\ \\gamma_m \\le \\hat\\gamma - \\Delta} \\eta_m

    with :math:`\\hat\\gamma` = ``esn0_db`` (predicted), Δ = ``margin_db`` and
    :math:`\\gamma_m` the measured FER-1e-2 threshold (``table``, default
    :func:`measured_thresholds`). Below every threshold the most robust MODCOD is used.
    """
    thr = table if table is not None else measured_thresholds()
    best = min(allowed, key=lambda m: thr[m.name])
    for m in allowed:
        better = m.bits_per_data_symbol > best.bits_per_data_symbol
        if thr[m.name] <= esn0_db - margin_db and better:
            best = m
    return best
