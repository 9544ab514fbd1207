"""The idealised slot schedule as a link geometry (paper's Remark 4 schedule)."""

import numpy as np
import pytest

from channel import LinkParams, ScheduledLinkGeometry, time_to_deliver_s
from channel.constants import EARTH_RADIUS_M


def test_visibility_follows_the_slots_exactly():
    g = ScheduledLinkGeometry([(10.0, 30.0), (50.0, 70.0)], LinkParams(), seed=1)
    t = np.array([0.0, 9.999, 10.0, 29.999, 30.0, 49.0, 50.0, 69.9, 70.0, 1e6])
    np.testing.assert_array_equal(g.state(t).visible, [0, 0, 1, 1, 0, 0, 1, 1, 0, 0])
    assert g.windows(0.0, 60.0) == [(10.0, 30.0), (50.0, 60.0)]


def test_fixed_elevation_range_and_no_doppler():
    g = ScheduledLinkGeometry([(0.0, 10.0)], LinkParams(), elevation_deg=90.0, altitude_m=600e3)
    st = g.state(np.linspace(0, 9, 10))
    np.testing.assert_allclose(st.slant_range_m, 600e3, rtol=1e-9)
    assert np.all(st.doppler_hz == 0.0)
    g30 = ScheduledLinkGeometry([(0.0, 10.0)], LinkParams(), elevation_deg=30.0)
    r, h, th = EARTH_RADIUS_M, 600e3, np.radians(30.0)
    assert g30.slant_range_m == pytest.approx(
        np.sqrt((r + h) ** 2 - (r * np.cos(th)) ** 2) - r * np.sin(th)
    )


def test_shannon_time_counts_outages_between_slots():
    p = LinkParams(shadowing_sigma_db=0.0)
    g = ScheduledLinkGeometry([(0.0, 1.0), (100.0, 101.0)], p)
    rate = float(
        np.mean(
            __import__("channel").ergodic_capacity_bps(
                p.bandwidth_hz, g.state(0.5).snr_db, p.rician_k_db
            )
        )
    )
    nbytes = int(rate * 1.5 / 8)  # needs 1.5 s of slot time
    assert time_to_deliver_s(g, 0.0, nbytes) == pytest.approx(100.5, abs=0.01)


@pytest.mark.parametrize("windows", [[(0, 10), (5, 20)], [(5, 5)]])
def test_bad_schedules_rejected(windows):
    with pytest.raises(ValueError):
        ScheduledLinkGeometry(windows, LinkParams())
