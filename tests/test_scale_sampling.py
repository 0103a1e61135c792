"""The TV scale sampled with the image (``mcmc(..., sample_scale=True)``, through ``restore``).

References: Pyro's NUTS on :func:`~bayes_restore.hyper.hierarchical_tv_model` (exact model,
no smoothing), and data drawn exactly from an anisotropic TV prior at a known scale.
"""

import math

import numpy as np
import pyro
import pytest
import torch
from helpers import piecewise_image
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value

from bayes_restore import restore
from bayes_restore._arviz import to_inference_data
from bayes_restore.differences import gradient_energy
from bayes_restore.hyper import THETA_HYPERPRIOR, hierarchical_tv_model
from bayes_restore.infer.mcmc import mcmc
from bayes_restore.likelihoods import LaplaceLikelihood
from bayes_restore.models import restoration_model
from bayes_restore.priors import GaussianGradient, TotalVariation

SIGMA = 0.1


def _noisy(h, w, seed=1):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.from_numpy(piecewise_image(h, w))
    return clean + SIGMA * torch.randn(clean.shape, generator=gen, dtype=torch.float64)


# --- against NUTS on the hierarchical model ------------------------------------------------------


def test_gibbs_theta_posterior_agrees_with_nuts_on_the_hierarchical_model():
    """8x8: NUTS on the exact model vs Gibbs-within-Langevin (LM, smoothing 0.01).

    Measured: theta's posterior sd is 0.59 around a mean of 4.0. NUTS keeps ~0.9 effective
    draws per draw (ESS 1800 of 2000), the Gibbs chain ~1/3 (ESS 27000 of 80000): with 400
    NUTS and 4 x 1500 Gibbs draws the standard error of the difference of the means is
    sqrt(0.59^2 / 360 + 0.59^2 / 2000) = 0.034 (0.8 %), that of the sd about 4 %. The
    tolerances, 3 % on the mean and 12 % on the sd, are 3-3.5 standard errors; the
    Moreau-Yosida bias measured at larger runs was 0.3 % on the mean (4.026 vs 4.040).
    A Gibbs step that did not move the prior (prox weight, drift) with theta would start at
    theta = 10 and stay far above 4.
    """
    y = _noisy(8, 8)
    pyro.set_rng_seed(3)
    start = {"x": y, "theta": torch.tensor(10.0, dtype=torch.float64)}
    kernel = NUTS(hierarchical_tv_model, max_plate_nesting=0, full_mass=False,
                  init_strategy=init_to_value(values=start))
    runner = MCMC(kernel, num_samples=400, warmup_steps=200, disable_progbar=True)
    runner.run(y, sigma=SIGMA)
    nuts = runner.get_samples()["theta"]

    post = mcmc(restoration_model, y, prior=TotalVariation(0.1, shape=(8, 8)), sigma=SIGMA,
                sample_scale=True, num_samples=1500, warmup=300, num_chains=4, seed=0)
    d = post.diagnostics
    assert d["sampler"] == "lm" and d["scale_samples"].shape == (4, 1500)
    theta = 1.0 / d["scale_samples"]
    assert float(theta.mean()) == pytest.approx(float(nuts.mean()), rel=0.03)
    assert float(theta.std()) == pytest.approx(float(nuts.std()), rel=0.12)
    assert d["scale"]["mean"] == pytest.approx(float(d["scale_samples"].mean()), rel=1e-12)
    assert d["scale"]["theta_mean"] == pytest.approx(float(theta.mean()), rel=1e-12)


# --- data drawn from the prior at a known scale ---------------------------------------------------


def _site_draws(a, w, theta, gen):
    """Exact draws of ``p(v) ~ exp(-theta sum_k w_k |v - a_k|)``; ``a, w``: (P, 4), ``w`` 0/1.

    The log density is piecewise linear with kinks at the sorted ``a``: pick a piece by its
    mass, then invert the (truncated) exponential on it.
    """
    a, order = torch.sort(a, dim=1)
    w = torch.gather(w, 1, order)
    m = w.sum(1)
    logp = -theta * (w[:, None, :] * (a[:, :, None] - a[:, None, :]).abs()).sum(2)
    slope = theta * (m[:, None] - 2 * torch.cumsum(w, 1)[:, :3])
    gap = a[:, 1:] - a[:, :3]
    flat = slope.abs() < 1e-12
    safe = torch.where(flat, 1.0, slope)
    inner_mass = torch.where(flat, gap, torch.expm1(slope * gap) / safe)
    tail = 1.0 / (theta * m)
    top = logp.max(1, keepdim=True).values
    mass = torch.cat([(logp[:, :1] - top).exp() * tail[:, None],
                      (logp[:, :3] - top).exp() * inner_mass,
                      (logp[:, 3:] - top).exp() * tail[:, None]], 1)
    piece = torch.multinomial(mass, 1, generator=gen)[:, 0]
    u = torch.rand(a.shape[0], generator=gen, dtype=a.dtype)
    j = (piece - 1).clamp(0, 2)[:, None]
    lo, s, g = a.gather(1, j)[:, 0], safe.gather(1, j)[:, 0], gap.gather(1, j)[:, 0]
    inner = torch.where(flat.gather(1, j)[:, 0], lo + u * g,
                        lo + torch.log1p(u * torch.expm1(s * g)) / s)
    e = -torch.log1p(-u)
    return torch.where(piece == 0, a[:, 0] - e * tail,
                       torch.where(piece == 4, a[:, 3] + e * tail, inner))


