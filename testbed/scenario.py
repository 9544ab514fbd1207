"""Scenario files (TOML) loaded into typed, validated objects.

A scenario says everything a testbed run needs: the orbit, the ground clusters, the link and
modem, the schedule and time model, the algorithm and its hyper-parameters, the model, the seed
and the ZeroMQ endpoints. The format, with every key and its default, is in
``testbed/scenarios/README.md``; ``testbed/scenarios/default.toml`` and ``gpu.toml`` are shipped.

Defaults live in one place: the dataclass defaults below, which take the link budget from
:class:`channel.LinkParams`, the modem from :class:`flowgraphs.config.LinkConfig` and the
hyper-parameters from :class:`testbed.fl.config.FLConfig`. A file only needs to set what
differs.

Every error is a :class:`testbed.errors.ConfigError` whose message starts with the file and
names the dotted key, e.g. ``default.toml: link.rician_k_db: expected a number, got 'x'``.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Any

from channel import (
    DEFAULT_EPOCH,
    CircularOrbit,
    GroundSite,
    LinkGeometry,
    LinkParams,
    Orbit,
    OrbitError,
    TleOrbit,
)
from channel.link_budget import LinkBudgetError
from flowgraphs.config import LinkConfig
from testbed.errors import ConfigError
from testbed.fl.config import ALGORITHMS, LOSSES, MAX_THREADS, RELEVANCE_MODES, FLConfig

__all__ = [
    "AlgorithmSpec",
    "ClusterSpec",
    "ConstellationSpec",
    "DataSpec",
    "EndpointSpec",
    "LinkSpec",
    "ModelSpec",
    "OrbitSpec",
    "Scenario",
    "ScheduleSpec",
    "StationSpec",
    "TimeSpec",
    "load_scenario",
    "parse_scenario",
    "shipped_scenarios",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_PRECOMP = ("none", "full", "residual")
_LC = {f.name: f.default for f in fields(LinkConfig)}
_FL = FLConfig()
#: FLConfig fields that the scenario sets elsewhere (not in [algorithm]).
_FL_SET_ELSEWHERE = {
    "clusters": "the number of [[cluster]] tables",
    "devices_per_cluster": "cluster.devices",
    "seed": "scenario.seed",
    "target_accuracy": "algorithm.target_accuracy",
    "threads": "model.threads",
}
#: Endpoint ports used per cluster with a tcp:// prefix (uplink in/out/status, downlink ...).
_PORTS_PER_CLUSTER = 6


# --------------------------------------------------------------------------------------------
# Typed objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrbitSpec:
    """``[orbit]``: a circular orbit, or a TLE file.

    Attributes
    ----------
    altitude_km : circular orbit height above the equatorial radius [km]
    inclination_deg : [deg, 0…180]
    raan_deg : right ascension of the ascending node at the scenario epoch [deg]
    phase_deg : argument of latitude at the scenario epoch [deg]
    tle_file : absolute path of a TLE file (SGP4), or None for the circular orbit; in the file
        it is relative to the scenario file
    """

    altitude_km: float = CircularOrbit.altitude_m / 1e3
    inclination_deg: float = CircularOrbit.inclination_deg
    raan_deg: float = CircularOrbit.raan_deg
    phase_deg: float = CircularOrbit.phase_deg
    tle_file: Path | None = None


@dataclass(frozen=True)
class LinkSpec:
    """``[link]``: the link budget (any :class:`channel.LinkParams` field) and the modem.

    The modem keys are the emulator's (:mod:`flowgraphs.config`), validated by the same code.

    Attributes
    ----------
    params : link budget (carrier, bandwidth B, powers, gains, noise figure, K, θ_min, ...)
    modcod : ``acm`` (per frame, from the predicted Es/N0) or a MODCOD name (e.g. ``qpsk-1/2``)
    acm_margin_db : ACM margin [dB]
    acm_prediction : predict (link budget + orbit) | feedback (SNR reports) | genie
    acm_feedback_delay_s : age of the ``feedback`` SNR report beyond the round trip [s]
    rolloff : RRC roll-off α (0.05, 0.10, 0.20, 0.25, 0.35)
    symbol_rate_hz : R_s [Hz]; 0 = B/(1+α)
    sample_rate_hz : emulator f_s [Hz]; 0 = B
    pilot_spacing : data symbols between pilot blocks; 0 = the modem's rule
    fading_max_doppler_hz : f_D of the diffuse multipath [Hz] (0 = no fading)
    doppler_precomp : none | full | residual (orbit-predicted pre-compensation)
    residual_hz : pre-compensation error with ``residual`` [Hz]
    max_iterations : LDPC decoder iterations at most
    fragment_size : payload transfer fragment size [bytes] (64…8192)
    """

    params: LinkParams = field(default_factory=LinkParams)
    modcod: str = _LC["modcod"]
    acm_margin_db: float = _LC["acm_margin_db"]
    acm_prediction: str = _LC["acm_prediction"]
    acm_feedback_delay_s: float = _LC["acm_feedback_delay_s"]
    rolloff: float = _LC["rolloff"]
    symbol_rate_hz: float = 0.0
    sample_rate_hz: float = 0.0
    pilot_spacing: int = 0
    fading_max_doppler_hz: float = _LC["fading_max_doppler_hz"]
    doppler_precomp: str = _LC["doppler_precomp"]
    residual_hz: float = _LC["residual_hz"]
    max_iterations: int = _LC["max_iterations"]
    fragment_size: int = 1024

    def modem_table(self) -> dict[str, Any]:
        """The emulator ``[[link]]`` keys of this modem (derived rates left to the emulator)."""
        t: dict[str, Any] = {
            "modcod": self.modcod,
            "acm_margin_db": self.acm_margin_db,
            "acm_prediction": self.acm_prediction,
            "acm_feedback_delay_s": self.acm_feedback_delay_s,
            "rolloff": self.rolloff,
            "pilot_spacing": self.pilot_spacing,
            "fading_max_doppler_hz": self.fading_max_doppler_hz,
            "doppler_precomp": self.doppler_precomp,
            "residual_hz": self.residual_hz,
            "max_iterations": self.max_iterations,
        }
        if self.symbol_rate_hz > 0:
            t["symbol_rate_hz"] = self.symbol_rate_hz
        if self.sample_rate_hz > 0:
            t["sample_rate_hz"] = self.sample_rate_hz
        return t

    @property
    def nominal_bitrate_bps(self) -> float:
        """The rate downloads (over the control channel) are charged at [bit/s]: QPSK 1/2
        at the link's symbol rate, framing included (≈ 0.95 bit per symbol)."""
        from flowgraphs.modcod import by_name

        rs = self.symbol_rate_hz or self.params.bandwidth_hz / (1 + self.rolloff)
        return rs * by_name("qpsk-1/2").bits_per_data_symbol * 0.965


