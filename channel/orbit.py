"""Satellite orbits and ground sites, and the look angles between them.

Time is *emulated* time: ``t_s`` is seconds since the orbit's epoch (the scenario epoch),
as float arrays; nothing here reads the wall clock.

Frames: positions are propagated in an Earth-centred inertial frame (ECI, true equator),
ground sites are fixed in the Earth-fixed frame (ECEF, WGS-84) and rotated into ECI by the
Greenwich sidereal angle :math:`\\theta_g(t) = \\theta_g(t_0) + \\omega_E t`.

Two propagators share one interface (:class:`Orbit`):

* :class:`CircularOrbit` — analytic circular orbit from altitude, inclination, RAAN and
  argument of latitude at epoch, with the J2 secular drift of the node and of the argument
  of latitude (fast, exact for its model).
* :class:`TleOrbit` — SGP4 from a two-line element set through skyfield.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from channel.constants import (
    EARTH_J2,
    EARTH_MU_M3_S2,
    EARTH_RADIUS_M,
    EARTH_ROTATION_RAD_S,
    WGS84_A_M,
    WGS84_F,
)

__all__ = [
    "DEFAULT_EPOCH",
    "CircularOrbit",
    "GroundSite",
    "LookAngles",
    "Orbit",
    "OrbitError",
    "TleOrbit",
    "circular_tle",
    "gmst_rad",
    "look_angles",
    "site_state_eci",
]

DEFAULT_EPOCH = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)


class OrbitError(ValueError):
    """Invalid orbit, TLE or site parameters."""


def gmst_rad(epoch: datetime) -> float:
    """Greenwich mean sidereal angle at ``epoch`` [rad] (IAU 1982, UT1 ≈ UTC).

    .. math:: \\theta_{GMST} = 67310.54841 + (876600·3600 + 8640184.812866) T
              + 0.093104 T^2 - 6.2\\times10^{-6} T^3 \\;[s],

    with :math:`T` Julian centuries of UT1 since J2000.0. The neglected UT1−UTC (< 0.9 s)
    rotates the Earth by under 4 arcsec.
    """
    if epoch.tzinfo is None:
        raise OrbitError("epoch must be timezone-aware (UTC)")
    j2000 = datetime(2000, 1, 1, 12, 0, 0, tzinfo=UTC)
    d = (epoch - j2000).total_seconds() / 86400.0
    t = d / 36525.0
    gmst_s = (
        67310.54841 + (876600.0 * 3600.0 + 8640184.812866) * t + 0.093104 * t**2 - 6.2e-6 * t**3
    )
    return math.radians((gmst_s % 86400.0) / 240.0)


@dataclass(frozen=True)
class GroundSite:
    """A ground station / device cluster location (WGS-84 geodetic).

    Parameters
    ----------
    lat_deg, lon_deg : latitude [deg, −90…90] and longitude [deg, −180…360]
    alt_m : height above the ellipsoid [m]
    """

    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    name: str = "site"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat_deg) and -90.0 <= self.lat_deg <= 90.0):
            raise OrbitError(f"site latitude {self.lat_deg} deg is outside -90..90")
        if not (math.isfinite(self.lon_deg) and -180.0 <= self.lon_deg <= 360.0):
            raise OrbitError(f"site longitude {self.lon_deg} deg is outside -180..360")
        if not (math.isfinite(self.alt_m) and -500.0 <= self.alt_m <= 1.0e5):
            raise OrbitError(f"site altitude {self.alt_m} m is outside -500..100000")

    def ecef_m(self) -> np.ndarray:
        """ECEF position [m], shape (3,): geodetic → Cartesian on WGS-84."""
        lat, lon = math.radians(self.lat_deg), math.radians(self.lon_deg)
        e2 = WGS84_F * (2.0 - WGS84_F)
        n = WGS84_A_M / math.sqrt(1.0 - e2 * math.sin(lat) ** 2)
        return np.array(
            [
                (n + self.alt_m) * math.cos(lat) * math.cos(lon),
                (n + self.alt_m) * math.cos(lat) * math.sin(lon),
                (n * (1.0 - e2) + self.alt_m) * math.sin(lat),
            ]
        )

    def enu_basis(self) -> np.ndarray:
        """Rows east, north, up (geodetic normal) in ECEF, shape (3, 3)."""
        lat, lon = math.radians(self.lat_deg), math.radians(self.lon_deg)
        sl, cl, so, co = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
        return np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])


class Orbit(Protocol):
    """Anything that gives ECI position and velocity at emulated times."""

    epoch: datetime

    def eci(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position [m] and velocity [m/s] in ECI, each shape (N, 3)."""
        ...


