"""SK-ROCK's step with an operator: the discretisation bias does not grow as ||A|| shrinks."""

from types import SimpleNamespace

import torch

from bayes_restore.infer.langevin import (
    SmoothedPotential,
    diagonal_metric,
    skrock_schedule,
    skrock_step,
)
from bayes_restore.infer.problem import RestorationProblem
from bayes_restore.operators import Downsample, as_operator

SIGMA, SCALE = 0.1, 0.1


def _potential(y, order, *, operator=None, smoothing=0.01):
    """The smoothed potential of ``y ~ N(A x, sigma^2)`` with a TV (order 1) or
    Gaussian-gradient (order 2) prior of scale ``SCALE``; its ``L_f`` and ``lambda_MY``."""
    one = torch.ones((1, 1), dtype=torch.float64)
    pr = RestorationProblem(y, SimpleNamespace(isotropic=True, gradient_order=float(order)),
                            operator, SIGMA * one, SCALE * one, 2)
    l_f = torch.tensor(operator.norm_bound**2 / SIGMA**2, dtype=torch.float64)
    lam = smoothing / l_f if order == 1 else None
    return SmoothedPotential(pr, lam, 5, backend="auto"), l_f, lam


def _schedule(l_f, lip, lam, unit_of_prior):
    """The default SK-ROCK schedule; ``unit_of_prior``: the step in units of
    ``1 / max(L_f, 1 / b^2)`` (else of ``1 / L_f``, the rule before)."""
    l_prior = torch.tensor(1 / SCALE**2, dtype=torch.float64) if unit_of_prior else None
    return skrock_schedule(None, None, l_f, lip, float(lip / l_f), lam, 0.01, l_prior=l_prior)


def _stationary_std(lam_eig, vecs, delta, coef, stages):
    """Pixel std of SK-ROCK's stationary law on the Gaussian of precision ``V diag(lam) V^T``:
    per eigendirection ``x' = R x + S q`` with ``q = sqrt(2 delta) z`` (``R``, ``S`` from the
    step itself, run on the eigenvalues), variance ``2 delta S^2 / (1 - R^2)``."""
    zero = torch.zeros_like(lam_eig)
    r = skrock_step(torch.ones_like(lam_eig), lambda v: lam_eig * v, delta, zero, coef, stages)
    s = skrock_step(zero, lambda v: lam_eig * v, delta, torch.ones_like(lam_eig), coef, stages)
    var = 2 * delta * s.square() / (1 - r.square())
    return (vecs.square() @ var).sqrt()


def _gaussian_posterior(operator, y):
    """Potential, ``L_f``, eigenpairs of the precision (read off the potential's gradient),
    exact mean and pixel std of an 8 x 8 Gaussian-gradient posterior."""
    pot, l_f, _ = _potential(y, 2, operator=operator)
    basis = torch.eye(64, dtype=torch.float64).reshape(64, 8, 8)
    g0 = pot.grad(torch.zeros(1, 8, 8, dtype=torch.float64))
    prec = (pot.grad(basis) - g0).reshape(64, 64)
    cov = torch.linalg.inv(prec)
    lam_eig, vecs = torch.linalg.eigh(prec)
    mean = (cov @ (-g0.reshape(64))).reshape(8, 8)
    return pot, l_f, lam_eig, vecs, mean, cov.diagonal().sqrt().reshape(8, 8), prec


def test_decimation_step_bias_closed_form_gaussian_gradient():
    # x2 decimation of an 8 x 8 image with a Gaussian-gradient prior, against denoising with
    # the same sigma and b: the exact posteriors and SK-ROCK's stationary laws are closed forms
    y = torch.linspace(0, 1, 64, dtype=torch.float64).reshape(8, 8)
    errors = {}
    for name, op in (("denoise", as_operator(None)), ("decimate", Downsample(2))):
        _, l_f, lam_eig, vecs, _, exact, prec = _gaussian_posterior(op, op(y))
        assert torch.allclose(prec, prec.T, atol=1e-9)
        for unit_of_prior in (True, False):
            s, coef, delta = _schedule(l_f, l_f + 8 / SCALE**2, None, unit_of_prior)
            std = _stationary_std(lam_eig, vecs, delta, coef, s).reshape(8, 8)
            errors[name, unit_of_prior] = float((std / exact - 1).abs().mean())
    # denoising: L_f = 1 / b^2, both rules are the same step (std 6.7 % low)
    assert errors["denoise", True] == errors["denoise", False]
    # decimation: the step in units of 1 / max(L_f, 1 / b^2) is no worse than denoising's
    # (3.8 %); in units of 1 / L_f (4 times larger in absolute terms) about twice (13 %)
    assert errors["decimate", True] <= errors["denoise", True]
    assert errors["decimate", False] > 1.5 * errors["denoise", True]


