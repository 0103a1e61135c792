"""MAP = energy: Pyro's log joint and -E(x) / (2 sigma^2) differ by one constant."""

import math

import numpy as np
import pyro.poutine as poutine
import pytest
import torch

from bayes_restore.energy import (
    energy,
    from_skimage_weight,
    scale_from_weight,
    to_skimage_weight,
    weight_from_scale,
)
from bayes_restore.likelihoods import GaussianLikelihood
from bayes_restore.models import restoration_model
from bayes_restore.priors import GaussianGradient, GradientPrior, TotalVariation

PRIORS = [
    ("tv", lambda b, s: TotalVariation(b, shape=s), 1.0, True),
    ("tv-anisotropic", lambda b, s: TotalVariation(b, shape=s, isotropic=False), 1.0, False),
    ("gaussian", lambda b, s: GaussianGradient(b, shape=s), 2.0, True),
    ("beta-1.5", lambda b, s: GradientPrior(b, 1.5, shape=s), 1.5, True),
    ("beta-0.7-aniso", lambda b, s: GradientPrior(b, 0.7, shape=s, isotropic=False), 0.7, False),
]


def _log_joint(y, x, prior, sigma):
    conditioned = poutine.condition(restoration_model, {"x": x})
    tr = poutine.trace(conditioned).get_trace(y, prior=prior, sigma=sigma)
    return float(tr.log_prob_sum())


@pytest.mark.parametrize("name,make,beta,iso", PRIORS, ids=[p[0] for p in PRIORS])
@pytest.mark.parametrize("shape", [(9, 11), (3, 9, 11), (2, 3, 9, 11)], ids=["grey", "rgb", "N"])
def test_log_joint_equals_minus_energy_over_two_sigma2_plus_a_constant(
    name, make, beta, iso, shape, rng
):
    sigma, b = 0.13, 0.21
    event = shape[-3:] if len(shape) == 4 else shape
    prior = make(b, event)
    y = torch.from_numpy(rng.random(shape))
    weight = weight_from_scale(sigma, b, beta)
    offsets = []
    for _ in range(8):
        x = torch.from_numpy(rng.random(shape) * 2 - 0.5)
        e = float(energy(x, y, weight, beta=beta, isotropic=iso))
        offsets.append(_log_joint(y, x, prior, sigma) + e / (2 * sigma**2))
    spread = max(offsets) - min(offsets)
    assert spread < 1e-8 * max(1.0, abs(offsets[0])), offsets
    # and the constant is exactly the one the model's normalisers predict
    n_obs = int(np.prod(shape))
    c = shape[-3] if len(shape) >= 3 else 1
    n_img = int(np.prod(shape[:-3])) if len(shape) == 4 else 1
    expected = -n_obs * math.log(sigma * math.sqrt(2 * math.pi)) - n_img * (
        int(np.prod(event)) - c
    ) * math.log(b)
    assert math.isclose(offsets[0], expected, rel_tol=1e-10)


def test_energy_value_by_hand():
    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    y = torch.zeros(2, 2)
    # data 0 + 1 + 4 + 16 = 21; anisotropic TV = |1| + |2| + |2| + |3| = 8 (rows: 2, 3; cols: 1, 2)
    assert float(energy(x, y, 0.5, beta=1.0, isotropic=False)) == 21 + 0.5 * 8


def test_energy_per_image_weights_broadcast():
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    y = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    w = torch.tensor([0.1, 0.7], dtype=torch.float64).reshape(2, 1)
    total = energy(x, y, w)
    parts = energy(x[0], y[0], 0.1) + energy(x[1], y[1], 0.7)
    torch.testing.assert_close(total, parts)
    with pytest.raises(ValueError, match="weight"):
        energy(x, y, -1.0)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5, 2.0])
def test_weight_scale_round_trip(beta):
    for sigma, b in [(0.05, 0.01), (0.1, 0.3), (2.0, 5.0)]:
        w = weight_from_scale(sigma, b, beta)
        assert math.isclose(scale_from_weight(sigma, w, beta), b, rel_tol=1e-12)
    assert math.isclose(weight_from_scale(0.1, 0.05, 1.0), 2 * 0.01 / 0.05)
    assert math.isclose(weight_from_scale(0.1, 0.05, 2.0), 0.01 / 0.05**2)


def test_conversions_reject_bad_values():
    with pytest.raises(ValueError, match="sigma"):
        weight_from_scale(-0.1, 0.1)
    with pytest.raises(ValueError, match="scale"):
        weight_from_scale(0.1, 0.0)
    with pytest.raises(ValueError, match="weight"):
        scale_from_weight(0.1, float("inf"))
    with pytest.raises(ValueError, match="beta"):
        weight_from_scale(0.1, 0.1, beta=-1)


def test_skimage_weight_is_half_the_energy_weight():
    """scikit-image's objective 0.5|x - y|^2 + w TV(x) is E(x) / 2 at lambda = 2 w."""
    pytest.importorskip("skimage")
    from skimage.restoration import denoise_tv_chambolle

    rng = np.random.default_rng(1)
    y = rng.random((24, 24))
    w = 0.1
    assert to_skimage_weight(from_skimage_weight(w)) == w
    sk = denoise_tv_chambolle(y, weight=w, eps=0, max_num_iter=4000)
    lam = from_skimage_weight(w)
    e = lambda x: float(energy(torch.from_numpy(x), torch.from_numpy(y), lam))  # noqa: E731
    # scikit-image's output is (close to) the minimiser of E: perturbations do not lower E
    perturbations = [rng.standard_normal(y.shape) * 1e-3 for _ in range(5)]
    assert all(e(sk + d) >= e(sk) - 1e-6 for d in perturbations)
    # while at the wrong mapping (lambda = w) the same perturbations find lower energies
    e_wrong = lambda x: float(energy(torch.from_numpy(x), torch.from_numpy(y), w))  # noqa: E731
    step = (y - sk) * 0.05  # towards the data: what a smaller weight wants
    assert e_wrong(sk + step) < e_wrong(sk)


def test_gaussian_likelihood_log_prob_matches_torch_normal(rng):
    x = torch.from_numpy(rng.random((2, 3, 4, 5)))
    y = torch.from_numpy(rng.random((2, 3, 4, 5)))
    lik = GaussianLikelihood(x, 0.2, event_dim=3)
    assert lik.batch_shape == (2,) and lik.event_shape == (3, 4, 5)
    ref = torch.distributions.Normal(x, 0.2).log_prob(y).sum((-3, -2, -1))
    torch.testing.assert_close(lik.log_prob(y), ref)
    assert lik.rsample((7,)).shape == (7, 2, 3, 4, 5)
    assert lik.expand((4, 2)).log_prob(y).shape == (4, 2)
    with pytest.raises(ValueError, match="sigma"):
        GaussianLikelihood(x, 0.0)
    with pytest.raises(ValueError, match="operator"):
        GaussianLikelihood(x, 0.1, operator="blur")


def test_model_rejects_mismatched_observation():
    with pytest.raises(ValueError, match="y has shape"):
        restoration_model(torch.zeros(5, 6), prior=TotalVariation(0.1, shape=(6, 5)), sigma=0.1)