def anisotropic_tv_prior_draw(h, w, theta, sweeps, gen):
    """A draw of ``p(x) ~ exp(-theta TV_aniso(x))`` (Neumann) by exact checkerboard Gibbs.

    Each pixel's conditional given its 2-4 neighbours is ``exp(-theta sum |v - n_k|)``;
    the pixels of one colour are conditionally independent. The mean is re-centred (the
    prior is flat along constants).
    """
    x = torch.zeros(h, w, dtype=torch.float64)
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for _ in range(sweeps):
        for colour in (0, 1):
            mask = (ii + jj) % 2 == colour
            vals = x.expand(4, h, w).clone()
            wts = torch.zeros((4, h, w), dtype=x.dtype)
            vals[0, 1:], wts[0, 1:] = x[:-1], 1
            vals[1, :-1], wts[1, :-1] = x[1:], 1
            vals[2, :, 1:], wts[2, :, 1:] = x[:, :-1], 1
            vals[3, :, :-1], wts[3, :, :-1] = x[:, 1:], 1
            x[mask] = _site_draws(vals[:, mask].T, wts[:, mask].T, theta, gen)
        x = x - x.mean()
    return x


def test_prior_draws_satisfy_the_homogeneity_identity():
    """Under the prior, ``theta TV(x) ~ Gamma(N - 1, 1)``: mean ``N - 1``, sd ``sqrt(N - 1)``."""
    gen = torch.Generator().manual_seed(0)
    x = anisotropic_tv_prior_draw(64, 64, 10.0, 200, gen)
    ratio = 10.0 * float(gradient_energy(x, 1.0, isotropic=False)) / (64 * 64 - 1)
    assert ratio == pytest.approx(1.0, abs=4 / 64)  # 4 standard deviations
    # the site sampler's moments against quadrature of its density
    a = torch.tensor([0.0, 0.3, 0.3, 1.0], dtype=torch.float64).expand(100000, 4).clone()
    wts = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64).expand(100000, 4).clone()
    v = _site_draws(a, wts, 2.0, gen)
    grid = torch.linspace(-8, 9, 200001, dtype=torch.float64)
    p = torch.exp(-2.0 * (grid.abs() + (grid - 0.3).abs() + (grid - 1).abs()))
    p /= p.sum()
    mean = float((p * grid).sum())
    sd = math.sqrt(float((p * grid**2).sum()) - mean**2)
    assert float(v.mean()) == pytest.approx(mean, abs=4 * sd / math.sqrt(1e5))
    assert float(v.std()) == pytest.approx(sd, rel=0.01)


def test_theta_posterior_concentrates_at_the_true_scale():
    """64x64 drawn from the anisotropic TV prior at theta = 10 (b = 0.1), noise sigma = 0.05.

    Measured: posterior sd of theta 0.23 (2.3 %); started at theta = 20 it settles within the
    1000 warm-up steps. The posterior mean of a draw from the model sits within a few
    posterior sds of the truth; 3 sds plus the chains' Monte Carlo error (~0.1) is the bound.
    (At sigma = b theta is weakly identified; SK-ROCK then drifts to 1.8 x the truth.)
    """
    gen = torch.Generator().manual_seed(0)
    x = anisotropic_tv_prior_draw(64, 64, 10.0, 200, gen)
    y = x + 0.05 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    post = mcmc(restoration_model, y, prior=TotalVariation(0.05, shape=(64, 64), isotropic=False),
                sigma=0.05, sample_scale=True, num_samples=1000, warmup=1000, seed=0)
    theta = 1.0 / post.diagnostics["scale_samples"]
    mean, sd = float(theta.mean()), float(theta.std())
    assert sd / mean < 0.05
    assert abs(mean - 10.0) < 3 * sd + 0.1
    lo, hi = post.diagnostics["scale"]["interval"]
    assert lo < post.diagnostics["scale"]["mean"] < hi


