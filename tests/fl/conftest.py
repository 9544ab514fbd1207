"""Shared fixtures: the embedded default model, built once per session in a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.fl.config import FLConfig


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP spinning otherwise slows the
    suite down ten-fold under load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fl-cache")


@pytest.fixture(scope="session")
def default_model_dir(fl_cache: Path) -> Path:
    """Directory of the embedded default model (seed 0), built once for the session."""
    from testbed.fl.model import build_default_model

    build_default_model(0, fl_cache)
    (path,) = [p for p in fl_cache.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return path


@pytest.fixture
def fresh_model(default_model_dir: Path):
    """A freshly loaded copy of the default model and its tokenizer (CPU)."""
    import torch

    from testbed.fl.model import load_model

    torch.manual_seed(0)
    return load_model(default_model_dir, device=torch.device("cpu"))


@pytest.fixture
def small_config() -> FLConfig:
    """Small federation used by the integration tests."""
    return FLConfig(
        clusters=3,
        devices_per_cluster=2,
        examples_per_device=64,
        test_per_cluster=48,
        local_steps=4,
        masked_cycles=1,
        seed=0,
    )
