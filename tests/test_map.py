"""MAP engines: closed form vs generic Pyro path vs dense linear algebra, TV vs scikit-image."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers import piecewise_image

from bayes_restore import ConvergenceWarning
from bayes_restore.differences import div, grad
from bayes_restore.energy import energy, from_skimage_weight
from bayes_restore.infer import dct_map, map_estimate, tv_denoise_pdhg
from bayes_restore.models import restoration_model
from bayes_restore.priors import GaussianGradient, GradientPrior, TotalVariation


def test_dct_closed_form_solves_the_normal_equations(rng):
    """(I + lambda grad^T grad) x = y, checked with a dense solve."""
    h, w, lam = 6, 7, 0.8
    y = rng.random((h, w))
    n = h * w
    a = np.eye(n)
    for k in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[k] = 1
        a[:, k] += lam * (-div(grad(e.reshape(h, w)))).reshape(-1).numpy()
    expected = np.linalg.solve(a, y.reshape(-1)).reshape(h, w)
    np.testing.assert_allclose(dct_map(torch.from_numpy(y), lam).numpy(), expected, atol=1e-12)


def test_generic_pyro_map_agrees_with_dct_closed_form_128():
    """Done-criterion of issue 2: max abs difference <= 1e-4 on a 128x128 float64 image."""
    rng = np.random.default_rng(0)
    clean = np.kron(piecewise_image(16, 16), np.ones((8, 8)))
    y = torch.from_numpy(clean + 0.1 * rng.standard_normal(clean.shape))
    prior = GaussianGradient(torch.tensor(0.05, dtype=torch.float64), shape=y.shape)
    fast = map_estimate(restoration_model, y, prior=prior, sigma=0.1)
    assert fast.info.solver == "dct"
    generic = map_estimate(restoration_model, y, prior=prior, sigma=0.1, solver="generic")
    assert generic.info.solver == "lbfgs" and generic.info.converged
    assert float((generic.map - fast.map).abs().max()) <= 1e-4
    torch.testing.assert_close(fast.map, dct_map(y, 0.1**2 / 0.05**2))


def _rof(x, y, w, iso=True):
    return float(energy(x, y, from_skimage_weight(w), isotropic=iso)) / 2


@pytest.mark.parametrize("w", [0.02, 0.08, 0.3])
def test_tv_map_no_worse_than_scikit_image_converged(w):
    skimage = pytest.importorskip("skimage")
    from skimage.restoration import denoise_tv_chambolle

    cam = skimage.img_as_float(skimage.data.camera()[::4, ::4])
    y = cam + 0.1 * np.random.default_rng(0).standard_normal(cam.shape)
    sk = denoise_tv_chambolle(y, weight=w, eps=0, max_num_iter=3000)
    yt = torch.from_numpy(y)
    x, info = tv_denoise_pdhg(yt, 2 * w, tol=1e-5)  # scikit-image's weight w
    assert info.converged and info.gap <= 1e-5
    ours, theirs = _rof(x, yt, w), _rof(torch.from_numpy(sk), yt, w)
    assert ours <= theirs * (1 + 1e-5)
    # the gap certifies the objective: nothing beats it by more than the gap
    assert theirs >= ours * (1 - 2e-5)
    # and the two minimisers are close (the ROF energy is 1-strongly convex)
    assert np.abs(x.numpy() - sk).max() < 2e-2


def test_tv_gap_is_a_true_certificate(rng):
    y = torch.from_numpy(rng.random((40, 40)))
    x_loose, info_loose = tv_denoise_pdhg(y, 2 * 0.1, tol=1e-2)
    x_tight, info_tight = tv_denoise_pdhg(y, 2 * 0.1, tol=1e-8, max_iter=20000)
    assert info_loose.gap <= 1e-2 and info_tight.gap <= 1e-8
    p_loose, p_star = _rof(x_loose, y, 0.1), _rof(x_tight, y, 0.1)
    assert p_star <= p_loose
    assert (p_loose - p_star) / p_loose <= info_loose.gap
    # strong convexity: 0.5 |x - x*|^2 <= P(x) - P(x*)
    assert 0.5 * float((x_loose - x_tight).square().sum()) <= p_loose - p_star + 1e-9


@pytest.mark.parametrize("iso", [True, False])
def test_tv_float32_and_batches_match_per_image_runs(iso, rng):
    y = torch.from_numpy(rng.random((3, 2, 24, 24))).float()
    w = torch.tensor([0.05, 0.1, 0.2]).reshape(3, 1, 1, 1)
    x, info = tv_denoise_pdhg(y, 2 * w, isotropic=iso, event_dim=3, tol=1e-5)
    assert x.dtype == torch.float32 and info.gap <= 1e-5
    for i in range(3):
        xi, _ = tv_denoise_pdhg(y[i], 2 * float(w[i]), isotropic=iso, event_dim=3, tol=1e-5)
        np.testing.assert_allclose(
            _rof(x[i].double(), y[i].double(), float(w[i]), iso),
            _rof(xi.double(), y[i].double(), float(w[i]), iso),
            rtol=3e-5,
        )


def test_tv_warns_at_the_iteration_cap(rng):
    y = torch.from_numpy(rng.random((32, 32)))
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        _, info = tv_denoise_pdhg(y, 2 * 0.5, max_iter=3, check_every=1)
    assert not info.converged and info.iterations == 3


@pytest.mark.parametrize("iso", [True, False], ids=["iso", "aniso"])
@pytest.mark.parametrize("shape", [(16, 16), (3, 12, 12)], ids=["grey", "rgb"])
def test_generic_and_pdhg_reach_the_same_tv_map(iso, shape, rng):
    """Proof of sameness: the fast solver and Pyro's generic path on one model.

    The fast path certifies a relative gap of 1e-7. L-BFGS on the nonsmooth TV cannot
    certify 1e-5 from the data: it ends 1e-5 to 5e-5 above the optimum on these
    problems (measured), so from the data it must come within 1e-4, and its image
    within the strong-convexity bound ``|x - x*|^2 <= E(x) - E(x*)`` (E / 2 is
    1-strongly convex). At the 1e-7 level: started at the fast MAP, the generic
    optimiser of Pyro's log joint finds nothing better (relative 1e-9).
    """
    y = torch.from_numpy(rng.random(shape))
    prior = TotalVariation(torch.tensor(0.2, dtype=torch.float64), shape=shape, isotropic=iso)
    fast = map_estimate(restoration_model, y, prior=prior, sigma=0.1, tol=1e-7)
    assert fast.info.solver == "pdhg" and fast.info.gap <= 1e-7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        generic = map_estimate(
            restoration_model, y, prior=prior, sigma=0.1, solver="generic", max_iter=3000
        )
        polished = map_estimate(restoration_model, y, prior=prior, sigma=0.1,
                                solver="generic", init=fast.map, max_iter=300)
    lam = 2 * 0.1**2 / 0.2
    e_fast = float(energy(fast.map, y, lam, isotropic=iso))
    e_gen = float(energy(generic.map, y, lam, isotropic=iso))
    e_pol = float(energy(polished.map, y, lam, isotropic=iso))
    assert e_fast == pytest.approx(fast.info.objective, rel=1e-9)  # the energy E
    # the fast path is at least as good, and the generic one gets within 1e-4 of it
    assert e_fast <= e_gen * (1 + 1e-7)
    assert (e_gen - e_fast) / e_fast < 1e-4
    bound = (e_gen - e_fast + 1e-7 * e_fast) ** 0.5
    assert float((generic.map - fast.map).square().sum()) ** 0.5 <= bound
    assert e_pol >= e_fast * (1 - 1e-9)


def test_generic_path_handles_other_latent_sites():
    """A user's hierarchical model: two noisy frames of one image, the noise level latent."""
    rng = np.random.default_rng(3)
    clean = torch.from_numpy(piecewise_image(24, 24))
    frames = clean + 0.1 * torch.from_numpy(rng.standard_normal((2, 24, 24)))

    def model(frames):
        sigma = pyro.sample("sigma", dist.LogNormal(np.log(0.2), 1.0))
        x = pyro.sample("x", GaussianGradient(torch.tensor(0.05, dtype=frames.dtype),
                                              shape=frames.shape[-2:]))
        with pyro.plate("frames", 2):
            pyro.sample("y", dist.Normal(x, sigma).to_event(2), obs=frames)

    post = map_estimate(model, frames)
    assert post.info.solver == "lbfgs" and post.info.converged
    assert set(post.diagnostics["latents"]) == {"sigma"}
    # joint MAP of sigma: the residual spread about the smoothed image, near the true 0.1
    assert 0.07 < float(post.diagnostics["latents"]["sigma"]) < 0.2
    # given sigma the image is the closed form on the frames' average, noise sigma^2 / 2
    sigma_hat = float(post.diagnostics["latents"]["sigma"])
    expected = dct_map(frames.mean(0), sigma_hat**2 / 2 / 0.05**2)
    assert float((post.map - expected).abs().max()) < 2e-4