@dataclass(frozen=True)
class ScheduleSpec:
    """``[schedule]``: when each cluster is connected.

    Attributes
    ----------
    mode : ``ideal`` (the paper's schedule: one cluster per slot, consecutive) or ``orbit``
        (each cluster's contact windows from the orbit model at its site)
    slot_s : ideal: length of one connected slot [s]
    idle_slots : ideal: idle slots per orbital cycle (Remark 4)
    start_s : emulated start of the run [s since the epoch]
    horizon_h : orbit: how far ahead contact windows are computed [h]
    """

    mode: str = "ideal"
    slot_s: float = 120.0
    idle_slots: int = 0
    start_s: float = 0.0
    horizon_h: float = 48.0


@dataclass(frozen=True)
class TimeSpec:
    """``[time]``: how local training maps onto the emulated clock.

    Attributes
    ----------
    compute : ``fixed`` (each local round takes ``round_s``) or ``measured`` (measured wall
        compute time × ``device_speed_factor``)
    round_s : fixed: emulated duration of one local training round [s]
    device_speed_factor : measured: emulated s per measured wall s
    late_policy : ``next`` (a late payload counts at the cluster's next aggregation) or ``drop``
    """

    compute: str = "fixed"
    round_s: float = 20.0
    device_speed_factor: float = 1.0
    late_policy: str = "next"


@dataclass(frozen=True)
class AlgorithmSpec:
    """``[algorithm]``: the algorithm and its hyper-parameters.

    Attributes
    ----------
    name : emsfl | emsfl-enhanced | baseline
    cycles : orbital cycles to run
    target_accuracy : global accuracy that defines ``cycles_to_target`` (0…1]
    update_norm_factor : the satellite rejects an update whose norm ‖w − w_global‖₂ exceeds
        this many times the median norm of the stage's accepted updates (before 3 were
        accepted: times max(‖w_global‖₂, 1) over the same tensors); 0 = no bound
    fl : other :class:`testbed.fl.config.FLConfig` fields set by the file (validated)
    """

    name: str = "emsfl-enhanced"
    cycles: int = 3
    target_accuracy: float = _FL.target_accuracy
    update_norm_factor: float = 10.0
    fl: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``.

    Attributes
    ----------
    path : ``""`` for the embedded default model, else an absolute checkpoint directory (in the
        file: relative to the scenario file)
    device : auto | cpu | cuda | cuda:N
    threads : torch intra-op threads of every node process that trains or evaluates
        (1…256); see docs/learning.md, *Determinism*
    """

    path: str = ""
    device: str = "auto"
    threads: int = _FL.threads


@dataclass(frozen=True)
class ClusterSpec:
    """One ``[[cluster]]``: a ground device cluster.

    Attributes
    ----------
    id : ``[A-Za-z0-9_-]{1,32}``, unique
    lat_deg, lon_deg : WGS-84 latitude [deg, −90…90] and longitude [deg, −180…360]
    alt_m : height above the ellipsoid [m]
    devices : devices in the cluster (≥ 1)
    """

    id: str
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    devices: int = _FL.devices_per_cluster


@dataclass(frozen=True)
class EndpointSpec:
    """``[endpoints]``: ZeroMQ endpoints; ``{run}`` is replaced by a per-run token.

    Attributes
    ----------
    prefix : ``ipc://...``: emulator link ``L`` binds ``<prefix>-L-{in,out,status}``;
        ``tcp://HOST:PORT``: cluster ``i`` (0-based) uses ports ``PORT + 6 i + 0..2`` (uplink
        in, out, status) and ``PORT + 6 i + 3..5`` (downlink)
    control : the satellite's ROUTER endpoint (``tcp://0.0.0.0:PORT`` for other hosts)
    keys : keys directory of the enrolled nodes (``testbed keys create``; a multi-host lab's
        shared certificates); None: ``testbed run`` creates fresh keys per run in
        ``OUT/<algorithm>/keys``. Every socket uses CURVE either way (docs/security.md).
    """

    prefix: str = "ipc:///tmp/satfl-{run}"
    control: str = "ipc:///tmp/satfl-{run}-control"
    keys: Path | None = None


@dataclass(frozen=True)
class ConstellationSpec:
    """``[constellation]``: many satellites for ``testbed link constellation --scenario``.

    Either ``walker`` (``"i:T/P/F"``, with ``pattern`` and ``altitude_km``) or ``tle_file``
    (a TLE set). The ISL keys are :class:`channel.isl.IslRules` in km; ``isl_terminal`` is
    ``rf`` or ``optical``; ``hours`` the contact plan's horizon from the scenario epoch.
    """

    walker: str | None = None
    pattern: str = "delta"
    altitude_km: float = 550.0
    tle_file: Path | None = None
    hours: float = 24.0
    min_elevation_deg: float = 10.0
    isl_terminal: str = "rf"
    grazing_altitude_km: float = 80.0
    max_isl_range_km: float = 5000.0
    max_slew_deg_s: float = 1.0
    intra_plane: bool = True
    inter_plane: bool = True


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: the user's own data set instead of the embedded one
    (:mod:`testbed.fl.user_data`): ``path`` (JSONL, relative to the scenario file) and
    ``kind`` (auto | mcqa | pairs). With a ``domain`` field, ``algorithm.major_fraction``
    sets the heterogeneity."""

    path: Path | None = None
    kind: str = "auto"