def test_decimation_step_bias_through_the_chain_gaussian_gradient():
    # the decimation posterior sampled by SmoothedPotential's gradient and skrock_step at the
    # default schedule: its std is the closed form's stationary one (and within 5 % of exact)
    op = Downsample(2)
    y = op(torch.linspace(0, 1, 64, dtype=torch.float64).reshape(8, 8))
    pot, l_f, lam_eig, vecs, mean, exact, _ = _gaussian_posterior(op, y)
    s, coef, delta = _schedule(l_f, l_f + 8 / SCALE**2, None, True)
    law = _stationary_std(lam_eig, vecs, delta, coef, s).reshape(8, 8)
    gen = torch.Generator().manual_seed(0)
    chains, steps, burn = 200, 500, 100
    x = mean.expand(chains, 8, 8).clone()
    total, total2 = torch.zeros_like(mean), torch.zeros_like(mean)
    for k in range(steps):
        q = torch.sqrt(2 * delta) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        x = skrock_step(x, pot.grad, delta, q, coef, s)
        if k >= burn:
            total += x.sum(0)
            total2 += x.square().sum(0)
    n = chains * (steps - burn)
    std = (total2 / n - (total / n).square()).sqrt()
    # 80000 correlated draws per pixel: the average ratio is known to well under 1 %
    assert abs(float((std / law).mean()) - 1) < 0.01
    assert abs(float((std / exact).mean()) - 1) < 0.05
    assert float((total / n - mean).abs().max()) < 0.2 * float(exact.min())


def test_decimation_metric_mixes_the_block_means_without_more_bias():
    # the 8 x 8 Gaussian-gradient x2 decimation posterior, preconditioned by diagonal_metric's
    # M = 2 (I - P) + 4 P (P: the block means): SK-ROCK's stationary law and its slowest direction's
    # one-step contraction |R| in closed form (the chain of z = M^-1/2 x: precision
    # M^1/2 H M^1/2), against the chain without the metric
    op = Downsample(2)
    y = op(torch.linspace(0, 1, 64, dtype=torch.float64).reshape(8, 8))
    _, l_f, _, _, _, exact, prec = _gaussian_posterior(op, y)
    gain, peak, apply, noise = diagonal_metric(op, y)
    assert (gain, peak) == (4.0, 4.0)
    basis = torch.eye(64, dtype=torch.float64).reshape(64, 8, 8)
    root = noise(basis).reshape(64, 64)  # M^1/2 (symmetric)
    assert torch.allclose(root @ root, apply(basis).reshape(64, 64), atol=1e-12)
    l_g = 8 / SCALE**2
    one = torch.tensor(1.0, dtype=torch.float64)
    results = {}
    for name, m_half, g, p in (("none", torch.eye(64, dtype=torch.float64), 1.0, 1.0),
                               ("metric", root, gain, peak)):
        lip = g * l_f + p * l_g
        s, coef, delta = skrock_schedule(None, None, g * l_f, lip, float(lip / l_f), None, 0.01,
                                         l_prior=one / SCALE**2)
        lam_eig, vecs = torch.linalg.eigh(m_half @ prec @ m_half)
        assert float(lam_eig.max() * delta) <= coef["ell"]  # stable
        zero = torch.zeros_like(lam_eig)
        r = skrock_step(torch.ones_like(lam_eig), lambda v, e=lam_eig: e * v, delta, zero,
                        coef, s)
        std = _stationary_std(lam_eig, m_half @ vecs, delta, coef, s).reshape(8, 8)
        # the slowest direction: the largest (positive) one-step factor R (the stiff end's
        # R is negative, near -1 / (1 + eta): it oscillates, which does not slow the means)
        results[name] = (float(r.max()), float((std / exact - 1).abs().mean()), s,
                         float(lam_eig.min()))
    (r_none, err_none, s_none, low_none), (r_met, err_met, s_met, low_met) = (
        results["none"], results["metric"])
    # the weakest curvature: the image mean's 1 / (4 sigma^2) without M, 1 / sigma^2 with it
    # (as denoising's), so its decorrelation in 1 / (1 - R) steps is 4 times faster, for one
    # more stage (3, not 2)
    assert abs(low_none - 0.25 / SIGMA**2) < 1e-6 and abs(low_met - 1 / SIGMA**2) < 1e-6
    assert (1 - r_met) > 3.5 * (1 - r_none)
    assert (s_none, s_met) == (2, 3)
    # the std: the within-block detail moves at twice the step (M = 2 there), 6.5 % low on
    # average against 3.8 % without the metric, but no more than denoising's at the default
    # step on the same sigma and b (6.7 %)
    clean = torch.linspace(0, 1, 64, dtype=torch.float64).reshape(8, 8)
    _, l_f1, lam1, vecs1, _, exact1, _ = _gaussian_posterior(as_operator(None), clean)
    s1, coef1, delta1 = _schedule(l_f1, l_f1 + l_g, None, True)
    std1 = _stationary_std(lam1, vecs1, delta1, coef1, s1).reshape(8, 8)
    err_denoise = float((std1 / exact1 - 1).abs().mean())
    assert err_none < err_met < err_denoise


