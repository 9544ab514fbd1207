"""Constellations of satellites: Walker patterns and TLE sets, and their ephemeris.

A :class:`Constellation` is an ordered set of satellites, each with a plane index, a slot
in its plane and an :class:`~channel.orbit.Orbit`. :class:`Ephemeris` samples every
satellite's ECI state on one time grid and interpolates it anywhere in between, so that
window and link searches over many satellites are array operations.

Walker notation i:T/P/F (Walker 1984): T satellites in P equally populated planes
(S = T/P per plane) at inclination i, phasing F (0 ≤ F < P). In the *delta* pattern the
planes' nodes span 360°, in the *star* pattern (polar constellations such as Iridium) 180°:

.. math::
    \\Omega_p = p\\,\\frac{\\Delta}{P}, \\qquad
    u_{p,s} = s\\,\\frac{360°}{S} + p\\,F\\,\\frac{360°}{T}, \\qquad
    \\Delta = 360° \\text{ (delta)},\\ 180° \\text{ (star)}.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from channel.constants import EARTH_RADIUS_M
from channel.orbit import DEFAULT_EPOCH, CircularOrbit, Orbit, OrbitError, TleOrbit

__all__ = [
    "Constellation",
    "ConstellationError",
    "Ephemeris",
    "Satellite",
    "parse_walker",
]

_WALKER = re.compile(
    r"^\s*([0-9]+(?:\.[0-9]*)?)\s*:\s*([0-9]+)\s*/\s*([0-9]+)\s*/\s*([0-9]+)\s*$", re.ASCII
)
PATTERNS = ("delta", "star")
MAX_SATELLITES = 20000


class ConstellationError(ValueError):
    """Invalid constellation description (Walker string, TLE set, elements)."""


@dataclass(frozen=True)
class Satellite:
    """One satellite: ``id`` ([A-Za-z0-9_-]), ``plane`` and ``slot`` indices, its orbit."""

    id: str
    plane: int
    slot: int
    orbit: Orbit


def parse_walker(text: str) -> tuple[float, int, int, int]:
    """``"i:T/P/F"`` → (inclination [deg], T, P, F), validated.

    Raises :class:`ConstellationError` with a one-line reason (T not a multiple of P,
    F outside 0..P−1, inclination outside 0..180°).
    """
    m = _WALKER.match(text) if isinstance(text, str) else None
    if m is None:
        raise ConstellationError(
            f"a Walker constellation is written i:T/P/F (e.g. 53:24/4/1), got {text!r}"
        )
    inc, t, p, f = float(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4))
    if not 0.0 <= inc <= 180.0:
        raise ConstellationError(f"Walker inclination {inc:g} deg is outside 0..180")
    if t < 1 or p < 1:
        raise ConstellationError(f"Walker T and P must be >= 1, got T={t}, P={p}")
    if t > MAX_SATELLITES:
        raise ConstellationError(f"Walker T = {t} is more than {MAX_SATELLITES} satellites")
    if t % p:
        raise ConstellationError(f"Walker T = {t} is not a multiple of P = {p}")
    if not 0 <= f < p:
        raise ConstellationError(f"Walker phasing F = {f} must be in 0..P-1 = 0..{p - 1}")
    return inc, t, p, f


@dataclass(frozen=True)
class Constellation:
    """An ordered set of satellites sharing one epoch (emulated t = 0).

    Attributes
    ----------
    satellites : in plane-major, slot-minor order
    epoch : UTC epoch of t = 0 for every orbit
    pattern : "delta" | "star" (Walker) or "tle" (a TLE set)
    """

    satellites: tuple[Satellite, ...]
    epoch: datetime
    pattern: str = "delta"

    def __post_init__(self) -> None:
        if not self.satellites:
            raise ConstellationError("a constellation needs at least one satellite")
        ids = [s.id for s in self.satellites]
        if len(set(ids)) != len(ids):
            raise ConstellationError("satellite ids must be unique")

    @classmethod
    def walker(
        cls,
        spec: str,
        altitude_m: float,
        pattern: str = "delta",
        epoch: datetime = DEFAULT_EPOCH,
        j2: bool = True,
    ) -> Constellation:
        """A Walker constellation from ``"i:T/P/F"`` at ``altitude_m`` [m] (circular orbits).

        Satellite ids are ``p{plane}s{slot}`` (e.g. ``p0s3``).
        """
        inc, t, p, f = parse_walker(spec)
        if pattern not in PATTERNS:
            raise ConstellationError(f"Walker pattern must be one of {PATTERNS}, got {pattern!r}")
        span = 360.0 if pattern == "delta" else 180.0
        s_per = t // p
        sats = []
        try:
            for pi in range(p):
                for si in range(s_per):
                    orb = CircularOrbit(
                        altitude_m=altitude_m,
                        inclination_deg=inc,
                        raan_deg=pi * span / p,
                        phase_deg=(si * 360.0 / s_per + pi * f * 360.0 / t) % 360.0,
                        epoch=epoch,
                        j2=j2,
                    )
                    sats.append(Satellite(f"p{pi}s{si}", pi, si, orb))
        except OrbitError as e:
            raise ConstellationError(str(e)) from e
        return cls(tuple(sats), epoch, pattern)

    @classmethod
    def from_tle_text(
        cls, text: str, epoch: datetime | None = None, source: str = "<tle>"
    ) -> Constellation:
        """A constellation from many TLEs (3-line sets with a name line, or 2-line sets).

        ``epoch`` defaults to the latest TLE epoch. Planes are found by grouping satellites
        whose orbit normals lie within 2° of each other (one plane per group, ordered by the
        node's right ascension); slots follow the argument of latitude at the epoch. Ids are
        the TLE names reduced to [A-Za-z0-9_-] (made unique with a suffix).
        """
        lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
        sets: list[tuple[str, str, str]] = []
        i = 0
        while i < len(lines):
            if lines[i].startswith("1 ") and i + 1 < len(lines) and lines[i + 1].startswith("2 "):
                sets.append((f"SAT{len(sets)}", lines[i], lines[i + 1]))
                i += 2
            elif (
                i + 2 < len(lines)
                and lines[i + 1].startswith("1 ")
                and lines[i + 2].startswith("2 ")
            ):
                sets.append((lines[i].strip(), lines[i + 1], lines[i + 2]))
                i += 3
            else:
                raise ConstellationError(
                    f"{source}: line {_line_no(text, lines[i])}: expected a TLE name or line 1, "
                    f"got {lines[i][:40]!r}"
                )
        if not sets:
            raise ConstellationError(f"{source}: no TLE found")
        if len(sets) > MAX_SATELLITES:
            raise ConstellationError(
                f"{source}: {len(sets)} TLEs is more than {MAX_SATELLITES} satellites"
            )
        seen: dict[tuple[str, str], str] = {}
        for name, l1, l2 in sets:
            key = (l1[2:].strip(), l2[2:].strip())
            if key in seen:
                raise ConstellationError(
                    f"{source}: {name} has the same elements as {seen[key]} (a duplicate TLE)"
                )
            seen[key] = name
        orbits = []
        for name, l1, l2 in sets:
            try:
                orbits.append(TleOrbit(l1, l2, name))
            except OrbitError as e:
                raise ConstellationError(f"{source}: {name}: {e}") from e
        ep = epoch or max(o.epoch for o in orbits)
        orbits = [TleOrbit(o.line1, o.line2, o.name, ep) for o in orbits]
        ids = _unique_ids([o.name for o in orbits])
        pos, vel = zip(*(o.eci(np.zeros(1)) for o in orbits), strict=True)
        r = np.array([p[0] for p in pos])
        v = np.array([q[0] for q in vel])
        normal = np.cross(r, v)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        planes = _group_planes(normal)
        u = _arg_latitude_deg(r, normal)

        def plane_raan(g: int) -> float:  # Ω of the plane's mean normal (no wrap-around mean)
            h = normal[planes == g].sum(axis=0)
            om = math.degrees(math.atan2(h[0], -h[1])) % 360.0
            return om - 360.0 if om > 359.5 else om

        order = sorted(set(planes), key=plane_raan)
        sats = []
        for pi, g in enumerate(order):
            members = sorted(np.flatnonzero(planes == g), key=lambda k: u[k])
            for si, k in enumerate(members):
                sats.append(Satellite(ids[k], pi, si, orbits[k]))
        return cls(tuple(sats), ep, "tle")

    @classmethod
    def from_tle_file(cls, path: str | Path, epoch: datetime | None = None) -> Constellation:
        """Read a TLE set file; errors name the file."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConstellationError(f"cannot read TLE file {path}: {e.strerror}") from e
        except UnicodeDecodeError:
            raise ConstellationError(f"{path}: not a text file") from None
        return cls.from_tle_text(text, epoch, str(path))

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.satellites]

    @property
    def n_planes(self) -> int:
        return 1 + max(s.plane for s in self.satellites)

    def plane_members(self, plane: int) -> list[int]:
        """Indices of the satellites in ``plane``, in slot order."""
        return [i for i, s in enumerate(self.satellites) if s.plane == plane]

    def elements(self) -> list[dict[str, object]]:
        """Each satellite's circular elements at the epoch: a circular orbit's own; for a TLE
        the osculating ones of its state at t = 0:
        ``raan_deg`` = atan2(h_x, −h_y) of the orbit normal h = r × v, ``inclination_deg`` =
        acos(h_z/|h|), ``phase_deg`` the argument of latitude, ``altitude_km`` = |r| − R_E.
        """
        out: list[dict[str, object]] = []
        for s in self.satellites:
            o = s.orbit
            if isinstance(o, CircularOrbit):  # the mean elements it was built from
                out.append(
                    {
                        "id": s.id,
                        "plane": s.plane,
                        "slot": s.slot,
                        "raan_deg": o.raan_deg % 360.0,
                        "phase_deg": o.phase_deg % 360.0,
                        "altitude_km": o.altitude_m / 1e3,
                        "inclination_deg": o.inclination_deg,
                    }
                )
                continue
            r, v = (x[0] for x in o.eci(np.zeros(1)))
            h = np.cross(r, v)
            h /= np.linalg.norm(h)
            out.append(
                {
                    "id": s.id,
                    "plane": s.plane,
                    "slot": s.slot,
                    "raan_deg": float(np.degrees(np.arctan2(h[0], -h[1])) % 360.0),
                    "phase_deg": float(_arg_latitude_deg(r[None], h[None])[0]),
                    "altitude_km": float((np.linalg.norm(r) - EARTH_RADIUS_M) / 1e3),
                    "inclination_deg": float(np.degrees(np.arccos(np.clip(h[2], -1, 1)))),
                }
            )
        return out