def test_fast_path_only_for_the_exact_model(rng):
    y = torch.from_numpy(rng.random((10, 10)))

    def scaled_model(y):  # the likelihood observes 2 x, not x: no fast path may take it
        x = pyro.sample("x", TotalVariation(0.2, shape=(10, 10)))
        from bayes_restore.likelihoods import GaussianLikelihood

        pyro.sample("y", GaussianLikelihood(2 * x, 0.1), obs=y)

    post = map_estimate(scaled_model, y)
    assert post.info.solver == "lbfgs"
    with pytest.raises(ValueError, match="does not fit"):
        map_estimate(scaled_model, y, solver="pdhg")
    beta15 = GradientPrior(0.2, 1.5, shape=(10, 10))
    assert map_estimate(restoration_model, y, prior=beta15, sigma=0.1).info.solver == "lbfgs"


def test_map_estimate_argument_errors(rng):
    y = torch.from_numpy(rng.random((6, 6)))
    prior = TotalVariation(0.2, shape=(6, 6))
    with pytest.raises(ValueError, match="solver"):
        map_estimate(restoration_model, y, prior=prior, sigma=0.1, solver="newton")
    with pytest.raises(ValueError, match="tol"):
        map_estimate(restoration_model, y, prior=prior, sigma=0.1, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        map_estimate(restoration_model, y, prior=prior, sigma=0.1, max_iter=0)

    def no_image(y):
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=y[0, 0])

    with pytest.raises(ValueError, match="no sample site named 'x'"):
        map_estimate(no_image, y)