def test_prior_ratio_widens_the_metric_where_the_operator_sees_nothing():
    """``prior_ratio = b^2 / sigma^2`` sets the metric's peak where the operator observes
    nothing (a blur's removed frequencies, a mask's hidden pixels), keeps 1 where it observes
    fully, and changes nothing while it is below the constants."""
    from bayes_restore.operators import Blur, Mask, gaussian_psf

    like = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    hidden = torch.ones(16, 16, dtype=torch.bool)
    hidden[::2, 1::2] = False
    for op in (Blur(gaussian_psf(5, 1.0)), Mask(hidden)):
        gain, peak, apply, _ = diagonal_metric(op, like, prior_ratio=50.0)
        assert abs(gain - 1.0) < 1e-6
        assert abs(peak - 50.0) < 0.5
        base = diagonal_metric(op, like)
        same = diagonal_metric(op, like, prior_ratio=1.0)
        v = torch.randn(like.shape, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
        assert same[:2] == base[:2]
        assert torch.equal(same[2](v), base[2](v))
        assert float(apply(v).abs().max()) > float(base[2](v).abs().max())


def test_blur_and_decimation_whole_step_chains_are_reproducible_on_colour_images():
    """The whole-step kernels of the DCT metric (a reflective blur) and of box decimation on a
    colour image (event_dim 3: the metric's constants per channel image): finite chains, the
    same for 1, 2 and 3 threads (a rerun), as the denoising chains are."""
    import warnings

    from bayes_restore.infer.mcmc import mcmc
    from bayes_restore.models import restoration_model
    from bayes_restore.operators import Blur, gaussian_psf
    from bayes_restore.priors import TotalVariation

    gen = torch.Generator().manual_seed(0)
    shape = (3, 12, 14)
    before = torch.get_num_threads()
    try:
        for op in (Blur(gaussian_psf(5, 1.0)), Downsample(2)):
            x = torch.rand(shape, generator=gen)
            y = op(x) + 0.1 * torch.randn(op(x).shape, generator=gen)
            runs = []
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    post = mcmc(restoration_model, y, operator=op, sigma=0.1, seed=3,
                                prior=TotalVariation(0.1, shape=shape), num_samples=10,
                                sampler="skrock")
                runs.append(torch.as_tensor(post.samples))
            assert bool(torch.isfinite(runs[0]).all())
            assert all(torch.equal(r, runs[0]) for r in runs[1:])
    finally:
        torch.set_num_threads(before)