# --- restore, ArviZ ------------------------------------------------------------------------------


def test_restore_mcmc_samples_the_scale_and_arviz_has_both_variables():
    az = pytest.importorskip("arviz")
    y = _noisy(24, 24).numpy()
    post = restore(y, "tv", sigma=SIGMA, method="mcmc", num_samples=150, warmup=150, seed=0,
                   sample_scale=True)
    p = post.diagnostics["parameters"]
    assert p["scale_method"] == "hierarchical" and p["scale_start_method"] == "sure"
    assert p["scale"] == pytest.approx(post.diagnostics["scale"]["mean"])
    assert p["weight"] == pytest.approx(2 * SIGMA**2 / p["scale"])
    assert p["scale_interval"][0] < p["scale"] < p["scale_interval"][1]
    assert "weight_method" not in p
    idata = post.to_arviz()
    assert set(idata.posterior.data_vars) == {"image", "scale"}
    assert idata.posterior["scale"].dims == ("chain", "draw")
    summary = az.summary(idata, var_names=["scale"], round_to="none")
    assert summary.loc["scale", "mean"] == pytest.approx(p["scale"], rel=1e-3)
    # MAP keeps SURE; so does MCMC by default and with sample_scale=False
    assert restore(y, "tv", sigma=SIGMA).diagnostics["parameters"]["weight_method"] == "sure"
    for options in ({}, {"sample_scale": False}):
        fixed = restore(y, "tv", sigma=SIGMA, method="mcmc", num_samples=20, seed=0, **options)
        assert "scale_samples" not in fixed.diagnostics
        assert fixed.diagnostics["parameters"]["weight_method"] == "sure"


def test_colour_image_and_thinning_shapes():
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(3, 12, 12, generator=gen)
    post = mcmc(restoration_model, y, prior=TotalVariation(0.2, shape=(3, 12, 12)), sigma=0.1,
                sample_scale=True, num_samples=40, thin=2, scale_every=2, seed=0,
                sampler="skrock")
    d = post.diagnostics
    assert d["scale_samples"].shape == (2, 40) and d["scale_samples"].dtype == torch.float64
    assert d["scale"]["scale_every"] == 2 and d["scale"]["scale_prior"] == THETA_HYPERPRIOR
    assert post.samples.shape == (2, 40, 3, 12, 12)


def test_extra_arviz_variables_must_match_the_draws():
    draws = np.zeros((2, 5, 4, 4))
    idata = to_inference_data(draws, extra={"scale": np.ones((2, 5))})
    assert idata.posterior["scale"].shape == (2, 5)
    with pytest.raises(ValueError, match="scale"):
        to_inference_data(draws, extra={"scale": np.ones((2, 4))})
    with pytest.raises(ValueError, match="image"):
        to_inference_data(draws, extra={"image": np.ones((2, 5))})


# --- errors --------------------------------------------------------------------------------------


def _laplace_model(y):
    x = pyro.sample("x", TotalVariation(0.1, shape=tuple(y.shape)))
    pyro.sample("y", LaplaceLikelihood(x, 0.1), obs=y)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scale_prior": (0.0, 1.0)}, "scale_prior"),
        ({"scale_prior": (1.0, -1.0)}, "scale_prior"),
        ({"scale_prior": (1.0,)}, "scale_prior"),
        ({"scale_prior": "gamma"}, "scale_prior"),
        ({"scale_prior": (1.0, math.inf)}, "scale_prior"),
        ({"scale_every": 0}, "scale_every"),
        ({"sample_scale": 1}, "sample_scale"),
        ({"sampler": "nuts"}, "NUTS"),
    ],
)
def test_bad_scale_options(options, message):
    opts = {"sample_scale": True, **options}
    with pytest.raises(ValueError, match=message):
        mcmc(restoration_model, _noisy(4, 4), prior=TotalVariation(0.1, shape=(4, 4)),
             sigma=SIGMA, num_samples=5, seed=0, **opts)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (restoration_model, {"prior": GaussianGradient(0.1, shape=(4, 4)), "sigma": SIGMA},
         "beta=2"),
        (_laplace_model, {}, "laplace"),
    ],
)
def test_sample_scale_needs_tv_with_a_gaussian_likelihood(model, kwargs, message):
    with pytest.raises(ValueError, match=f"sample_scale=True does not fit.*{message}"):
        mcmc(model, _noisy(4, 4), sample_scale=True, num_samples=5, seed=0, **kwargs)
