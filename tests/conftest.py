"""Shared fixtures: a fresh Pyro state and seeded generators for every test; repeatable
hypothesis examples."""

import os

import numpy as np
import pyro
import pytest
import torch
from hypothesis import settings

# every run draws the same examples: a property test that passes in CI passes again (set
# HYPOTHESIS_PROFILE=explore locally to search afresh)
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# one torch intra-op thread for the whole suite: its tensors are small, and on a shared
# two-core machine a second thread spins and waits (a 16 x 16 eager solve of 5520
# iterations took 8 s alone and 124 s beside one busy process). Tests of threading set
# their own counts; BAYES_RESTORE_TEST_THREADS=N runs the suite with N.
torch.set_num_threads(int(os.environ.get("BAYES_RESTORE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield


@pytest.fixture(autouse=True)
def _threads_restored():
    """A test, or the package code it runs, leaves torch's thread count as it found it."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"torch's intra-op thread count went from {before} to {after} and was "
                    "not restored")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(12345)


@pytest.fixture
def one_thread():
    """One torch thread: on a shared, busy machine two threads spin and run 5-10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
