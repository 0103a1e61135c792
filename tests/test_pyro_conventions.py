"""The priors follow Pyro's distribution conventions, so ordinary Pyro code runs on the model.

Each Pyro test below is written as a Pyro user writes it (tutorial defaults, no
``max_plate_nesting``, no ``init_to_value``).
"""

import math

import pyro
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoNormal,
    init_to_median,
    init_to_sample,
)

from bayes_restore.differences import dct2, laplacian_eigenvalues
from bayes_restore.infer import map_estimate
from bayes_restore.models import restoration_model
from bayes_restore.priors import GaussianGradient, GradientPrior, TotalVariation

SIGMA = 0.1


def _image(shape=(32, 32)):
    g = torch.Generator().manual_seed(1)
    return torch.rand(shape, generator=g)


def _priors(event):
    return [TotalVariation(0.2, shape=event), GaussianGradient(0.2, shape=event)]


# --- log_prob: shapes as torch's _validate_sample checks them --------------------------------


@pytest.mark.parametrize("validate", [None, True, False])
@pytest.mark.parametrize(
    "value_shape,match",
    [((7, 7), r"\(7, 7\) does not end with the event shape \(6, 7\)"),
     ((7,), r"\(7,\) does not end with the event shape \(6, 7\)"),
     ((6, 7, 6), "does not end with the event shape"),
     ((2, 6, 7), r"not broadcastable with batch_shape \+ event_shape \(3, 6, 7\)")],
)
def test_log_prob_refuses_a_value_that_does_not_fit_the_shapes(validate, value_shape, match):
    prior = TotalVariation(torch.tensor([0.1, 0.2, 0.3]), shape=(6, 7), validate_args=validate)
    with pytest.raises(ValueError, match=match):
        prior.log_prob(torch.ones(value_shape))
    with pyro.validation_enabled(False), pytest.raises(ValueError, match=match):
        prior.log_prob(torch.ones(value_shape))


def test_log_prob_broadcasts_batch_dimensions_as_torch_does():
    scale = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    prior = TotalVariation(scale, shape=(6, 7))
    x = torch.rand(5, 1, 6, 7, dtype=torch.float64)
    lp = prior.log_prob(x)
    assert lp.shape == (5, 3)
    for i in range(3):
        single = TotalVariation(float(scale[i]), shape=(6, 7)).log_prob(x[:, 0])
        torch.testing.assert_close(lp[:, i], single)
    with pytest.raises(ValueError, match="support"):  # validate_args still checks the support
        TotalVariation(0.1, shape=(6, 7), validate_args=True).log_prob(
            torch.full((6, 7), float("nan")))


# --- sample(): the proper part of the prior ---------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 7), (2, 5, 4)])
def test_gaussian_draws_have_the_closed_form_variance_in_every_dct_mode(shape):
    """beta = 2: coefficient (k, l) of the DCT is N(0, b^2 / mu_kl), (0, 0) is 0.

    20000 draws: each estimated variance is within 1.5% (one std) of the truth, so
    the 7% tolerance passes a right sampler and fails a variance off by 10% or more
    (a factor 2 in mu, a missing b or a b instead of b^2 are far beyond).
    """
    scale = torch.tensor([0.3, 1.7], dtype=torch.float64)
    prior = GaussianGradient(scale, shape=shape)
    x = prior.sample((20_000,))
    assert x.shape == (20_000, 2) + shape and x.dtype == torch.float64
    coeff = dct2(x)
    mu = laplacian_eigenvalues(*shape[-2:])
    inv_mu = torch.where(mu > 0, 1 / mu.clamp_min(1e-12), torch.zeros_like(mu))
    for i, b in enumerate(scale):
        c = coeff[:, i]
        expected = (b**2 * inv_mu).expand(c.shape[1:])
        ratio = c.var(0)[..., mu > 0] / expected[..., mu > 0]
        assert float((ratio - 1).abs().max()) < 0.07, ratio
        assert float(c[..., 0, 0].abs().max()) < 1e-9  # the constant mode: mean 0 exactly
        assert float(c.mean(0)[..., mu > 0].div(expected[..., mu > 0].sqrt()).abs().max()) < 0.05
    # the modes are independent: correlation of two neighbours is ~0
    a, b = coeff[:, 0, ..., 0, 1].reshape(-1), coeff[:, 0, ..., 1, 0].reshape(-1)
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.03


