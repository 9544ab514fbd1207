"""Constellations, ISLs and the contact plan, against independent references.

References: the chord of a circle (intra-plane range 2r·sin(π/S)), the tangent altitude of
a chord computed by hand, skyfield's own pass finder for satellites of a TLE set, a numerical
derivative for the slew rate, and the free-space budget written out by hand.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest

from channel.constants import EARTH_RADIUS_M, SPEED_OF_LIGHT_M_S
from channel.constellation import Constellation, ConstellationError, Ephemeris, parse_walker
from channel.contact_plan import ContactPlan, contact_plan, inter_plane_pairs
from channel.isl import (
    IslGeometry,
    IslRules,
    OpticalTerminal,
    RfTerminal,
    isl_metrics,
    los_clearance_m,
    slew_rate_rad_s,
)
from channel.orbit import CircularOrbit, GroundSite, circular_tle

KM = 1e3
STATIONS = [
    GroundSite(48.1, 11.6, 500.0, "munich"),
    GroundSite(40.4, -3.7, 650.0, "madrid"),
    GroundSite(52.2, 21.0, 100.0, "warsaw"),
]


@pytest.mark.parametrize(
    "text, what",
    [
        ("53:24/5/1", "not a multiple"),
        ("53:24/4/4", "phasing F = 4"),
        ("200:24/4/1", "outside 0..180"),
        ("53-24-4-1", "i:T/P/F"),
        ("53:0/1/0", ">= 1"),
    ],
)
def test_bad_walker_strings_give_one_line_errors(text, what):
    with pytest.raises(ConstellationError, match=what) as e:
        parse_walker(text)
    assert "\n" not in str(e.value)


def test_walker_delta_elements_follow_the_notation():
    c = Constellation.walker("53:24/4/1", 550 * KM)
    el = {e["id"]: e for e in c.elements()}
    assert len(el) == 24 and c.n_planes == 4
    for p in range(4):
        for s in range(6):
            e = el[f"p{p}s{s}"]
            assert e["raan_deg"] == pytest.approx(p * 90.0, abs=1e-6)
            want = (s * 60.0 + p * 1 * 15.0) % 360.0
            assert math.cos(math.radians(e["phase_deg"] - want)) == pytest.approx(1.0, abs=1e-12)
            assert e["altitude_km"] == pytest.approx(550.0, abs=1e-6)
            assert e["inclination_deg"] == pytest.approx(53.0, abs=1e-6)
    star = Constellation.walker("86.4:66/6/2", 780 * KM, pattern="star")
    raans = sorted({round(e["raan_deg"], 6) for e in star.elements()})
    assert raans == pytest.approx([0.0, 30.0, 60.0, 90.0, 120.0, 150.0])


def test_intra_plane_range_is_the_chord_2r_sin_pi_over_s():
    c = Constellation.walker("86.4:66/6/2", 780 * KM, pattern="star")
    eph = Ephemeris(c, 0.0, 86400.0, 30.0)
    m = c.plane_members(2)
    d = np.linalg.norm(eph.pos[m[0]] - eph.pos[m[1]], axis=-1)
    r = EARTH_RADIUS_M + 780 * KM
    assert np.ptp(d) < 1.0  # constant over a day (J2 moves both alike) [m]
    assert d.mean() == pytest.approx(2 * r * math.sin(math.pi / 11), abs=1.0)
    plan = contact_plan(c, [], duration_s=3 * 3600.0)
    intra = [x for x in plan.contacts if {x.src, x.dst} == {"p2s0", "p2s1"}]
    assert len(intra) == 1 and intra[0].duration_s == pytest.approx(3 * 3600.0)
    assert intra[0].max_range_m == pytest.approx(2 * r * math.sin(math.pi / 11), abs=1.0)


def test_earth_blockage_at_the_tangent_altitude_by_hand():
    # two satellites at radius r, 2φ apart: the chord's lowest point is at r·cos φ − R_E
    r = EARTH_RADIUS_M + 550 * KM
    for phi_deg in (10.0, 20.0, 21.0, 30.0):
        phi = math.radians(phi_deg)
        a = np.array([r * math.cos(phi), -r * math.sin(phi), 0.0])
        b = np.array([r * math.cos(phi), r * math.sin(phi), 0.0])
        assert float(los_clearance_m(a, b)) == pytest.approx(r * math.cos(phi) - EARTH_RADIUS_M)
    # the gate: 80 km grazing altitude; φ where r·cos φ = R_E + 80 km
    phi_edge = math.acos((EARTH_RADIUS_M + 80 * KM) / r)
    rules = IslRules(max_range_m=1e9, max_slew_deg_s=1e9)
    for phi, ok in ((phi_edge - 1e-4, True), (phi_edge + 1e-4, False)):
        a = np.array([[r * math.cos(phi), -r * math.sin(phi), 0.0]])
        b = np.array([[r * math.cos(phi), r * math.sin(phi), 0.0]])
        v = np.zeros((1, 3))
        assert bool(isl_metrics(a, v, b, v, rules)["usable"][0]) is ok
    # an end point below the line (segment clipped at the satellite): the endpoint's altitude
    a, b = np.array([r, 0.0, 0.0]), np.array([2 * r, 0.0, 0.0])
    assert float(los_clearance_m(a, b)) == pytest.approx(550 * KM)


def test_a_polar_star_has_no_inter_plane_links_across_the_seam():
    star = Constellation.walker("90:24/4/1", 780 * KM, pattern="star")
    assert inter_plane_pairs(star) == [(0, 1), (1, 2), (2, 3)]
    plan = contact_plan(star, [], duration_s=6 * 3600.0, rules=IslRules(max_range_m=8000 * KM))
    plane = {s["id"]: s["plane"] for s in plan.satellites}
    inter = {
        tuple(sorted((plane[c.src], plane[c.dst])))
        for c in plan.contacts
        if c.kind == "isl" and plane[c.src] != plane[c.dst]
    }
    assert (0, 3) not in inter and {(0, 1), (1, 2), (2, 3)} <= inter
    # the delta pattern of the same shell has no seam: plane 3 links to plane 0
    delta = Constellation.walker("53:24/4/1", 780 * KM)
    assert (3, 0) in inter_plane_pairs(delta)


def test_inter_plane_links_are_intermittent_and_each_satellite_has_at_most_one_per_side():
    c = Constellation.walker("53:24/4/1", 550 * KM)
    plan = contact_plan(c, [], duration_s=86400.0)
    plane = {s["id"]: s["plane"] for s in plan.satellites}
    inter = [x for x in plan.contacts if x.kind == "isl" and plane[x.src] != plane[x.dst]]
    assert inter and all(x.duration_s < 86400.0 for x in inter)
    for t in np.linspace(100.0, 86000.0, 37):
        live = [x for x in inter if x.start_s <= t < x.end_s]
        for sat in plane:
            right = [x for x in live if x.src == sat]
            left = [x for x in live if x.dst == sat]
            assert len(right) <= 1 and len(left) <= 1
    # each one obeys the gate at its midpoint and the range limit everywhere on its profile
    eph = Ephemeris(c, 0.0, 86400.0, 10.0)
    idx = {s: i for i, s in enumerate(c.ids)}
    for x in inter[:50]:
        mid = 0.5 * (x.start_s + x.end_s)
        ra, va = eph.at(np.array([idx[x.src]]), np.array([mid]))
        rb, vb = eph.at(np.array([idx[x.dst]]), np.array([mid]))
        assert isl_metrics(ra, va, rb, vb, IslRules())["usable"][0]
        assert x.max_range_m <= 5000 * KM + 1.0


def test_slew_rate_matches_a_numerical_derivative_in_the_lvlh_frame():
    # Keplerian orbits: the LVLH frame then turns exactly at ω = r × v / |r|²
    a = CircularOrbit(550 * KM, 53.0, 0.0, 0.0, j2=False)
    b = CircularOrbit(550 * KM, 53.0, 90.0, 15.0, j2=False)
    t = np.array([1234.0])
    h = 0.01

    def u_lvlh(tt):
        ra, va = a.eci(tt)
        rb, _ = b.eci(tt)
        x = ra / np.linalg.norm(ra)
        z = np.cross(ra, va)
        z /= np.linalg.norm(z)
        y = np.cross(z, x)
        d = (rb - ra) / np.linalg.norm(rb - ra)
        return np.array([d[0] @ x[0], d[0] @ y[0], d[0] @ z[0]])

    num_a = np.linalg.norm((u_lvlh(t + h) - u_lvlh(t - h)) / (2 * h))
    ra, va = a.eci(t)
    rb, vb = b.eci(t)
    # slew_rate_rad_s is the larger of the two ends: compute a's end alone by swapping
    both = float(slew_rate_rad_s(ra, va, rb, vb)[0])
    assert both >= num_a * (1 - 1e-4)
    swapped = float(slew_rate_rad_s(rb, vb, ra, va)[0])
    assert swapped == pytest.approx(both, rel=1e-9)
    # two satellites on one circular orbit: the chord turns with the frame, no slew
    c = CircularOrbit(550 * KM, 53.0, 0.0, 30.0, j2=False)
    rc, vc = c.eci(t)
    assert float(slew_rate_rad_s(ra, va, rc, vc)[0]) < 1e-9
    # a tight slew limit removes inter-plane contacts the default keeps
    con = Constellation.walker("53:24/4/1", 550 * KM)
    loose = contact_plan(con, [], duration_s=4 * 3600.0)
    tight = contact_plan(con, [], duration_s=4 * 3600.0, rules=IslRules(max_slew_deg_s=0.15))
    dur = sum(x.duration_s for x in loose.contacts)
    assert sum(x.duration_s for x in tight.contacts) < 0.9 * dur


def test_isl_budgets_by_hand():
    rf = RfTerminal()
    d = 4000 * KM
    lam = SPEED_OF_LIGHT_M_S / 23e9
    fspl = 20 * math.log10(4 * math.pi * d / lam)
    n_dbm = 10 * math.log10(1.380649e-23 * 500 * 100e6) + 30
    snr = 33 + 35 + 35 - fspl - 0.5 - n_dbm
    assert float(rf.snr_db(np.array(d))) == pytest.approx(snr, abs=1e-4)
    assert float(rf.rate_bps(np.array(d))) == pytest.approx(
        100e6 * math.log2(1 + 10 ** (snr / 10)), rel=1e-5
    )
    opt = OpticalTerminal(line_rate_bps=1e12)
    g = (math.pi * 0.08 / 1550e-9) ** 2
    p_rx = 1.0 * g * g * (1550e-9 / (4 * math.pi * d)) ** 2 * 10 ** (-0.3)
    photons = p_rx / (6.62607015e-34 * SPEED_OF_LIGHT_M_S / 1550e-9)
    assert float(opt.rate_bps(np.array(d))) == pytest.approx(photons / 100.0, rel=1e-9)
    assert float(OpticalTerminal().rate_bps(np.array(d))) == 10e9  # capped at the line rate
    # Doppler: f_d = −ḋ/λ
    assert float(rf.doppler_hz(np.array(-1000.0))) == pytest.approx(1000.0 / lam)


def test_tle_set_passes_match_skyfield_within_30_s():
    from skyfield.api import EarthSatellite, load, wgs84

    # Prepare: a TLE set written from a Walker constellation (4 of its satellites)
    walker = Constellation.walker("53:24/4/1", 550 * KM)
    text = "".join(
        circular_tle(s.orbit, norad_id=40000 + i, name=f"SAT {i}")
        for i, s in enumerate(walker.satellites[::6])
    )
    con = Constellation.from_tle_text(text)
    assert len(con.satellites) == 4 and con.n_planes == 4
    site = STATIONS[0]
    plan = contact_plan(con, [site], duration_s=86400.0)
    ours = sorted(
        (c.dst, c.start_s, c.end_s)
        for c in plan.contacts
        if c.kind == "sat_ground" and not c.truncated
    )
    # Execute: skyfield's pass finder on the same TLEs
    ts = load.timescale(builtin=True)
    t0 = ts.from_datetime(con.epoch)
    t1 = ts.from_datetime(con.epoch + timedelta(days=1))
    topo = wgs84.latlon(site.lat_deg, site.lon_deg, site.alt_m)
    ref = []
    lines = text.strip().splitlines()
    for k in range(4):
        name, l1, l2 = lines[3 * k : 3 * k + 3]
        sat = EarthSatellite(l1, l2, name, ts)
        times, events = sat.find_events(topo, t0, t1, altitude_degrees=10.0)
        sid = name.replace(" ", "-")
        rise = None
        for tt, ev in zip(times, events, strict=True):
            x = (tt.utc_datetime() - con.epoch).total_seconds()
            if ev == 0:
                rise = x
            elif ev == 2 and rise is not None:
                ref.append((sid, rise, x))
                rise = None
    ref.sort()
    # Assert
    assert len(ours) == len(ref) and len(ref) >= 8
    for (sa, a0, a1), (sb, b0, b1) in zip(ours, ref, strict=True):
        assert sa == sb
        assert abs(a0 - b0) < 30.0 and abs(a1 - b1) < 30.0


def test_tle_set_errors_name_the_file_and_line(tmp_path):
    p = tmp_path / "set.tle"
    p.write_text("SAT A\n1 bogus\n")
    with pytest.raises(ConstellationError, match=r"set\.tle: line 1"):
        Constellation.from_tle_file(p)
    with pytest.raises(ConstellationError, match="cannot read TLE file"):
        Constellation.from_tle_file(tmp_path / "missing.tle")


def test_contact_plan_json_round_trips_and_capacity_is_the_profile_integral():
    c = Constellation.walker("53:24/4/1", 550 * KM)
    plan = contact_plan(c, STATIONS, duration_s=6 * 3600.0)
    d = json.loads(plan.to_json())
    assert {"epoch", "start", "end", "satellites", "contacts"} <= set(d)
    assert {"id", "plane", "raan_deg", "phase_deg", "altitude_km", "inclination_deg"} <= set(
        d["satellites"][0]
    )
    keys = {"kind", "from", "to", "start", "end", "duration_s", "capacity_bytes"}
    assert all(keys <= set(x) for x in d["contacts"])
    back = ContactPlan.from_dict(d)
    assert len(back.contacts) == len(plan.contacts)
    for a, b in zip(plan.contacts, back.contacts, strict=True):
        assert b.capacity_bytes == pytest.approx(a.capacity_bytes, rel=1e-9)
    g = next(x for x in plan.contacts if x.kind == "sat_ground" and not x.truncated)
    # an independent integral of the same rates: fine linear interpolation, Riemann sum
    tt = np.linspace(g.start_s, g.end_s, 200_001)
    r = np.interp(tt, g.profile_t_s, g.rate_bps)
    assert g.capacity_bytes == pytest.approx(np.sum(r[:-1] * np.diff(tt)) / 8, rel=1e-4)
    # finish_s inverts the volume
    nb = 0.3 * g.capacity_bytes
    t_fin = g.finish_s(g.start_s + 5.0, nb)
    assert g.bytes_between(g.start_s + 5.0, t_fin) == pytest.approx(nb, rel=1e-9)
    assert g.finish_s(g.start_s, 1.01 * g.capacity_bytes) is None


def test_ground_windows_agree_with_the_single_link_search():
    from channel.windows import contact_windows

    c = Constellation.walker("53:24/4/1", 550 * KM)
    plan = contact_plan(c, STATIONS[:1], duration_s=86400.0)
    sat = c.satellites[7]
    ref = contact_windows(sat.orbit, STATIONS[0], 0.0, 86400.0, 10.0)
    ours = [x for x in plan.contacts if x.kind == "sat_ground" and x.dst == sat.id]
    assert len(ours) == len(ref) > 0
    for a, w in zip(ours, ref, strict=True):
        assert a.start_s == pytest.approx(w.aos_s, abs=0.01)
        assert a.end_s == pytest.approx(w.los_s, abs=0.01)


def test_isl_geometry_windows_and_state():
    c = Constellation.walker("53:24/4/1", 550 * KM)
    a, b = c.satellites[0].orbit, c.satellites[6 + 4].orbit
    geo = IslGeometry(a, b)
    ws = geo.windows(0.0, 86400.0)
    assert ws and all(b_ > a_ for a_, b_ in ws)
    mid = 0.5 * (ws[0][0] + ws[0][1])
    assert bool(geo.inside(mid)) and not bool(geo.inside(ws[0][1] + 0.01))
    assert geo.same_window(ws[0][0] + 1e-3, mid) and not geo.same_window(mid, ws[0][1] + 1)
    st = geo.state(np.array([mid]))
    ra, _ = a.eci(np.array([mid]))
    rb, _ = b.eci(np.array([mid]))
    assert st.slant_range_m[0] == pytest.approx(np.linalg.norm(rb - ra), rel=1e-12)
    assert st.prop_delay_s[0] == pytest.approx(st.slant_range_m[0] / SPEED_OF_LIGHT_M_S)
    assert st.visible[0] and np.isfinite(st.snr_db[0])


@pytest.mark.parametrize(
    "kw, what",
    [
        ({"duration_s": -1.0}, "horizon"),
        ({"min_elevation_deg": 95.0}, "minimum elevation"),
    ],
)
def test_contact_plan_rejects_bad_requests(kw, what):
    c = Constellation.walker("53:6/2/1", 550 * KM)
    with pytest.raises(ConstellationError, match=what):
        contact_plan(c, STATIONS, **kw)
    with pytest.raises(ConstellationError, match="unique"):
        contact_plan(c, [STATIONS[0], STATIONS[0]])
    with pytest.raises(ConstellationError, match="clash"):
        contact_plan(c, [GroundSite(0.0, 0.0, 0.0, "p0s0")])


def test_seams_only_where_planes_counter_rotate():
    # a delta's planes all fly the same way round: two planes 180° apart are neighbours
    assert inter_plane_pairs(Constellation.walker("53:24/2/1", 550 * KM)) == [(0, 1)]
    assert (2, 0) in inter_plane_pairs(Constellation.walker("70:24/3/1", 550 * KM))
    assert (3, 0) in inter_plane_pairs(Constellation.walker("90:40/4/1", 550 * KM))
    # a TLE set laid out as a star (nodes over 180°) gets its seam from the largest Ω gap
    star = Constellation.walker("86.4:66/6/2", 780 * KM, pattern="star")
    text = "".join(
        circular_tle(s.orbit, 40000 + i, f"IR{i}") for i, s in enumerate(star.satellites)
    )
    assert inter_plane_pairs(Constellation.from_tle_text(text)) == [(p, p + 1) for p in range(5)]
    delta = Constellation.walker("53:24/4/1", 550 * KM)
    text = "".join(
        circular_tle(s.orbit, 40000 + i, f"S{i}") for i, s in enumerate(delta.satellites)
    )
    tle = Constellation.from_tle_text(text)
    assert inter_plane_pairs(tle) == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert [round(e["raan_deg"]) % 360 for e in tle.elements()][::6] == [0, 90, 180, 270]
    with pytest.raises(ConstellationError, match="duplicate TLE"):
        Constellation.from_tle_text(text + text[: text.index("S1\n")])  # S0 twice


def test_contact_edges_obey_the_rules_they_close_on():
    con = Constellation.walker("53:24/4/1", 550 * KM)
    plan = contact_plan(con, [], duration_s=6 * 3600.0, rules=IslRules(max_range_m=3000 * KM))
    isl = [c for c in plan.contacts if c.kind == "isl"]
    assert isl and max(c.max_range_m for c in isl) <= 3000 * KM


@pytest.mark.parametrize(
    "patch, what",
    [
        ({"max_range_km": "far"}, "max_range_km: expected a finite number"),
        ({"max_range_km": -5.0}, "max_range_km: must be >= 0"),
        ({"max_doppler_hz": [1]}, "max_doppler_hz"),
        ({"truncated": "false"}, "truncated: expected true or false"),
        ({"profile": {"t_s": [0.0, float("nan")], "rate_bps": [1.0, 1.0]}}, "finite"),
        ({"profile": {"t_s": [0.0, 1e6], "rate_bps": [1.0, 1.0]}}, "from 0 to duration"),
        ({"kind": "laser"}, "kind"),
        ({"start_s": None}, "start_s"),
        (
            {"start_s": 1e9, "end_s": 1e9 + 10, "profile": {"t_s": [0, 10], "rate_bps": [1, 1]}},
            "outside the plan's horizon",
        ),
    ],
)
def test_plan_json_hostile_fields_are_one_line_errors(patch, what):
    c = Constellation.walker("53:6/2/1", 550 * KM)
    d = json.loads(contact_plan(c, STATIONS[:1], duration_s=3600.0).to_json())
    d["contacts"][0].update(patch)
    with pytest.raises(ConstellationError, match=what) as e:
        ContactPlan.from_dict(d, "plan.json")
    assert "\n" not in str(e.value) and str(e.value).startswith("plan.json: contacts[0]")
    d = json.loads(contact_plan(c, STATIONS[:1], duration_s=3600.0).to_json())
    d["end"] = d["start"]
    with pytest.raises(ConstellationError, match="end must be after start"):
        ContactPlan.from_dict(d, "plan.json")
