"""Link maths: orbits, contact windows, link budget and seeded fading (NumPy/SciPy only).

This package never imports GNU Radio or torch; ``flowgraphs/`` applies what it generates.
"""

from channel import theory
from channel.constellation import Constellation, ConstellationError, Ephemeris, Satellite
from channel.contact_plan import Contact, ContactPlan, contact_plan
from channel.geometry import (
    LinkGeometry,
    LinkState,
    ScheduledLinkGeometry,
    default_link_geometry,
)
from channel.isl import IslGeometry, IslRules, OpticalTerminal, RfTerminal
from channel.link_budget import (
    LinkBudgetError,
    LinkParams,
    atmospheric_loss_db,
    doppler_hz,
    free_space_path_loss_db,
    noise_power_dbm,
    rain_loss_db,
    shannon_capacity_bps,
    snr_db,
    wavelength_m,
)
from channel.orbit import (
    DEFAULT_EPOCH,
    CircularOrbit,
    GroundSite,
    LookAngles,
    Orbit,
    OrbitError,
    TleOrbit,
    circular_tle,
    gmst_rad,
    look_angles,
)
from channel.rician import RicianFading, k_linear, rice_distribution, rician_samples
from channel.routing import ContactGraph, Route
from channel.shadowing import RainPhase, ShadowingProcess
from channel.windows import (
    ContactWindow,
    WindowError,
    contact_windows,
    ergodic_capacity_bps,
    gaps,
    mean_capacity_bps,
    time_to_deliver_s,
    window_capacity_bytes,
)

__all__ = [
    "DEFAULT_EPOCH",
    "CircularOrbit",
    "Constellation",
    "ConstellationError",
    "Contact",
    "ContactGraph",
    "ContactPlan",
    "ContactWindow",
    "Ephemeris",
    "GroundSite",
    "IslGeometry",
    "IslRules",
    "LinkBudgetError",
    "LinkGeometry",
    "LinkParams",
    "LinkState",
    "LookAngles",
    "OpticalTerminal",
    "Orbit",
    "OrbitError",
    "RainPhase",
    "RfTerminal",
    "RicianFading",
    "Route",
    "Satellite",
    "ScheduledLinkGeometry",
    "ShadowingProcess",
    "TleOrbit",
    "WindowError",
    "atmospheric_loss_db",
    "circular_tle",
    "contact_plan",
    "contact_windows",
    "default_link_geometry",
    "doppler_hz",
    "ergodic_capacity_bps",
    "free_space_path_loss_db",
    "gaps",
    "gmst_rad",
    "k_linear",
    "look_angles",
    "mean_capacity_bps",
    "noise_power_dbm",
    "rain_loss_db",
    "rice_distribution",
    "rician_samples",
    "shannon_capacity_bps",
    "snr_db",
    "theory",
    "time_to_deliver_s",
    "wavelength_m",
    "window_capacity_bytes",
]
