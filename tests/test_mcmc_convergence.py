"""Runs to convergence: per-pixel diagnostics, streaming moments, Monte Carlo errors."""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest
import torch

from bayes_restore.infer import gaussian_posterior_std
from bayes_restore.infer.draws import (
    BlockSums,
    ThinnedDraws,
    convergence_diagnostics,
    monte_carlo_errors,
)
from bayes_restore.infer.mcmc import mcmc
from bayes_restore.models import restoration_model
from bayes_restore.priors import GaussianGradient, TotalVariation

SIGMA = 0.1


def _noisy(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.zeros(h, w, dtype=torch.float64)
    clean[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1.0
    return clean + SIGMA * torch.randn(h, w, generator=g, dtype=torch.float64)


def _ar1(chains, draws, pixels, phi, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((chains, draws, pixels))
    x = np.zeros_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * e[:, t]
    return x


def _mixed_pixels(chains, draws, phi, ties, step):
    """One AR(1) pixel per ``phi`` (seeded by its index); pixel 1's second chain shifted by 1
    (chains that disagree), pixel ``ties`` rounded to ``1 / step`` (ties)."""
    x = np.concatenate([_ar1(chains, draws, 1, p, seed=i) for i, p in enumerate(phi)], axis=2)
    x[1, :, 1] += 1.0
    x[:, :, ties] = np.round(x[:, :, ties] * step) / step
    return x


def test_diagnostics_equal_arviz_on_every_pixel():
    """Same R-hat, bulk/tail/mean ESS as ArviZ's, pixel by pixel (an independent code)."""
    from bayes_restore._arviz import import_arviz

    az = import_arviz()
    phi = np.linspace(0.0, 0.9, 6)
    x = np.concatenate([_ar1(2, 200, 1, p, seed=i) for i, p in enumerate(phi)], axis=2)
    x[1, :, -1] += 0.4  # one pixel whose chains disagree
    ours = convergence_diagnostics(torch.from_numpy(x).reshape(2, 200, 2, 3))
    idata = az.from_dict(posterior={"v": x})
    reference = {
        "rhat": az.rhat(idata)["v"].values,
        "ess_bulk": az.ess(idata, method="bulk")["v"].values,
        "ess_tail": az.ess(idata, method="tail")["v"].values,
        "ess_mean": az.ess(idata, method="mean")["v"].values,
    }
    for name, ref in reference.items():
        np.testing.assert_allclose(ours[name].numpy().ravel(), ref, rtol=1e-2, err_msg=name)
    assert float(ours["rhat"].reshape(-1)[-1]) > 1.05


def test_block_sums_give_the_moments_and_split_rhat_of_all_draws():
    x = torch.from_numpy(_ar1(3, 200, 4, 0.5)) + torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1)
    blocks = BlockSums(3, (4,), blocks=8)
    for t in range(200):
        blocks.add(x[:, t])
    mean, std = blocks.moments(torch.float64)
    flat = x.reshape(-1, 4)
    torch.testing.assert_close(mean, flat.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(std, flat.std(0), rtol=1e-5, atol=0)
    # split R-hat of the draws in the full blocks (an odd first one left out), by hand
    size, full = blocks.size, blocks.current
    first = full % 2
    used = x[:, first * size : full * size]
    half = used.shape[1] // 2
    seqs = torch.cat([used[:, :half], used[:, half:]], 0)
    n = half
    within = seqs.var(1).mean(0)
    var_hat = within * (n - 1) / n + seqs.mean(1).var(0)
    torch.testing.assert_close(blocks.rhat(), torch.sqrt(var_hat / within), rtol=1e-5, atol=0)
    assert bool((blocks.rhat() > 1.01).all())  # the chains' offsets are seen


def test_fused_sums_and_codes_are_the_torch_arithmetic():
    """The one-pass numba kernels of the block sums and of the 16-bit codes (rows split over
    threads) against the torch arithmetic they replace."""
    from bayes_restore.infer.draws import QuantisedDraws

    pytest.importorskip("numba")
    x = torch.from_numpy(_ar1(2, 40, 20000, 0.5)).to(torch.float32) * 0.3 + 0.5
    fused = BlockSums(2, (20000,), blocks=4)
    fused.threads = 2
    plain = BlockSums(2, (20000,), blocks=4)
    plain.add(x[:, 0])
    plain._kernels = None  # the torch arithmetic from here on
    fused.add(x[:, 0])
    for t in range(1, 40):
        fused.add(x[:, t])
        plain.add(x[:, t])
    torch.testing.assert_close(fused.s1, plain.s1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fused.s2, plain.s2, rtol=1e-6, atol=1e-6)
    store = QuantisedDraws(2, (20000,), 8, "cpu", width=2.0)  # narrow: some values clip
    store.threads = 2
    store.set_bounds(x[:, :16].mean((0, 1)), x[:, :16].std((0, 1)))
    for t in range(8):
        store.add(x[:, t])
    levels = ((x[:, :8] - store._offset32.view(1, 1, -1)) * store._inverse32 + 0.5).floor()
    assert torch.equal(store.codes.to(torch.float32), levels.clamp(0, 65535) - 32768)
    assert store.clipped == int(((levels < 0) | (levels > 65535)).sum()) > 0


def test_values_of_the_codes_by_numba_are_the_torch_arithmetic():
    """The 16-bit store's values (what a run to convergence returns as its draws) come from
    one numba pass over the codes: against the float64 torch arithmetic, thinned or not."""
    pytest.importorskip("numba")
    from bayes_restore.infer.draws import QuantisedDraws

    x = torch.from_numpy(_ar1(2, 41, 300, 0.6, seed=3)).to(torch.float32)
    store = QuantisedDraws(2, (300,), 64, "cpu")
    store.threads = 2
    store.set_bounds(x.mean((0, 1)), x.std((0, 1)))
    for t in range(41):
        store.add(x[:, t])
    codes = store.codes  # a view of the buffer: its draw axis is strided
    for every, dtype in ((1, torch.float64), (3, torch.float32)):
        values = (codes[:, ::every].to(torch.float64) + 32768.0) * store.scale + store.offset
        assert torch.equal(store.dequantise(every, dtype), values.to(dtype))


def test_thinned_draws_stay_bounded_and_evenly_spaced():
    store = ThinnedDraws(2, (3,), capacity=16, device="cpu")
    for t in range(100):
        store.add(torch.full((2, 3), float(t)))
    kept = store.draws[0, :, 0]
    assert store.stored <= 16 and store.buffer.shape[1] == 16
    steps = kept[1:] - kept[:-1]
    assert bool((steps == store.every).all()) and float(kept[0]) == 0.0
    assert float(kept[-1]) > 100 - store.every - 1


def test_monte_carlo_error_of_the_std_is_calibrated_on_a_gaussian_posterior():
    """LM is exact on the Gaussian-gradient posterior: the std map's error matches std_mcse.

    Its stationary law is the posterior (closed form by the DCT), so
    ``(std - exact) / std_mcse`` is the Monte Carlo error in its own units: about N(0, 1).
    """
    shape, scale = (8, 8), 0.1
    post = mcmc(restoration_model, _noisy(*shape), prior=GaussianGradient(scale, shape=shape),
                sigma=SIGMA, sampler="lm", target_rhat=1.02, seed=0)
    d = post.diagnostics
    assert d["converged"] and post.info.converged
    assert d["rhat_max"] <= 1.02 and min(d["ess_bulk_min"], d["ess_tail_min"]) >= 100
    exact = gaussian_posterior_std(shape, SIGMA, scale)
    z = ((post.std - exact) / post.std_mcse).numpy()
    assert 0.5 < np.sqrt(np.mean(z**2)) < 1.6, np.sqrt(np.mean(z**2))
    assert np.mean(np.abs(z) < 3) > 0.95
    assert d["std_mc_error"] == pytest.approx(float(torch.median(post.std_mcse / post.std)),
                                              rel=1e-6)
    assert post.samples.shape[1] == d["diagnostic_draws"] <= 512
    assert d["num_draws"] >= post.samples.shape[1]


def test_tv_run_to_convergence_reports_every_pixel_and_arviz_has_the_errors():
    shape = (8, 8)
    post = mcmc(restoration_model, _noisy(*shape), prior=TotalVariation(0.1, shape=shape),
                sigma=SIGMA, target_rhat=1.05, target_ess=50, seed=0)
    d = post.diagnostics
    assert d["converged"] and d["sampler"] == "skrock"
    maps = d["convergence"]
    assert set(maps) >= {"rhat", "ess_bulk", "ess_tail"} and maps["rhat"].shape == shape
    assert float(maps["rhat"].max()) == pytest.approx(d["rhat_max"])
    assert float(maps["ess_bulk"].min()) == pytest.approx(d["ess_bulk_min"])
    assert len(d["checks"]) >= 1 and d["checks"][-1]["rhat_max"] <= 1.05
    assert min(d["ess_bulk_min"], d["ess_tail_min"]) >= 50
    idata = post.to_arviz()
    np.testing.assert_allclose(idata.mcse["std"].values, post.std_mcse.numpy())
    assert idata.mcse["mean"].dims == ("y", "x")
    # the same seed gives the same run
    again = mcmc(restoration_model, _noisy(*shape), prior=TotalVariation(0.1, shape=shape),
                 sigma=SIGMA, target_rhat=1.05, target_ess=50, seed=0)
    assert torch.equal(again.std, post.std) and torch.equal(again.std_mcse, post.std_mcse)


def test_time_budget_stops_with_a_warning_that_says_what_was_reached():
    shape = (8, 8)
    with pytest.warns(UserWarning, match=r"did not converge within max_time.*R-hat.*ESS"):
        post = mcmc(restoration_model, _noisy(*shape), prior=TotalVariation(0.1, shape=shape),
                    sigma=SIGMA, max_time=1e-6, diagnostic_draws=64, seed=0)
    d = post.diagnostics
    assert d["converged"] is False and post.info.converged is False
    # the cap is checked every step: it stops at the 8 draws the diagnostics need, before
    # the first convergence check (at 32 draws for diagnostic_draws=64)
    assert d["num_draws"] == 8 and d["checks"] == () and math.isfinite(d["rhat_max"])


def test_time_cap_is_checked_every_step_not_only_at_the_checks(monkeypatch):
    """A clock that advances 1 s per reading: the run stops at the cap, before any check.

    The first convergence check is due at 64 draws (``diagnostic_draws=512``); a cap of 40
    clock readings must stop the chains before it, with the warning and the diagnostics
    computed on the draws collected.
    """
    engine = sys.modules[mcmc.__module__]
    ticks = iter(range(10**6))

    class Clock:
        @staticmethod
        def perf_counter():
            return float(next(ticks))

    monkeypatch.setattr(engine, "time", Clock)
    shape = (8, 8)
    with pytest.warns(UserWarning, match=r"did not converge within max_time=40"):
        post = mcmc(restoration_model, _noisy(*shape), prior=TotalVariation(0.1, shape=shape),
                    sigma=SIGMA, max_time=40, warmup=0, seed=0)
    d = post.diagnostics
    # one clock reading per step: stopped at the 41st draw, not at the check (64)
    assert d["num_draws"] == 41 and d["num_steps"] == d["num_draws"]
    assert d["checks"] == () and d["converged"] is False
    assert d["diagnostic_draws"] == d["num_draws"] and math.isfinite(d["rhat_max"])
    # a cap within the warm-up ends it there; the 8 draws the diagnostics need still run
    with pytest.warns(UserWarning, match=r"did not converge within max_time=5 "):
        post = mcmc(restoration_model, _noisy(*shape), prior=TotalVariation(0.1, shape=shape),
                    sigma=SIGMA, max_time=5, warmup=100, seed=0)
    d = post.diagnostics
    assert d["warmup"] <= 6 and d["num_draws"] == 8 and d["num_steps"] == d["warmup"] + 8


def test_large_image_layout_stays_within_max_memory():
    """The streaming sums and stored draws of a run to convergence fit ``max_memory / 2``
    (float32), or, every pixel's in 16 bits, ``max_memory`` with the chains' working memory."""
    from bayes_restore.infer.mcmc import _diagnostic_layout, _grid_shape, _layout_bytes

    for size in (64, 256, 300, 512, 1024, 2048):
        blocks, grid, capacity, coded = _diagnostic_layout(2, (size, size), 512, 1 << 30)
        used = 2 * blocks * 2 * size**2 * 4 + 2 * capacity * math.prod(
            _grid_shape((size, size), grid)) * 4
        if coded:
            assert _layout_bytes(2, (size, size), blocks, capacity) <= (1 << 30)
        else:
            assert used <= (1 << 29), (size, blocks, grid, capacity)
        # never fewer draws than asked: every pixel's when they fit, else a grid's
        assert capacity == 512, (size, blocks, grid, capacity)
        all_pixels = 2 * blocks * 2 * size**2 * 4 + 2 * 512 * size**2 * 4 <= (1 << 29)
        assert (grid == 1) == (all_pixels or coded) and not (all_pixels and coded)
        assert coded == (size == 512), size


def test_grid_of_pixels_is_the_same_chain_and_rhat_covers_every_pixel():
    """With too little memory for every pixel's draws, a grid of them: the same chain."""
    shape = (32, 32)
    y, prior = _noisy(*shape), TotalVariation(0.1, shape=shape)
    options = {"sigma": SIGMA, "max_time": 1e-6, "diagnostic_draws": 64, "seed": 0}
    with pytest.warns(UserWarning, match="did not converge"):
        full = mcmc(restoration_model, y, prior=prior, **options)
        small = mcmc(restoration_model, y, prior=prior, max_memory=600 << 10, **options)
    d = small.diagnostics
    assert d["diagnostic_stride"] == 3 and full.diagnostics["diagnostic_stride"] == 1
    assert tuple(small.samples.shape) == (2, 8, 11, 11)
    assert torch.equal(small.samples, full.samples[..., ::3, ::3])
    # the same draws in the sums (fewer blocks here: float32 sums in another order)
    torch.testing.assert_close(small.mean, full.mean, rtol=0, atol=1e-6)
    assert small.mean.shape == shape
    assert small.std_mcse is None and d["convergence"]["ess_bulk"].shape == (11, 11)
    # R-hat's maximum is over every pixel (the all-draw split R-hat), the maps on the grid
    assert d["rhat_max"] == pytest.approx(float(full.diagnostics["convergence"]["rhat"].max()))
    assert d["rhat_max"] >= float(d["convergence"]["rhat"].max())


def test_fixed_budget_keeps_its_draws_and_adds_the_errors():
    shape = (6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        post = mcmc(restoration_model, _noisy(*shape), prior=TotalVariation(0.1, shape=shape),
                    sigma=SIGMA, num_samples=60, seed=0)
    d = post.diagnostics
    assert tuple(post.samples.shape) == (2, 60, 6, 6) and "converged" not in d
    assert post.info.converged and d["num_draws"] == 60
    assert post.std_mcse.shape == shape and bool((post.std_mcse > 0).all())
    mean_se, _ = monte_carlo_errors(post.std, d["convergence"] | {
        "ess_mean": convergence_diagnostics(post.samples)["ess_mean"],
        "ess_sq": torch.ones(shape), "kurtosis": torch.full(shape, 3.0)})
    torch.testing.assert_close(mean_se, post.mean_mcse)


@pytest.mark.parametrize(("options", "message"), [
    ({"target_rhat": 1.0}, "target_rhat"),
    ({"target_ess": 0}, "target_ess"),
    ({"max_time": -1.0}, "max_time"),
    ({"diagnostic_draws": 4}, "diagnostic_draws"),
    ({"max_memory": 1000}, "max_memory"),
    ({"preconditioner": "dct"}, "preconditioner"),
])
def test_bad_convergence_options_name_themselves(options, message):
    with pytest.raises(ValueError, match=message):
        mcmc(restoration_model, _noisy(6, 6), prior=TotalVariation(0.1, shape=(6, 6)),
             sigma=SIGMA, **options)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_diagnostics_equal_arviz_to_1e6(dtype):
    """The numba kernels against ArviZ (FFT autocovariances, scipy ranks), pixel by pixel.

    Independent and AR(1) draws (lag-1 correlation up to 0.99: long Geyer sequences), four
    chains, an even and an odd number of draws (the split leaves the middle one out), ties
    (float32 values rounded to 1/64), and a pixel whose chains disagree.
    """
    from bayes_restore._arviz import import_arviz
    from bayes_restore.infer import _diagnostics_numba as kernels

    az = import_arviz()
    phi = [0.0, 0.0, 0.3, 0.6, 0.9, 0.99]
    for draws in (300, 151):
        x = _mixed_pixels(4, draws, phi, ties=0, step=64).astype(dtype)
        ours = kernels.diagnostics(x.transpose(2, 0, 1))
        ours_torch = convergence_diagnostics(torch.from_numpy(x), backend="torch")
        idata = az.from_dict(posterior={"v": x.astype(np.float64)})
        sq = (x.astype(np.float64) - x.mean((0, 1))) ** 2
        if draws % 2 == 0:  # ours: the squared deviations from the split draws' mean
            reference_sq = az.ess(az.from_dict(posterior={"v": sq}), method="mean")["v"].values
            np.testing.assert_allclose(ours[4], reference_sq, rtol=1e-6)
        for row, name, ref in [
            (0, "rhat", az.rhat(idata, method="rank")["v"].values),
            (1, "ess_bulk", az.ess(idata, method="bulk")["v"].values),
            (2, "ess_tail", az.ess(idata, method="tail")["v"].values),
            (3, "ess_mean", az.ess(idata, method="mean")["v"].values),
        ]:
            np.testing.assert_allclose(ours[row], ref, rtol=1e-6, err_msg=f"{name} {draws}")
            if draws % 2 == 0 and name != "ess_tail":  # float32 FFTs: about 1e-2
                np.testing.assert_allclose(ours_torch[name].numpy(), ref, rtol=3e-2,
                                           err_msg=f"torch {name}")
        assert ours[0, 1] > 1.05 and ours[1, 5] < 0.05 * 4 * draws
    with pytest.raises(ValueError, match="backend"):
        convergence_diagnostics(torch.zeros(2, 8, 3), backend="cuda")


def test_grid_of_a_run_to_convergence_keeps_every_draw_asked_and_its_ess_is_arviz():
    """Memory for fewer than ``diagnostic_draws`` of every pixel: a grid keeps them all.

    The ESS maps of the run are ArviZ's on the grid's stored draws; the R-hat maximum is the
    all-draw split R-hat over every pixel.
    """
    from bayes_restore._arviz import import_arviz

    az = import_arviz()
    shape = (32, 32)
    # neither every pixel's draws in float32 (70 per chain would fit) nor in 16 bits
    post = mcmc(restoration_model, _noisy(*shape), prior=TotalVariation(0.1, shape=shape),
                sigma=SIGMA, max_memory=1_415_000, diagnostic_draws=256, target_rhat=1.05,
                target_ess=50, seed=0)
    d = post.diagnostics
    assert d["diagnostic_stride"] == 4 and d["converged"]
    samples = post.samples.numpy().astype(np.float64)
    # the grid keeps between 128 and 256
    assert samples.shape[:2] == (2, d["diagnostic_draws"]) and samples.shape[2:] == (8, 8)
    assert d["diagnostic_draws"] >= 128
    idata = az.from_dict(posterior={"v": samples})
    for name, method in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        np.testing.assert_allclose(d["convergence"][name].numpy(),
                                   az.ess(idata, method=method)["v"].values, rtol=1e-6)
    assert d["rhat_max"] <= 1.05 and d["rhat_max"] >= float(d["convergence"]["rhat"].max())


def _quantised(x: np.ndarray, capacity: int, width: float = 32.0):
    """``x`` ``(chain, draw, *shape)`` through a QuantisedDraws (levels from its first 16)."""
    from bayes_restore.infer.draws import QuantisedDraws

    t = torch.from_numpy(x)
    store = QuantisedDraws(x.shape[0], x.shape[2:], capacity, "cpu", width=width)
    store.set_bounds(t[:, :16].mean((0, 1)), t[:, :16].std((0, 1)))
    for k in range(x.shape[1]):
        store.add(t[:, k])
    return store


def test_every_pixel_ess_of_16_bit_draws_is_arviz_on_their_values():
    """The 16-bit store's R-hat and bulk/tail/mean ESS are ArviZ's on the dequantised draws.

    AR(1) chains from independent to lag-1 correlation 0.99, an even and an odd number of
    draws, a pixel whose chains disagree and one whose values are coarse (ties); the levels
    come from the first 16 draws, 3 of their stds either side (the slow chains go beyond:
    clipped, ties at the ends).
    """
    from bayes_restore._arviz import import_arviz

    az = import_arviz()
    phi = [0.0, 0.3, 0.6, 0.9, 0.99, 0.0]
    for draws in (300, 151):
        x = _mixed_pixels(2, draws, phi, ties=5, step=8)
        store = _quantised(x.reshape(2, draws, 2, 3), capacity=draws + draws % 2, width=3.0)
        ours = store.diagnostics()
        values = store.dequantise(dtype=torch.float64).reshape(2, draws, 6).numpy()
        idata = az.from_dict(posterior={"v": values})
        for name, ref in [
            ("rhat", az.rhat(idata, method="rank")["v"].values),
            ("ess_bulk", az.ess(idata, method="bulk")["v"].values),
            ("ess_tail", az.ess(idata, method="tail")["v"].values),
            ("ess_mean", az.ess(idata, method="mean")["v"].values),
        ]:
            np.testing.assert_allclose(ours[name].reshape(-1).numpy(), ref, rtol=1e-6,
                                       err_msg=f"{name} {draws}")
        # the bulk-only R-hat (the all-pixel pass of a run): never above ArviZ's
        bulk = store.diagnostics(folded_rhat=False)
        assert bool((bulk["rhat"] <= ours["rhat"] + 1e-12).all())
        assert torch.equal(bulk["ess_bulk"], ours["ess_bulk"])
        # a strided grid of pixels: the same numbers on those pixels
        grid = store.diagnostics(2)
        torch.testing.assert_close(grid["ess_tail"], ours["ess_tail"][::2, ::2])
    assert 0 < store.clipped < store.encoded // 4


def test_16_bit_draws_change_the_ess_negligibly():
    """Levels of 1/1000 of a std: rank-normalised ESS within 1 % of the float draws' (max
    over pixels), R-hat within 1e-3, and the dequantised values within half a level (and
    float32 rounding: the values are quantised from float32)."""
    x = _ar1(2, 400, 64, 0.5, seed=3) * np.linspace(0.01, 3.0, 64) + np.arange(64)
    store = _quantised(x, capacity=400)
    values = store.dequantise(dtype=torch.float64)
    half_level = float(store.scale.max()) / 2
    error = (values - torch.from_numpy(x)).abs() - 2.0**-23 * torch.from_numpy(x).abs()
    assert float(error.max()) <= half_level * 1.001
    assert store.clipped == 0
    exact = convergence_diagnostics(torch.from_numpy(x))
    coded = store.diagnostics()
    for name in ("ess_bulk", "ess_mean", "ess_sq"):
        rel = (coded[name] / exact[name] - 1).abs().max()
        assert float(rel) < 0.01, (name, float(rel))
    # the tail ESS is that of an indicator: the same unless two draws next to the 5 % or 95 %
    # quantile share a level (one draw more below it, as if that draw had moved)
    rel = (coded["ess_tail"] / exact["ess_tail"] - 1).abs()
    assert float(rel.median()) < 1e-3 and int((rel > 0.01).sum()) <= 64 // 10
    assert float((coded["rhat"] - exact["rhat"]).abs().max()) < 1e-3


def test_run_to_convergence_keeps_every_pixel_in_16_bits_when_float32_does_not_fit():
    """Memory for every pixel's draws in 16 bits but not in float32: no grid of pixels, the
    ESS and Monte Carlo error maps cover every pixel, the float copy is a thinned one."""
    from bayes_restore.infer.mcmc import _diagnostic_layout

    y = _noisy(16, 16)
    memory = 250_000
    assert _diagnostic_layout(2, (16, 16), 64, memory)[1:] == (1, 64, True)
    assert _diagnostic_layout(2, (16, 16), 64, 1 << 30)[3] is False  # float32 fits
    prior = TotalVariation(0.1, shape=(16, 16))
    options = {"sigma": SIGMA, "target_rhat": 1.05, "target_ess": 30, "diagnostic_draws": 64,
               "seed": 0, "max_time": 60}
    post = mcmc(restoration_model, y, prior=prior, max_memory=memory, **options)
    d = post.diagnostics
    assert d["converged"] and d["diagnostic_stride"] == 1
    assert d["diagnostic_values"] == "int16 levels" and d["quantisation_clipped"] < 1e-3
    assert d["convergence"]["ess_bulk"].shape == (16, 16) and post.std_mcse.shape == (16, 16)
    assert float(d["convergence"]["ess_bulk"].min()) == d["ess_bulk_min"] >= 30
    assert 32 <= d["diagnostic_draws"] <= 64 and d["num_draws"] >= d["diagnostic_draws"]
    assert post.samples.shape[2:] == (16, 16) and post.samples.dtype == torch.float32
    # the float copy: thinned draws of the same chains (its std near the streaming one)
    assert post.samples.shape[1] <= d["diagnostic_draws"]
    ratio = post.samples.flatten(0, 1).std(0) / post.std.float()
    assert 0.7 < float(ratio.median()) < 1.3
    again = mcmc(restoration_model, y, prior=prior, max_memory=memory, **options)
    assert torch.equal(again.std, post.std)  # bit-identical rerun
