"""Orbit geometry against independent closed-form values."""

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from channel import (
    CircularOrbit,
    GroundSite,
    OrbitError,
    TleOrbit,
    circular_tle,
    contact_windows,
    look_angles,
)
from channel.constants import EARTH_MU_M3_S2, EARTH_RADIUS_M

H = 600e3


def _zenith_time(orbit: CircularOrbit, site: GroundSite) -> float:
    t = np.arange(0.0, 86400.0, 1.0)
    el = look_angles(orbit, site, t).elevation_deg
    return float(t[np.argmax(el)])


def test_slant_range_at_zenith_equals_altitude():
    # Prepare: equatorial orbit, site on the equator at sea level on a sphere-like point.
    orbit = CircularOrbit(H, 0.0, 0.0, 0.0, j2=False)
    site = GroundSite(0.0, 0.0, 0.0)
    t = _zenith_time(orbit, site)
    # Refine around the 1 s grid maximum.
    tt = np.linspace(t - 1, t + 1, 2001)
    la = look_angles(orbit, site, tt)
    i = int(np.argmax(la.elevation_deg))
    assert la.elevation_deg[i] == pytest.approx(90.0, abs=0.05)
    assert la.slant_range_m[i] == pytest.approx(H, abs=50.0)  # equator: WGS-84 a = R_E
    assert abs(la.range_rate_mps[i]) < 10.0


def test_range_at_horizon_matches_earth_radius_formula():
    # d(θ=0) = sqrt((R+h)^2 - R^2) for a spherical Earth; the equatorial site sits on R_E.
    orbit = CircularOrbit(H, 0.0, 0.0, 0.0, j2=False)
    site = GroundSite(0.0, 0.0, 0.0)
    t = np.arange(0.0, 6000.0, 0.05)
    la = look_angles(orbit, site, t)
    i = int(np.argmin(np.abs(la.elevation_deg)))
    expected = math.sqrt((EARTH_RADIUS_M + H) ** 2 - EARTH_RADIUS_M**2)
    assert abs(la.elevation_deg[i]) < 0.01
    assert la.slant_range_m[i] == pytest.approx(expected, rel=2e-4)


def test_maximum_range_rate_for_600km():
    # Max |range rate| is at the horizon: v_rel · cos(angle) with v_rel the orbital speed
    # relative to the rotating site (prograde equatorial, site on the equator):
    # |ḋ|max = (v - ω R cos i_eff)·R/(R+h)
    orbit = CircularOrbit(H, 0.0, 0.0, 0.0, j2=False)
    site = GroundSite(0.0, 0.0, 0.0)
    la = look_angles(orbit, site, np.arange(0.0, 6000.0, 0.5))
    v = math.sqrt(EARTH_MU_M3_S2 / (EARTH_RADIUS_M + H))
    rel_speed = v - 7.2921150e-5 * (EARTH_RADIUS_M + H)  # in the rotating frame, at the sat
    expected = rel_speed * EARTH_RADIUS_M / (EARTH_RADIUS_M + H)
    assert np.max(np.abs(la.range_rate_mps)) == pytest.approx(expected, rel=3e-3)
    assert 6000.0 < np.max(np.abs(la.range_rate_mps)) < 7000.0


def test_window_durations_600km_10deg_in_physical_range():
    # Upper bound: an overhead pass sweeps the central angle 2λ, λ = arccos(R cos θ/(R+h)) − θ,
    # at an angular rate relative to the rotating Earth of at least n − ω_E (prograde orbit):
    # T ≤ 2λ / (n − ω_E) ≈ 547 s for 600 km and θ_min = 10°.
    orbit = CircularOrbit(H, 53.0)
    site = GroundSite(48.1, 11.6, 0.0)
    ws = contact_windows(orbit, site, 0.0, 2 * 86400.0, 10.0)
    assert len(ws) >= 6
    r, th = EARTH_RADIUS_M, math.radians(10.0)
    lam = math.acos(r * math.cos(th) / (r + H)) - th
    t_max = 2 * lam / (orbit.mean_motion_rad_s - 7.2921150e-5)
    for w in ws:
        if w.truncated:
            continue
        assert 0.0 < w.duration_s <= t_max
        assert w.max_elevation_deg >= 10.0
    longest = max(w.duration_s for w in ws)
    assert 0.8 * t_max < longest <= t_max
    assert 420.0 < longest < 600.0


def test_windows_bracket_the_gate_exactly():
    orbit = CircularOrbit(H, 53.0)
    site = GroundSite(48.1, 11.6, 0.0)
    ws = contact_windows(orbit, site, 0.0, 86400.0, 25.0)
    el = look_angles(orbit, site, [w.aos_s for w in ws] + [w.los_s for w in ws]).elevation_deg
    np.testing.assert_allclose(el, 25.0, atol=1e-3)
    inside = look_angles(orbit, site, [w.tca_s for w in ws]).elevation_deg
    assert np.all(inside > 25.0)


def test_sgp4_circular_tle_agrees_with_analytic_orbit():
    # Tolerance: SGP4 adds J2 short-period terms and reads n as Kozai mean motion; over two
    # orbits the positions stay within 30 km and the look angles within 1.5 deg / 40 km.
    epoch = datetime(2026, 3, 1, tzinfo=UTC)
    orbit = CircularOrbit(H, 53.0, 40.0, 10.0, epoch)
    tle = TleOrbit.from_text(circular_tle(orbit), epoch=epoch)
    t = np.arange(0.0, 2 * orbit.period_s, 5.0)
    p1, _ = orbit.eci(t)
    p2, _ = tle.eci(t)
    assert np.max(np.linalg.norm(p1 - p2, axis=1)) < 30e3
    site = GroundSite(48.1, 11.6)
    a, b = look_angles(orbit, site, t), look_angles(tle, site, t)
    vis = (a.elevation_deg > 5) | (b.elevation_deg > 5)
    assert vis.any()
    assert np.max(np.abs(a.elevation_deg[vis] - b.elevation_deg[vis])) < 1.5
    assert np.max(np.abs(a.slant_range_m[vis] - b.slant_range_m[vis])) < 40e3


@pytest.mark.parametrize(
    "text",
    [
        "not a tle",
        "1 25544U 98067A   26001.00000000  .00000000  00000+0  00000+0 0  9990\n2 25544",
        # valid layout, wrong checksum digit on line 2
        "1 99999U 26001A   26001.00000000  .00000000  00000+0  00000+0 0  9991\n"
        "2 99999  53.0000   0.0000 0000001   0.0000   0.0000 14.89338871    18",
    ],
)
def test_malformed_tle_is_rejected(text):
    with pytest.raises(OrbitError):
        TleOrbit.from_text(text)


@pytest.mark.parametrize(
    "kw", [{"lat_deg": 91.0, "lon_deg": 0.0}, {"lat_deg": float("nan"), "lon_deg": 0.0}]
)
def test_bad_site_is_rejected(kw):
    with pytest.raises(OrbitError):
        GroundSite(**kw)


@pytest.mark.parametrize("el", [-1.0, 90.0, 120.0])
def test_threshold_outside_range_is_rejected(el):
    orbit = CircularOrbit(H, 53.0)
    with pytest.raises(ValueError, match="minimum elevation"):
        contact_windows(orbit, GroundSite(0.0, 0.0), 0.0, 3600.0, el)


def test_bad_orbit_altitude_rejected():
    with pytest.raises(OrbitError):
        CircularOrbit(-5.0, 53.0)
