"""The coded burst modem: LDPC + BICM transmitter and a blind, data-aided burst receiver.

Pure NumPy/numba (no GNU Radio): every step is unit-testable; the GNU Radio blocks in
:mod:`flowgraphs.burst_modulator`, :mod:`flowgraphs.burst_demodulator` and
:mod:`flowgraphs.fec_decoder` wrap it. Frame format: :mod:`flowgraphs.frame`.

**Transmitter** (:class:`Transmitter`): data field → CCSDS scrambler → LDPC encoder (the
shortened information bits are zero and not sent) → bit interleaver → constellation mapper →
PL frame (preamble, header, pilots) → RRC pulse shaping at :math:`f_s/R_s = P/Q`, with the
propagation delay's fractional part folded into the pulse (:func:`flowgraphs.dsp.tx_shape`).

**Receiver** (:class:`Receiver`; it knows neither where the burst starts, nor its carrier
offset, sampling phase, gain, MODCOD or length):

1. detection and coarse timing: the received head is correlated with each of the 8 segments
   (32 symbols) of the preamble waveform, :math:`C_j[n] = \\sum_i r[n+i]\\,p_j^*[i]`, combined
   non-coherently and normalised by the segments' energies,
   :math:`M[n] = \\frac18\\sum_j |C_j[n]|^2 / (E_{p,j} E_{r,j}[n]) \\in [0, 1]`; the burst
   is at the peak if it exceeds :data:`DETECT_THRESHOLD` (noise alone: ≈ 1/(32ρ) per segment;
   a burst at Es/N0 = −3 dB: ≈ 1/3);
2. coarse frequency from the segment-to-segment phase,
   :math:`\\hat\\nu_c = \\arg\\sum_j C_{j+1}C_j^* / (2\\pi\\,32\\rho)` [cycles/sample], unambiguous
   for :math:`|f| < R_s/64`; removed from the samples only when it is large (> 1 % of R_s),
   otherwise at the symbol level;
3. fine timing: matched filter at 9 sampling phases around the peak (±½ sample), the one
   maximising the segment-wise known-symbol energy, refined by a parabola;
4. fine frequency: peak of the 4096-point zero-padded DFT of :math:`x_k = z_k d_k^*` over the
   preamble (ML), then a least-squares slope over preamble + decoded header (768 symbols);
5. header: 4 × (128, 8) biorthogonal codes, ML decoding; CRC-8 → MODCOD, length, counter;
6. the whole frame is matched-filtered at the estimated timing (one polyphase pass);
7. channel tracking: the complex gain at every pilot block (and every 32 known symbols of
   preamble and header), smoothed over the blocks that fall within :math:`1/(20 f_D)` of each
   other, linearly interpolated over the data symbols (tracks residual frequency, Doppler
   rate and fading);
8. noise variance from the pilots' residuals; equalised symbols → bit LLRs (max-log by
   default) → de-interleaver. The LDPC decoder and the CRC run in the next block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache, lru_cache

import numpy as np
from numba import njit

from flowgraphs import constellation as cst
from flowgraphs import dsp, frame, interleaver
from flowgraphs.modcod import Modcod, by_id

__all__ = [
    "DETECT_THRESHOLD",
    "LLR_KNOWN_ZERO",
    "ModemConfig",
    "Receiver",
    "RxResult",
    "Transmitter",
    "TxFrame",
    "decode_data_field",
    "ldpc_code",
    "transmitted_bits",
]

DETECT_THRESHOLD = 0.12
#: LLR given to shortened (known-zero, not transmitted) information bits
LLR_KNOWN_ZERO = 1.0e4
_FINE_NFFT = 4096
_SEG = frame.PREAMBLE_LEN // frame.PREAMBLE_SEGMENTS


@cache
def ldpc_code(rate: str):
    """The DVB-S2 normal-frame LDPC code of ``rate`` (built once per process)."""
    from flowgraphs.fec.ldpc import LdpcCode

    return LdpcCode.dvbs2(rate)


@njit(nogil=True, fastmath=True, cache=True)
def _equalise(z, idx, kk, g_re, g_im, n0, d, n0_sym):
    """d_i = z[idx_i] / g(idx_i), n0_i = N0/|g(idx_i)|², g linearly interpolated between the
    reference points (kk sorted, clamped at the ends); idx sorted."""
    j = 0
    nk = kk.size
    for i in range(idx.size):
        k = idx[i]
        while j < nk - 2 and kk[j + 1] < k:
            j += 1
        if k <= kk[0]:
            gr, gi = g_re[0], g_im[0]
        elif k >= kk[nk - 1]:
            gr, gi = g_re[nk - 1], g_im[nk - 1]
        else:
            f = (k - kk[j]) / (kk[j + 1] - kk[j])
            gr = g_re[j] + f * (g_re[j + 1] - g_re[j])
            gi = g_im[j] + f * (g_im[j + 1] - g_im[j])
        p = gr * gr + gi * gi
        if p < 1e-24:
            p = 1e-24
        v = z[k]
        d[i] = complex((v.real * gr + v.imag * gi) / p, (v.imag * gr - v.real * gi) / p)
        n0_sym[i] = n0 / p


def _wls_slope(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted least-squares slope of y(x): :math:`\\sum w (x-\\bar x)(y-\\bar y) /
    \\sum w (x-\\bar x)^2` with weighted means."""
    sw = float(np.sum(w)) + 1e-300
    xm = float(np.dot(w, x)) / sw
    ym = float(np.dot(w, y)) / sw
    dx = x - xm
    den = float(np.dot(w, dx * dx))
    return float(np.dot(w, dx * (y - ym))) / den if den > 0 else 0.0