@dataclass(frozen=True)
class StationSpec:
    """One ``[[station]]``: a ground station of the constellation (``name`` [A-Za-z0-9_-])."""

    name: str
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file, validated (see the module docstring).

    Attributes
    ----------
    name : ``[A-Za-z0-9_-]{1,48}``
    clusters : the ground clusters, in file order (index = seed offset)
    seed : the one seed; cluster ``i``'s link is seeded ``seed + i``
    epoch : emulated t = 0 (UTC)
    description : free text
    source : the file it came from (error messages, relative paths); not compared
    """

    name: str
    clusters: tuple[ClusterSpec, ...]
    seed: int = 0
    epoch: datetime = DEFAULT_EPOCH
    description: str = ""
    orbit: OrbitSpec = field(default_factory=OrbitSpec)
    link: LinkSpec = field(default_factory=LinkSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    time: TimeSpec = field(default_factory=TimeSpec)
    algorithm: AlgorithmSpec = field(default_factory=AlgorithmSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    endpoints: EndpointSpec = field(default_factory=EndpointSpec)
    constellation: ConstellationSpec | None = None
    stations: tuple[StationSpec, ...] = ()
    data: DataSpec = field(default_factory=DataSpec)
    source: str = field(default="<scenario>", compare=False)

    # ---- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as the TOML document's dict (every key explicit).

        ``parse_scenario(s.to_dict(), s.source) == s``; paths are absolute.
        """
        head: dict[str, Any] = {
            "name": self.name,
            "seed": self.seed,
            "epoch": _iso(self.epoch),
        }
        if self.description:
            head["description"] = self.description
        o = self.orbit
        if o.tle_file is not None:
            orbit: dict[str, Any] = {"tle_file": str(o.tle_file)}
        else:
            orbit = {
                "altitude_km": o.altitude_km,
                "inclination_deg": o.inclination_deg,
                "raan_deg": o.raan_deg,
                "phase_deg": o.phase_deg,
            }
        lk = self.link
        link = {
            **lk.params.to_dict(),
            **{f.name: getattr(lk, f.name) for f in fields(LinkSpec) if f.name != "params"},
        }
        algo = {
            "name": self.algorithm.name,
            "cycles": self.algorithm.cycles,
            "target_accuracy": self.algorithm.target_accuracy,
            "update_norm_factor": self.algorithm.update_norm_factor,
            **self.algorithm.fl,
        }
        out = {
            "scenario": head,
            "orbit": orbit,
            "link": link,
            "schedule": _fields_dict(self.schedule),
            "time": _fields_dict(self.time),
            "algorithm": algo,
            "model": _fields_dict(self.model),
            "endpoints": {
                "prefix": self.endpoints.prefix,
                "control": self.endpoints.control,
                **({"keys": str(self.endpoints.keys)} if self.endpoints.keys else {}),
            },
            "cluster": [_fields_dict(c) for c in self.clusters],
        }
        if self.constellation is not None:
            con = {
                k: (str(x) if isinstance(x, Path) else x)
                for k, x in _fields_dict(self.constellation).items()
                if x is not None
            }
            out["constellation"] = con
        if self.stations:
            out["station"] = [_fields_dict(st) for st in self.stations]
        if self.data.path is not None:
            out["data"] = {**_fields_dict(self.data), "path": str(self.data.path)}
        return out

    def to_toml(self) -> str:
        """The resolved scenario as TOML text; ``load_scenario`` of it gives an equal object."""
        d = self.to_dict()
        out = [f"# scenario {self.name!r}, resolved (every key explicit)\n"]
        for table in ("scenario", "orbit", "link", "schedule", "time", "algorithm", "model"):
            out.append(_toml_table(table, d[table]))
        out.append(_toml_table("endpoints", d["endpoints"]))
        for c in d["cluster"]:
            out.append(_toml_table("cluster", c, array=True))
        if "constellation" in d:
            out.append(_toml_table("constellation", d["constellation"]))
        for st in d.get("station", []):
            out.append(_toml_table("station", st, array=True))
        if "data" in d:
            out.append(_toml_table("data", d["data"]))
        return "\n".join(out)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> Scenario:
        """A copy with ``KEY=VALUE`` overrides applied and validated.

        Parameters
        ----------
        overrides : e.g. ``["link.rician_k_db=3", "schedule.slot_s=60",
            'model.device="cpu"', "cluster.c1.devices=4"]``; values are TOML literals (a value
            that is not valid TOML is taken as a string); clusters are addressed by id.

        Raises
        ------
        ConfigError : a malformed override, an unknown key or an invalid value (names the key)
        """
        d = self.to_dict()
        src = self.source
        keys: dict[str, str] = {}  # the dotted key a parse error names → the --set key
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. link.rician_k_db=3)")
            value = _toml_value(text.strip())
            parts = key.split(".")
            if parts[0] == "cluster":
                if len(parts) != 3:
                    raise ConfigError(f"--set {key}: expected cluster.<id>.<key>")
                idx = [i for i, c in enumerate(d["cluster"]) if c.get("id") == parts[1]]
                if not idx:
                    ids = [c["id"] for c in d["cluster"]]
                    raise ConfigError(f"--set {key}: no cluster {parts[1]!r} (clusters: {ids})")
                d["cluster"][idx[0]][parts[2]] = value
                keys[f"cluster[{idx[0]}].{parts[2]}"] = key
                continue
            if len(parts) != 2 or not all(parts):
                raise ConfigError(f"--set {key}: unknown key (expected <table>.<key>)")
            if parts[0] in ("data", "constellation") and parts[0] not in d:
                d[parts[0]] = {}  # optional tables that the scenario did not have
            if parts[0] not in d:
                known = [k for k in d if k not in ("cluster", "station")]
                known += [k for k in ("data", "constellation") if k not in known]
                import difflib

                close = difflib.get_close_matches(parts[0], known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?; " if close else ""
                raise ConfigError(
                    f"--set {key}: unknown key ({hint}{parts[0]!r} is not a table; "
                    f"tables: {', '.join(known)}, and cluster.<id>.<key>)"
                )
            table = d[parts[0]]
            if parts[0] == "orbit" and parts[1] != "tle_file" and "tle_file" in table:
                # Switching from a TLE to circular elements: drop the TLE.
                table.pop("tle_file")
            if parts[0] == "orbit" and parts[1] == "tle_file":
                for k in ("altitude_km", "inclination_deg", "raan_deg", "phase_deg"):
                    table.pop(k, None)
            if parts[0] == "constellation" and parts[1] in ("walker", "tle_file"):
                table.pop("tle_file" if parts[1] == "walker" else "walker", None)
            table[parts[1]] = value
            keys[key] = key
        try:
            return parse_scenario(d, src)
        except ConfigError as e:
            msg, head = str(e), f"{src}: "
            rest = msg[len(head) :] if msg.startswith(head) else msg
            named, _, what = rest.partition(": ")
            for dotted, key in keys.items():
                if named == dotted or named.startswith(dotted + "."):
                    raise ConfigError(f"--set {key}: {what}") from None
            raise

    # ---- models ---------------------------------------------------------------------------

    def orbit_model(self) -> Orbit:
        """The satellite propagator, emulated t = 0 at :attr:`epoch`.

        Returns
        -------
        :class:`channel.CircularOrbit` (J2 secular drift) or :class:`channel.TleOrbit` (SGP4).
        """
        o = self.orbit
        if o.tle_file is not None:
            try:
                return TleOrbit.from_file(o.tle_file, epoch=self.epoch)
            except OrbitError as e:
                raise ConfigError(f"{self.source}: orbit.tle_file: {e}") from e
        return CircularOrbit(
            altitude_m=o.altitude_km * 1e3,
            inclination_deg=o.inclination_deg,
            raan_deg=o.raan_deg,
            phase_deg=o.phase_deg,
            epoch=self.epoch,
        )

    def cluster(self, cluster_id: str) -> ClusterSpec:
        """The cluster with this id (ConfigError naming ``cluster.id`` if there is none)."""
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        ids = [c.id for c in self.clusters]
        raise ConfigError(f"{self.source}: cluster.id: no cluster {cluster_id!r} (have {ids})")

    def cluster_index(self, cluster_id: str) -> int:
        """0-based position of the cluster in the file (its link seed offset)."""
        return self.clusters.index(self.cluster(cluster_id))

    def site(self, cluster_id: str) -> GroundSite:
        """The cluster's :class:`channel.GroundSite` (named after the cluster id)."""
        c = self.cluster(cluster_id)
        return GroundSite(c.lat_deg, c.lon_deg, c.alt_m, c.id)

    def link_geometry(self, cluster_id: str) -> LinkGeometry:
        """The cluster's uplink geometry; seeded ``seed + cluster index``."""
        return LinkGeometry(
            self.orbit_model(),
            self.site(cluster_id),
            self.link.params,
            seed=self.seed + self.cluster_index(cluster_id),
        )

    def fl_config(self) -> FLConfig:
        """The :class:`FLConfig` of this scenario.

        ``clusters`` is the number of clusters, ``devices_per_cluster`` the largest
        ``cluster.devices``, ``seed`` and ``target_accuracy`` from the scenario, ``threads``
        from ``model.threads``, the rest from ``[algorithm]`` (else FLConfig's defaults).
        """
        return FLConfig(
            clusters=len(self.clusters),
            devices_per_cluster=max(c.devices for c in self.clusters),
            seed=self.seed,
            target_accuracy=self.algorithm.target_accuracy,
            threads=self.model.threads,
            **self.algorithm.fl,
        )

    # ---- endpoints ------------------------------------------------------------------------

    def control_endpoint(self, run_token: str) -> str:
        """The satellite's ROUTER endpoint for this run."""
        return self.endpoints.control.replace("{run}", run_token)

    def link_endpoints(self, link_id: str, run_token: str) -> tuple[str, str, str]:
        """``(in, out, status)`` of emulator link ``<cid>`` (uplink) or ``<cid>-down``.

        See :class:`EndpointSpec` for the ipc:// and tcp:// layouts.
        """
        down = link_id.endswith("-down")
        cid = link_id[: -len("-down")] if down else link_id
        i = self.cluster_index(cid)
        prefix = self.endpoints.prefix.replace("{run}", run_token)
        if prefix.startswith("tcp://"):
            host, port = _tcp_host_port(prefix)
            base = port + _PORTS_PER_CLUSTER * i + (3 if down else 0)
            return tuple(f"tcp://{host}:{base + k}" for k in range(3))  # type: ignore[return-value]
        return tuple(f"{prefix}-{link_id}-{p}" for p in ("in", "out", "status"))  # type: ignore[return-value]

    def uplink_config(self, cluster_id: str, run_token: str) -> Any:
        """The emulator's :class:`flowgraphs.config.LinkConfig` of ``cluster_id``'s uplink, as
        the run's emulator gets it (same orbit, site, budget, modem, seed, schedule)."""
        from flowgraphs.config import parse_config
        from testbed.schedule import cluster_windows

        sched = cluster_windows(self) if self.schedule.mode == "ideal" else None
        cfg = parse_config(tomllib.loads(self.emulator_config_toml(run_token, sched)), self.source)
        return next(lc for lc in cfg.links if lc.id == cluster_id)

    def emulator_config_toml(
        self,
        run_token: str,
        schedule: dict[str, list[tuple[float, float]]] | None = None,
        keys: Path | None = None,
    ) -> str:
        """The ``testbed channel serve`` config (see :mod:`flowgraphs.config`) for this run.

        Links ``<cid>`` (uplink) and ``<cid>-down`` per cluster, each with the orbit, site,
        link parameters and seed of :meth:`link_geometry`. With ``schedule`` (cluster id →
        windows; the ideal schedule, :func:`testbed.schedule.cluster_windows`) each link is
        visible only in its cluster's slots (``[link.schedule]``). With ``keys`` every
        endpoint is CURVE: the uplink admits the cluster on ``in``/``status`` and the
        satellite on ``out``; the downlink the other way round.

        Raises
        ------
        ConfigError : the orbit is a TLE (the emulator config takes circular orbits only)
        """
        if self.orbit.tle_file is not None:
            raise ConfigError(
                f"{self.source}: orbit.tle_file: the channel emulator config supports circular "
                "orbits only; give altitude_km/inclination_deg/raan_deg/phase_deg"
            )
        lk = self.link
        orbit = self.orbit
        out = [
            f"# channel emulator config of scenario {self.name!r}, run {run_token!r}\n",
            _toml_table(
                "emulator",
                {"max_payload_bytes": 16384, **({"keys": str(keys)} if keys else {})},
            ),
        ]
        for c in self.clusters:
            for link_id in (c.id, f"{c.id}-down"):
                ep = self.link_endpoints(link_id, run_token)
                top = {
                    "id": link_id,
                    "in": ep[0],
                    "out": ep[1],
                    "status": ep[2],
                    "seed": self.seed + self.cluster_index(c.id),
                    **lk.modem_table(),
                    "realtime": False,
                }
                if keys is not None:
                    up = link_id == c.id
                    top["tx_node"] = c.id if up else "satellite"
                    top["rx_node"] = "satellite" if up else c.id
                out.append(_toml_table("link", top, array=True))
                orbit_d = {
                    "altitude_m": orbit.altitude_km * 1e3,
                    "inclination_deg": orbit.inclination_deg,
                    "raan_deg": orbit.raan_deg,
                    "phase_deg": orbit.phase_deg,
                    "epoch": self.epoch,
                }
                out.append(_toml_table("link.orbit", orbit_d))
                site_d = {
                    "lat_deg": c.lat_deg,
                    "lon_deg": c.lon_deg,
                    "alt_m": c.alt_m,
                    "name": c.id,
                }
                out.append(_toml_table("link.site", site_d))
                out.append(_toml_table("link.params", lk.params.to_dict()))
                if schedule is not None:
                    from testbed.schedule import SLOT_ELEVATION_DEG

                    wins = ", ".join(f"[{a!r}, {b!r}]" for a, b in schedule[c.id])
                    out.append(
                        f"[link.schedule]\nwindows = [{wins}]\n"
                        f"elevation_deg = {SLOT_ELEVATION_DEG!r}\n"
                    )
        return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``testbed/scenarios/``."""
    root = resources.files("testbed") / "scenarios"
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Load and validate a scenario file.

    Parameters
    ----------
    path_or_name : a path, or the name of a shipped scenario (no ``/``, no ``.toml``, and no
        such file in the working directory: ``"default"``, ``"gpu"``)

    Raises
    ------
    ConfigError : unreadable file, invalid TOML or an invalid value; the message names the file
        and the dotted key
    """
    text_name = str(path_or_name)
    if (
        not isinstance(path_or_name, Path)
        and "/" not in text_name
        and ".toml" not in text_name
        and not Path(text_name).is_file()  # a file in the working directory is taken as is
    ):
        shipped = shipped_scenarios()
        if text_name not in shipped:
            raise ConfigError(
                f"{text_name}: no such shipped scenario (shipped: {', '.join(shipped)}; "
                "give a path to load a file)"
            )
        path = Path(str(resources.files("testbed") / "scenarios" / f"{text_name}.toml"))
    else:
        path = Path(path_or_name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return parse_scenario(data, str(path))


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a parsed TOML document (``source`` names it in errors, anchors relative paths).

    Raises
    ------
    ConfigError : ``"{source}: {dotted.key}: what is wrong"``
    """
    v = _V(source)
    tables = (
        "scenario",
        "orbit",
        "link",
        "schedule",
        "time",
        "algorithm",
        "model",
        "endpoints",
        "data",
    )
    all_tables = (*tables, "cluster", "constellation", "station")
    for k in data:
        if k not in all_tables:
            import difflib

            close = difflib.get_close_matches(k, all_tables, n=1, cutoff=0.6)
            hint = f"did you mean [{close[0]}]?; " if close else ""
            raise v.err(k, f"unknown table ({hint}expected {', '.join(all_tables)})")
    if "scenario" not in data:
        raise v.err("scenario", "missing required table [scenario] (with at least name)")
    if "cluster" not in data:
        raise v.err("cluster", "missing required [[cluster]] tables (at least one)")
    t = {k: v.table(k, data.get(k, {})) for k in tables}

    s = t["scenario"]
    v.only("scenario", s, ("name", "seed", "epoch", "description"))
    if "name" not in s:
        raise v.err("scenario.name", "missing (a name of [A-Za-z0-9_-], 1..48 characters)")
    name = v.pattern("scenario.name", s["name"], _NAME, "a name of [A-Za-z0-9_-], 1..48 characters")
    seed = v.int("scenario.seed", s.get("seed", 0), lo=0)
    epoch = v.epoch("scenario.epoch", s.get("epoch", DEFAULT_EPOCH))
    description = v.str("scenario.description", s.get("description", ""))

    orbit = _orbit(v, t["orbit"], epoch)
    link = _link(v, t["link"])
    schedule = _schedule(v, t["schedule"])
    time_spec = _time(v, t["time"])
    algorithm = _algorithm(v, t["algorithm"])
    model = _model(v, t["model"])
    endpoints = _endpoints(v, t["endpoints"])
    clusters = _clusters(v, data["cluster"])
    constellation = (
        _constellation(v, v.table("constellation", data["constellation"]))
        if "constellation" in data
        else None
    )
    stations = _stations(v, data.get("station", []))
    data_spec = _data(v, t["data"])
    if stations and constellation is None:
        raise v.err("station", "[[station]] tables need a [constellation] table")
    if endpoints.prefix.startswith("tcp://"):
        _, port = _tcp_host_port(endpoints.prefix.replace("{run}", "x"))
        if port + _PORTS_PER_CLUSTER * len(clusters) - 1 > 65535:
            raise v.err("endpoints.prefix", f"port {port} + 6 per cluster exceeds 65535")
    return Scenario(
        name=name,
        clusters=clusters,
        seed=seed,
        epoch=epoch,
        description=description,
        orbit=orbit,
        link=link,
        schedule=schedule,
        time=time_spec,
        algorithm=algorithm,
        model=model,
        endpoints=endpoints,
        constellation=constellation,
        stations=stations,
        data=data_spec,
        source=source,
    )


def _data(v: _V, d: dict[str, Any]) -> DataSpec:
    v.only("data", d, tuple(f.name for f in fields(DataSpec)))
    if not d:
        return DataSpec()
    if "path" not in d:
        raise v.err("data.path", "missing (a JSONL file of MCQA questions or sentence pairs)")
    p = v.path("data.path", d["path"])
    if not p.is_file():
        raise v.err("data.path", f"no such file: {p}")
    return DataSpec(
        path=p, kind=v.choice("data.kind", d.get("kind", "auto"), ("auto", "mcqa", "pairs"))
    )


def _constellation(v: _V, d: dict[str, Any]) -> ConstellationSpec:
    from channel.constellation import ConstellationError, parse_walker

    allowed = tuple(f.name for f in fields(ConstellationSpec))
    v.only("constellation", d, allowed)
    if ("walker" in d) == ("tle_file" in d):
        raise v.err("constellation", "give exactly one of walker (i:T/P/F) or tle_file")
    walker = None
    if "walker" in d:
        walker = v.str("constellation.walker", d["walker"])
        try:
            parse_walker(walker)
        except ConstellationError as e:
            raise v.err("constellation.walker", str(e)) from None
    tle = v.path("constellation.tle_file", d["tle_file"]) if "tle_file" in d else None
    dflt = ConstellationSpec()

    def num(k: str, lo: float, hi: float, lo_open: bool = False) -> float:
        return v.num(f"constellation.{k}", d.get(k, getattr(dflt, k)), lo, hi, lo_open)

    def flag(k: str) -> bool:
        x = d.get(k, getattr(dflt, k))
        if not isinstance(x, bool):
            raise v.err(f"constellation.{k}", f"expected true or false, got {_show(x)}")
        return x

    el = num("min_elevation_deg", 0.0, 89.999)
    return ConstellationSpec(
        walker=walker,
        pattern=v.choice("constellation.pattern", d.get("pattern", "delta"), ("delta", "star")),
        altitude_km=num("altitude_km", 100.0, 40000.0),
        tle_file=tle,
        hours=num("hours", 0.0, 744.0, lo_open=True),
        min_elevation_deg=el,
        isl_terminal=v.choice(
            "constellation.isl_terminal", d.get("isl_terminal", "rf"), ("rf", "optical")
        ),
        grazing_altitude_km=num("grazing_altitude_km", 0.0, 1000.0),
        max_isl_range_km=num("max_isl_range_km", 0.0, 1e6, lo_open=True),
        max_slew_deg_s=num("max_slew_deg_s", 0.0, 1e3, lo_open=True),
        intra_plane=flag("intra_plane"),
        inter_plane=flag("inter_plane"),
    )


def _stations(v: _V, raw: Any) -> tuple[StationSpec, ...]:
    if not isinstance(raw, list):
        raise v.err("station", f"expected [[station]] tables, got {_show(raw)}")
    out: list[StationSpec] = []
    allowed = tuple(f.name for f in fields(StationSpec))
    for i, st in enumerate(raw):
        where = f"station[{i}]"
        if not isinstance(st, dict):
            raise v.err(where, f"expected a [[station]] table, got {_show(st)}")
        v.only(where, st, allowed)
        for req in ("name", "lat_deg", "lon_deg"):
            if req not in st:
                raise v.err(f"{where}.{req}", "missing (name, lat_deg and lon_deg are required)")
        name = v.pattern(f"{where}.name", st["name"], _CLUSTER_ID, "a name of [A-Za-z0-9_-], 1..32")
        if any(o.name == name for o in out):
            raise v.err(f"{where}.name", f"duplicate station name {name!r}")
        out.append(
            StationSpec(
                name=name,
                lat_deg=v.num(f"{where}.lat_deg", st["lat_deg"], -90.0, 90.0),
                lon_deg=v.num(f"{where}.lon_deg", st["lon_deg"], -180.0, 360.0),
                alt_m=v.num(f"{where}.alt_m", st.get("alt_m", 0.0), -500.0, 1.0e5),
            )
        )
    return tuple(out)


def unknown_key_hint(key: str, allowed: Any) -> str:
    """``"unknown key (did you mean 'x'?; allowed: a, b)"``, the suggestion by
    :func:`difflib.get_close_matches` when one is close enough."""
    import difflib

    names = sorted(allowed)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?; " if close else ""
    return f"unknown key ({hint}allowed: {', '.join(names)})"


class _V:
    """Typed value checks whose errors name the file and the dotted key."""

    def __init__(self, source: str) -> None:
        self.source = source
        p = Path(source)
        self.base = p.parent if p.suffix == ".toml" else Path.cwd()

    def err(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {what}")

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.err(key, f"expected a table [{key}], got {_show(value)}")
        return value

    def only(self, key: str, d: dict[str, Any], allowed: tuple[str, ...] | set[str]) -> None:
        for k in d:
            if k not in allowed:
                raise self.err(f"{key}.{k}", unknown_key_hint(k, allowed))

    def num(
        self,
        key: str,
        value: Any,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.err(key, f"expected a number, got {_show(value)}")
        x = float(value)
        if not math.isfinite(x):
            raise self.err(key, f"expected a finite number, got {value!r}")
        if lo is not None and (x <= lo if lo_open else x < lo):
            raise self.err(key, f"must be {'>' if lo_open else '>='} {lo:g}, got {value!r}")
        if hi is not None and x > hi:
            raise self.err(key, f"must be <= {hi:g}, got {value!r}")
        return x

    def int(self, key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(key, f"expected an integer, got {_show(value)}")
        if lo is not None and value < lo:
            raise self.err(key, f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise self.err(key, f"must be <= {hi}, got {value}")
        return value

    def str(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.err(key, f"expected a string, got {_show(value)}")
        return value

    def choice(self, key: str, value: Any, choices: tuple[str, ...]) -> str:
        s = self.str(key, value)
        if s not in choices:
            raise self.err(key, f"expected one of {', '.join(choices)}, got {s!r}")
        return s

    def pattern(self, key: str, value: Any, rx: re.Pattern[str], what: str) -> str:
        s = self.str(key, value)
        if not rx.match(s):
            raise self.err(key, f"expected {what}, got {s!r}")
        return s

    def epoch(self, key: str, value: Any) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self.err(
                    key, f"expected an ISO-8601 UTC time like 2026-01-01T00:00:00Z, got {value!r}"
                ) from None
        if isinstance(value, date | time) and not isinstance(value, datetime):
            raise self.err(key, f"expected a date and time with a UTC offset, got {value!r}")
        if not isinstance(value, datetime):
            raise self.err(key, f"expected an ISO-8601 UTC time string, got {_show(value)}")
        if value.tzinfo is None:
            raise self.err(key, f"needs a time zone (append Z for UTC), got {value.isoformat()!r}")
        return value.astimezone(UTC)

    def path(self, key: str, value: Any) -> Path:
        s = self.str(key, value)
        p = Path(s).expanduser()
        return (p if p.is_absolute() else self.base / p).resolve()


def _orbit(v: _V, d: dict[str, Any], epoch: datetime) -> OrbitSpec:
    elements = ("altitude_km", "inclination_deg", "raan_deg", "phase_deg")
    v.only("orbit", d, (*elements, "tle_file"))
    tle = d.get("tle_file", "")
    if tle != "":
        given = [k for k in elements if k in d]
        if given:
            raise v.err(f"orbit.{given[0]}", "give either tle_file or circular elements, not both")
        path = v.path("orbit.tle_file", tle)
        if not path.is_file():
            raise v.err("orbit.tle_file", f"no such file: {path}")
        try:
            TleOrbit.from_file(path, epoch=epoch)
        except OrbitError as e:
            raise v.err("orbit.tle_file", str(e)) from e
        return OrbitSpec(tle_file=path)
    dflt = OrbitSpec()
    spec = OrbitSpec(
        altitude_km=v.num("orbit.altitude_km", d.get("altitude_km", dflt.altitude_km), 100, 40000),
        inclination_deg=v.num(
            "orbit.inclination_deg", d.get("inclination_deg", dflt.inclination_deg), 0, 180
        ),
        raan_deg=v.num("orbit.raan_deg", d.get("raan_deg", dflt.raan_deg)),
        phase_deg=v.num("orbit.phase_deg", d.get("phase_deg", dflt.phase_deg)),
    )
    return spec


def _link(v: _V, d: dict[str, Any]) -> LinkSpec:
    param_names = tuple(f.name for f in fields(LinkParams))
    modem_names = tuple(f.name for f in fields(LinkSpec) if f.name != "params")
    v.only("link", d, (*param_names, *modem_names))
    params = LinkParams()
    for k in param_names:
        if k in d:
            x = v.num(f"link.{k}", d[k])
            try:
                params = params.with_updates(**{k: x})
            except LinkBudgetError as e:
                raise v.err(f"link.{k}", str(e)) from e
    dflt = LinkSpec()
    spec = LinkSpec(
        params=params,
        modcod=d.get("modcod", dflt.modcod),
        acm_margin_db=v.num("link.acm_margin_db", d.get("acm_margin_db", dflt.acm_margin_db)),
        acm_prediction=d.get("acm_prediction", dflt.acm_prediction),
        acm_feedback_delay_s=v.num(
            "link.acm_feedback_delay_s", d.get("acm_feedback_delay_s", dflt.acm_feedback_delay_s), 0
        ),
        rolloff=v.num("link.rolloff", d.get("rolloff", dflt.rolloff)),
        symbol_rate_hz=v.num("link.symbol_rate_hz", d.get("symbol_rate_hz", 0.0), 0),
        sample_rate_hz=v.num("link.sample_rate_hz", d.get("sample_rate_hz", 0.0), 0),
        pilot_spacing=v.int("link.pilot_spacing", d.get("pilot_spacing", 0), 0),
        fading_max_doppler_hz=v.num(
            "link.fading_max_doppler_hz",
            d.get("fading_max_doppler_hz", dflt.fading_max_doppler_hz),
            0.0,
        ),
        doppler_precomp=v.choice(
            "link.doppler_precomp", d.get("doppler_precomp", dflt.doppler_precomp), _PRECOMP
        ),
        residual_hz=v.num("link.residual_hz", d.get("residual_hz", dflt.residual_hz)),
        max_iterations=v.int(
            "link.max_iterations", d.get("max_iterations", dflt.max_iterations), 1, 1000
        ),
        fragment_size=v.int(
            "link.fragment_size", d.get("fragment_size", dflt.fragment_size), 64, 8192
        ),
    )
    # the emulator's own validation, so an impossible α / R_s / f_s or an unknown MODCOD is a
    # scenario error at load time, naming the key
    from flowgraphs.config import parse_config as _emu_parse
    from flowgraphs.errors import ConfigError as _EmuError

    table = {"id": "check", **spec.modem_table(), "params": params.to_dict()}
    try:
        _emu_parse({"link": [table]}, "<scenario>")
    except _EmuError as e:
        msg = str(e)
        key = msg.split("'check'.", 1)[1].split(":", 1)[0] if "'check'." in msg else "modcod"
        raise v.err(f"link.{key.split('.')[-1]}", msg.split(": ", 2)[-1]) from e
    return spec


def _schedule(v: _V, d: dict[str, Any]) -> ScheduleSpec:
    dflt = ScheduleSpec()
    v.only("schedule", d, tuple(f.name for f in fields(ScheduleSpec)))
    return ScheduleSpec(
        mode=v.choice("schedule.mode", d.get("mode", dflt.mode), ("ideal", "orbit")),
        slot_s=v.num("schedule.slot_s", d.get("slot_s", dflt.slot_s), 0, lo_open=True),
        idle_slots=v.int("schedule.idle_slots", d.get("idle_slots", dflt.idle_slots), 0),
        start_s=v.num("schedule.start_s", d.get("start_s", dflt.start_s), 0),
        horizon_h=v.num("schedule.horizon_h", d.get("horizon_h", dflt.horizon_h), 0, lo_open=True),
    )


def _time(v: _V, d: dict[str, Any]) -> TimeSpec:
    dflt = TimeSpec()
    v.only("time", d, tuple(f.name for f in fields(TimeSpec)))
    return TimeSpec(
        compute=v.choice("time.compute", d.get("compute", dflt.compute), ("fixed", "measured")),
        round_s=v.num("time.round_s", d.get("round_s", dflt.round_s), 0, lo_open=True),
        device_speed_factor=v.num(
            "time.device_speed_factor",
            d.get("device_speed_factor", dflt.device_speed_factor),
            0,
            lo_open=True,
        ),
        late_policy=v.choice(
            "time.late_policy", d.get("late_policy", dflt.late_policy), ("next", "drop")
        ),
    )


def _algorithm(v: _V, d: dict[str, Any]) -> AlgorithmSpec:
    dflt = AlgorithmSpec()
    fl_fields = {f.name: f for f in fields(FLConfig)}
    fl: dict[str, Any] = {}
    for k, x in d.items():
        key = f"algorithm.{k}"
        if k in ("name", "cycles", "target_accuracy", "update_norm_factor"):
            continue
        if k in _FL_SET_ELSEWHERE:
            raise v.err(key, f"set by {_FL_SET_ELSEWHERE[k]}, not in [algorithm]")
        if k not in fl_fields:
            allowed = sorted(
                {"name", "cycles", "update_norm_factor", *fl_fields} - set(_FL_SET_ELSEWHERE)
            )
            raise v.err(key, unknown_key_hint(k, allowed))
        if k == "relevance":
            fl[k] = v.choice(key, x, RELEVANCE_MODES)
        elif k == "loss":
            fl[k] = v.choice(key, x, LOSSES)
        elif k == "masked_cycles":
            fl[k] = v.int(key, x, 0)
        elif isinstance(getattr(_FL, k), int):
            fl[k] = v.int(key, x, 1)
        elif k in ("tau", "major_fraction", "masked_share"):
            fl[k] = v.num(key, x, 0.0, 1.0)
        else:
            fl[k] = v.num(key, x, 0.0, lo_open=True)
    return AlgorithmSpec(
        name=v.choice("algorithm.name", d.get("name", dflt.name), ALGORITHMS),
        cycles=v.int("algorithm.cycles", d.get("cycles", dflt.cycles), 1),
        target_accuracy=v.num(
            "algorithm.target_accuracy",
            d.get("target_accuracy", dflt.target_accuracy),
            0.0,
            1.0,
            lo_open=True,
        ),
        update_norm_factor=v.num(
            "algorithm.update_norm_factor",
            d.get("update_norm_factor", dflt.update_norm_factor),
            0.0,
        ),
        fl={k: fl[k] for k in fl_fields if k in fl},
    )


def _model(v: _V, d: dict[str, Any]) -> ModelSpec:
    v.only("model", d, ("path", "device", "threads"))
    raw = v.str("model.path", d.get("path", ""))
    path = ""
    if raw:
        p = v.path("model.path", raw)
        if not p.is_dir():
            raise v.err("model.path", f"no such checkpoint directory: {p}")
        path = str(p)
    device = v.str("model.device", d.get("device", "auto"))
    if not re.match(r"^(auto|cpu|cuda(:\d{1,2})?)$", device):
        raise v.err("model.device", f"expected auto, cpu, cuda or cuda:N, got {device!r}")
    threads = v.int("model.threads", d.get("threads", ModelSpec.threads), 1, MAX_THREADS)
    return ModelSpec(path=path, device=device, threads=threads)


def _endpoint(v: _V, key: str, value: Any) -> str:
    s = v.str(key, value)
    if not s.startswith(("ipc://", "tcp://")):
        raise v.err(key, f"expected an ipc:// or tcp:// endpoint, got {s!r}")
    if s.startswith("tcp://"):
        try:
            _tcp_host_port(s.replace("{run}", "x"))
        except ValueError as e:
            raise v.err(key, str(e)) from e
    elif len(s) <= len("ipc://"):
        raise v.err(key, f"expected an ipc:// path, got {s!r}")
    return s


def _endpoints(v: _V, d: dict[str, Any]) -> EndpointSpec:
    dflt = EndpointSpec()
    v.only("endpoints", d, ("prefix", "control", "keys"))
    keys = v.path("endpoints.keys", d["keys"]) if "keys" in d else None
    if keys is not None and not keys.is_dir():
        raise v.err("endpoints.keys", f"no such keys directory: {keys} (see `testbed keys`)")
    return EndpointSpec(
        prefix=_endpoint(v, "endpoints.prefix", d.get("prefix", dflt.prefix)),
        control=_endpoint(v, "endpoints.control", d.get("control", dflt.control)),
        keys=keys,
    )


def _clusters(v: _V, raw: Any) -> tuple[ClusterSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise v.err("cluster", "expected at least one [[cluster]] table")
    out: list[ClusterSpec] = []
    allowed = tuple(f.name for f in fields(ClusterSpec))
    for i, c in enumerate(raw):
        where = f"cluster[{i}]"
        if not isinstance(c, dict):
            raise v.err(where, f"expected a [[cluster]] table, got {_show(c)}")
        v.only(where, c, allowed)
        for req in ("id", "lat_deg", "lon_deg"):
            if req not in c:
                raise v.err(f"{where}.{req}", "missing (id, lat_deg and lon_deg are required)")
        cid = v.pattern(f"{where}.id", c["id"], _CLUSTER_ID, "an id of [A-Za-z0-9_-], 1..32")
        if any(o.id == cid for o in out):
            raise v.err(f"{where}.id", f"duplicate cluster id {cid!r}")
        where = f"cluster[{i}]"
        spec = ClusterSpec(
            id=cid,
            lat_deg=v.num(f"{where}.lat_deg", c["lat_deg"], -90.0, 90.0),
            lon_deg=v.num(f"{where}.lon_deg", c["lon_deg"], -180.0, 360.0),
            alt_m=v.num(f"{where}.alt_m", c.get("alt_m", 0.0), -500.0, 1.0e5),
            devices=v.int(f"{where}.devices", c.get("devices", ClusterSpec.devices), 1),
        )
        out.append(spec)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# TOML writing (tables of scalars; no dependency)
# --------------------------------------------------------------------------------------------


def _fields_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_scalar(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"cannot write {x} to TOML")
        return repr(x)
    if isinstance(x, datetime):
        return _iso(x)
    if isinstance(x, Path):
        return _toml_str(str(x))
    if isinstance(x, str):
        return _toml_str(x)
    if isinstance(x, list | tuple):
        return "[" + ", ".join(_toml_scalar(e) for e in x) + "]"
    raise TypeError(f"cannot write {type(x).__name__} to TOML")


def _toml_table(name: str, d: dict[str, Any], array: bool = False) -> str:
    head = f"[[{name}]]" if array else f"[{name}]"
    return head + "\n" + "".join(f"{k} = {_toml_scalar(x)}\n" for k, x in d.items())


def _toml_value(text: str) -> Any:
    """A TOML literal (``3``, ``"cpu"``, ``true``, ``1e6``); other text as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _tcp_host_port(endpoint: str) -> tuple[str, int]:
    rest = endpoint[len("tcp://") :]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected tcp://HOST:PORT with PORT in 1..65535, got {endpoint!r}")
    return host, int(port)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