def test_generic_progress_bar_and_adam(rng, capsys):
    y = torch.from_numpy(rng.random((8, 8)))
    prior = GaussianGradient(torch.tensor(0.3, dtype=torch.float64), shape=(8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = map_estimate(restoration_model, y, prior=prior, sigma=0.1, solver="generic",
                            optimizer="adam", max_iter=3000, progress=True)
    assert post.info.solver == "adam"
    assert float((post.map - dct_map(y, 0.1**2 / 0.3**2)).abs().max()) < 1e-3
    assert "MAP (adam)" in capsys.readouterr().err


# --- TV-L1: Laplace likelihood + TV prior -------------------------------------------------


def _l1_model(y, *, prior, b_l, operator=None):
    """A user-written Pyro model: TV prior, Laplace (L1) likelihood."""
    from bayes_restore.likelihoods import LaplaceLikelihood

    x = pyro.sample("x", prior)
    pyro.sample("y", LaplaceLikelihood(x, b_l, operator), obs=y)


def _tv_l1(x, y, w, iso=True):
    from bayes_restore.infer import tv_energy

    return float((x - y).abs().sum() + w * tv_energy(x, isotropic=iso))


def _salt_and_pepper(shape, fraction, seed):
    rng = np.random.default_rng(seed)
    clean = piecewise_image(*shape)
    y = clean.copy()
    r = rng.random(shape)
    y[r < fraction / 2] = 0.0
    y[r > 1 - fraction / 2] = 1.0
    return torch.from_numpy(clean), torch.from_numpy(y)


def test_tv_l1_matches_a_linear_program():
    """Anisotropic TV-L1 is a linear program: scipy's HiGHS gives the exact optimum."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, eye, hstack, kron, vstack

    from bayes_restore.infer import tv_l1_pdhg

    _, y = _salt_and_pepper((8, 8), 0.2, seed=1)
    y = y + 0.05 * torch.from_numpy(np.random.default_rng(2).standard_normal((8, 8)))
    w, n = 0.7, 8
    d1 = csr_matrix(np.diff(np.eye(n), axis=0))  # (n-1, n) forward differences
    dy, dx = kron(d1, eye(n)), kron(eye(n), d1)
    big_d = vstack([dy, dx]).tocsr()
    m, npx = big_d.shape[0], n * n
    # variables: x, s >= |x - y|, t >= |D x|; minimise sum s + w sum t
    c = np.concatenate([np.zeros(npx), np.ones(npx), w * np.ones(m)])
    i_n, i_m = eye(npx), eye(m)
    z_nm, z_mn = csr_matrix((npx, m)), csr_matrix((m, npx))
    a_ub = vstack([
        hstack([i_n, -i_n, z_nm]), hstack([-i_n, -i_n, z_nm]),
        hstack([big_d, z_mn, -i_m]), hstack([-big_d, z_mn, -i_m]),
    ]).tocsr()
    yv = y.numpy().ravel()
    b_ub = np.concatenate([yv, -yv, np.zeros(2 * m)])
    bounds = [(None, None)] * npx + [(0, None)] * (npx + m)
    lp = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert lp.status == 0
    x, info = tv_l1_pdhg(y, w, isotropic=False, tol=1e-5)
    assert info.converged and info.gap <= 1e-5
    p = _tv_l1(x, y, w, iso=False)
    assert info.objective == pytest.approx(p, rel=1e-9)
    # the certificate is honest: the true gap is at most the certified one
    assert -1e-9 <= (p - lp.fun) / p <= info.gap


@pytest.mark.parametrize("iso", [True, False], ids=["iso", "aniso"])
def test_tv_l1_fast_path_matches_the_generic_pyro_path(iso):
    """map_estimate dispatches Laplace + TV (A = I) to TV-L1; the generic path agrees."""
    _, y = _salt_and_pepper((12, 12), 0.2, seed=3)
    prior = TotalVariation(torch.tensor(0.1, dtype=torch.float64), shape=(12, 12),
                           isotropic=iso)
    b_l = 0.08  # w = b_l / b = 0.8
    fast = map_estimate(_l1_model, y, prior=prior, b_l=b_l, tol=1e-7)
    assert fast.info.solver == "pdhg" and fast.info.converged and fast.info.gap <= 1e-7
    e_fast = _tv_l1(fast.map, y, 0.8, iso)
    assert e_fast == pytest.approx(fast.info.objective, rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        generic = map_estimate(_l1_model, y, prior=prior, b_l=b_l, solver="generic",
                               optimizer="adam", max_iter=3000)
    e_gen = _tv_l1(generic.map, y, 0.8, iso)
    # Adam on the nonsmooth objective ends a little above the certified optimum
    assert e_fast <= e_gen * (1 + 1e-7)
    assert (e_gen - e_fast) / e_fast < 2e-2
    # the fast path's -log posterior (Pyro's own log joint) is the best of the two
    import pyro.poutine as poutine

    def log_joint(x):
        tr = poutine.trace(poutine.condition(_l1_model, {"x": x})).get_trace(
            y, prior=prior, b_l=b_l)
        return float(tr.log_prob_sum())

    assert log_joint(fast.map) >= log_joint(generic.map) - 1e-9


def test_tv_l1_only_for_tv(rng):
    """TV-L1's fast path takes any operator (a mask here), but only the TV prior."""
    from bayes_restore.operators import Mask

    y = torch.from_numpy(rng.random((10, 10)))
    tv = TotalVariation(0.1, shape=(10, 10))
    mask = Mask(torch.from_numpy(rng.random((10, 10)) < 0.5))
    post = map_estimate(_l1_model, y, prior=tv, b_l=0.1, operator=mask)
    assert post.info.solver == "pdhg" and post.info.converged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gauss = GaussianGradient(0.1, shape=(10, 10))
        assert map_estimate(_l1_model, y, prior=gauss, b_l=0.1,
                            max_iter=5).info.solver != "pdhg"
    with pytest.raises(ValueError, match="does not fit"):
        map_estimate(_l1_model, y, prior=gauss, b_l=0.1, solver="pdhg")


def test_tv_l1_removes_salt_and_pepper_where_the_gaussian_likelihood_cannot():
    clean, y = _salt_and_pepper((32, 32), 0.2, seed=4)

    def psnr(x):
        return float(10 * torch.log10(1.0 / (x - clean).square().mean()))

    prior = TotalVariation(torch.tensor(0.1, dtype=torch.float64), shape=(32, 32))
    l1 = map_estimate(_l1_model, y, prior=prior, b_l=0.12).map  # w = 1.2
    # the Gaussian likelihood at its best weight of a grid (ROF)
    best_gauss = max(
        psnr(map_estimate(restoration_model, y, prior=TotalVariation(
            torch.tensor(b, dtype=torch.float64), shape=(32, 32)), sigma=0.1).map)
        for b in (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
    )
    assert psnr(y) < 15
    # measured: 11.5 dB observed, 30.5 dB TV-L1, 18.8 dB at the best Gaussian weight
    assert psnr(l1) > 28  # clusters of impulses remain at the small features
    assert psnr(l1) > best_gauss + 8


def test_laplace_model_is_never_taken_for_a_gaussian_one():
    """The engines that need a Gaussian likelihood refuse the Laplace model by name."""
    from bayes_restore.infer import exact_posterior, mcmc
    from bayes_restore.priors import GaussianGradient

    y = torch.rand(8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="Gaussian"):
        exact_posterior(_l1_model, y, prior=GaussianGradient(0.2, shape=(8, 8)), b_l=0.1)
    with pytest.raises(ValueError, match="laplace"):
        mcmc(_l1_model, y, prior=TotalVariation(0.2, shape=(8, 8)), b_l=0.1, sampler="skrock",
             num_samples=10)
