"""Physical constants used by the link model (SI units)."""

__all__ = [
    "BOLTZMANN_DBW_PER_K_HZ",
    "BOLTZMANN_J_PER_K",
    "EARTH_J2",
    "EARTH_MU_M3_S2",
    "EARTH_RADIUS_M",
    "EARTH_ROTATION_RAD_S",
    "SPEED_OF_LIGHT_M_S",
    "T0_K",
    "WGS84_A_M",
    "WGS84_F",
]

SPEED_OF_LIGHT_M_S = 299_792_458.0
EARTH_MU_M3_S2 = 3.986004418e14  # standard gravitational parameter GM [m^3/s^2]
EARTH_RADIUS_M = 6_378_137.0  # equatorial radius (WGS-84 a) [m]
EARTH_J2 = 1.08262668e-3  # second zonal harmonic [-]
EARTH_ROTATION_RAD_S = 7.2921150e-5  # sidereal rotation rate [rad/s]
WGS84_A_M = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
BOLTZMANN_J_PER_K = 1.380649e-23
BOLTZMANN_DBW_PER_K_HZ = -228.5991631  # 10·log10(k) [dBW/(K·Hz)]
T0_K = 290.0  # IEEE reference noise temperature [K]
