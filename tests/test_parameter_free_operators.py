"""Parameter-free restoration with an operator: sigma through the operator, the TV weight by
SAPG with the operator, the Gaussian scale by the evidence, and the command line."""

import inspect

import numpy as np
import pytest
import torch
from helpers import smooth_image

from bayes_restore import restore, restore_tiled
from bayes_restore.hyper import estimate_observation_sigma, tv_scale_sapg
from bayes_restore.hyper.observation_noise import masked_sigma
from bayes_restore.infer.tv import tv_map_pdhg
from bayes_restore.operators import (
    Blur,
    Downsample,
    LinearOperator,
    Mask,
    PixelDiagonal,
    gaussian_psf,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def mosaic(n: int, seed: int = 0) -> torch.Tensor:
    """Piecewise constant: 6 x 6 random grey squares."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.rand(6, 6, generator=g, dtype=torch.float64)
    return torch.kron(cells, torch.ones(n // 6, n // 6, dtype=torch.float64))


@pytest.mark.parametrize("observed", [0.5, 0.2])
def test_sigma_through_a_mask_within_10_percent(observed):
    g = torch.Generator().manual_seed(3)
    clean = smooth_image(128)
    seen = torch.rand(clean.shape, generator=g) < observed
    for sigma in (0.02, 0.1):
        noise = sigma * torch.randn(clean.shape, generator=g, dtype=clean.dtype)
        y = torch.where(seen, clean + noise, 0.0)
        assert abs(estimate_observation_sigma(y, Mask(seen)) / sigma - 1) < 0.1
        pure = torch.where(seen, noise, 0.0)
        assert abs(masked_sigma(pure, seen) / sigma - 1) < 0.1


def test_sigma_asks_the_structure_not_the_class():
    """A pixel-diagonal operator of the test's own making is read through its mask."""

    class Gains(LinearOperator):
        def __init__(self, d):
            self.d = d

        def forward(self, x):
            return x * self.d

        adjoint = forward

        def structure(self):
            return PixelDiagonal(self.d)

    g = torch.Generator().manual_seed(4)
    clean = smooth_image(96)
    seen = torch.rand(clean.shape, generator=g) < 0.5
    y = torch.where(seen, clean + 0.05 * torch.randn(clean.shape, generator=g,
                                                     dtype=clean.dtype), 0.0)
    ours = estimate_observation_sigma(y, Gains(seen.double()))
    assert ours == estimate_observation_sigma(y, Mask(seen))
    assert abs(ours / 0.05 - 1) < 0.1
    # ignoring the mask, the zeros make the estimate useless
    assert abs(estimate_observation_sigma(y) / 0.05 - 1) > 0.3


@pytest.mark.parametrize("op", [Blur(gaussian_psf(9, 1.5)), Downsample(2)],
                         ids=["blur", "x2"])
def test_sigma_through_blur_and_decimation(op):
    g = torch.Generator().manual_seed(5)
    ax = op(mosaic(144))
    y = ax + 0.05 * torch.randn(ax.shape, generator=g, dtype=ax.dtype)
    assert abs(estimate_observation_sigma(y, op) / 0.05 - 1) < 0.1


def oracle_weight(y, op, clean, grid):
    scores = {}
    for w in grid:
        x, _ = tv_map_pdhg(y, 2 * w, op, tol=1e-3)
        scores[w] = float(((x - clean) ** 2).mean())
    return min(scores, key=scores.get)


@pytest.mark.parametrize("op", [Blur(gaussian_psf(7, 1.0)), Downsample(2),
                                Mask(torch.rand(48, 48, generator=torch.Generator()
                                                .manual_seed(6)) < 0.5)],
                         ids=["blur", "x2", "mask"])
def test_sapg_weight_within_a_factor_of_the_oracle(op):
    sigma = 0.05
    clean = mosaic(48, seed=1)
    g = torch.Generator().manual_seed(7)
    ax = op(clean)
    y = op(ax + sigma * torch.randn(ax.shape, generator=g, dtype=ax.dtype)) \
        if isinstance(op.structure(), PixelDiagonal) else \
        ax + sigma * torch.randn(ax.shape, generator=g, dtype=ax.dtype)
    est = tv_scale_sapg(y, sigma, operator=op, theta0=0.1 / sigma,
                        generator=torch.Generator().manual_seed(0))
    grid = [sigma * 2.0**k for k in range(-4, 2)]  # factor 2 apart: the check is a factor 3
    best = oracle_weight(y, op, clean, grid)
    assert best / 3 < est.skimage_weight < 3 * best


def observation(op, n=48, sigma=0.05, dtype=np.float64):
    clean = mosaic(n, seed=2)
    ax = op(clean)
    noise = sigma * torch.randn(ax.shape, generator=torch.Generator().manual_seed(8),
                                dtype=ax.dtype)
    return (op(ax + noise) if isinstance(op, Mask) else ax + noise).numpy().astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_restore_tv_with_an_operator_needs_no_weight(dtype):
    op = Downsample(2)
    y = observation(op, n=36, dtype=dtype)
    post = restore(y, "tv", operator=op)
    assert isinstance(post.map, np.ndarray) and post.map.dtype == dtype
    assert post.map.shape == (36, 36)
    par = post.diagnostics["parameters"]
    assert par["weight_method"] == "sapg" and par["sigma_method"] == "observation"
    assert abs(par["sigma"] / 0.05 - 1) < 0.25 and par["weight"] > 0
    if dtype == np.float32:
        again = restore(y, "tv", operator=op)
        assert np.array_equal(post.map, again.map)  # seed=0 by default: bit-identical
        other = restore(y, "tv", operator=op, seed=1)
        assert other.diagnostics["parameters"]["weight"] != par["weight"]


def test_restore_gaussian_with_an_operator_uses_the_evidence():
    op = Downsample(2)
    params = inspect.signature(__import__("bayes_restore.hyper", fromlist=["x"])
                               .gaussian_empirical_bayes).parameters
    if "operator" not in params:
        pytest.skip("gaussian_empirical_bayes takes no operator= yet")
    post = restore(observation(op, n=36), "gaussian", operator=op)
    par = post.diagnostics["parameters"]
    assert par["scale_method"] == "evidence" and par["scale"] > 0


def test_restore_gaussian_with_a_mask_takes_the_pcg_evidence():
    """No closed form for a mask: the scale is the PCG path's maximum evidence at the
    estimated sigma, seeded (the same call gives the same scale, another seed a close one)."""
    from bayes_restore.hyper import gaussian_empirical_bayes

    op = Mask(torch.rand(36, 36, generator=torch.Generator().manual_seed(3)) < 0.6)
    y = observation(op, n=36)
    post = restore(y, "gaussian", operator=op)
    par = post.diagnostics["parameters"]
    assert par["scale_method"] == "evidence"
    want = gaussian_empirical_bayes(y, par["sigma"], operator=op, seed=0)[1]
    assert par["scale"] == pytest.approx(want, rel=1e-6)
    other = restore(y, "gaussian", operator=op, seed=1).diagnostics["parameters"]["scale"]
    assert other != par["scale"] and other == pytest.approx(par["scale"], rel=0.1)


def test_given_parameters_are_kept():
    op = Mask(torch.rand(48, 48, generator=torch.Generator().manual_seed(9)) < 0.5)
    y = observation(op)
    post = restore(y, "tv", operator=op, sigma=0.05, weight=0.01)
    par = post.diagnostics["parameters"]
    assert par["weight"] == pytest.approx(0.01) and "weight_method" not in par
    assert "sigma_estimated" not in par


# ---------------------------------------------------------------------------- command line


def test_cli_boundary_default_is_blurs():
    from bayes_restore.cli.options import BLUR_BOUNDARY, build_parser

    assert BLUR_BOUNDARY == inspect.signature(Blur).parameters["boundary"].default
    args = build_parser().parse_args(["deblur", "in.png", "-o", "o.png", "--psf", "box:3"])
    assert args.boundary == BLUR_BOUNDARY
    args = build_parser().parse_args(["deblur", "in.png", "-o", "o.png", "--psf", "box:3",
                                      "--boundary", "reflect"])
    assert args.boundary == "reflect"


@pytest.mark.parametrize("command,extra", [
    ("superres", ["--factor", "2"]),
    ("inpaint", ["--mask", "mask.png"]),
    ("deblur", ["--psf", "gaussian:1.0", "--boundary", "periodic"]),
])
def test_cli_without_weight_writes_and_reports(tmp_path, command, extra):
    pytest.importorskip("png")
    from test_cli import read_image, run_here, write_image

    y = np.clip(observation(Downsample(2) if command == "superres" else Blur(gaussian_psf(3, 1.0)),
                            n=48), 0, 1)
    write_image(tmp_path / "in.png", y, bit_depth=16)
    write_image(tmp_path / "mask.png",
                (np.random.default_rng(0).random(y.shape) < 0.6) * 1.0)
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, stdout, stderr = run_here(command, "in.png", "-o", "out.tif", *extra)
        code2, stdout2, _ = run_here(command, "in.png", "-o", "out2.tif", *extra)
    finally:
        os.chdir(here)
    assert code == 0 and code2 == 0, stderr
    first = stdout.splitlines()[0]
    assert "sigma" in first and "estimated from the observation" in first
    assert "estimated by sapg" in first
    out, _ = read_image(tmp_path / "out.tif")
    assert np.array_equal(out, read_image(tmp_path / "out2.tif")[0])
    assert stdout.splitlines()[0] == stdout2.splitlines()[0]


def test_cli_tiled_inpaint_without_parameters(tmp_path):
    pytest.importorskip("png")
    from test_cli import run_here, write_image

    rng = np.random.default_rng(3)
    clean = np.kron(rng.random((6, 6)), np.ones((12, 12)))
    observed = rng.random(clean.shape) < 0.6
    write_image(tmp_path / "in.png", np.clip(clean + 0.03 * rng.standard_normal(clean.shape),
                                             0, 1) * observed, bit_depth=16)
    write_image(tmp_path / "m.png", observed * 1.0)
    code, stdout, stderr = run_here("inpaint", str(tmp_path / "in.png"), "-o",
                                    str(tmp_path / "o.tif"), "--mask", str(tmp_path / "m.png"),
                                    "--tile", "32")
    assert code == 0, stderr
    first = stdout.splitlines()[0]
    assert "estimated from the observation" in first and "estimated by sapg" in first


def test_tiled_and_dask_estimate_on_windows_of_the_mask(monkeypatch):
    # above PARAMETER_PIXELS the parameters come from corner windows: the mask's windows
    # must come with them (the unobserved zeros would otherwise read as signal)
    from bayes_restore import tiled, tiling

    rng = np.random.default_rng(4)
    clean = np.kron(rng.random((8, 8)), np.ones((16, 16)))
    observed = rng.random(clean.shape) < 0.5
    y = np.where(observed, clean + 0.05 * rng.standard_normal(clean.shape), 0.0)
    monkeypatch.setattr(tiled, "PARAMETER_PIXELS", 4 * 40 * 40)
    monkeypatch.setattr(tiling, "PARAMETER_PIXELS", 4 * 40 * 40)
    post = restore_tiled(y, "tv", operator=Mask(observed), tile=64)
    par = post.diagnostics["parameters"]
    assert par["sigma_estimated"] == pytest.approx(0.05, rel=0.15)
    assert par["weight_method"] == "sapg" and par["weight"] > 0
    whole = restore(y, "tv", operator=Mask(observed)).diagnostics["parameters"]
    assert par["weight"] == pytest.approx(whole["weight"], rel=0.5)
    da = pytest.importorskip("dask.array")
    from bayes_restore.distributed import restore_dask

    _, shared = restore_dask(da.from_array(y, chunks=64), "tv", operator=Mask(observed),
                             return_parameters=True)
    assert shared["sigma"] == pytest.approx(par["sigma"], rel=1e-9)
    assert shared["weight"] == pytest.approx(par["weight"], rel=1e-6)