@dataclass(frozen=True)
class CircularOrbit:
    """Analytic circular orbit with J2 secular rates.

    Parameters
    ----------
    altitude_m : height above the equatorial radius [m], 100 km … 40 000 km
    inclination_deg : [deg, 0…180]
    raan_deg : right ascension of the ascending node at epoch [deg]
    phase_deg : argument of latitude at epoch [deg] (0 = ascending node)
    epoch : UTC epoch of ``t_s = 0``
    j2 : include the J2 secular drift

    Notes
    -----
    Mean motion :math:`n = \\sqrt{\\mu / a^3}`, :math:`a = R_E + h`. With
    :math:`p = a` (e = 0) the J2 secular rates are

    .. math::
        \\dot\\Omega = -\\tfrac32 n J_2 (R_E/a)^2 \\cos i, \\qquad
        \\dot u = n\\left[1 + \\tfrac34 J_2 (R_E/a)^2 (2 - 3\\sin^2 i)\\right]
                 + \\tfrac34 n J_2 (R_E/a)^2 (4 - 5\\sin^2 i).

    Position :math:`r = R_z(\\Omega) R_x(i) [a\\cos u, a\\sin u, 0]^T`.
    """

    altitude_m: float = 600e3
    inclination_deg: float = 53.0
    raan_deg: float = 0.0
    phase_deg: float = 0.0
    epoch: datetime = DEFAULT_EPOCH
    j2: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.altitude_m) and 100e3 <= self.altitude_m <= 40_000e3):
            raise OrbitError(f"orbit altitude {self.altitude_m / 1e3:g} km is outside 100..40000")
        if not (math.isfinite(self.inclination_deg) and 0.0 <= self.inclination_deg <= 180.0):
            raise OrbitError(f"inclination {self.inclination_deg} deg is outside 0..180")
        for name in ("raan_deg", "phase_deg"):
            if not math.isfinite(getattr(self, name)):
                raise OrbitError(f"{name} must be finite")
        if self.epoch.tzinfo is None:
            raise OrbitError("orbit epoch must be timezone-aware (UTC)")

    @property
    def semi_major_axis_m(self) -> float:
        return EARTH_RADIUS_M + self.altitude_m

    @property
    def mean_motion_rad_s(self) -> float:
        """Keplerian mean motion :math:`n = \\sqrt{\\mu/a^3}` [rad/s]."""
        return math.sqrt(EARTH_MU_M3_S2 / self.semi_major_axis_m**3)

    @property
    def period_s(self) -> float:
        """Nodal period :math:`2\\pi/\\dot u` [s]."""
        return 2.0 * math.pi / self._rates()[1]

    def _rates(self) -> tuple[float, float]:
        n = self.mean_motion_rad_s
        if not self.j2:
            return 0.0, n
        k = EARTH_J2 * (EARTH_RADIUS_M / self.semi_major_axis_m) ** 2
        si2 = math.sin(math.radians(self.inclination_deg)) ** 2
        raan_dot = -1.5 * n * k * math.cos(math.radians(self.inclination_deg))
        m_dot = n * (1.0 + 0.75 * k * (2.0 - 3.0 * si2))
        argp_dot = 0.75 * n * k * (4.0 - 5.0 * si2)
        return raan_dot, m_dot + argp_dot

    def eci(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ECI position [m] and velocity [m/s], each (N, 3), at emulated times ``t_s`` [s]."""
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        raan_dot, u_dot = self._rates()
        a = self.semi_major_axis_m
        inc = math.radians(self.inclination_deg)
        u = math.radians(self.phase_deg) + u_dot * t
        raan = math.radians(self.raan_deg) + raan_dot * t
        cu, su = np.cos(u), np.sin(u)
        co, so = np.cos(raan), np.sin(raan)
        ci, si = math.cos(inc), math.sin(inc)
        # r = a·(cos u·P + sin u·Q), P = node direction, Q = in-plane normal to it.
        px, py, pz = co, so, np.zeros_like(t)
        qx, qy, qz = -so * ci, co * ci, np.full_like(t, si)
        pos = a * np.stack([cu * px + su * qx, cu * py + su * qy, cu * pz + su * qz], axis=-1)
        # d/dt including the node drift: dP/dt = raan_dot·(−so, co, 0),
        # dQ/dt = raan_dot·(−co·ci, −so·ci, 0).
        vel = a * u_dot * np.stack([-su * px + cu * qx, -su * py + cu * qy, -su * pz + cu * qz], -1)
        vel += (a * raan_dot) * np.stack(
            [cu * -so + su * -co * ci, cu * co + su * -so * ci, np.zeros_like(t)], axis=-1
        )
        return pos, vel


def _tle_checksum(line: str) -> int:
    return sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68]) % 10


def circular_tle(orbit: CircularOrbit, norad_id: int = 99999, name: str = "SATFL") -> str:
    """A TLE (3 lines, name first) describing ``orbit`` at its epoch, eccentricity 1e-7.

    Mean motion is written as the Keplerian :math:`n` [rev/day]; SGP4 reads it as a Kozai
    mean motion, so the two propagators differ by the J2 short-period terms (a few km).
    """
    ep = orbit.epoch.astimezone(UTC)
    year = ep.year % 100
    start = datetime(ep.year, 1, 1, tzinfo=UTC)
    doy = (ep - start).total_seconds() / 86400.0 + 1.0
    rev_day = orbit.mean_motion_rad_s * 86400.0 / (2.0 * math.pi)
    l1 = f"1 {norad_id:05d}U 26001A   {year:02d}{doy:012.8f}  .00000000  00000+0  00000+0 0  999"
    l2 = (
        f"2 {norad_id:05d} {orbit.inclination_deg % 360:8.4f} {orbit.raan_deg % 360:8.4f} "
        f"0000001 {0.0:8.4f} {orbit.phase_deg % 360:8.4f} {rev_day:11.8f}    1"
    )
    l1 += str(_tle_checksum(l1))
    l2 += str(_tle_checksum(l2))
    return f"{name}\n{l1}\n{l2}\n"


@functools.lru_cache(maxsize=1)
def _timescale() -> object:
    """skyfield's timescale, loaded once (its built-in tables; no download)."""
    from skyfield.api import load

    return load.timescale(builtin=True)


@dataclass(frozen=True)
class TleOrbit:
    """SGP4 propagation of a TLE (skyfield). ``t_s`` is measured from ``epoch``.

    ``epoch`` defaults to the TLE's own epoch; a scenario sets it to its start time.
    """

    line1: str
    line2: str
    name: str = "SAT"
    epoch: datetime = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        from skyfield.api import EarthSatellite

        l1, l2 = self.line1.rstrip(), self.line2.rstrip()
        for idx, line in ((1, l1), (2, l2)):
            if len(line) != 69 or not line.startswith(f"{idx} "):
                raise OrbitError(
                    f"TLE line {idx} is malformed (expected 69 characters starting with '{idx} ')"
                )
            if not line[68].isdigit() or _tle_checksum(line) != int(line[68]):
                raise OrbitError(f"TLE line {idx} fails its checksum")
        ts = _timescale()
        try:
            sat = EarthSatellite(l1, l2, self.name, ts)
        except Exception as e:  # sgp4 raises assorted errors on bad fields
            raise OrbitError(f"TLE could not be parsed: {e}") from e
        if sat.model.error != 0:
            raise OrbitError(f"SGP4 rejected the TLE (error code {sat.model.error})")
        object.__setattr__(self, "_sat", sat)
        object.__setattr__(self, "_ts", ts)
        if self.epoch is None:
            object.__setattr__(self, "epoch", sat.epoch.utc_datetime())
        elif self.epoch.tzinfo is None:
            raise OrbitError("orbit epoch must be timezone-aware (UTC)")

    @classmethod
    def from_text(cls, text: str, epoch: datetime | None = None) -> TleOrbit:
        """Parse 2- or 3-line TLE text (an optional name line first)."""
        lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
        if len(lines) == 3:
            name, l1, l2 = lines[0].strip(), lines[1], lines[2]
        elif len(lines) == 2:
            name, l1, l2 = "SAT", lines[0], lines[1]
        else:
            raise OrbitError(f"a TLE has 2 or 3 lines, got {len(lines)}")
        return cls(l1, l2, name, epoch)  # type: ignore[arg-type]

    @classmethod
    def from_file(cls, path: str | Path, epoch: datetime | None = None) -> TleOrbit:
        """Read a TLE file; errors name the file."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise OrbitError(f"cannot read TLE file {path}: {e.strerror}") from e
        try:
            return cls.from_text(text, epoch)
        except OrbitError as e:
            raise OrbitError(f"{path}: {e}") from e

    def eci(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SGP4 position [m] and velocity [m/s] (TEME ≈ true-equator ECI), each (N, 3)."""
        from sgp4.api import SatrecArray

        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        jd0 = self.epoch.timestamp() / 86400.0 + 2440587.5
        jd = jd0 + t / 86400.0
        jd_i = np.floor(jd)
        arr = SatrecArray([self._sat.model])  # type: ignore[attr-defined]
        err, r_km, v_km_s = arr.sgp4(jd_i, jd - jd_i)
        if np.any(err):
            raise OrbitError("SGP4 propagation failed (decayed orbit or bad elements)")
        return r_km[0] * 1e3, v_km_s[0] * 1e3


@dataclass(frozen=True)
class LookAngles:
    """Geometry from a ground site to the satellite, arrays over time.

    Attributes
    ----------
    t_s : emulated time [s]
    elevation_deg, azimuth_deg : [deg] (azimuth from north, clockwise)
    slant_range_m : [m]
    range_rate_mps : d(range)/dt [m/s], positive when the satellite recedes
    """

    t_s: np.ndarray
    elevation_deg: np.ndarray
    azimuth_deg: np.ndarray
    slant_range_m: np.ndarray
    range_rate_mps: np.ndarray


def site_state_eci(
    site: GroundSite, theta0_rad: float, t_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ground site's ECI position [m], velocity [m/s] and local up vector, each (..., 3),
    at emulated times ``t_s`` [s] (any shape), the Earth turned by
    :math:`\\theta_g(t) = \\theta_0 + \\omega_E t` (``theta0_rad``: GMST at the epoch):

    .. math:: r(t) = R_z(\\theta_g) r_{ECEF}, \\quad v = \\omega_E \\hat z \\times r
    """
    t = np.asarray(t_s, dtype=float)
    th = theta0_rad + EARTH_ROTATION_RAD_S * t
    c, s = np.cos(th), np.sin(th)

    def rot(x: np.ndarray) -> np.ndarray:
        return np.stack([c * x[0] - s * x[1], s * x[0] + c * x[1], np.full_like(t, x[2])], -1)

    pos = rot(site.ecef_m())
    vel = EARTH_ROTATION_RAD_S * np.stack([-pos[..., 1], pos[..., 0], np.zeros_like(t)], -1)
    return pos, vel, rot(site.enu_basis()[2])


def look_angles(orbit: Orbit, site: GroundSite, t_s: np.ndarray | float) -> LookAngles:
    """Elevation, azimuth, slant range and range rate from ``site`` (vectorised in time).

    .. math::
        \\rho = r_{sat} - R_z(\\theta_g) r_{site}, \\quad
        \\sin\\theta = \\frac{\\rho\\cdot\\hat u}{|\\rho|}, \\quad
        \\dot\\rho = \\frac{\\rho\\cdot(v_{sat} - \\omega_E\\times r_{site})}{|\\rho|}
    """
    t = np.atleast_1d(np.asarray(t_s, dtype=float))
    pos, vel = orbit.eci(t)
    theta = gmst_rad(orbit.epoch) + EARTH_ROTATION_RAD_S * t
    c, s = np.cos(theta), np.sin(theta)
    site_eci, site_vel, _ = site_state_eci(site, gmst_rad(orbit.epoch), t)
    rho = pos - site_eci
    rng = np.linalg.norm(rho, axis=-1)
    rate = np.einsum("ij,ij->i", rho, vel - site_vel) / rng
    # Rotate rho back into ECEF, then into the site's ENU frame.
    rho_ecef = np.stack(
        [c * rho[:, 0] + s * rho[:, 1], -s * rho[:, 0] + c * rho[:, 1], rho[:, 2]], -1
    )
    enu = rho_ecef @ site.enu_basis().T
    el = np.degrees(np.arcsin(np.clip(enu[:, 2] / rng, -1.0, 1.0)))
    az = np.degrees(np.arctan2(enu[:, 0], enu[:, 1])) % 360.0
    return LookAngles(t, el, az, rng, rate)