@lru_cache(maxsize=4096)
def _known_symbols(hdr: frame.Header) -> np.ndarray:
    """Preamble and the header's symbols (known once the header is decoded)."""
    return np.concatenate([frame.PREAMBLE, frame.encode_header(hdr)])


@cache
def _constellation(mc: Modcod) -> cst.Constellation:
    return cst.for_modcod(mc.constellation, mc.rate)


def _reverse_columns(mc: Modcod) -> bool:
    # EN 302 307-1 §5.3.3: 8PSK rate 3/5 reads the interleaver's columns in reverse order
    return mc.constellation == "8psk" and mc.rate == "3/5"


def transmitted_bits(mc: Modcod, df_len: int) -> int:
    """Codeword bits a frame with a ``df_len``-byte data field sends, padded to whole
    symbols: :math:`8\\,L + (n - k)` rounded up to a multiple of m."""
    t = 8 * df_len + (mc.n - mc.k)
    return -(-t // mc.bits_per_symbol) * mc.bits_per_symbol


@lru_cache(maxsize=1024)
def _layout(n_data: int, spacing: int) -> frame.FrameLayout:
    lay = frame.frame_layout(n_data, spacing)
    lay.data_idx.setflags(write=False)
    lay.pilot_idx.setflags(write=False)
    return lay


@dataclass(frozen=True)
class ModemConfig:
    """Rates and framing shared by a link's transmitter and receiver.

    Attributes
    ----------
    sample_rate_hz : f_s [Hz]
    symbol_rate_hz : R_s [Hz]; :math:`f_s/R_s` must be a ratio P/Q (Q ≤ 64) ≥ 1 + α
    rolloff : RRC roll-off α
    pilot_spacing : data symbols between pilot blocks (:func:`flowgraphs.frame.pilot_spacing_for`)
    doppler_spread_hz : f_D the receiver's channel tracking is designed for [Hz]
    llr_method : "maxlog" or "exact"
    """

    sample_rate_hz: float
    symbol_rate_hz: float
    rolloff: float = 0.2
    pilot_spacing: int = 1440
    doppler_spread_hz: float = 5.0
    llr_method: str = "maxlog"
    ratio: Fraction = field(init=False)

    def __post_init__(self) -> None:
        ratio = dsp.rational_ratio(self.sample_rate_hz, self.symbol_rate_hz)
        if float(ratio) < 1.0 + self.rolloff - 1e-9:
            raise ValueError(
                f"sample_rate_hz {self.sample_rate_hz:g} is below the occupied bandwidth "
                f"R_s(1+α) = {self.symbol_rate_hz * (1 + self.rolloff):g} Hz"
            )
        if not 0.0 < self.rolloff <= 1.0:
            raise ValueError(f"rolloff must be in (0, 1], got {self.rolloff}")
        if self.pilot_spacing < 1:
            raise ValueError("pilot_spacing must be >= 1")
        if self.llr_method not in ("maxlog", "exact"):
            raise ValueError(f"llr_method must be 'maxlog' or 'exact', got {self.llr_method!r}")
        object.__setattr__(self, "ratio", ratio)

    @property
    def sps(self) -> float:
        """Samples per symbol ρ = f_s/R_s."""
        return float(self.ratio)

    def layout(self, mc: Modcod, df_len: int) -> frame.FrameLayout:
        """The frame layout for ``mc`` with a ``df_len``-byte data field."""
        n_data = transmitted_bits(mc, df_len) // mc.bits_per_symbol
        return _layout(n_data, self.pilot_spacing)

    def airtime_s(self, mc: Modcod, df_len: int) -> float:
        """On-air duration of a frame, :math:`N_{sym}/R_s` [s]."""
        return self.layout(mc, df_len).n_symbols / self.symbol_rate_hz


@dataclass(frozen=True)
class TxFrame:
    """A frame ready for pulse shaping."""

    modcod: Modcod
    df_len: int
    counter: int
    symbols: np.ndarray
    layout: frame.FrameLayout


class Transmitter:
    """Frames, encodes and modulates data fields (see the module docstring)."""

    def __init__(self, cfg: ModemConfig) -> None:
        self.cfg = cfg

    def encode(self, mc: Modcod, df: bytes) -> np.ndarray:
        """The transmitted codeword bits (uint8, interleaved) of data field ``df``."""
        if not 0 < len(df) <= mc.capacity_bytes:
            raise ValueError(f"data field of {len(df)} B does not fit {mc.name} ({mc.k // 8} B)")
        code = ldpc_code(mc.rate)
        info = np.zeros(mc.k, dtype=np.uint8)
        nb = 8 * len(df)
        info[:nb] = np.unpackbits(frame.scramble_bytes(df))
        cw = code.encode(info)
        t = transmitted_bits(mc, len(df))
        bits = np.zeros(t, dtype=np.uint8)
        bits[:nb] = cw[:nb]
        bits[nb : nb + mc.n - mc.k] = cw[mc.k :]
        if mc.bits_per_symbol > 2:
            bits = interleaver.interleave(bits, mc.bits_per_symbol, _reverse_columns(mc))
        return bits

    def build(self, mc: Modcod, df: bytes, counter: int) -> TxFrame:
        """Frame symbols for ``df`` with ``mc`` (header, data, pilots)."""
        bits = self.encode(mc, df)
        data = cst.map_bits(bits, _constellation(mc))
        lay = self.cfg.layout(mc, len(df))
        sym = np.empty(lay.n_symbols, dtype=np.complex64)
        sym[: frame.PREAMBLE_LEN] = frame.PREAMBLE
        sym[lay.header_start : lay.header_start + frame.HEADER_SYMBOLS] = frame.encode_header(
            frame.Header(mc.id, len(df), counter)
        )
        sym[lay.data_idx] = data
        sym[lay.pilot_idx] = frame.PILOTS[None, :]
        return TxFrame(mc, len(df), counter % 32, sym, lay)

    def waveform(self, symbols: np.ndarray, delay_samples: float = 0.0) -> tuple[np.ndarray, float]:
        """Pulse-shaped samples and the sample position of symbol 0's peak."""
        return dsp.tx_shape(symbols, self.cfg.ratio, self.cfg.rolloff, delay_samples)


@dataclass(frozen=True)
class RxResult:
    """Outcome of one receive attempt.

    Attributes
    ----------
    reason : "ok", or why the frame was lost: "no_sync", "header", "truncated"
    header : the decoded PL header (None when lost before it)
    llr : bit LLRs of the transmitted codeword bits, de-interleaved (positive = 0), float32
    freq_offset_hz : estimated carrier offset [Hz]
    timing : estimated sample position of symbol 0's peak
    metric : the normalised detector's peak (0 … 1)
    esn0_est_db : Es/N0 estimated from the pilots [dB]
    """

    reason: str
    header: frame.Header | None = None
    llr: np.ndarray | None = None
    freq_offset_hz: float = 0.0
    timing: float = 0.0
    metric: float = 0.0
    esn0_est_db: float = float("nan")


class Receiver:
    """Blind burst receiver for one :class:`ModemConfig` (reusable, stateless).

    Parameters
    ----------
    cfg : the link's modem configuration
    max_lead_samples : the burst starts within this many samples of the input's start
    """

    def __init__(self, cfg: ModemConfig, max_lead_samples: int | None = None) -> None:
        self.cfg = cfg
        rho = cfg.sps
        self.max_lead = int(max_lead_samples if max_lead_samples is not None else 96 * rho)
        p, n0 = dsp.tx_shape(frame.PREAMBLE, cfg.ratio, cfg.rolloff, 0.0)
        self._p_peak = n0  # sample of symbol 0's peak in the template
        # segment j: the samples around symbols 32j … 32j+31
        edges = [int(round(n0 + (j * _SEG - 0.5) * rho)) for j in range(frame.PREAMBLE_SEGMENTS)]
        edges.append(int(round(n0 + (frame.PREAMBLE_LEN - 0.5) * rho)))
        edges[0] = 0
        self._seg_edges = edges
        self._tmpl_len = edges[-1]
        nfft = 1 << int(math.ceil(math.log2(self.max_lead + self._tmpl_len + 1)))
        self._nfft = nfft
        segs = np.zeros((frame.PREAMBLE_SEGMENTS, nfft), dtype=np.complex64)
        for j in range(frame.PREAMBLE_SEGMENTS):
            segs[j, edges[j] : edges[j + 1]] = p[edges[j] : edges[j + 1]]
        self._seg_fft_conj = np.conj(np.fft.fft(segs, axis=1))
        self._seg_energy = np.array(
            [np.sum(np.abs(p[edges[j] : edges[j + 1]]) ** 2) for j in range(len(edges) - 1)]
        )
        # blocks of 32 known symbols of the preamble and header for channel tracking
        self._tracking_window = self._smoothing_blocks()

    def _smoothing_blocks(self) -> float:
        """Half-width [symbols] over which channel estimates may be averaged: 1/(40 f_D)."""
        fd = self.cfg.doppler_spread_hz
        return math.inf if fd <= 0 else self.cfg.symbol_rate_hz / (40.0 * fd)

    # -- acquisition ----------------------------------------------------------------------
    def _detect(self, r: np.ndarray) -> tuple[int, float, float, float] | None:
        """(peak sample, fractional offset, coarse frequency [cycles/sample], metric)."""
        nfft = self._nfft
        head = r[: min(r.size, nfft)]
        R = np.fft.fft(head, nfft)
        nl = self.max_lead + 1
        C = np.fft.ifft(R[None, :] * self._seg_fft_conj, axis=1)[:, :nl]
        # normalised: |C_j|² / (E_p,j · E_r,j[n]) ∈ [0, 1], the energies over each segment
        cs = np.concatenate([[0.0], np.cumsum(np.abs(head.astype(np.complex128)) ** 2)])
        lags = np.arange(nl)
        e_r = np.empty((len(self._seg_edges) - 1, nl))
        for j in range(e_r.shape[0]):
            hi = np.minimum(lags + self._seg_edges[j + 1], cs.size - 1)
            lo = np.minimum(lags + self._seg_edges[j], cs.size - 1)
            e_r[j] = cs[hi] - cs[lo]
        M = np.sum(np.abs(C) ** 2 / (self._seg_energy[:, None] * e_r + 1e-30), axis=0)
        M /= e_r.shape[0]
        n = int(np.argmax(M))
        metric = float(M[n])
        if metric < DETECT_THRESHOLD:
            return None
        frac = 0.0
        if 0 < n < M.size - 1:
            a, b, c = M[n - 1], M[n], M[n + 1]
            den = a - 2 * b + c
            if den < 0:
                frac = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
        d = np.sum(C[1:, n] * np.conj(C[:-1, n]))
        nu = float(np.angle(d)) / (2 * math.pi * _SEG * self.cfg.sps)
        return n, frac, nu, metric

    def _timing(self, r: np.ndarray, first: float, nu: float) -> float:
        """Refine symbol 0's sample position: the segment-wise known-symbol energy at
        ``first`` and ±0.3 sample, re-centred (up to 3 times) while the best is at an edge,
        then the vertex of the parabola through the three."""
        k = np.arange(frame.PREAMBLE_LEN)
        ref = np.conj(frame.PREAMBLE)
        if nu != 0.0:
            ref = ref * dsp.cis(-nu * self.cfg.sps * k)
        ref = ref.reshape(frame.PREAMBLE_SEGMENTS, _SEG)
        cache: dict[float, float] = {}

        def energy(t: float) -> float:
            if t not in cache:
                z = dsp.rx_matched(r, self.cfg.ratio, self.cfg.rolloff, t, frame.PREAMBLE_LEN)
                seg = z.reshape(frame.PREAMBLE_SEGMENTS, _SEG) * ref
                cache[t] = float(np.sum(np.abs(np.sum(seg, axis=1)) ** 2))
            return cache[t]

        step = 0.3
        for _ in range(4):
            a, b, c = energy(first - step), energy(first), energy(first + step)
            if b >= a and b >= c:
                break
            first += step if c > a else -step
        den = a - 2 * b + c
        return first + (0.5 * step * (a - c) / den if den < 0 else 0.0)

    # -- the receiver ---------------------------------------------------------------------
    def receive(self, r: np.ndarray) -> RxResult:
        """Find, synchronise and demodulate the one burst in ``r`` (complex64 samples)."""
        cfg = self.cfg
        rho = cfg.sps
        r = np.asarray(r, dtype=np.complex64)
        if r.size < self._tmpl_len + 8:
            return RxResult("no_sync")
        det = self._detect(r)
        if det is None:
            return RxResult("no_sync")
        n, frac, nu_c, metric = det
        if abs(nu_c) * cfg.sample_rate_hz > 0.01 * cfg.symbol_rate_hz:
            r = dsp.rotate(r, -nu_c)
            nu_sym = 0.0  # removed at the sample level
        else:
            nu_sym = nu_c * rho  # cycles/symbol, removed at the symbol level
        first = self._timing(r, n + frac + self._p_peak, nu_sym / rho)
        n_known = frame.PREAMBLE_LEN + frame.HEADER_SYMBOLS
        if first + (n_known + 8) * rho >= r.size:
            return RxResult("truncated", metric=metric)
        z = dsp.rx_matched(r, cfg.ratio, cfg.rolloff, first, n_known)
        kp = np.arange(frame.PREAMBLE_LEN)
        x = z[: frame.PREAMBLE_LEN] * np.conj(frame.PREAMBLE) * dsp.cis(-nu_sym * kp)
        spec = np.abs(np.fft.fft(x, _FINE_NFFT))
        b = int(np.argmax(spec))
        sa, sb, sc = spec[b - 1], spec[b], spec[(b + 1) % _FINE_NFFT]
        den = sa - 2 * sb + sc
        nu_f = (b + (0.5 * (sa - sc) / den if den < 0 else 0.0)) / _FINE_NFFT
        nu_f = nu_f - 1.0 if nu_f > 0.5 else nu_f
        nu = nu_sym + nu_f  # cycles/symbol
        g0 = complex(np.mean(x * dsp.cis(-nu_f * kp)))
        if g0 == 0:
            return RxResult("no_sync", metric=metric)
        kh = np.arange(frame.PREAMBLE_LEN, n_known)
        hs = (z[frame.PREAMBLE_LEN :] * dsp.cis(-nu * kh) / g0).real
        hdr = frame.decode_header(hs)
        mc = by_id(hdr.modcod_id) if hdr is not None else None
        if hdr is None or mc is None or hdr.df_len > mc.capacity_bytes:
            return RxResult("header", freq_offset_hz=self._hz(nu, nu_c, nu_sym), metric=metric)
        lay = cfg.layout(mc, hdr.df_len)
        if first + (lay.n_symbols - 1 + 4) * rho >= r.size:
            return RxResult("truncated", hdr, metric=metric)
        z = dsp.rx_matched(r, cfg.ratio, cfg.rolloff, first, lay.n_symbols)
        # reference blocks: preamble + re-encoded header (24 × 32 symbols), then the pilots
        known = _known_symbols(hdr)
        ref_idx = np.concatenate([np.arange(n_known), lay.pilot_idx.ravel()])
        ref_sym = np.concatenate([known, np.tile(frame.PILOTS, lay.n_pilot_blocks)])
        raw = z[ref_idx] * np.conj(ref_sym)
        sizes = np.concatenate(
            [np.full(n_known // 32, 32), np.full(lay.n_pilot_blocks, frame.PILOT_LEN)]
        )
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        kk = np.add.reduceat(ref_idx.astype(np.float64), bounds[:-1]) / sizes

        def gains(nu_: float) -> np.ndarray:
            return np.add.reduceat(raw * dsp.cis(-nu_ * ref_idx), bounds[:-1]) / sizes

        # residual frequency: LS slopes of the unwrapped reference phases, first over the
        # known block (768 symbols), then over the whole frame (a long baseline)
        n_kb = n_known // 32
        for span in (n_kb, kk.size):
            gg = gains(nu)
            if span < 3:
                continue
            ph = np.unwrap(np.angle(gg[:span]))
            nu += _wls_slope(kk[:span], ph, np.abs(gg[:span]) ** 2) / (2 * math.pi)
        gg = gains(nu)
        gs = self._smooth(kk, gg)
        zc = dsp.rotate(z, -nu)
        g_ref = np.interp(ref_idx, kk, gs.real) + 1j * np.interp(ref_idx, kk, gs.imag)
        resid = zc[ref_idx] - g_ref * ref_sym
        n0 = float(np.mean(np.abs(resid) ** 2)) + 1e-12
        p_sig = float(np.mean(np.abs(gs) ** 2))
        esn0 = 10 * math.log10(max(p_sig / n0, 1e-12))
        d = np.empty(lay.n_data, dtype=np.complex64)
        n0_sym = np.empty(lay.n_data, dtype=np.float32)
        _equalise(zc, lay.data_idx, kk, gs.real.copy(), gs.imag.copy(), n0, d, n0_sym)
        llr = cst.llr(d, _constellation(mc), n0_sym, method=cfg.llr_method)
        if mc.bits_per_symbol > 2:
            llr = interleaver.deinterleave(llr, mc.bits_per_symbol, _reverse_columns(mc))
        return RxResult(
            "ok",
            hdr,
            np.asarray(llr, dtype=np.float32),
            self._hz(nu, nu_c, nu_sym),
            first,
            metric,
            esn0,
        )

    def _hz(self, nu: float, nu_c: float, nu_sym: float) -> float:
        """Total carrier estimate [Hz] (the sample-level part plus the symbol-level part)."""
        sample_level = nu_c if nu_sym == 0.0 else 0.0
        return sample_level * self.cfg.sample_rate_hz + nu * self.cfg.symbol_rate_hz

    def _smooth(self, k: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Average each reference gain with its neighbours within the tracking window."""
        half = self._tracking_window
        if half < 32:
            return g
        out = np.empty_like(g)
        lo = np.searchsorted(k, k - half, side="left")
        hi = np.searchsorted(k, k + half, side="right")
        cs = np.concatenate([[0], np.cumsum(g)])
        out[:] = (cs[hi] - cs[lo]) / (hi - lo)
        return out


def decode_data_field(mc: Modcod, df_len: int, llr: np.ndarray, max_iter: int = 50):
    """LDPC-decode a frame's LLRs; returns ``(data_field bytes | None, iterations, ok)``.

    The shortened information bits get :data:`LLR_KNOWN_ZERO`; the data field is
    descrambled and its CRC-32 checked (None when the decoder did not converge or the CRC
    fails).
    """
    code = ldpc_code(mc.rate)
    nb = 8 * df_len
    full = np.empty(mc.n, dtype=np.float32)
    full[:nb] = llr[:nb]
    full[nb : mc.k] = LLR_KNOWN_ZERO
    full[mc.k :] = llr[nb : nb + mc.n - mc.k]
    res = code.decode(full, max_iter=max_iter)
    df = frame.scramble_bytes(np.packbits(res.info_bits[:nb])).tobytes()
    ok = bool(res.codeword_ok) and frame.check_crc32(df)
    return (df if ok else None), int(res.iterations), bool(res.codeword_ok)
