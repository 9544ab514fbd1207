"""Shared test configuration.

GNU Radio, ZeroMQ, torch, transformers and peft are real dependencies: a test that needs
one imports it directly and fails (never skips) when it is missing. Only GPU tests skip,
where no CUDA device is present.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def default_sigint() -> None:
    """``preexec_fn`` for a child a test interrupts with SIGINT: as from a terminal. A suite
    started in the background (``make test &``) inherits SIGINT ignored, and Python keeps
    ignoring it in every child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)


def run_cli(
    *args: str, timeout: float = 300.0, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m testbed.cli ARGS`` as a user would, capturing output."""
    full_env = dict(os.environ)
    full_env.setdefault("MPLBACKEND", "Agg")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
    )


@pytest.fixture
def cli():
    return run_cli
