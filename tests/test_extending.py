"""Extending the package from outside it: a new operator and a new prior, defined here.

The architecture's promise: an operator that declares its structure gets the fast paths,
tiling and the samplers; a prior registered by name reaches ``restore`` (MAP and MCMC),
``restore_tiled`` and the command line, through the generic Pyro paths. Nothing in the
package is edited for either: both live in this file.
"""

import numpy as np
import pytest
import torch
from pyro.distributions import TorchDistribution, constraints

from bayes_restore import cli, restore, restore_tiled
from bayes_restore.differences import grad
from bayes_restore.io import read_image, write_image
from bayes_restore.models import restoration_model
from bayes_restore.operators import LinearOperator, PixelDiagonal
from bayes_restore.priors import PRIOR_NAMES, register_prior


class Gain(LinearOperator):
    """A pointwise gain ``A = diag(g)`` (vignetting): declares its structure, nothing else."""

    def __init__(self, g: torch.Tensor) -> None:
        self.g = g
        self.norm_bound = float(g.abs().max())

    def forward(self, x):
        return x * self.g.to(x)

    adjoint = forward

    def structure(self):
        return PixelDiagonal(self.g)


class Charbonnier(TorchDistribution):
    """``log p(x) = -sum (sqrt(|grad x|^2 + eps^2) - eps) / b`` (b fixed: no normaliser in b)."""

    arg_constraints = {}

    def __init__(self, scale, *, shape, eps=0.01):
        self.scale, self.eps = float(scale), eps
        super().__init__(torch.Size(), torch.Size(shape), validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def energy(self, x):
        g = grad(x).square().sum(-3)
        dims = tuple(range(-len(self.event_shape), 0))
        return ((g + self.eps**2).sqrt() - self.eps).sum(dims)

    def log_prob(self, x):
        return -self.energy(x) / self.scale

    def with_shape(self, shape):
        return Charbonnier(self.scale, shape=shape, eps=self.eps)


@pytest.fixture
def charbonnier():
    register_prior("charbonnier",
                   lambda scale, *, shape, beta=None: Charbonnier(scale, shape=shape))
    yield "charbonnier"
    PRIOR_NAMES.pop("charbonnier")
    from bayes_restore import priors

    priors._REGISTERED.pop("charbonnier")  # the test's own clean-up of the registry


def _image(n=24, seed=0):
    rng = np.random.default_rng(seed)
    clean = np.zeros((n, n))
    clean[n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 1.0
    return clean, clean + 0.1 * rng.standard_normal(clean.shape)


def test_registered_prior_map_is_a_stationary_point_of_its_own_posterior(charbonnier):
    _, noisy = _image()
    post = restore(noisy, charbonnier, sigma=0.1, scale=0.05, tol=1e-12, max_iter=5000)
    assert post.info.solver in ("lbfgs", "adam")  # the generic Pyro path
    # independent check: the gradient of -log p(x | y), written here, vanishes at the MAP
    x = torch.tensor(post.map, requires_grad=True)
    y = torch.tensor(noisy)
    prior = Charbonnier(0.05, shape=x.shape)
    loss = (x - y).square().sum() / (2 * 0.1**2) + prior.energy(x) / 0.05
    (g,) = torch.autograd.grad(loss, x)
    # at the data the gradient is the prior's pull, of order 1 / b per pixel
    assert float(g.abs().max()) < 1e-4 / 0.05


def test_registered_prior_samples_with_nuts_and_tiles(charbonnier):
    _, noisy = _image(8)
    post = restore(noisy, charbonnier, sigma=0.1, scale=0.05, method="mcmc", num_samples=40,
                   warmup=40)
    assert post.diagnostics["sampler"] == "nuts"
    assert post.samples.shape == (2, 40, 8, 8)  # two chains by default
    assert (post.std > 0).all()
    _, big = _image(48)
    whole = restore(big, charbonnier, sigma=0.1, scale=0.05, tol=1e-12, max_iter=5000).map
    tiled = restore_tiled(big, charbonnier, sigma=0.1, scale=0.05, tile=24, overlap=20,
                          tol=1e-12, max_iter=5000)
    assert tiled.diagnostics["tiles"]["count"] == 4
    assert float(np.abs(tiled.map - whole).max()) < 1e-3
    # an instance of it tiles too: it says how to change its shape
    by_instance = restore_tiled(big, Charbonnier(0.05, shape=(48, 48)), sigma=0.1, tile=24,
                                overlap=20, tol=1e-12, max_iter=5000)
    np.testing.assert_allclose(by_instance.map, tiled.map, atol=1e-9)


def test_registered_prior_on_the_command_line(charbonnier, tmp_path):
    _, noisy = _image()
    write_image(tmp_path / "in.tif", noisy.astype(np.float32))
    code = cli.main(["denoise", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"),
                     "--prior", charbonnier, "--sigma", "0.1", "--scale", "0.05"])
    assert code == 0
    out, _ = read_image(tmp_path / "out.tif")
    expected = restore(noisy.astype(np.float32), charbonnier, sigma=0.1, scale=0.05).map
    np.testing.assert_allclose(out, expected, atol=1e-3)  # float32 L-BFGS


def test_operator_with_a_structure_gets_the_fast_path_tiles_and_langevin():
    clean, noisy = _image(32)
    g = torch.linspace(0.5, 1.5, 32, dtype=torch.float64).expand(32, 32).contiguous()
    y = (torch.tensor(clean) * g + 0.05 * torch.randn(32, 32, dtype=torch.float64,
                                                        generator=torch.Generator().manual_seed(1)))
    op = Gain(g)
    fast = restore(y, "tv", sigma=0.05, weight=0.02, operator=op, tol=1e-6)
    assert fast.info.solver == "pdhg" and fast.info.converged
    # the same model through Pyro's generic path reaches no lower energy
    generic = restore(y, "tv", sigma=0.05, weight=0.02, operator=op, solver="generic",
                      max_iter=3000)

    def energy(x):
        gx = grad(x)
        return float((op.forward(x) - y).square().sum() + 0.02 * gx.square().sum(-3).sqrt()
                     .sum())

    assert energy(fast.map) <= energy(generic.map) + 1e-6 * abs(energy(generic.map))
    # tiles: the operator restricts itself to each window
    tiled = restore_tiled(y, "tv", sigma=0.05, weight=0.02, operator=op, tile=16, overlap=16,
                          tol=1e-8)
    whole = restore(y, "tv", sigma=0.05, weight=0.02, operator=op, tol=1e-8)
    assert float((tiled.map - whole.map).abs().max()) < 1e-3
    # the proximal Langevin sampler runs on it (no NUTS fallback)
    post = restore(y, "tv", sigma=0.05, weight=0.02, operator=op, method="mcmc",
                   num_samples=20, warmup=20)
    assert post.diagnostics["sampler"] == "skrock"
    assert torch.isfinite(post.std).all() and bool((post.std > 0).all())


def test_model_code_with_the_new_pieces_runs_through_map_estimate():
    from bayes_restore.infer import map_estimate

    _, noisy = _image(16)
    y = torch.tensor(noisy)
    post = map_estimate(restoration_model, y, prior=Charbonnier(0.05, shape=(16, 16)),
                        sigma=0.1, operator=Gain(torch.ones(16, 16, dtype=torch.float64)))
    assert post.map.shape == (16, 16) and post.info.solver == "lbfgs"
