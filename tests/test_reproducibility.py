"""One ``seed=`` per engine: reruns are bit-identical, no global side effects, bounded samplers."""

import math
import random
import subprocess
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from bayes_restore.infer import exact_posterior, generic_map, map_estimate, mcmc, variational
from bayes_restore.models import restoration_model
from bayes_restore.operators import Blur, Mask, gaussian_psf
from bayes_restore.priors import GaussianGradient, TotalVariation

SIGMA = 0.1
SHAPE = (8, 8)


def _noisy(seed=1):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.zeros(SHAPE, dtype=torch.float64)
    clean[2:6, 2:6] = 1.0
    return clean + SIGMA * torch.randn(SHAPE, generator=gen, dtype=torch.float64)


TV = {"prior": TotalVariation(0.1, shape=SHAPE), "sigma": SIGMA}
GAUSS = {"prior": GaussianGradient(0.1, shape=SHAPE), "sigma": SIGMA}


def _hierarchical_model(y):
    """A latent scale besides the image: its starting point is drawn (``init_to_median``)."""
    scale = pyro.sample("scale", dist.LogNormal(math.log(0.1), 0.3))
    x = pyro.sample("x", TotalVariation(scale, shape=tuple(y.shape)))
    pyro.sample("y", dist.Normal(x, SIGMA).to_event(2), obs=y)


def _fields(post):
    fields = {"map": post.map, "mean": post.mean, "std": post.std, "samples": post.samples}
    scale = post.diagnostics.get("scale_samples")
    if scale is not None:
        fields["scale_samples"] = scale
    return {k: v for k, v in fields.items() if v is not None}


def _global_state():
    store = pyro.get_param_store()
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].copy(),  # noqa: NPY002 (the legacy global state)
        "python": random.getstate(),
        "params": {name: store._params[name] for name in store.keys()},  # noqa: SLF001
    }


def _assert_untouched(before):
    after = _global_state()
    assert torch.equal(before["torch"], after["torch"]), "the global torch RNG moved"
    assert np.array_equal(before["numpy"], after["numpy"])
    assert before["python"] == after["python"]
    assert set(after["params"]) == set(before["params"]), "the Pyro param store changed"
    for name, value in before["params"].items():
        assert after["params"][name] is value  # the very same tensor: not replaced, not moved
        assert torch.equal(value, torch.arange(3.0))


@pytest.fixture
def user_state():
    """A user's own Pyro parameter and a seeded global RNG, as a caller would have them."""
    pyro.param("user_weight", torch.arange(3.0))
    torch.manual_seed(1234)
    yield _global_state()


def _check(run, user_state, *, seeds_matter=True, differing=None):
    """Two default runs are bit-identical, another seed differs, no global side effect."""
    first, second, other = run(), run(), run(seed=1)
    _assert_untouched(user_state)
    a, b, c = _fields(first), _fields(second), _fields(other)
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    if seeds_matter:
        changed = [name for name in a if not torch.equal(a[name], c[name])]
        assert changed and set(differing or changed) <= set(changed), changed
    else:  # nothing is drawn: the seed changes nothing
        assert all(torch.equal(a[name], c[name]) for name in a)
    return first


# --- every engine ----------------------------------------------------------------------------


def test_map_fast_path_is_deterministic(user_state):
    y = _noisy()
    post = _check(lambda **kw: map_estimate(restoration_model, y, **TV, **kw), user_state,
                  seeds_matter=False)
    assert post.info.solver == "pdhg"


@pytest.mark.filterwarnings("ignore::bayes_restore.exceptions.ConvergenceWarning")
def test_map_generic_path_draws_its_start_from_the_seed(user_state):
    y = _noisy()
    _check(lambda **kw: map_estimate(_hierarchical_model, y, max_iter=5, **kw), user_state,
           differing=["map"])
    _check(lambda **kw: map_estimate(restoration_model, y, solver="generic", max_iter=20, **TV,
                                     **kw),
           user_state, seeds_matter=False)  # only the image: nothing drawn
    values, _ = generic_map(_hierarchical_model, (y,), max_iter=1, seed=3)
    again, _ = generic_map(_hierarchical_model, (y,), max_iter=1, seed=3)
    assert torch.equal(values["scale"], again["scale"])
    _assert_untouched(user_state)


def test_exact_dct(user_state):
    y = _noisy()
    post = _check(lambda **kw: exact_posterior(restoration_model, y, num_samples=4, **GAUSS,
                                               **kw),
                  user_state, differing=["samples"])
    assert post.diagnostics["std_method"] == "exact" and post.samples.shape[1] == 4


