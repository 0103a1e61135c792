"""The prior family as Pyro distributions: log_prob, normaliser, shapes, use in models."""

import math

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch

from bayes_restore.differences import div, grad
from bayes_restore.priors import (
    GaussianGradient,
    GradientPrior,
    TotalVariation,
    make_prior,
)


def _laplacian_matrix(h: int, w: int) -> np.ndarray:
    """Dense grad^T grad (Neumann) built from the operator itself, column by column."""
    n = h * w
    out = np.zeros((n, n))
    for k in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[k] = 1.0
        out[:, k] = (-div(grad(e.reshape(h, w)))).reshape(-1).numpy()
    return out


@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 5)])
def test_gaussian_log_prob_matches_exact_gmrf_density_up_to_a_constant(shape, rng):
    """beta = 2: the proper density on the complement of the constants is an exact Gaussian."""
    c = shape[0] if len(shape) == 3 else 1
    h, w = shape[-2:]
    lap = _laplacian_matrix(h, w)
    eig = np.linalg.eigvalsh(lap)
    positive = eig[eig > 1e-9]
    assert len(positive) == h * w - 1

    def exact(x, b):  # log N(x; 0, b^2 L^+) on the non-constant subspace, per channel
        total = 0.0
        for ch in x.reshape(c, h * w):
            quad = ch @ lap @ ch
            total += -0.5 * quad / b**2 - 0.5 * np.sum(np.log(2 * np.pi * b**2 / positive))
        return total

    x = rng.standard_normal(shape)
    values = []
    for b in (0.3, 1.0, 2.7):
        ours = float(GaussianGradient(b, shape=shape).log_prob(torch.from_numpy(x)))
        values.append(ours - exact(x, b))
    # the same constant (log Z(1) left out) at every scale: the normaliser is right
    np.testing.assert_allclose(values, values[0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("beta,iso", [(1.0, True), (1.0, False), (1.5, True), (0.8, False)])
def test_normaliser_makes_the_density_integrate_to_the_same_value_at_every_scale(beta, iso):
    """Monte Carlo over the 3-dim complement of the constants of a 2x2 image.

    The integral of exp(log_prob) must not depend on the scale: with a wrong power
    of b in the normaliser the two estimates would differ by a factor 4 or more.
    """
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(
        torch.cat([torch.ones(4, 1), torch.randn(4, 3, generator=g)], 1).double()
    )[0][:, 1:]
    width = 4.0
    z = width * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    log_q = (-0.5 * (z / width) ** 2 - math.log(width * math.sqrt(2 * math.pi))).sum(-1)
    x = (z @ basis.T).reshape(-1, 2, 2)
    estimates = []
    for b in (0.5, 2.0):
        prior = GradientPrior(torch.tensor(b, dtype=torch.float64), beta, shape=(2, 2),
                              isotropic=iso)
        log_w = prior.log_prob(x * b) + 3 * math.log(b) - log_q  # x sampled at scale b
        estimates.append(torch.logsumexp(log_w, 0) - math.log(len(z)))
    assert abs(float(estimates[0] - estimates[1])) < 0.05


def test_log_prob_formula_and_named_cases(rng):
    x = torch.from_numpy(rng.random((6, 7)))
    b = 0.2
    tv = TotalVariation(b, shape=(6, 7))
    gy, gx = grad(x)
    iso = torch.sqrt(gy**2 + gx**2).sum()
    expected = -iso / b - (42 - 1) * math.log(b)
    assert math.isclose(float(tv.log_prob(x)), float(expected), rel_tol=1e-6)
    gg = GaussianGradient(b, shape=(6, 7))
    expected = -(gy**2 + gx**2).sum() / (2 * b**2) - 41 * math.log(b)
    assert math.isclose(float(gg.log_prob(x)), float(expected), rel_tol=1e-6)
    assert gg.beta == 2.0 and tv.beta == 1.0 and tv.isotropic
    assert not TotalVariation(b, shape=(6, 7), isotropic=False).isotropic
    assert GradientPrior(b, 1.5, shape=(3, 6, 7)).degrees_of_freedom == 3 * 42 - 3


def test_energy_is_shared_with_log_prob(rng):
    prior = GradientPrior(0.3, 1.3, shape=(5, 5))
    x = torch.from_numpy(rng.random((5, 5)))
    lp = prior.log_prob(x)
    assert math.isclose(
        float(lp), float(-prior.energy(x) / (1.3 * 0.3**1.3) - 24 * math.log(0.3)), rel_tol=1e-6
    )


def test_batch_shape_from_scale_broadcasts():
    scale = torch.tensor([0.1, 0.2, 0.4], dtype=torch.float64)
    prior = TotalVariation(scale, shape=(3, 8, 8))
    assert prior.batch_shape == (3,) and prior.event_shape == (3, 8, 8)
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    lp = prior.log_prob(x)
    assert lp.shape == (3,)
    for i in range(3):
        single = TotalVariation(float(scale[i]), shape=(3, 8, 8)).log_prob(x[i])
        torch.testing.assert_close(lp[i], single.to(lp.dtype))
    # one image against the three scales
    assert prior.log_prob(x[0]).shape == (3,)


def test_expand_keeps_the_class_and_parameters():
    for prior in (TotalVariation(0.1, shape=(4, 4), isotropic=False), GaussianGradient(
            0.2, shape=(4, 4)), GradientPrior(0.3, 1.4, shape=(4, 4))):
        big = prior.expand((5, 2))
        assert type(big) is type(prior)
        assert big.batch_shape == (5, 2) and big.beta == prior.beta
        assert big.isotropic == prior.isotropic
        assert big.log_prob(torch.zeros(4, 4)).shape == (5, 2)


@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 5)])
def test_sample_draws_the_proper_part_with_zero_channel_means(shape):
    """Improper along constants: the draws fix every channel's mean at 0 (the documented value)."""
    for prior in (TotalVariation(0.1, shape=shape), GaussianGradient(0.1, shape=shape)):
        x = prior.sample((6,))
        assert x.shape == (6,) + shape and x.dtype == torch.get_default_dtype()
        assert float(x.mean((-2, -1)).abs().max()) < 1e-6
        assert float(x.std()) > 0.01


