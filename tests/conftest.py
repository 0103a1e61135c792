"""Shared fixtures: a fresh Pyro state and seeded generators for every test."""

import numpy as np
import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(12345)