@pytest.mark.parametrize(
    "operator",
    [Blur(gaussian_psf(3, 1.0), boundary="periodic"),  # periodic: the PCG path
     Mask(torch.rand(SHAPE, generator=torch.Generator().manual_seed(2)) < 0.7)],
    ids=["blur", "mask"],
)
def test_exact_pcg(operator, user_state):
    y = _noisy()
    post = _check(lambda **kw: exact_posterior(restoration_model, y, operator=operator,
                                               num_samples=2, num_draws=4, **GAUSS, **kw),
                  user_state, differing=["std", "samples"])
    assert post.diagnostics["std_method"] == "perturb-optimise"


@pytest.mark.filterwarnings("ignore::bayes_restore.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("guide", ["normal", "lowrank"])
def test_variational(guide, user_state):
    y = _noisy()
    post = _check(lambda **kw: variational(restoration_model, y, guide=guide, rank=2,
                                           engine="svi", max_steps=12, window=4,
                                           num_samples=3, **GAUSS, **kw),
                  user_state, differing=["mean", "std", "samples"])
    # the fitted guide's parameters were in a store of the run's own, now gone
    assert not any(name.startswith("Auto") for name in pyro.get_param_store().keys())
    assert len(post.diagnostics["elbo"]) == 12


@pytest.mark.parametrize("gauss", [True, False], ids=["gaussian", "tv"])
def test_structured_variational(gauss, user_state):
    """The structured engine draws nothing for its fit: the seed changes only the draws."""
    y = _noisy()
    post = _check(lambda **kw: variational(restoration_model, y, num_samples=3,
                                           **(GAUSS if gauss else TV), **kw),
                  user_state, differing=["samples"])
    assert post.diagnostics["engine"] == "structured"
    again = variational(restoration_model, y, num_samples=3, seed=1, **(GAUSS if gauss else TV))
    assert torch.equal(again.mean, post.mean) and torch.equal(again.std, post.std)


@pytest.mark.parametrize(
    "options",
    [{"sampler": "skrock"}, {"sampler": "myula"}, {"sampler": "lm", "sample_scale": True}],
    ids=["skrock", "myula", "lm-gibbs"],
)
def test_langevin(options, user_state):
    y = _noisy()
    post = _check(lambda **kw: mcmc(restoration_model, y, num_samples=10, warmup=5, **TV,
                                    **options, **kw),
                  user_state, differing=["mean", "std", "samples"])
    assert post.diagnostics["sampler"] == options["sampler"]


def test_nuts(user_state):
    y = _noisy()
    post = _check(lambda **kw: mcmc(restoration_model, y, sampler="nuts", num_samples=3,
                                    warmup=3, max_tree_depth=3, **TV, **kw),
                  user_state, differing=["mean", "samples"])
    assert post.diagnostics["sampler"] == "nuts"


def test_nuts_other_latents_start_from_the_seed(user_state):
    y = _noisy()[:3, :3]
    post = _check(lambda **kw: mcmc(_hierarchical_model, y, num_samples=3, warmup=3,
                                    num_chains=1, max_tree_depth=3, **kw),
                  user_state, differing=["samples"])
    assert post.diagnostics["sampler"] == "nuts"


def test_seed_none_is_fresh_entropy(user_state):
    y = _noisy()
    a = exact_posterior(restoration_model, y, num_samples=2, seed=None, **GAUSS)
    b = exact_posterior(restoration_model, y, num_samples=2, seed=None, **GAUSS)
    assert not torch.equal(a.samples, b.samples)
    _assert_untouched(user_state)


def test_generator_is_the_alternative_to_seed():
    y = _noisy()
    run = lambda **kw: exact_posterior(restoration_model, y, num_samples=2, **GAUSS, **kw)  # noqa: E731
    a = run(generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.samples, run(seed=5).samples)  # a generator seeded alike
    for engine, kwargs in ((exact_posterior, GAUSS), (variational, GAUSS), (mcmc, TV)):
        for seed in (0, 1):  # an explicit seed, even the default value, is a second source
            with pytest.raises(ValueError, match="generator= or seed="):
                engine(restoration_model, y, generator=torch.Generator(), seed=seed, **kwargs)


@pytest.mark.parametrize("seed", [True, 1.0, "0", -1, 2**64])
def test_bad_seed_names_it(seed):
    y = _noisy()
    calls = [
        lambda: map_estimate(restoration_model, y, seed=seed, **TV),
        lambda: generic_map(restoration_model, (y,), TV, seed=seed),
        lambda: exact_posterior(restoration_model, y, seed=seed, **GAUSS),
        lambda: variational(restoration_model, y, seed=seed, **GAUSS),
        lambda: mcmc(restoration_model, y, seed=seed, **TV),
    ]
    for call in calls:
        with pytest.raises((TypeError, ValueError), match="seed"):
            call()


# --- the public wrapper in fresh processes ------------------------------------------------


_SCRIPT = """
import hashlib, sys, warnings
import torch
import bayes_restore
warnings.simplefilter("ignore")
torch.manual_seed(int(sys.argv[1]))  # whatever the global state, the same results
y = torch.zeros(8, 8, dtype=torch.float64)
y[2:6, 2:6] = 1.0
y = y + 0.1 * torch.randn(8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
runs = {
    "map": dict(prior="tv", method="map"),
    "exact": dict(prior="gaussian", method="exact", num_samples=3),
    "vi": dict(prior="tv", method="vi", max_steps=30, window=10, num_samples=3),
    "mcmc": dict(prior="tv", method="mcmc", num_samples=10, warmup=5),
}
for name, kw in runs.items():
    post = bayes_restore.restore(y, sigma=0.1, weight=0.1, seed=7, **kw)
    h = hashlib.sha256()
    for field in (post.map, post.mean, post.std, post.samples):
        if field is not None:
            h.update(field.numpy().tobytes())
    print(name, h.hexdigest())
"""


def _digests(*args):
    out = subprocess.run([sys.executable, "-c", _SCRIPT, *args], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_restore_is_bit_identical_across_processes():
    """Two fresh processes, their global generators seeded differently, agree bitwise.

    Both run with the same number of torch threads (the default): a batched matrix product
    may round differently on another thread count, so that is part of "the same run".
    """
    fresh = _digests("0")
    again = _digests("99")
    assert fresh[::2] == ["map", "exact", "vi", "mcmc"]
    assert again == fresh
    assert len(set(fresh[1::2])) == 4  # sha256 of each result's bytes


# --- sampler settings that would run away -------------------------------------------------


def test_huge_skrock_step_is_bounded_quickly():
    """step_size=1e6 ran 208 s (7229 stages) and gave a std 2-3 times too large."""
    y = _noisy()
    start = time.perf_counter()
    with pytest.warns(UserWarning, match=r"step_size=1e\+06 .*used step_size=1"):
        post = mcmc(restoration_model, y, num_samples=50, warmup=10, step_size=1e6, **TV)
    assert time.perf_counter() - start < 30  # about 1 s; generous for a loaded machine
    d = post.diagnostics
    assert d["stages"] == 8 and d["step_size"] == pytest.approx(SIGMA**2)  # 1 / L_f
    assert float(post.std.max()) < SIGMA  # a log-concave posterior is narrower than the noise


def test_langevin_steps_beyond_stability_are_clamped_with_a_warning():
    y = _noisy()
    for sampler, limit in (("myula", 1.0), ("lm", 1.9)):
        with pytest.warns(UserWarning, match=f"step_size=1e\\+06 is beyond {sampler.upper()}"):
            post = mcmc(restoration_model, y, sampler=sampler, num_samples=5, warmup=0,
                        step_size=1e6, **TV)
        assert post.diagnostics["step_size"] == pytest.approx(limit / post.diagnostics["lipschitz"])
    with pytest.warns(UserWarning, match="not stable with stages=3"):
        mcmc(restoration_model, y, num_samples=5, warmup=0, stages=3, step_size=0.9, **TV)


def test_runaway_settings_are_refused_at_once():
    y = _noisy()
    start = time.perf_counter()
    cases = [
        ({"smoothing": 1e-9}, "smoothing=1e-09 .* more than 100"),
        ({"stages": 101}, "stages"),
        ({"sampler": "nuts", "max_tree_depth": 16}, "max_tree_depth"),
        ({"sampler": "nuts", "target_accept": 1.0}, "target_accept"),
        ({"sampler": "nuts", "num_samples": 10**7}, "num_samples"),
        ({"num_chains": 10**4, "max_memory": 10**6}, "max_memory"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            mcmc(restoration_model, y, **TV, **options)
    with pytest.raises(ValueError, match="stiff"):
        mcmc(restoration_model, y, sampler="skrock", prior=GaussianGradient(1e-4, shape=SHAPE),
             sigma=SIGMA)
    assert time.perf_counter() - start < 10
