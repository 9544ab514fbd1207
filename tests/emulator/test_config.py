"""The emulator config file: defaults, and errors that name the file and the key."""

from __future__ import annotations

import pytest

from flowgraphs.config import load_config, parse_config
from flowgraphs.errors import ConfigError


def test_defaults_fill_the_sub_channel():
    cfg = parse_config({"link": [{"id": "c1"}]})
    lk = cfg.links[0]
    assert lk.in_addr == "ipc:///tmp/satfl-c1-in" and lk.out_addr.endswith("c1-out")
    # R_s = B/(1+α), f_s = B, ACM, orbit-predicted pre-compensation, static-terminal f_D
    assert lk.rolloff == 0.05 and lk.symbol_rate_hz == pytest.approx(5e6 / 1.05)
    assert lk.sample_rate_hz == 5e6 and lk.occupied_bandwidth_hz == pytest.approx(5e6)
    assert lk.modcod == "acm" and lk.doppler_precomp == "residual" and lk.residual_hz == 300.0
    assert lk.fading_max_doppler_hz == 5.0 and lk.pilot_spacing == 1440
    assert lk.geometry().params.min_elevation_deg == 10.0
    nb = parse_config(
        {
            "link": [
                {
                    "id": "c",
                    "rolloff": 0.25,
                    "residual_hz": 20.0,
                    "params": {"bandwidth_hz": 12.5e3},
                }
            ]
        }
    ).links[0]
    assert nb.symbol_rate_hz == 10e3 and nb.pilot_spacing == 180


@pytest.mark.parametrize(
    ("link", "key"),
    [
        ({"id": "a b"}, "id"),
        ({"id": "a", "modcod": "ofdm"}, "modcod"),
        ({"id": "a", "modulation": "qpsk"}, "modulation"),
        ({"id": "a", "symbol_rate_hz": 6e6}, "symbol_rate_hz"),
        ({"id": "a", "sample_rate_hz": 4e6}, "sample_rate_hz"),
        ({"id": "a", "sample_rate_hz": 5.0000001e6}, "sample_rate_hz"),
        ({"id": "a", "rolloff": 0.3}, "rolloff"),
        ({"id": "a", "acm_prediction": "oracle"}, "acm_prediction"),
        ({"id": "a", "llr": "fast"}, "llr"),
        ({"id": "a", "max_iterations": 0}, "max_iterations"),
        ({"id": "a", "pilot_spacing": -1}, "pilot_spacing"),
        ({"id": "a", "residual_hz": 5000.0, "params": {"bandwidth_hz": 1e5}}, "residual_hz"),
        (
            {"id": "a", "doppler_precomp": "none", "params": {"bandwidth_hz": 1e6}},
            "doppler_precomp",
        ),
        ({"id": "a", "doppler_precomp": "some"}, "doppler_precomp"),
        ({"id": "a", "in": "http://x"}, "in"),
        ({"id": "a", "params": {"bogus": 1}}, "params"),
        ({"id": "a", "orbit": {"altitude_m": 5}}, "orbit"),
        ({"id": "a", "seed": -1}, "seed"),
        ({"id": "a", "colour": "red"}, "colour"),
    ],
)
def test_errors_name_the_key(link, key):
    with pytest.raises(ConfigError, match=key):
        parse_config({"link": [link]}, "emu.toml")


def test_duplicate_ids_and_missing_links(tmp_path):
    with pytest.raises(ConfigError, match="duplicate"):
        parse_config({"link": [{"id": "a"}, {"id": "a"}]})
    with pytest.raises(ConfigError, match="at least one"):
        parse_config({})
    p = tmp_path / "bad.toml"
    p.write_text("[[link]\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(p)


def test_schedule_table_builds_a_scheduled_geometry(tmp_path):
    from channel import ScheduledLinkGeometry
    from flowgraphs.config import load_config

    f = tmp_path / "e.toml"
    f.write_text(
        '[[link]]\nid = "c1"\n[link.schedule]\nwindows = [[10.0, 20.0], [0.0, 5.0]]\n'
        "elevation_deg = 60.0\n"
    )
    g = load_config(f).links[0].geometry()
    assert isinstance(g, ScheduledLinkGeometry)
    assert g.schedule == [(0.0, 5.0), (10.0, 20.0)] and g.elevation_deg == 60.0


@pytest.mark.parametrize(
    "body,key",
    [
        ("windows = [[5.0, 1.0]]", "schedule.windows[0]"),
        ("windows = [[0.0, 10.0], [5.0, 20.0]]", "schedule.windows"),
        ("windows = []", "schedule.windows"),
        ("windows = [[0.0, 1.0]]\nelevation_deg = 3.0", "schedule.elevation_deg"),
        ("windows = [[0.0, 1.0]]\nbogus = 1", "schedule.bogus"),
    ],
)
def test_bad_schedule_names_the_key(tmp_path, body, key):
    from flowgraphs.config import load_config
    from flowgraphs.errors import ConfigError

    f = tmp_path / "e.toml"
    f.write_text(f'[[link]]\nid = "c1"\n[link.schedule]\n{body}\n')
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(f)


def test_a_binary_config_file_is_a_one_line_error(tmp_path):
    from flowgraphs.config import ConfigError, load_config

    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)
