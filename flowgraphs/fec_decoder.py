"""LDPC decoder block: ``(meta . f32 LLRs)`` → ``(meta . u8 data field)``.

Decodes with the code the receiver read from the PL header (never the transmitter's
metadata), checks the data field's CRC-32 and drops what fails: ``ldpc_fail`` (the decoder did
not reach a codeword) or ``df_crc_fail`` (a codeword, but not the one sent). The decoder is
numba-compiled without the GIL, so it runs beside the other stages' threads.
"""

from __future__ import annotations

from typing import Any

from flowgraphs import frame
from flowgraphs.burst_stage import BurstStage, Dropped
from flowgraphs.modcod import by_id
from flowgraphs.modem import decode_data_field, transmitted_bits

__all__ = ["FecDecoder"]


class FecDecoder(BurstStage):
    """Soft-decision LDPC decoding of one frame per PDU.

    Parameters
    ----------
    max_iterations : layered min-sum iterations at most (early stop on a valid codeword)
    """

    def __init__(self, max_iterations: int = 50) -> None:
        super().__init__("satfl_fec_decoder", "f32", "u8")
        if max_iterations < 1:
            raise ValueError("max_iterations must be >= 1")
        self.max_iterations = int(max_iterations)
        self.iterations = 0

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        mc = by_id(int(meta["_rx_modcod_id"]))
        df_len = int(meta["_rx_df_len"])
        if mc is None or not 0 < df_len <= mc.capacity_bytes:
            raise Dropped("bad_header")
        if data.size < transmitted_bits(mc, df_len) - mc.bits_per_symbol:
            raise Dropped("truncated")
        df, iters, cw_ok = decode_data_field(mc, df_len, data, self.max_iterations)
        with self._lock:
            self.iterations += iters
        meta["ldpc_iterations"] = iters
        if df is None:
            raise Dropped("ldpc_fail" if not cw_ok else "df_crc_fail")
        return meta, df[: -frame.CRC_LEN]