def _line_no(text: str, line: str) -> int:
    for n, ln in enumerate(text.splitlines(), 1):
        if ln.rstrip() == line:
            return n
    return 0


def _unique_ids(names: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for n in names:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", n).strip("-")[:48] or "sat"
        cand, k = base, 1
        while cand in seen:
            k += 1
            cand = f"{base}-{k}"
        seen.add(cand)
        out.append(cand)
    return out


def _group_planes(normal: np.ndarray, tol_deg: float = 2.0) -> np.ndarray:
    """Group unit orbit normals (N, 3) into planes: greedy, within ``tol_deg`` of a seed."""
    labels = -np.ones(len(normal), dtype=int)
    cos_tol = math.cos(math.radians(tol_deg))
    g = 0
    for i in range(len(normal)):
        if labels[i] >= 0:
            continue
        close = (normal @ normal[i] >= cos_tol) & (labels < 0)
        labels[close] = g
        g += 1
    return labels


def _arg_latitude_deg(r: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Argument of latitude [deg] of positions r (N, 3) in planes with unit normals (N, 3)."""
    node = np.stack([normal[:, 2] * 0 + 1, np.zeros(len(r)), np.zeros(len(r))], -1)
    raan = np.arctan2(normal[:, 0], -normal[:, 1])
    node = np.stack([np.cos(raan), np.sin(raan), np.zeros(len(r))], -1)
    q = np.cross(normal, node)
    return np.degrees(np.arctan2(np.einsum("ij,ij->i", r, q), np.einsum("ij,ij->i", r, node))) % 360


class Ephemeris:
    """Every satellite's ECI state on a grid, with cubic Hermite interpolation between.

    Parameters
    ----------
    constellation : the satellites
    t_start_s, t_end_s : the interval [emulated s since the constellation's epoch]
    step_s : grid step h [s]

    Notes
    -----
    Between grid points t_k and t_k + h, with s = (t − t_k)/h,

    .. math::
        r(t) = (2s^3 - 3s^2 + 1) r_k + (s^3 - 2s^2 + s) h v_k
             + (-2s^3 + 3s^2) r_{k+1} + (s^3 - s^2) h v_{k+1}.

    Its error is :math:`\\le h^4 \\max|r^{(4)}| / 384 ≈ h^4 n^4 a / 384`: 0.3 mm for a LEO
    orbit (n ≈ 1.1e-3 rad/s, a ≈ 6900 km) at h = 10 s.
    """

    def __init__(
        self, constellation: Constellation, t_start_s: float, t_end_s: float, step_s: float = 10.0
    ) -> None:
        if not (math.isfinite(t_start_s) and math.isfinite(t_end_s) and t_end_s > t_start_s):
            raise ConstellationError("the ephemeris interval needs t_end > t_start")
        if not 0.0 < step_s <= 60.0:
            raise ConstellationError(f"ephemeris step must be in (0, 60] s, got {step_s}")
        self.constellation = constellation
        self.t0 = float(t_start_s)
        self.h = float(step_s)
        n = int(math.ceil((t_end_s - t_start_s) / step_s)) + 1
        self.t = self.t0 + self.h * np.arange(n)
        sats = constellation.satellites
        self.pos = np.empty((len(sats), n, 3))
        self.vel = np.empty((len(sats), n, 3))
        tle = [i for i, s in enumerate(sats) if isinstance(s.orbit, TleOrbit)]
        for i, s in enumerate(sats):
            if i not in tle:
                self.pos[i], self.vel[i] = s.orbit.eci(self.t)
        if tle:
            self._sgp4(tle)

    def _sgp4(self, idx: list[int]) -> None:
        from sgp4.api import SatrecArray

        sats = [self.constellation.satellites[i].orbit for i in idx]
        jd0 = self.constellation.epoch.timestamp() / 86400.0 + 2440587.5
        jd = jd0 + self.t / 86400.0
        jd_i = np.floor(jd)
        arr = SatrecArray([o._sat.model for o in sats])  # type: ignore[attr-defined]
        err, r_km, v_km_s = arr.sgp4(jd_i, jd - jd_i)
        if np.any(err):
            bad = sats[int(np.flatnonzero(np.any(err, axis=1))[0])]
            raise ConstellationError(f"SGP4 failed for {bad.name} (decayed orbit or bad elements)")
        self.pos[idx] = r_km * 1e3
        self.vel[idx] = v_km_s * 1e3

    @property
    def t_end(self) -> float:
        return float(self.t[-1])

    def at(self, sat: np.ndarray, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated position [m] and velocity [m/s], each (..., 3), of satellites ``sat``
        (integer indices) at times ``t_s`` [s] (broadcast together, within the grid)."""
        sat, t = np.broadcast_arrays(np.asarray(sat, dtype=int), np.asarray(t_s, dtype=float))
        x = (t - self.t0) / self.h
        k = np.clip(np.floor(x).astype(int), 0, self.t.size - 2)
        s = (x - k)[..., None]
        p0, p1 = self.pos[sat, k], self.pos[sat, k + 1]
        v0, v1 = self.vel[sat, k] * self.h, self.vel[sat, k + 1] * self.h
        s2, s3 = s * s, s * s * s
        pos = (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * v0
        pos += (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * v1
        vel = (6 * s2 - 6 * s) * p0 + (3 * s2 - 4 * s + 1) * v0
        vel += (-6 * s2 + 6 * s) * p1 + (3 * s2 - 2 * s) * v1
        return pos, vel / self.h
