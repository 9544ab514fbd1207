import os

import pytest

from nodes.payload import manifest_for, new_transfer_id
from nodes.receiver import ReceiverConfig, ReceiverEngine
from nodes.sender import SenderDriver, SenderEngine
from nodes.simlink import SimLinkParams, SimulatedLink
from nodes.store import ReceiverStore


def accepted_files(d):
    acc = os.path.join(d, "accepted")
    return sorted(f for f in os.listdir(acc))


def run_sim(
    tmp_path,
    data,
    params,
    frag=512,
    sender_cfg=None,
    windows=None,
    start=0.0,
    rx_cfg=None,
    round_=1,
    sender="c1",
):
    store = ReceiverStore(tmp_path / "rx")
    rx = ReceiverEngine(store, rx_cfg or ReceiverConfig(frame_bytes=frag + 64))
    link = SimulatedLink(rx, params)
    m = manifest_for(data, sender, round_, frag)
    eng = SenderEngine(new_transfer_id(), m, data)
    drv = SenderDriver(
        eng, link, sender_cfg or link.sender_config(), windows=windows, start_s=start
    )
    rec = drv.run()
    return rec, rx, link, eng


@pytest.fixture
def sim(tmp_path):
    def _run(data, params, **kw):
        return run_sim(tmp_path, data, params, **kw)

    return _run


@pytest.fixture
def payload():
    return os.urandom(200_000)


__all__ = ["SimLinkParams", "accepted_files", "run_sim"]
