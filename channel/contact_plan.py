"""The contact plan of a constellation: every satellite–ground window and ISL, with capacity.

A *contact* is an interval during which two nodes can exchange data: a satellite above a
station's elevation gate (``sat_ground``) or an inter-satellite link that passes
:class:`channel.isl.IslRules` (``isl``). Each carries a capacity profile — the rate
[bit/s] sampled across the contact, linear in between — and its volume

.. math:: V = \\frac18 \\int_{start}^{end} C(t)\\,dt \\;[\\text{bytes}].

``sat_ground`` rates are the Shannon capacity of the clear-sky budget of
:class:`channel.LinkParams` (free space + cosecant atmosphere, no shadowing or fading
realisation): :math:`C = B\\log_2(1 + \\mathrm{SNR}(d(t), \\theta(t)))`. ``isl`` rates come
from the terminal (:class:`channel.isl.RfTerminal` / :class:`~channel.isl.OpticalTerminal`).

Everything is computed on one ephemeris grid (default 10 s) with vectorised bisection of
each edge to < 0.1 ms; an event shorter than the grid step can be missed.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from channel.constants import SPEED_OF_LIGHT_M_S
from channel.constellation import Constellation, ConstellationError, Ephemeris
from channel.edges import bisect_edges, intervals
from channel.isl import IslRules, OpticalTerminal, RfTerminal, isl_metrics
from channel.link_budget import (
    LinkParams,
    atmospheric_loss_db,
    free_space_path_loss_db,
    noise_power_dbm,
)
from channel.orbit import GroundSite, gmst_rad, site_state_eci

__all__ = ["KINDS", "Contact", "ContactPlan", "contact_plan", "inter_plane_pairs"]

KINDS = ("sat_ground", "isl")
#: Largest satellites × time steps of one plan (48 bytes each for the ephemeris, about
#: three times that at the peak): Starlink's 1584-satellite shell over a day is 13.7 M.
MAX_SAT_STEPS = 20_000_000
_CHUNK = 2_000_000  # (pair × step) elements per vectorised block


@dataclass(frozen=True)
class Contact:
    """One contact ``src`` → ``dst`` over [start_s, end_s] (emulated s since the epoch).

    ``profile_t_s`` (absolute times, first = start, last = end) and ``rate_bps`` sample the
    rate; between samples it is linear. Contacts are full duplex: ``dst`` → ``src`` has the
    same profile.
    """

    kind: str
    src: str
    dst: str
    start_s: float
    end_s: float
    profile_t_s: tuple[float, ...]
    rate_bps: tuple[float, ...]
    max_range_m: float = 0.0
    max_doppler_hz: float = 0.0
    truncated: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def owlt_s(self) -> float:
        """One-way light time, upper bound over the contact [s]: max range / c."""
        return self.max_range_m / SPEED_OF_LIGHT_M_S

    @property
    def capacity_bytes(self) -> float:
        """:math:`\\frac18\\int C\\,dt` (trapezoid on the profile) [bytes]."""
        t, r = np.asarray(self.profile_t_s), np.asarray(self.rate_bps)
        return float(np.sum(0.5 * (r[1:] + r[:-1]) * np.diff(t)) / 8.0)

    def bytes_between(self, t0_s: float, t1_s: float) -> float:
        """Volume [bytes] between t0 and t1 (clipped to the contact)."""
        t0, t1 = max(t0_s, self.start_s), min(t1_s, self.end_s)
        if t1 <= t0:
            return 0.0
        return self._cum(t1) - self._cum(t0)

    def _cum(self, x: float) -> float:
        t, r = np.asarray(self.profile_t_s), np.asarray(self.rate_bps)
        k = int(np.clip(np.searchsorted(t, x, side="right") - 1, 0, t.size - 2))
        seg = np.sum(0.5 * (r[1 : k + 1] + r[:k]) * np.diff(t[: k + 1]))
        dt = x - t[k]
        slope = (r[k + 1] - r[k]) / max(t[k + 1] - t[k], 1e-12)
        return float((seg + r[k] * dt + 0.5 * slope * dt * dt) / 8.0)

    def finish_s(self, t_begin_s: float, nbytes: float) -> float | None:
        """When ``nbytes`` sent from ``t_begin_s`` are on the air [s], or None if they do not
        fit before the end. Within a segment the bits are
        :math:`r_k\\tau + (r_{k+1} - r_k)\\tau^2 / (2\\Delta_k)`, solved for τ."""
        t, r = np.asarray(self.profile_t_s), np.asarray(self.rate_bps)
        t0 = max(t_begin_s, self.start_s)
        if t0 >= self.end_s:
            return None if nbytes > 0 else t0
        need = nbytes * 8.0
        if need <= 0:
            return t0
        k = int(np.clip(np.searchsorted(t, t0, side="right") - 1, 0, t.size - 2))
        # rate at t0 (inside segment k)
        slope = (r[k + 1] - r[k]) / max(t[k + 1] - t[k], 1e-12)
        a_t, a_r = t0, r[k] + slope * (t0 - t[k])
        while k < t.size - 1:
            b_t, b_r = t[k + 1], r[k + 1]
            seg_bits = 0.5 * (a_r + b_r) * (b_t - a_t)
            if seg_bits >= need:
                a = 0.5 * (b_r - a_r) / max(b_t - a_t, 1e-12)
                if abs(a) < 1e-12 * max(a_r, 1.0):
                    tau = need / max(a_r, 1e-12)
                else:
                    disc = max(a_r * a_r + 4.0 * a * need, 0.0)
                    tau = (-a_r + math.sqrt(disc)) / (2.0 * a)
                return float(min(a_t + tau, b_t))
            need -= seg_bits
            k += 1
            a_t, a_r = b_t, b_r
        return None

    def to_dict(self, epoch: datetime) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "from": self.src,
            "to": self.dst,
            "start": _iso(epoch, self.start_s),
            "end": _iso(epoch, self.end_s),
            "start_s": self.start_s,
            "end_s": self.end_s,
            "duration_s": self.duration_s,
            "capacity_bytes": self.capacity_bytes,
            "owlt_s": self.owlt_s,
            "max_range_km": self.max_range_m / 1e3,
            "max_doppler_hz": self.max_doppler_hz,
            "truncated": self.truncated,
            "profile": {
                "t_s": [x - self.start_s for x in self.profile_t_s],
                "rate_bps": [float(x) for x in self.rate_bps],
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "contact") -> Contact:
        """Read one contact of a plan's JSON; every error is a one-line
        :class:`ConstellationError` naming ``where`` and the field."""

        def num(key: str, default: Any = None, lo: float | None = 0.0) -> float:
            v = d.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConstellationError(f"{where}.{key}: expected a finite number, got {v!r}")
            if lo is not None and v < lo:
                raise ConstellationError(f"{where}.{key}: must be >= {lo:g}, got {v!r}")
            return float(v)

        if not isinstance(d, dict):
            raise ConstellationError(f"{where}: expected an object")
        kind, src, dst = d.get("kind"), d.get("from"), d.get("to")
        if kind not in KINDS:
            raise ConstellationError(f"{where}.kind: expected one of {KINDS}, got {kind!r}")
        if not (isinstance(src, str) and isinstance(dst, str) and src and dst and src != dst):
            raise ConstellationError(f"{where}: from/to must be two different node names")
        start, end = num("start_s", lo=None), num("end_s", lo=None)
        if not end > start:
            raise ConstellationError(f"{where}: needs start_s < end_s")
        prof = d.get("profile")
        if not isinstance(prof, dict):
            raise ConstellationError(f"{where}.profile: expected an object with t_s and rate_bps")
        ts, rs = prof.get("t_s"), prof.get("rate_bps")
        if not (
            isinstance(ts, list) and isinstance(rs, list) and len(ts) >= 2 and len(ts) == len(rs)
        ):
            raise ConstellationError(f"{where}.profile: needs >= 2 matching t_s/rate_bps points")
        vals = [*ts, *rs]
        if any(isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x)
               for x in vals):  # fmt: skip
            raise ConstellationError(f"{where}.profile: every t_s and rate_bps must be finite")
        t = [start + float(x) for x in ts]
        r = [float(x) for x in rs]
        if any(b <= a for a, b in itertools.pairwise(t)) or min(r) < 0:
            raise ConstellationError(f"{where}.profile: t_s must rise and rates be >= 0")
        tol = 1e-6 * max(1.0, abs(end))
        if abs(t[0] - start) > tol or abs(t[-1] - end) > tol:
            raise ConstellationError(
                f"{where}.profile: t_s must run from 0 to duration (the contact's start to end)"
            )
        trunc = d.get("truncated", False)
        if not isinstance(trunc, bool):
            raise ConstellationError(f"{where}.truncated: expected true or false, got {trunc!r}")
        return cls(
            kind,
            src,
            dst,
            start,
            end,
            tuple(t),
            tuple(r),
            num("max_range_km", 0.0) * 1e3,
            num("max_doppler_hz", 0.0),
            trunc,
        )


def _iso(epoch: datetime, t_s: float) -> str:
    return (epoch + timedelta(seconds=float(t_s))).isoformat().replace("+00:00", "Z")


@dataclass
class ContactPlan:
    """Every contact of a constellation and its stations over [start_s, end_s]."""

    epoch: datetime
    start_s: float
    end_s: float
    contacts: list[Contact]
    satellites: list[dict[str, Any]] = field(default_factory=list)
    stations: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def nodes(self) -> set[str]:
        return (
            {c.src for c in self.contacts}
            | {c.dst for c in self.contacts}
            | {s["id"] for s in self.satellites}
            | {s["name"] for s in self.stations}
        )

    @property
    def satellite_ids(self) -> set[str]:
        return {s["id"] for s in self.satellites}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``docs/constellation.md``)."""
        return {
            "epoch": _iso(self.epoch, 0.0),
            "start": _iso(self.epoch, self.start_s),
            "end": _iso(self.epoch, self.end_s),
            "satellites": self.satellites,
            "stations": self.stations,
            "settings": self.settings,
            "contacts": [c.to_dict(self.epoch) for c in self.contacts],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<plan>") -> ContactPlan:
        """Load a plan written by :meth:`to_dict` (errors name ``source`` and the field)."""
        if not isinstance(d, dict):
            raise ConstellationError(f"{source}: a contact plan is a JSON object")
        try:
            epoch = datetime.fromisoformat(str(d["epoch"]).replace("Z", "+00:00"))
            start = datetime.fromisoformat(str(d["start"]).replace("Z", "+00:00")) - epoch
            end = datetime.fromisoformat(str(d["end"]).replace("Z", "+00:00")) - epoch
            raw = d["contacts"]
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            raise ConstellationError(f"{source}: missing or malformed field {e}") from None
        if epoch.tzinfo is None:
            raise ConstellationError(f"{source}: epoch needs a time zone (Z)")
        if not isinstance(raw, list):
            raise ConstellationError(f"{source}: contacts must be a list")
        if not end.total_seconds() > start.total_seconds():
            raise ConstellationError(f"{source}: end must be after start")
        contacts = [Contact.from_dict(c, f"{source}: contacts[{i}]") for i, c in enumerate(raw)]
        lo, hi = start.total_seconds() - 1e-6, end.total_seconds() + 1e-6
        for i, c in enumerate(contacts):
            if c.start_s < lo or c.end_s > hi:
                raise ConstellationError(f"{source}: contacts[{i}] lies outside the plan's horizon")
        sats = d.get("satellites", [])
        stations = d.get("stations", [])
        if not (isinstance(sats, list) and all(isinstance(s, dict) and "id" in s for s in sats)):
            raise ConstellationError(f"{source}: satellites must be a list of objects with id")
        if not (
            isinstance(stations, list)
            and all(isinstance(s, dict) and "name" in s for s in stations)
        ):
            raise ConstellationError(f"{source}: stations must be a list of objects with name")
        return cls(
            epoch,
            start.total_seconds(),
            end.total_seconds(),
            contacts,
            sats,
            stations,
            d.get("settings", {}) if isinstance(d.get("settings", {}), dict) else {},
        )


def _elevation_deg(rsat: np.ndarray, site_pos: np.ndarray, up: np.ndarray) -> np.ndarray:
    rho = rsat - site_pos
    rng = np.linalg.norm(rho, axis=-1)
    return np.degrees(np.arcsin(np.clip(np.einsum("...i,...i->...", rho, up) / rng, -1.0, 1.0)))


def inter_plane_pairs(constellation: Constellation) -> list[tuple[int, int]]:
    """Adjacent plane pairs (p, p+1), cyclically, that get inter-plane ISLs — all of them in a
    Walker delta; a Walker star has its *seam* between plane P−1 and plane 0, where the planes
    fly in opposite directions, and no links across it. For a TLE set (planes ordered by the
    node's right ascension Ω) the seam is the largest gap in Ω when it is more than 1.5 times
    the median of the others (a star-like layout); else there is none."""
    n = constellation.n_planes
    if n < 2:
        return []
    pairs = [(p, p + 1) for p in range(n - 1)]
    if n == 2:
        return pairs
    pattern = constellation.pattern
    if pattern == "star":
        return pairs
    if pattern == "tle":
        raan = []
        for p in range(n):
            idx = constellation.plane_members(p)
            r, v = constellation.satellites[idx[0]].orbit.eci(np.zeros(1))
            h = np.cross(r[0], v[0])
            raan.append(math.degrees(math.atan2(h[0], -h[1])) % 360.0)
        gaps = [(raan[(p + 1) % n] - raan[p]) % 360.0 for p in range(n)]
        k = int(np.argmax(gaps))
        others = [g for q, g in enumerate(gaps) if q != k]
        if gaps[k] > 1.5 * float(np.median(others)):
            return [(p, (p + 1) % n) for p in range(n) if p != k]
    return [*pairs, (n - 1, 0)]


def contact_plan(
    constellation: Constellation,
    stations: list[GroundSite],
    duration_s: float = 86400.0,
    t_start_s: float = 0.0,
    min_elevation_deg: float = 10.0,
    ground: LinkParams | None = None,
    rules: IslRules | None = None,
    terminal: RfTerminal | OpticalTerminal | None = None,
    step_s: float = 10.0,
    profile_step_s: float = 10.0,
) -> ContactPlan:
    """Every ground contact and ISL of ``constellation`` over [t_start, t_start + duration].

    Parameters
    ----------
    stations : ground stations (names must be unique and differ from satellite ids)
    min_elevation_deg : θ_min of every station [deg]
    ground : budget of the ground links (default :class:`channel.LinkParams`)
    rules : ISL availability (default :class:`channel.isl.IslRules`)
    terminal : ISL terminal (default :class:`channel.isl.RfTerminal`)
    step_s : ephemeris and search grid [s]; profile_step_s : capacity-profile spacing [s]
    """
    if not (math.isfinite(duration_s) and 0 < duration_s <= 31 * 86400.0):
        raise ConstellationError(f"the horizon must be in (0, 744] h, got {duration_s / 3600:g} h")
    if not 0.0 <= min_elevation_deg < 90.0:
        raise ConstellationError(
            f"minimum elevation must be in [0, 90) deg, got {min_elevation_deg}"
        )
    if not 0.0 < profile_step_s <= 3600.0:
        raise ConstellationError(f"profile step must be in (0, 3600] s, got {profile_step_s}")
    names = [s.name for s in stations]
    if len(set(names)) != len(names):
        raise ConstellationError(f"station names must be unique, got {names}")
    clash = set(names) & set(constellation.ids)
    if clash:
        raise ConstellationError(f"station names clash with satellite ids: {sorted(clash)}")
    ground = ground or LinkParams()
    rules = rules or IslRules()
    terminal = terminal or RfTerminal()
    t_end_s = t_start_s + duration_s
    n_steps = int(math.ceil(duration_s / step_s)) + 1
    size = len(constellation.satellites) * n_steps
    if size > MAX_SAT_STEPS:
        raise ConstellationError(
            f"{len(constellation.satellites)} satellites × {n_steps} time steps is more than "
            f"{MAX_SAT_STEPS:,} (about {MAX_SAT_STEPS * 48 / 1e9:.1f} GB of ephemeris); "
            "shorten the horizon or split the constellation"
        )
    eph = Ephemeris(constellation, t_start_s, t_end_s, step_s)
    t = eph.t
    sats = constellation.satellites
    theta0 = gmst_rad(constellation.epoch)
    spans: list[tuple[str, str, str, int, int, float, float, bool]] = []

    rows_per = max(1, _CHUNK // max(1, t.size))
    for g, site in enumerate(stations):
        spos, _, up = site_state_eci(site, theta0, t)
        mask = np.concatenate(
            [
                _elevation_deg(eph.pos[i : i + rows_per], spos[None], up[None]) >= min_elevation_deg
                for i in range(0, len(sats), rows_per)
            ]
        )

        def refine(
            rows: np.ndarray,
            lo: np.ndarray,
            hi: np.ndarray,
            st: np.ndarray,
            site: GroundSite = site,
        ) -> np.ndarray:
            def pred(x: np.ndarray) -> np.ndarray:
                p, _ = eph.at(rows, x)
                sp, _, u = site_state_eci(site, theta0, x)
                return _elevation_deg(p, sp, u) >= min_elevation_deg

            return bisect_edges(pred, lo, hi, st)

        for r, a, b, tr in intervals(mask, t, refine):
            spans.append(("sat_ground", site.name, sats[r].id, -1 - g, r, a, b, tr))

    if rules.intra_plane:
        pairs = []
        for p in range(constellation.n_planes):
            m = constellation.plane_members(p)
            if len(m) == 2:
                pairs.append((m[0], m[1]))
            elif len(m) > 2:
                pairs += [(m[s], m[(s + 1) % len(m)]) for s in range(len(m))]
        if pairs:
            a_idx = np.array([a for a, _ in pairs])
            b_idx = np.array([b for _, b in pairs])
            mask = np.concatenate(
                [
                    isl_metrics(
                        eph.pos[a_idx[i : i + rows_per]],
                        eph.vel[a_idx[i : i + rows_per]],
                        eph.pos[b_idx[i : i + rows_per]],
                        eph.vel[b_idx[i : i + rows_per]],
                        rules,
                    )["usable"]
                    for i in range(0, len(pairs), rows_per)
                ]
            )

            def refine_intra(
                rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, st: np.ndarray
            ) -> np.ndarray:
                def pred(x: np.ndarray) -> np.ndarray:
                    ra, va = eph.at(a_idx[rows], x)
                    rb, vb = eph.at(b_idx[rows], x)
                    return isl_metrics(ra, va, rb, vb, rules)["usable"]

                return bisect_edges(pred, lo, hi, st)

            for r, a, b, tr in intervals(mask, t, refine_intra):
                i, j = pairs[r]
                spans.append(("isl", sats[i].id, sats[j].id, i, j, a, b, tr))

    if rules.inter_plane:
        for p, q in inter_plane_pairs(constellation):
            mp = np.array(constellation.plane_members(p))
            mq = np.array(constellation.plane_members(q))
            mask = _inter_mask(eph.pos[mp], eph.vel[mp], eph.pos[mq], eph.vel[mq], rules)
            flat = mask.reshape(len(mp) * len(mq), -1)

            def refine_inter(
                rows: np.ndarray,
                lo: np.ndarray,
                hi: np.ndarray,
                st: np.ndarray,
                mp: np.ndarray = mp,
                mq: np.ndarray = mq,
            ) -> np.ndarray:
                ia, ib = np.divmod(rows, len(mq))

                def pred(x: np.ndarray) -> np.ndarray:
                    ra, va = eph.at(mp[None, :], x[:, None])  # (K, Sp, 3)
                    rb, vb = eph.at(mq[None, :], x[:, None])  # (K, Sq, 3)
                    k = np.arange(x.size)
                    d = np.linalg.norm(ra[:, :, None] - rb[:, None], axis=-1)  # (K, Sp, Sq)
                    mutual = (np.argmin(d[k, ia], axis=-1) == ib) & (
                        np.argmin(d[k, :, ib], axis=-1) == ia
                    )
                    gate = isl_metrics(ra[k, ia], va[k, ia], rb[k, ib], vb[k, ib], rules)
                    return mutual & gate["usable"]

                return bisect_edges(pred, lo, hi, st)

            for r, a, b, tr in intervals(flat, t, refine_inter):
                ia, ib = divmod(r, len(mq))
                i, j = int(mp[ia]), int(mq[ib])
                spans.append(("isl", sats[i].id, sats[j].id, i, j, a, b, tr))

    spans = [
        (*sp[:5], max(sp[5], t_start_s), min(sp[6], t_end_s), sp[7] or sp[6] >= t_end_s)
        for sp in spans
        if min(sp[6], t_end_s) > max(sp[5], t_start_s)
    ]
    contacts = _profiles(spans, eph, stations, theta0, ground, terminal, profile_step_s)
    contacts.sort(key=lambda c: (c.start_s, c.kind, c.src, c.dst))
    return ContactPlan(
        epoch=constellation.epoch,
        start_s=float(t_start_s),
        end_s=float(t_end_s),
        contacts=contacts,
        satellites=constellation.elements(),
        stations=[
            {"name": s.name, "lat_deg": s.lat_deg, "lon_deg": s.lon_deg, "alt_m": s.alt_m}
            for s in stations
        ],
        settings={
            "min_elevation_deg": min_elevation_deg,
            "pattern": constellation.pattern,
            "grazing_altitude_km": rules.grazing_altitude_m / 1e3,
            "max_isl_range_km": rules.max_range_m / 1e3,
            "max_slew_deg_s": rules.max_slew_deg_s,
            "isl_terminal": terminal.kind,
            "ground_bandwidth_hz": ground.bandwidth_hz,
            "step_s": step_s,
            "capacity": "Shannon bound of the clear-sky budget (sat_ground); terminal model (isl)",
        },
    )


def _inter_mask(
    ra: np.ndarray, va: np.ndarray, rb: np.ndarray, vb: np.ndarray, rules: IslRules
) -> np.ndarray:
    """(Sp, Sq, M): mutual nearest neighbours that pass the ISL gate."""
    d = np.linalg.norm(ra[:, None] - rb[None], axis=-1)  # (Sp, Sq, M)
    nb = np.argmin(d, axis=1)  # (Sp, M): nearest in q of each satellite of p
    na = np.argmin(d, axis=0)  # (Sq, M)
    sp, sq = d.shape[:2]
    mutual = (nb[:, None, :] == np.arange(sq)[None, :, None]) & (
        na[None, :, :] == np.arange(sp)[:, None, None]
    )
    out = np.zeros_like(mutual)
    ia, ib = np.nonzero(mutual.any(axis=2))
    if ia.size:
        g = isl_metrics(ra[ia], va[ia], rb[ib], vb[ib], rules)["usable"]
        out[ia, ib] = mutual[ia, ib] & g
    return out


def _profiles(
    spans: list[tuple[str, str, str, int, int, float, float, bool]],
    eph: Ephemeris,
    stations: list[GroundSite],
    theta0: float,
    ground: LinkParams,
    terminal: RfTerminal | OpticalTerminal,
    step: float,
) -> list[Contact]:
    """Sample every span's rate (vectorised over all spans at once)."""
    if not spans:
        return []
    times = []
    owner = []
    for n, sp in enumerate(spans):
        a, b = sp[5], sp[6]
        ts = np.append(np.arange(a, b, step), b)
        if ts.size >= 2 and ts[-1] - ts[-2] < 1e-9:
            ts = ts[:-1]
        if ts.size < 2:
            ts = np.array([a, b])
        times.append(ts)
        owner.append(np.full(ts.size, n))
    tt = np.concatenate(times)
    own = np.concatenate(owner)
    kind_g = np.array([sp[0] == "sat_ground" for sp in spans])[own]
    i_idx = np.array([sp[3] for sp in spans])[own]
    j_idx = np.array([sp[4] for sp in spans])[own]
    rate = np.zeros(tt.size)
    rng = np.zeros(tt.size)
    fd = np.zeros(tt.size)
    lam = SPEED_OF_LIGHT_M_S / ground.carrier_hz
    n_dbm = noise_power_dbm(ground.bandwidth_hz, ground.noise_figure_db, ground.noise_temp_k)
    for c0 in range(0, tt.size, _CHUNK):  # bounded memory for very many contacts
        blk = np.arange(c0, min(c0 + _CHUNK, tt.size))
        g_sel = blk[kind_g[blk]]
        for g, site in enumerate(stations):
            sel = g_sel[i_idx[g_sel] == -1 - g]
            if not sel.size:
                continue
            rs, vs = eph.at(j_idx[sel], tt[sel])
            sp, sv, up = site_state_eci(site, theta0, tt[sel])
            rho = rs - sp
            d = np.linalg.norm(rho, axis=-1)
            el = np.degrees(np.arcsin(np.clip(np.einsum("ij,ij->i", rho, up) / d, -1, 1)))
            rr = np.einsum("ij,ij->i", rho, vs - sv) / d
            snr = (
                ground.tx_power_dbm
                + ground.tx_antenna_gain_dbi
                + ground.rx_antenna_gain_dbi
                - free_space_path_loss_db(d, ground.carrier_hz)
                - atmospheric_loss_db(el, ground.atmospheric_zenith_db)
                - n_dbm
                - ground.implementation_loss_db
            )
            rate[sel] = ground.bandwidth_hz * np.log2(1.0 + 10.0 ** (snr / 10.0))
            rng[sel] = d
            fd[sel] = -rr / lam
        s_sel = blk[~kind_g[blk]]
        if s_sel.size:
            ra, va = eph.at(i_idx[s_sel], tt[s_sel])
            rb, vb = eph.at(j_idx[s_sel], tt[s_sel])
            d = np.linalg.norm(rb - ra, axis=-1)
            rr = np.einsum("ij,ij->i", rb - ra, vb - va) / np.maximum(d, 1e-3)
            rate[s_sel] = terminal.rate_bps(d)
            rng[s_sel] = d
            fd[s_sel] = terminal.doppler_hz(rr)
    out = []
    bounds = np.concatenate([[0], np.cumsum([ts.size for ts in times])])
    for n, sp in enumerate(spans):
        lo, hi = bounds[n], bounds[n + 1]
        out.append(
            Contact(
                kind=sp[0],
                src=sp[1],
                dst=sp[2],
                start_s=float(sp[5]),
                end_s=float(sp[6]),
                profile_t_s=tuple(float(x) for x in tt[lo:hi]),
                rate_bps=tuple(float(x) for x in rate[lo:hi]),
                max_range_m=float(rng[lo:hi].max()),
                max_doppler_hz=float(np.abs(fd[lo:hi]).max()),
                truncated=sp[7],
            )
        )
    return out
