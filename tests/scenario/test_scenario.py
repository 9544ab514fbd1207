"""Scenario files: loading, validation errors naming file and key, round trip, overrides,
and the emulator config agreeing with the link geometry (fast unit tests, no GNU Radio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from channel import CircularOrbit, TleOrbit, circular_tle
from flowgraphs.config import load_config
from testbed.errors import ConfigError
from testbed.fl.config import FLConfig
from testbed.scenario import Scenario, load_scenario, shipped_scenarios

MINIMAL = """
[scenario]
name = "t"

[[cluster]]
id = "c1"
lat_deg = 48.1
lon_deg = 11.6
"""


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_shipped_scenario_loads() -> None:
    # Prepare
    names = shipped_scenarios()
    # Execute
    scenarios = [load_scenario(n) for n in names]
    # Assert
    assert {"default", "gpu"} <= set(names)
    for n, s in zip(names, scenarios, strict=True):
        assert s.name == n
        assert s.source.endswith(f"{n}.toml")
        assert s.fl_config().clusters == len(s.clusters)
    default = load_scenario("default")
    assert default.model.device == "cpu" and default.model.path == ""
    assert default.schedule.mode == "ideal" and len(default.clusters) == 3
    gpu = load_scenario("gpu")
    assert gpu.model.device == "cuda" and gpu.schedule.mode == "orbit"
    assert gpu.link.params.tx_power_dbm == 23.0 and gpu.link.params.rx_antenna_gain_dbi == 40.0


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, MINIMAL))
    assert s.link == Scenario("x", ()).link
    assert s.algorithm.fl == {} and s.fl_config() == FLConfig(clusters=1)
    assert s.clusters[0].alt_m == 0.0 and s.clusters[0].devices == FLConfig().devices_per_cluster


@pytest.mark.parametrize("name", ["default", "gpu"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    # Prepare
    s = load_scenario(name).with_overrides(["algorithm.lr=0.001", 'scenario.description="a\\"b"'])
    # Execute
    again = load_scenario(_write(tmp_path, s.to_toml(), "resolved.toml"))
    # Assert
    assert again == s
    assert again.to_toml() == s.to_toml()
    assert again.to_dict() == s.to_dict()


def test_overrides() -> None:
    s = load_scenario("default")
    t = s.with_overrides(
        [
            "link.rician_k_db=3",
            "schedule.slot_s=60",
            "model.device=cuda",
            'link.modcod="8psk-2/3"',
            "cluster.madrid.devices=5",
            "orbit.altitude_km=550",
            'algorithm.relevance="frequency"',
            "algorithm.tau_relative=0.5",
        ]
    )
    fl = t.fl_config()
    assert fl.relevance == "frequency" and fl.threshold(4) == 0.125 and fl.tau is None
    assert s.fl_config().relevance == "soft" and s.fl_config().threshold(4) == pytest.approx(0.1)
    assert t.link.params.rician_k_db == 3.0 and t.schedule.slot_s == 60.0
    assert t.model.device == "cuda" and t.link.modcod == "8psk-2/3"
    assert t.cluster("madrid").devices == 5 and t.orbit.altitude_km == 550.0
    assert s.link.params.rician_k_db == 10.0  # the original is unchanged
    assert t != s


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("link.no_such_key=3", "link.no_such_key"),
        ("nosuch.key=1", "nosuch.key"),
        ("link.rician_k_db=x", "link.rician_k_db"),
        ("schedule.slot_s=0", "schedule.slot_s"),
        ("cluster.nobody.devices=1", "cluster.nobody.devices"),
        ("algorithm.no_such=1", "algorithm.no_such"),
        ('algorithm.relevance="mean"', "algorithm.relevance"),
        ("algorithm.tau_relative=0", "algorithm.tau_relative"),
        ("link", "'link'"),
    ],
)
def test_bad_override_names_the_key(override: str, key: str) -> None:
    s = load_scenario("default")
    with pytest.raises(ConfigError) as e:
        s.with_overrides([override])
    msg = str(e.value)
    assert msg.startswith("--set "), msg  # the value came from the command line, not the file
    assert s.source not in msg and key in msg


def test_unknown_keys_suggest_the_nearest_name(tmp_path: Path) -> None:
    s = load_scenario("default")
    with pytest.raises(ConfigError, match="did you mean 'rician_k_db'"):
        s.with_overrides(["link.rician_kdb=3"])
    with pytest.raises(ConfigError, match="did you mean 'link'"):
        s.with_overrides(["lnk.rician_k_db=3"])
    p = _write(tmp_path, _HEAD + "[sheduel]\nslot_s = 3\n" + _CLUSTER)
    with pytest.raises(ConfigError, match=r"did you mean \[schedule\]"):
        load_scenario(p)
    p = _write(tmp_path, _HEAD + "[schedule]\nslots = 3\n" + _CLUSTER)
    with pytest.raises(ConfigError, match="did you mean 'slot_s'"):
        load_scenario(p)
    # a bad value in the file itself is still the file's
    p = _write(tmp_path, _HEAD + "[schedule]\nslot_s = -3\n" + _CLUSTER)
    with pytest.raises(ConfigError) as e:
        load_scenario(p).with_overrides(["link.rician_k_db=3"])
    assert str(e.value).startswith(f"{p}: schedule.slot_s")


_CLUSTER = '[[cluster]]\nid = "c1"\nlat_deg = 48.1\nlon_deg = 11.6\n'
_HEAD = '[scenario]\nname = "t"\n'

BAD = [
    # (file text, dotted key that the message must name, fragment of the reason)
    (_CLUSTER, "scenario", "missing"),
    (_HEAD, "cluster", "missing"),
    (_HEAD + "[link]\nrician_k_db = 'x'\n" + _CLUSTER, "link.rician_k_db", "expected a number"),
    (_HEAD + "[link]\nrician_k_db = true\n" + _CLUSTER, "link.rician_k_db", "expected a number"),
    (_HEAD + "[link]\nrician_kdb = 3\n" + _CLUSTER, "link.rician_kdb", "unknown key"),
    (_HEAD + "[link]\nmin_elevation_deg = 95\n" + _CLUSTER, "link.min_elevation_deg", "90"),
    (_HEAD + "[link]\nbandwidth_hz = -1\n" + _CLUSTER, "link.bandwidth_hz", "positive"),
    (_HEAD + "[link]\nrain_probability = 2\n" + _CLUSTER, "link.rain_probability", "0..1"),
    (_HEAD + "[link]\nmodcod = 'ofdm'\n" + _CLUSTER, "link.modcod", "unknown MODCOD"),
    (_HEAD + "[link]\nsymbol_rate_hz = 6e6\n" + _CLUSTER, "link.symbol_rate_hz", "exceeds"),
    (_HEAD + "[link]\nsample_rate_hz = 4.1e6\n" + _CLUSTER, "link.sample_rate_hz", "below"),
    (_HEAD + "[link]\nsample_rate_hz = 5.0000001e6\n" + _CLUSTER, "link.sample_rate_hz", "ratio"),
    (_HEAD + "[link]\ndoppler_precomp = 'some'\n" + _CLUSTER, "link.doppler_precomp", "one of"),
    (_HEAD + "[link]\nfragment_size = 10\n" + _CLUSTER, "link.fragment_size", ">= 64"),
    (_HEAD + "[link]\nfragment_size = 1024.5\n" + _CLUSTER, "link.fragment_size", "integer"),
    (_HEAD + "[link]\nrolloff = 2.0\n" + _CLUSTER, "link.rolloff", "expected one of"),
    (_HEAD + "[schedule]\nslot_s = 0\n" + _CLUSTER, "schedule.slot_s", "> 0"),
    (_HEAD + "[schedule]\nslot_s = -5.0\n" + _CLUSTER, "schedule.slot_s", "> 0"),
    (_HEAD + "[schedule]\nmode = 'real'\n" + _CLUSTER, "schedule.mode", "ideal, orbit"),
    (_HEAD + "[schedule]\nidle_slots = -1\n" + _CLUSTER, "schedule.idle_slots", ">= 0"),
    (_HEAD + "[schedule]\nidle_slots = 1.5\n" + _CLUSTER, "schedule.idle_slots", "integer"),
    (_HEAD + "[time]\ncompute = 'guess'\n" + _CLUSTER, "time.compute", "fixed, measured"),
    (_HEAD + "[time]\ndevice_speed_factor = 0\n" + _CLUSTER, "time.device_speed_factor", "> 0"),
    (_HEAD + "[time]\nlate_policy = 'keep'\n" + _CLUSTER, "time.late_policy", "next, drop"),
    (_HEAD + "[algorithm]\nname = 'fedprox'\n" + _CLUSTER, "algorithm.name", "emsfl"),
    (_HEAD + "[algorithm]\ncycles = 0\n" + _CLUSTER, "algorithm.cycles", ">= 1"),
    (_HEAD + "[algorithm]\nlearning_rate = 0.1\n" + _CLUSTER, "algorithm.learning_rate", "unknown"),
    (_HEAD + "[algorithm]\nlr = -0.1\n" + _CLUSTER, "algorithm.lr", "> 0"),
    (_HEAD + "[algorithm]\nlora_rank = '4'\n" + _CLUSTER, "algorithm.lora_rank", "integer"),
    (_HEAD + "[algorithm]\nclusters = 4\n" + _CLUSTER, "algorithm.clusters", "[[cluster]]"),
    (_HEAD + "[algorithm]\ntarget_accuracy = 1.5\n" + _CLUSTER, "algorithm.target_accuracy", "1"),
    (_HEAD + "[model]\ndevice = 'tpu'\n" + _CLUSTER, "model.device", "auto, cpu, cuda"),
    (_HEAD + "[model]\npath = 'no/such/dir'\n" + _CLUSTER, "model.path", "no such"),
    (_HEAD + "[orbit]\naltitude_km = 50\n" + _CLUSTER, "orbit.altitude_km", ">= 100"),
    (_HEAD + "[orbit]\ninclination_deg = 200\n" + _CLUSTER, "orbit.inclination_deg", "<= 180"),
    (_HEAD + "[orbit]\neccentricity = 0.1\n" + _CLUSTER, "orbit.eccentricity", "unknown"),
    (_HEAD + "[orbit]\ntle_file = 'missing.tle'\n" + _CLUSTER, "orbit.tle_file", "no such file"),
    (_HEAD + "[endpoints]\nprefix = 'http://x'\n" + _CLUSTER, "endpoints.prefix", "ipc://"),
    (_HEAD + "[endpoints]\ncontrol = 'tcp://host'\n" + _CLUSTER, "endpoints.control", "PORT"),
    (_HEAD + "[endpoints]\nbogus = 1\n" + _CLUSTER, "endpoints.bogus", "unknown"),
    (_HEAD + "[oribt]\naltitude_km = 500\n" + _CLUSTER, "oribt", "unknown table"),
    (_HEAD + "link = 3\n" + _CLUSTER, "scenario.link", "unknown key"),
    ("link = 3\n" + _HEAD + _CLUSTER, "link", "expected a table"),
    ('[scenario]\nname = "bad name!"\n' + _CLUSTER, "scenario.name", "A-Za-z0-9"),
    (_HEAD + "seed = -1\n" + _CLUSTER, "scenario.seed", ">= 0"),
    (_HEAD + "seed = 1.0\n" + _CLUSTER, "scenario.seed", "integer"),
    (_HEAD + "epoch = 'tomorrow'\n" + _CLUSTER, "scenario.epoch", "ISO-8601"),
    (_HEAD + "epoch = '2026-01-01T00:00:00'\n" + _CLUSTER, "scenario.epoch", "time zone"),
    (_HEAD + _CLUSTER + _CLUSTER, "cluster[1].id", "duplicate"),
    (_HEAD + '[[cluster]]\nid = "c1"\nlat_deg = 48.1\n', "cluster[0].lon_deg", "missing"),
    (_HEAD + _CLUSTER + "devices = 0\n", "cluster[0].devices", ">= 1"),
    (_HEAD + _CLUSTER + "lat_deg2 = 1\n", "cluster[0].lat_deg2", "unknown"),
    (_HEAD + '[[cluster]]\nid = "c1"\nlat_deg = 91\nlon_deg = 0\n', "cluster[0].lat_deg", "90"),
    (_HEAD + '[[cluster]]\nid = "c 1"\nlat_deg = 1\nlon_deg = 0\n', "cluster[0].id", "A-Za-z"),
    (_HEAD + "[link]\nrician_k_db = 'x'\n" + _CLUSTER, "link.rician_k_db", 'got "x"'),
    (
        _HEAD + _CLUSTER + "[constellation]\nwalker = '53:24/5/1'\n",
        "constellation.walker",
        "not a multiple",
    ),
    (
        _HEAD + _CLUSTER + "[constellation]\nwalker = '53:24/4/1'\npattern = 'rosette'\n",
        "constellation.pattern",
        "delta, star",
    ),
    (_HEAD + _CLUSTER + "[constellation]\n", "constellation", "exactly one of walker"),
    (
        _HEAD + _CLUSTER + "[constellation]\nwalker = '53:24/4/1'\nhours = 0\n",
        "constellation.hours",
        "> 0",
    ),
    (
        _HEAD + _CLUSTER + "[constellation]\nwalker = '53:24/4/1'\nplanes = 4\n",
        "constellation.planes",
        "unknown",
    ),
    (
        _HEAD + _CLUSTER + "[constellation]\nwalker = '53:24/4/1'\n[[station]]\nname = 'a'\n"
        "lat_deg = 95\nlon_deg = 0\n",
        "station[0].lat_deg",
        "90",
    ),
    (
        _HEAD + _CLUSTER + "[constellation]\nwalker = '53:24/4/1'\n[[station]]\nname = 'a b'\n"
        "lat_deg = 5\nlon_deg = 0\n",
        "station[0].name",
        "A-Za-z",
    ),
    (
        _HEAD + _CLUSTER + "[[station]]\nname = 'a'\nlat_deg = 5\nlon_deg = 0\n",
        "station",
        "need a [constellation]",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "reason"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_file_names_file_and_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    # Prepare
    path = _write(tmp_path, text)
    # Execute
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    # Assert
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert reason in msg, msg


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_scenario(tmp_path / "nope.toml")
    bad = _write(tmp_path, "[scenario\nname=")
    with pytest.raises(ConfigError, match=r"s\.toml: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="no such shipped scenario"):
        load_scenario("no-such-scenario")


def test_a_bare_file_name_in_the_working_directory_is_a_file(tmp_path, monkeypatch) -> None:
    from testbed.scenario import shipped_scenarios

    text = (Path(__file__).resolve().parents[2] / "testbed/scenarios/default.toml").read_text()
    (tmp_path / "mine.cfg").write_text(text.replace('name = "default"', 'name = "mine"', 1))
    monkeypatch.chdir(tmp_path)
    assert load_scenario("mine.cfg").name == "mine"
    assert load_scenario("default").name == "default" and "default" in shipped_scenarios()


def test_emulator_config_matches_link_geometry(tmp_path: Path) -> None:
    # Prepare
    s = load_scenario("default").with_overrides(["scenario.seed=7", "link.rain_probability=0.5"])
    path = _write(tmp_path, s.emulator_config_toml("run42"), "emu.toml")
    t = np.linspace(0.0, 6 * 3600.0, 2001)
    # Execute
    cfg = load_config(path)
    # Assert
    links = {lk.id: lk for lk in cfg.links}
    assert set(links) == {i for c in s.clusters for i in (c.id, f"{c.id}-down")}
    for i, c in enumerate(s.clusters):
        want = s.link_geometry(c.id)
        assert want.seed == 7 + i
        for lid in (c.id, f"{c.id}-down"):
            lk = links[lid]
            assert lk.in_addr == f"ipc:///tmp/satfl-run42-{lid}-in"
            assert lk.modcod == s.link.modcod and lk.rolloff == s.link.rolloff
            assert lk.doppler_precomp == "residual" and lk.residual_hz == s.link.residual_hz
            assert lk.params == s.link.params and lk.seed == want.seed
            assert lk.orbit == s.orbit_model()
            got = lk.geometry()
            a, b = want.state(t), got.state(t)
            # Same inputs; NumPy's SIMD transcendentals may differ by 1 ulp with alignment.
            for f in a.__dataclass_fields__:
                np.testing.assert_allclose(
                    getattr(a, f), getattr(b, f), rtol=1e-12, atol=1e-9, err_msg=f
                )
            np.testing.assert_array_equal(a.visible, b.visible)
            np.testing.assert_array_equal(a.raining, b.raining)
    assert s.control_endpoint("run42") == "ipc:///tmp/satfl-run42-control"


def test_tcp_endpoints_layout(tmp_path: Path) -> None:
    s = load_scenario("default").with_overrides(
        ['endpoints.prefix="tcp://10.0.0.2:6000"', 'endpoints.control="tcp://0.0.0.0:5999"']
    )
    assert s.link_endpoints("munich", "r") == (
        "tcp://10.0.0.2:6000",
        "tcp://10.0.0.2:6001",
        "tcp://10.0.0.2:6002",
    )
    assert s.link_endpoints("madrid-down", "r")[0] == "tcp://10.0.0.2:6009"
    cfg = load_config(_write(tmp_path, s.emulator_config_toml("r"), "emu.toml"))
    assert len({a for lk in cfg.links for a in (lk.in_addr, lk.out_addr, lk.status_addr)}) == 18


def test_tle_path_relative_to_scenario_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the TLE beside the scenario, loaded from another working directory
    sub = tmp_path / "scen"
    (sub / "orbits").mkdir(parents=True)
    (sub / "orbits" / "sat.tle").write_text(circular_tle(CircularOrbit()))
    path = _write(sub, _HEAD + "[orbit]\ntle_file = 'orbits/sat.tle'\n" + _CLUSTER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # Execute
    s = load_scenario(path)
    # Assert
    assert s.orbit.tle_file == (sub / "orbits" / "sat.tle").resolve()
    orbit = s.orbit_model()
    assert isinstance(orbit, TleOrbit) and orbit.epoch == s.epoch
    assert np.isfinite(s.link_geometry("c1").state(np.arange(0.0, 600.0, 60.0)).snr_db).all()
    assert load_scenario(_write(tmp_path, s.to_toml(), "r.toml")) == s
    with pytest.raises(ConfigError, match=r"orbit\.tle_file: .*circular"):
        s.emulator_config_toml("r")
    both = _write(
        sub, _HEAD + "[orbit]\ntle_file = 'orbits/sat.tle'\naltitude_km = 500\n" + _CLUSTER
    )
    with pytest.raises(ConfigError, match=r"orbit\.altitude_km: give either"):
        load_scenario(both)
    (sub / "bad.tle").write_text("1 bad\n2 bad\n")
    bad = _write(sub, _HEAD + "[orbit]\ntle_file = 'bad.tle'\n" + _CLUSTER)
    with pytest.raises(ConfigError, match=r"s\.toml: orbit\.tle_file: .*malformed"):
        load_scenario(bad)


def test_unknown_cluster_names_the_key() -> None:
    s = load_scenario("default")
    with pytest.raises(ConfigError, match=r"cluster\.id: no cluster 'nowhere'"):
        s.site("nowhere")
    assert s.site("madrid").lat_deg == 40.42
