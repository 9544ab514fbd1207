"""Forward error correction for the emulator's modem: the DVB-S2 / DVB-S2X normal-frame LDPC
codes (tables derived from GNU Radio's gr-dtv encoder and cached, see
:mod:`flowgraphs.fec.dvbs2_tables`) with a fast encoder and a layered min-sum decoder
(:mod:`flowgraphs.fec.ldpc`). NumPy + numba; GNU Radio is needed only to derive a table the
first time.
"""

from __future__ import annotations

from flowgraphs.fec.dvbs2_tables import (
    RATES,
    DvbS2Table,
    LdpcTableError,
    RateSpec,
    cache_dir,
    gr_dtv_encode,
    load_table,
    supported_rates,
)
from flowgraphs.fec.ldpc import (
    LLR_KNOWN_ZERO,
    LLR_MAX,
    MIN_SUM_OFFSET,
    MIN_SUM_OFFSET_LOW_DEGREE,
    MIN_SUM_SCALE,
    DecodeResult,
    LdpcCode,
)

__all__ = [
    "LLR_KNOWN_ZERO",
    "LLR_MAX",
    "MIN_SUM_OFFSET",
    "MIN_SUM_OFFSET_LOW_DEGREE",
    "MIN_SUM_SCALE",
    "RATES",
    "DecodeResult",
    "DvbS2Table",
    "LdpcCode",
    "LdpcTableError",
    "RateSpec",
    "cache_dir",
    "gr_dtv_encode",
    "load_table",
    "supported_rates",
]
