"""The emulator's configuration file (TOML), loaded into typed objects.

::

    [emulator]
    stats_interval_s = 10.0        # periodic stats log line [s] (0 = off)
    max_payload_bytes = 16384      # largest accepted PDU payload [bytes] (<= 65531; PDUs
                                   # longer than a frame's data field are fragmented)
    max_tx_time_s = 2592000.0      # tx_time horizon [emulated s] (30 days); later = bad_tx_time
    max_bursts_in_flight = 64      # PDUs per link accepted and not yet delivered or lost;
                                   # above it the input is not read (back-pressure)
    keys = "run/keys"              # optional: CURVE on every endpoint (flowgraphs.keys);
    node = "channel"               # this emulator's secret key is <keys>/<node>.key_secret

    [[link]]
    id = "c1"                      # link id: [A-Za-z0-9_-]+
    in = "ipc:///tmp/satfl-c1-in"  # defaults: ipc:///tmp/satfl-<id>-{in,out,status}
    out = "ipc:///tmp/satfl-c1-out"
    status = "ipc:///tmp/satfl-c1-status"
    modcod = "acm"                 # "acm" (per frame, from the reported Es/N0) or a MODCOD
                                   # name, e.g. "qpsk-1/2" (flowgraphs.modcod.MODCODS)
    acm_margin_db = 1.0            # subtracted from the predicted Es/N0 before the table [dB]
    acm_prediction = "feedback"    # feedback (receiver SNR reports, closed loop) | predict
                                   # (link budget + orbit, open loop) | genie (realised)
    acm_feedback_delay_s = 0.01    # SNR report age beyond the round trip, "feedback" [s]
    rolloff = 0.05                 # RRC roll-off α: 0.05 | 0.10 | 0.20 | 0.25 | 0.35
    symbol_rate_hz = 4761904.76    # R_s; default B/(1+α) with B = params.bandwidth_hz
    sample_rate_hz = 5.0e6         # f_s; default B; f_s/R_s = P/Q (Q <= 64), f_s >= R_s(1+α)
    pilot_spacing = 0              # data symbols between pilot blocks; 0 = the rule of
                                   # flowgraphs.frame.pilot_spacing_for(R_s, f_D)
    seed = 1                       # noise, lead-in, fading and shadowing of this link
    fading_max_doppler_hz = 5.0    # f_D of the diffuse multipath (0 = no fading)
    doppler_precomp = "residual"   # none | full | residual (orbit-predicted pre-compensation)
    residual_hz = 300.0            # pre-compensation error [Hz] (residual)
    max_iterations = 50            # LDPC decoder iterations at most
    llr = "maxlog"                 # soft demapper: maxlog | exact
    realtime = false               # pace frames to the wall clock
    guard_s = 0.0                  # gap after each frame [s]
    tx_node = "c1"                 # with [emulator] keys: the only node admitted on in and
    rx_node = "satellite"          # status, and the only one on out

    [link.orbit]                   # circular orbit (channel.CircularOrbit)
    altitude_m = 600e3
    inclination_deg = 53.0
    raan_deg = 0.0
    phase_deg = 0.0

    [link.site]                    # ground cluster (channel.GroundSite)
    lat_deg = 48.1
    lon_deg = 11.6
    alt_m = 500.0

    [link.params]                  # any channel.LinkParams field (bandwidth_hz, rician_k_db, ...)
    min_elevation_deg = 10.0

    [link.schedule]                # optional: visibility from these windows instead of the
    windows = [[0.0, 60.0]]        # orbit (the paper's idealised slots), at a fixed elevation
    elevation_deg = 45.0

    [[link]]                       # an inter-satellite link in the same emulator
    id = "isl-p0s0-p1s0"
    kind = "isl"                   # sat_ground (default: [link.orbit] over [link.site]) | isl
    [link.orbit]                   # the sending satellite
    raan_deg = 0.0
    [link.peer]                    # the receiving satellite (channel.CircularOrbit keys)
    raan_deg = 90.0
    [link.isl]                     # channel.isl.IslRules: when the ISL is usable
    grazing_altitude_m = 80e3      # the line of sight clears the Earth by this much [m]
    max_range_m = 5000e3           # [m]
    max_slew_deg_s = 1.0           # tracking rate of both terminals [deg/s]
    [link.params]                  # starts from channel.isl.isl_link_params() (23 GHz, 5 MHz,
    tx_power_dbm = 33.0            # 33 dBm, 35 + 35 dBi, 500 K, no atmosphere or shadowing)

An ``isl`` link has no ``[link.site]`` or ``[link.schedule]``; its fading defaults to off
(``fading_max_doppler_hz = 0``: free space has no multipath).

Errors raise :class:`flowgraphs.errors.ConfigError` naming the file and the key, at start-up.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channel import (
    CircularOrbit,
    GroundSite,
    LinkGeometry,
    LinkParams,
    RicianFading,
    ScheduledLinkGeometry,
)
from channel.isl import IslGeometry, IslRules, isl_link_params
from flowgraphs import dsp as _dsp
from flowgraphs import modcod as _modcod
from flowgraphs.errors import ConfigError

DEFAULT_MAX_TX_TIME_S = 30 * 86400.0  # tx_time horizon [emulated s]
DEFAULT_MAX_IN_FLIGHT = 64  # PDUs accepted by a link's input, not yet delivered or lost
DEFAULT_ROLLOFF = 0.05
DEFAULT_FADING_DOPPLER_HZ = 5.0  # diffuse multipath of a static ground terminal (docs)
DEFAULT_RESIDUAL_HZ = 300.0  # orbit-predicted pre-compensation error (docs)
ROLLOFFS = (0.05, 0.10, 0.20, 0.25, 0.35)

__all__ = ["ROLLOFFS", "EmulatorConfig", "LinkConfig", "load_config", "parse_config"]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PRECOMP = ("none", "full", "residual")
LINK_KINDS = ("sat_ground", "isl")


@dataclass(frozen=True)
class LinkConfig:
    """One link of the emulator (see the module docstring for the keys)."""

    id: str
    in_addr: str
    out_addr: str
    status_addr: str
    modcod: str = "acm"
    acm_margin_db: float = 1.0
    acm_prediction: str = "feedback"
    acm_feedback_delay_s: float = 0.01
    sample_rate_hz: float = 5.0e6
    symbol_rate_hz: float = 5.0e6 / (1 + DEFAULT_ROLLOFF)
    rolloff: float = DEFAULT_ROLLOFF
    pilot_spacing: int = 1440
    seed: int = 0
    fading_max_doppler_hz: float = DEFAULT_FADING_DOPPLER_HZ
    doppler_precomp: str = "residual"
    residual_hz: float = DEFAULT_RESIDUAL_HZ
    max_iterations: int = 50
    llr: str = "maxlog"
    realtime: bool = False
    guard_s: float = 0.0
    tx_node: str | None = None  # CURVE: the enrolled node admitted on in and status
    rx_node: str | None = None  # CURVE: the enrolled node admitted on out
    orbit: CircularOrbit = field(default_factory=CircularOrbit)
    site: GroundSite = field(default_factory=lambda: GroundSite(48.1, 11.6, 500.0, "munich"))
    params: LinkParams = field(default_factory=LinkParams)
    schedule: tuple[tuple[float, float], ...] | None = None
    schedule_elevation_deg: float = 45.0
    kind: str = "sat_ground"
    peer: CircularOrbit | None = None
    isl: IslRules | None = None

    def modem(self) -> Any:
        """The link's :class:`flowgraphs.modem.ModemConfig`."""
        from flowgraphs.modem import ModemConfig

        return ModemConfig(
            self.sample_rate_hz,
            self.symbol_rate_hz,
            self.rolloff,
            self.pilot_spacing,
            self.fading_max_doppler_hz,
            self.llr,
        )

    def policy(self) -> Any:
        """The link's :class:`flowgraphs.burst_scheduler.AcmPolicy`."""
        from flowgraphs.burst_scheduler import AcmPolicy

        return AcmPolicy(
            self.modcod, self.acm_margin_db, self.acm_prediction, self.acm_feedback_delay_s
        )

    @property
    def occupied_bandwidth_hz(self) -> float:
        """:math:`R_s(1+\\alpha)` [Hz]."""
        return self.symbol_rate_hz * (1 + self.rolloff)

    def geometry(self) -> LinkGeometry | ScheduledLinkGeometry | IslGeometry:
        """The link's geometry (shadowing/rain seeded by ``seed``).

        An ``isl`` link is :class:`channel.isl.IslGeometry` from ``orbit`` to ``peer``. With a
        ``[link.schedule]`` the link is visible only inside the given windows, at a
        fixed elevation (:class:`channel.ScheduledLinkGeometry`, the paper's idealised slots);
        otherwise it follows the orbit over the site (:class:`channel.LinkGeometry`).
        """
        if self.kind == "isl":
            assert self.peer is not None
            return IslGeometry(self.orbit, self.peer, self.params, self.isl, seed=self.seed)
        if self.schedule is not None:
            return ScheduledLinkGeometry(
                list(self.schedule),
                self.params,
                self.schedule_elevation_deg,
                self.orbit.altitude_m,
                seed=self.seed,
            )
        return LinkGeometry(self.orbit, self.site, self.params, seed=self.seed)

    def fading(self) -> RicianFading | None:
        """The link's :class:`channel.RicianFading`, or None when f_D = 0."""
        if self.fading_max_doppler_hz <= 0:
            return None
        return RicianFading(self.params.rician_k_db, self.fading_max_doppler_hz, seed=self.seed)

    def channel(self, realtime: bool | None = None) -> Any:
        """A :class:`flowgraphs.link_channel.LinkChannel` for this link (needs GNU Radio)."""
        from flowgraphs.link_channel import LinkChannel

        return LinkChannel(
            self.id,
            self.geometry(),
            self.fading(),
            self.modem(),
            policy=self.policy(),
            seed=self.seed,
            doppler_precomp=self.doppler_precomp,
            residual_hz=self.residual_hz,
            realtime=self.realtime if realtime is None else realtime,
            guard_s=self.guard_s,
            max_iterations=self.max_iterations,
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """The whole file: emulator options and its links."""

    links: tuple[LinkConfig, ...]
    stats_interval_s: float = 10.0
    max_payload_bytes: int = 16384
    max_tx_time_s: float = DEFAULT_MAX_TX_TIME_S
    max_bursts_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    source: str = "<config>"
    keys: str | None = None  # keys directory: CURVE on every endpoint (flowgraphs.keys)
    node: str = "channel"  # this emulator's node name in the keys directory


def default_endpoints(link_id: str) -> tuple[str, str, str]:
    """``ipc:///tmp/satfl-<id>-in``, ``-out``, ``-status``."""
    return tuple(f"ipc:///tmp/satfl-{link_id}-{p}" for p in ("in", "out", "status"))  # type: ignore[return-value]


def _num(where: str, d: dict[str, Any], key: str, default: float, lo: float | None = None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"{where}.{key}: expected a finite number, got {v!r}")
    if lo is not None and v < lo:
        raise ConfigError(f"{where}.{key}: must be >= {lo:g}, got {v!r}")
    return float(v)


def _node_name(where: str, d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    if v is not None and (not isinstance(v, str) or not _ID.match(v)):
        raise ConfigError(f"{where}.{key}: expected a node name of [A-Za-z0-9_-], got {v!r}")
    return v


def _link(src: str, i: int, d: dict[str, Any]) -> LinkConfig:
    where = f"{src}: link[{i}]"
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be a table")
    known = {f for f in LinkConfig.__dataclass_fields__} | {"in", "out", "status"}
    known -= {"in_addr", "out_addr", "status_addr", "schedule_elevation_deg"}
    for k in d:
        if k not in known:
            raise ConfigError(f"{where}.{k}: unknown key")
    lid = d.get("id")
    if not isinstance(lid, str) or not _ID.match(lid):
        raise ConfigError(f"{where}.id: expected a name of [A-Za-z0-9_-], got {lid!r}")
    where = f"{src}: link {lid!r}"
    kind = d.get("kind", "sat_ground")
    if kind not in LINK_KINDS:
        raise ConfigError(f"{where}.kind: expected one of {LINK_KINDS}, got {kind!r}")
    if kind == "isl":
        for k in ("site", "schedule"):
            if k in d:
                raise ConfigError(f"{where}.{k}: an isl link has no [link.{k}]")
        if "peer" not in d:
            raise ConfigError(f"{where}.peer: an isl link needs [link.peer] (the other satellite)")
    elif "peer" in d or "isl" in d:
        k = "peer" if "peer" in d else "isl"
        raise ConfigError(f'{where}.{k}: only an isl link (kind = "isl") has [link.{k}]')
    ep = default_endpoints(lid)
    addrs = []
    for k, dflt in zip(("in", "out", "status"), ep, strict=True):
        a = d.get(k, dflt)
        if not isinstance(a, str) or not a.startswith(("ipc://", "tcp://", "inproc://")):
            raise ConfigError(f"{where}.{k}: expected an ipc:// or tcp:// endpoint, got {a!r}")
        addrs.append(a)
    mcod = d.get("modcod", "acm")
    if mcod != "acm":
        try:
            _modcod.by_name(mcod)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}.modcod: {e}") from e
    pred = d.get("acm_prediction", "feedback")
    if pred not in ("predict", "feedback", "genie"):
        raise ConfigError(
            f"{where}.acm_prediction: expected 'predict', 'feedback' or 'genie', got {pred!r}"
        )
    pre = d.get("doppler_precomp", "residual")
    if pre not in _PRECOMP:
        raise ConfigError(f"{where}.doppler_precomp: expected one of {_PRECOMP}, got {pre!r}")
    llr = d.get("llr", "maxlog")
    if llr not in ("maxlog", "exact"):
        raise ConfigError(f"{where}.llr: expected 'maxlog' or 'exact', got {llr!r}")
    seed = d.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}.seed: expected an integer >= 0, got {seed!r}")
    rt = d.get("realtime", False)
    if not isinstance(rt, bool):
        raise ConfigError(f"{where}.realtime: expected true or false, got {rt!r}")
    orbit_keys = _orbit_keys(where, "orbit", _table(where, d, "orbit"))
    try:
        orbit = CircularOrbit(**orbit_keys)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.orbit: {e}") from e
    try:
        site = GroundSite(
            **{"lat_deg": 48.1, "lon_deg": 11.6, "alt_m": 500.0, "name": lid, **d.get("site", {})}
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.site: {e}") from e
    base = isl_link_params() if kind == "isl" else LinkParams()
    try:
        params = base.with_updates(**d.get("params", {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.params: {e}") from e
    peer, rules = None, None
    if kind == "isl":
        peer_keys = {"epoch": orbit.epoch, **_orbit_keys(where, "peer", _table(where, d, "peer"))}
        try:
            peer = CircularOrbit(**peer_keys)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}.peer: {e}") from e
        isl_keys = _table(where, d, "isl")
        try:
            rules = IslRules(**isl_keys)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}.isl: {e}") from e
    schedule, sched_el = _schedule(where, d.get("schedule"), params)
    fs, rs, alpha = _rates(where, d, params)
    fd = _num(
        where,
        d,
        "fading_max_doppler_hz",
        0.0 if kind == "isl" else DEFAULT_FADING_DOPPLER_HZ,
        0.0,
    )
    ps = d.get("pilot_spacing", 0)
    if isinstance(ps, bool) or not isinstance(ps, int) or not 0 <= ps <= 100_000:
        raise ConfigError(f"{where}.pilot_spacing: expected an integer 0..100000, got {ps!r}")
    if ps == 0:
        from flowgraphs.frame import pilot_spacing_for

        ps = pilot_spacing_for(rs, fd)
    residual = _num(where, d, "residual_hz", DEFAULT_RESIDUAL_HZ)
    _check_acquisition(where, pre, residual, rs, orbit, params, peer)
    iters = d.get("max_iterations", 50)
    if isinstance(iters, bool) or not isinstance(iters, int) or not 1 <= iters <= 1000:
        raise ConfigError(f"{where}.max_iterations: expected an integer 1..1000, got {iters!r}")
    return LinkConfig(
        id=lid,
        in_addr=addrs[0],
        out_addr=addrs[1],
        status_addr=addrs[2],
        modcod=mcod,
        acm_margin_db=_num(where, d, "acm_margin_db", 1.0),
        acm_prediction=pred,
        acm_feedback_delay_s=_num(where, d, "acm_feedback_delay_s", 0.01, 0.0),
        sample_rate_hz=fs,
        symbol_rate_hz=rs,
        rolloff=alpha,
        pilot_spacing=ps,
        seed=seed,
        fading_max_doppler_hz=fd,
        doppler_precomp=pre,
        residual_hz=residual,
        max_iterations=iters,
        llr=llr,
        realtime=rt,
        guard_s=_num(where, d, "guard_s", 0.0, 0.0),
        tx_node=_node_name(where, d, "tx_node"),
        rx_node=_node_name(where, d, "rx_node"),
        orbit=orbit,
        site=site,
        params=params,
        schedule=schedule,
        schedule_elevation_deg=sched_el,
        kind=kind,
        peer=peer,
        isl=rules,
    )


def _orbit_keys(where: str, key: str, t: dict[str, Any]) -> dict[str, Any]:
    """An orbit table's keys, with ``epoch`` as a timezone-aware datetime (TOML datetime or
    an ISO-8601 string)."""
    out = dict(t)
    ep = out.get("epoch")
    if isinstance(ep, str):
        from datetime import datetime

        try:
            ep = datetime.fromisoformat(ep.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{where}.{key}.epoch: not an ISO-8601 time: {ep!r}") from None
    if ep is not None:
        if not hasattr(ep, "tzinfo") or not hasattr(ep, "hour"):
            raise ConfigError(f"{where}.{key}.epoch: expected a date and time, got {ep!r}")
        if ep.tzinfo is None:
            raise ConfigError(f"{where}.{key}.epoch: needs a time zone (append Z for UTC)")
        out["epoch"] = ep
    return out


def _table(where: str, d: dict[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(f"{where}.{key}: must be a table")
    return v


def acquisition_range_hz(symbol_rate_hz: float) -> float:
    """The carrier offset the receiver acquires with at most ≈ 1 dB of detection loss [Hz]:
    :math:`R_s/128` (a quarter cycle over the detector's 32-symbol segments; its frequency
    estimate is unambiguous up to :math:`R_s/64`)."""
    return symbol_rate_hz / 128.0


def _check_acquisition(
    where: str,
    precomp: str,
    residual_hz: float,
    rs: float,
    orbit: Any,
    params: LinkParams,
    peer: Any = None,
) -> None:
    """The carrier offset the receiver will meet must be within its acquisition range."""
    lim = acquisition_range_hz(rs)
    if precomp == "residual" and abs(residual_hz) > lim:
        raise ConfigError(
            f"{where}.residual_hz: {residual_hz:g} Hz exceeds the receiver's acquisition range "
            f"±R_s/128 = ±{lim:.0f} Hz at R_s = {rs:.6g} Hz"
        )
    if precomp == "none":
        from channel.constants import SPEED_OF_LIGHT_M_S

        v = orbit.mean_motion_rad_s * orbit.semi_major_axis_m
        if peer is not None:  # head-on relative velocity of two satellites
            v += peer.mean_motion_rad_s * peer.semi_major_axis_m
        fd = v * params.carrier_hz / SPEED_OF_LIGHT_M_S
        if fd > 2 * lim:
            raise ConfigError(
                f"{where}.doppler_precomp: without pre-compensation the Doppler reaches "
                f"±{fd:.0f} Hz, beyond the receiver's frequency range ±{2 * lim:.0f} Hz "
                f"(R_s/64 at R_s = {rs:.6g} Hz); use 'residual' (the default) or 'full'"
            )


def _rates(where: str, d: dict[str, Any], params: LinkParams) -> tuple[float, float, float]:
    """(f_s, R_s, α) from the keys; defaults R_s = B/(1+α), f_s = B; errors name the key."""
    alpha = d.get("rolloff", DEFAULT_ROLLOFF)
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float)
        or not any(abs(alpha - a) < 1e-12 for a in ROLLOFFS)
    ):
        raise ConfigError(f"{where}.rolloff: expected one of {ROLLOFFS}, got {alpha!r}")
    alpha = float(alpha)
    b = params.bandwidth_hz
    rs = _num(where, d, "symbol_rate_hz", b / (1 + alpha), 1.0)
    if rs * (1 + alpha) > b * (1 + 1e-9):
        raise ConfigError(
            f"{where}.symbol_rate_hz: the occupied bandwidth R_s(1+α) = "
            f"{rs * (1 + alpha):.6g} Hz exceeds the sub-channel, params.bandwidth_hz = {b:.6g} Hz"
        )
    fs = _num(where, d, "sample_rate_hz", b, 1.0)
    if fs < rs * (1 + alpha) * (1 - 1e-9):
        raise ConfigError(
            f"{where}.sample_rate_hz: {fs:.6g} Hz is below the occupied bandwidth "
            f"R_s(1+α) = {rs * (1 + alpha):.6g} Hz"
        )
    try:
        _dsp.rational_ratio(fs, rs)
    except ValueError as e:
        raise ConfigError(f"{where}.sample_rate_hz: {e}") from e
    return fs, rs, alpha


def _schedule(
    where: str, d: Any, params: LinkParams
) -> tuple[tuple[tuple[float, float], ...] | None, float]:
    """``[link.schedule]``: ``windows = [[aos_s, los_s], ...]``, ``elevation_deg = 45``."""
    if d is None:
        return None, 45.0
    w = f"{where}.schedule"
    if not isinstance(d, dict):
        raise ConfigError(f"{w}: must be a table")
    for k in d:
        if k not in ("windows", "elevation_deg"):
            raise ConfigError(f"{w}.{k}: unknown key")
    raw = d.get("windows")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{w}.windows: expected a non-empty list of [aos_s, los_s] pairs")
    out = []
    for i, pair in enumerate(raw):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or any(
                isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x)
                for x in pair
            )
            or not pair[1] > pair[0]
        ):
            raise ConfigError(f"{w}.windows[{i}]: expected [aos_s, los_s] with los > aos")
        out.append((float(pair[0]), float(pair[1])))
    out.sort()
    for i in range(1, len(out)):
        if out[i][0] < out[i - 1][1]:
            raise ConfigError(f"{w}.windows: windows overlap")
    el = _num(w, d, "elevation_deg", 45.0)
    if not params.min_elevation_deg <= el <= 90.0:
        raise ConfigError(f"{w}.elevation_deg: must be within [min_elevation_deg, 90], got {el}")
    return tuple(out), el


def parse_config(data: dict[str, Any], source: str = "<config>") -> EmulatorConfig:
    """Validate a parsed TOML document."""
    for k in data:
        if k not in ("emulator", "link"):
            raise ConfigError(f"{source}: {k}: unknown section (expected [emulator], [[link]])")
    emu = data.get("emulator", {})
    if not isinstance(emu, dict):
        raise ConfigError(f"{source}: emulator: must be a table")
    for k in emu:
        if k not in (
            "stats_interval_s",
            "max_payload_bytes",
            "max_tx_time_s",
            "max_bursts_in_flight",
            "keys",
            "node",
        ):
            raise ConfigError(f"{source}: emulator.{k}: unknown key")
    links_raw = data.get("link", [])
    if not isinstance(links_raw, list) or not links_raw:
        raise ConfigError(f"{source}: link: at least one [[link]] table is required")
    links = tuple(_link(source, i, d) for i, d in enumerate(links_raw))
    ids = [lk.id for lk in links]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: link.id: duplicate link ids {ids}")
    addrs = [a for lk in links for a in (lk.in_addr, lk.out_addr, lk.status_addr)]
    if len(set(addrs)) != len(addrs):
        raise ConfigError(f"{source}: link: two endpoints share an address")
    mp = emu.get("max_payload_bytes", 16384)
    if isinstance(mp, bool) or not isinstance(mp, int) or not 1 <= mp <= 0xFFFF - 4:
        raise ConfigError(f"{source}: emulator.max_payload_bytes: expected 1..65531, got {mp!r}")
    horizon = _num(f"{source}: emulator", emu, "max_tx_time_s", DEFAULT_MAX_TX_TIME_S)
    if not horizon > 0:
        raise ConfigError(f"{source}: emulator.max_tx_time_s: must be > 0, got {horizon!r}")
    cap = emu.get("max_bursts_in_flight", DEFAULT_MAX_IN_FLIGHT)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 100_000:
        raise ConfigError(
            f"{source}: emulator.max_bursts_in_flight: expected 1..100000, got {cap!r}"
        )
    keys = emu.get("keys")
    node = emu.get("node", "channel")
    if keys is not None and (not isinstance(keys, str) or not keys):
        raise ConfigError(f"{source}: emulator.keys: expected a keys directory, got {keys!r}")
    if not isinstance(node, str) or not _ID.match(node):
        raise ConfigError(f"{source}: emulator.node: expected [A-Za-z0-9_-]+, got {node!r}")
    if keys is not None:
        for lk in links:
            if lk.tx_node is None or lk.rx_node is None:
                raise ConfigError(
                    f"{source}: link {lk.id!r}: with emulator.keys every link names its "
                    "tx_node and rx_node (the enrolled nodes admitted on its endpoints)"
                )
    return EmulatorConfig(
        keys=keys,
        node=node,
        links=links,
        stats_interval_s=_num(f"{source}: emulator", emu, "stats_interval_s", 10.0, 0.0),
        max_payload_bytes=mp,
        max_tx_time_s=horizon,
        max_bursts_in_flight=cap,
        source=source,
    )


def load_config(path: str | Path) -> EmulatorConfig:
    """Load and validate a TOML config file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text (is it a TOML file?)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    return parse_config(data, str(p))
