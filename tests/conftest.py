"""Test configuration: hypothesis profiles, matplotlib backend, shared fixtures.

Hypothesis profiles (choose with ``HYPOTHESIS_PROFILE=dev pytest tests``):

* ``ci`` (default): 50 examples per property, derandomized (the same examples on every run,
  so CI is reproducible), no deadline (timings on shared runners are noisy), no example
  database.
* ``dev``: 500 random examples per property, with the local example database, for hunting.

The per-dtype tolerance table and the device list live in ``tests/tolerances.py`` and are
exposed here as the ``tol`` and ``device`` fixtures.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display in CI

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from tolerances import DEVICES, TOLERANCES  # noqa: E402,F401

settings.register_profile(
    "ci", max_examples=50, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile(
    "dev", max_examples=500, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

devices = DEVICES  # cpu, plus cuda when available


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each test that takes ``device`` runs once per available device."""
    return request.param


@pytest.fixture
def tol():
    """``tol(dtype) -> dict(rtol=..., atol=...)`` from the per-dtype table."""
    from tolerances import tol as _tol
    return _tol


@pytest.fixture
def gen() -> torch.Generator:
    """A CPU generator with a fixed seed: every test draws its own reproducible inputs."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True)
def _close_figures():
    """Close matplotlib figures a test left open."""
    yield
    import matplotlib.pyplot as plt
    plt.close("all")