def test_log_prob_refuses_a_wrong_image_shape_even_without_validation():
    for validate in (True, False):
        prior = TotalVariation(0.2, shape=(6, 7), validate_args=validate)
        with pytest.raises(ValueError, match=r"\(7, 7\).*\(6, 7\)"):
            prior.log_prob(torch.ones(7, 7))


def test_usable_in_a_user_pyro_model_with_plates():
    y = torch.rand(3, 8, 8)

    def model():
        with pyro.plate("images", 3):
            return pyro.sample("x", TotalVariation(0.1, shape=(8, 8)))

    tr = poutine.trace(poutine.condition(model, {"x": y})).get_trace()
    tr.compute_log_prob()
    assert tr.nodes["x"]["log_prob"].shape == (3,)
    assert type(tr.nodes["x"]["fn"]) is TotalVariation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(scale=0.0, shape=(4, 4)), "scale"),
        (dict(scale=-1.0, shape=(4, 4)), "scale"),
        (dict(scale=float("nan"), shape=(4, 4)), "scale"),
        (dict(scale=0.1, beta=0.0, shape=(4, 4)), "beta"),
        (dict(scale=0.1, beta="x", shape=(4, 4)), "beta"),
        (dict(scale=0.1, shape=(4,)), "shape"),
        (dict(scale=0.1, shape=(2, 0, 4)), "shape"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientPrior(**kwargs)


def test_make_prior_names():
    assert type(make_prior("tv", 0.1, shape=(4, 4))) is TotalVariation
    assert not make_prior("tv-anisotropic", 0.1, shape=(4, 4)).isotropic
    assert type(make_prior("gaussian", 0.1, shape=(4, 4))) is GaussianGradient
    assert make_prior("gradient", 0.1, shape=(4, 4), beta=1.5).beta == 1.5
    assert make_prior("TV", 0.1, shape=(4, 4), beta=1).beta == 1.0
    with pytest.raises(ValueError, match="unknown prior name 'lasso'"):
        make_prior("lasso", 0.1, shape=(4, 4))
    with pytest.raises(ValueError, match="beta=2 contradicts"):
        make_prior("tv", 0.1, shape=(4, 4), beta=2)