@pytest.mark.parametrize("beta,iso", [(1.0, True), (1.0, False), (1.5, True), (0.8, False)])
def test_other_orders_draw_the_exact_law_of_the_energy(beta, iso):
    """phi_beta(x_c) / (beta b^beta) is Gamma((HW - 1) / beta, 1) for each channel (exact).

    Mean and variance are (HW - 1) / beta; 4000 draws pin the mean to 0.3% and the
    variance to 3%, while a radius off by 10% moves the mean by >= 10%.
    """
    scale = torch.tensor([0.2, 0.5], dtype=torch.float64)
    prior = GradientPrior(scale, beta, shape=(3, 5, 6), isotropic=iso)
    x = prior.sample((4000,))
    assert x.shape == (4000, 2, 3, 5, 6)
    assert float(x.mean((-2, -1)).abs().max()) < 1e-9
    from bayes_restore.differences import gradient_energy

    per_channel = gradient_energy(x, beta, isotropic=iso, event_dim=2)  # (4000, 2, 3)
    t = per_channel / (beta * scale[:, None] ** beta)
    k = 29 / beta
    assert float((t.mean(0) / k - 1).abs().max()) < 0.015
    assert float((t.var(0) / k - 1).abs().max()) < 0.12


def test_sample_shapes_with_sample_shape_batch_shape_and_expand():
    prior = TotalVariation(torch.tensor([0.1, 0.2, 0.3]), shape=(2, 8, 9))
    assert prior.sample().shape == (3, 2, 8, 9)
    assert prior.sample((4, 5)).shape == (4, 5, 3, 2, 8, 9)
    big = GaussianGradient(0.1, shape=(8, 9)).expand((2, 3))
    assert big.sample((4,)).shape == (4, 2, 3, 8, 9) and big.has_rsample
    assert prior.sample().dtype == torch.float32  # float32 scale tensor
    assert TotalVariation(0.1, shape=(4, 4)).sample().dtype == torch.get_default_dtype()
    assert float(TotalVariation(0.1, shape=(1, 1)).sample().abs().max()) == 0.0  # nothing free


def test_draws_are_reproducible_under_pyro_set_rng_seed_and_a_generator():
    for prior in (TotalVariation(0.1, shape=(8, 8)), GaussianGradient(0.1, shape=(3, 8, 8)),
                  GradientPrior(0.1, 1.3, shape=(8, 8))):
        pyro.set_rng_seed(7)
        a = prior.sample((3,))
        pyro.set_rng_seed(7)
        b = prior.sample((3,))
        assert torch.equal(a, b)
        state = torch.get_rng_state()
        c = prior.sample((3,), generator=torch.Generator().manual_seed(3))
        d = prior.sample((3,), generator=torch.Generator().manual_seed(3))
        assert torch.equal(c, d) and not torch.equal(a, c)
        assert torch.equal(torch.get_rng_state(), state)  # a generator leaves the global one


def test_rsample_is_differentiable_in_the_scale_for_beta_2_only():
    scale = torch.tensor(0.3, requires_grad=True)
    x = GaussianGradient(scale, shape=(6, 6)).rsample((2,))
    (x**2).sum().backward()
    assert scale.grad is not None and float(scale.grad) > 0
    assert not TotalVariation(0.1, shape=(6, 6)).has_rsample
    with pytest.raises(NotImplementedError, match="surrogate"):
        TotalVariation(0.1, shape=(6, 6)).rsample()


def test_the_engines_never_sample_the_prior():
    """The fast-path recognition traces the model without calling sample(): no RNG is used."""
    y = _image((16, 16)).double()
    state = torch.get_rng_state()
    post = map_estimate(restoration_model, y, prior=TotalVariation(0.2, shape=(16, 16)),
                        sigma=SIGMA)
    assert post.info.solver == "pdhg"
    post = map_estimate(restoration_model, y, prior=GaussianGradient(0.2, shape=(16, 16)),
                        sigma=SIGMA)
    assert post.info.solver == "dct"
    assert torch.equal(torch.get_rng_state(), state)


# --- Pyro users' code on restoration_model ----------------------------------------------------


@pytest.mark.parametrize("y_shape,event", [((32, 32), (32, 32)), ((2, 3, 32, 32), (3, 32, 32))])
def test_autonormal_svi_lowers_the_loss(y_shape, event):
    y = _image(y_shape)
    for prior in _priors(event):
        pyro.clear_param_store()
        guide = AutoNormal(restoration_model)
        svi = SVI(restoration_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
        losses = [svi.step(y, prior=prior, sigma=SIGMA) for _ in range(15)]
        assert all(math.isfinite(v) for v in losses)
        assert losses[-1] < 0.7 * losses[0]
        assert guide.median(y, prior=prior, sigma=SIGMA)["x"].shape == y_shape


@pytest.mark.parametrize("guide_class", [AutoDiagonalNormal, AutoLowRankMultivariateNormal])
def test_continuous_autoguides_construct_and_step(guide_class):
    y = _image()
    for prior in _priors((32, 32)):
        pyro.clear_param_store()
        guide = guide_class(restoration_model)
        svi = SVI(restoration_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
        losses = [svi.step(y, prior=prior, sigma=SIGMA) for _ in range(3)]
        assert all(math.isfinite(v) for v in losses)
        assert guide.get_posterior().event_shape == (32 * 32,)


@pytest.mark.parametrize("init", [init_to_sample, init_to_median])
def test_init_strategies(init):
    y = _image((2, 3, 32, 32))
    for prior in _priors((3, 32, 32)):
        pyro.clear_param_store()
        guide = AutoNormal(restoration_model, init_loc_fn=init)
        guide(y, prior=prior, sigma=SIGMA)  # sets up the parameters at their initial value
        loc = pyro.param("AutoNormal.locs.x").detach()
        assert loc.shape == (2, 3, 32, 32)
        if init is init_to_sample:  # a prior draw: zero mean per channel, not constant
            assert float(loc.mean((-2, -1)).abs().max()) < 1e-5 and float(loc.std()) > 0.01
        else:  # multivariate site: Pyro's init_to_median falls back to init_to_feasible (0)
            assert float(loc.abs().max()) == 0.0
        svi = SVI(restoration_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
        assert math.isfinite(svi.step(y, prior=prior, sigma=SIGMA))


@pytest.mark.parametrize("parallel", [False, True])
def test_predictive_of_the_prior_and_with_observed_data(parallel):
    y = _image()
    prior = TotalVariation(0.2, shape=(32, 32))
    # y given: "x" is drawn from the prior, the observed "y" is returned as observed
    out = Predictive(restoration_model, num_samples=5, parallel=parallel)(
        y, prior=prior, sigma=SIGMA)
    assert out["x"].shape == (5, 32, 32) and out["y"].shape == (5, 32, 32)
    assert torch.equal(out["y"][0], y)
    # the prior predictive, Pyro's way: the model called without data
    out = Predictive(restoration_model, num_samples=5, parallel=parallel)(
        prior=prior, sigma=SIGMA)
    assert out["x"].shape == (5, 32, 32) and out["y"].shape == (5, 32, 32)
    noise = out["y"] - out["x"]
    assert abs(float(noise.std()) - SIGMA) < 0.01
    # batch of colour images: the prior's batch shape is the batch when y is None
    out = Predictive(restoration_model, num_samples=5, parallel=parallel)(
        prior=GaussianGradient(0.2, shape=(3, 32, 32)).expand((2,)), sigma=SIGMA)
    assert out["x"].shape == (5, 2, 3, 32, 32) and out["y"].shape == (5, 2, 3, 32, 32)
    yb = _image((2, 3, 32, 32))
    out = Predictive(restoration_model, num_samples=5, parallel=parallel)(
        yb, prior=GaussianGradient(0.2, shape=(3, 32, 32)), sigma=SIGMA)
    assert out["x"].shape == (5, 2, 3, 32, 32)


def test_predictive_from_an_autoguide_posterior():
    y = _image()
    prior = GaussianGradient(0.2, shape=(32, 32))
    guide = AutoNormal(restoration_model)
    svi = SVI(restoration_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(3):
        svi.step(y, prior=prior, sigma=SIGMA)
    out = Predictive(restoration_model, guide=guide, num_samples=4)(prior=prior, sigma=SIGMA)
    assert out["x"].shape == (4, 32, 32) and out["y"].shape == (4, 32, 32)


@pytest.mark.parametrize("y_shape,event", [((32, 32), (32, 32)), ((2, 3, 16, 16), (3, 16, 16))])
def test_nuts_runs_without_max_plate_nesting(y_shape, event):
    y = _image(y_shape)
    for prior in _priors(event):
        mcmc = MCMC(NUTS(restoration_model), num_samples=5, warmup_steps=5)
        mcmc.run(y, prior=prior, sigma=SIGMA)
        x = mcmc.get_samples()["x"]
        assert x.shape == (5,) + y_shape and bool(torch.isfinite(x).all())
