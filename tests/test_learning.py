"""bayes_restore.learning: the SR network's heads and losses, the categorical predictive
distribution against closed forms, training (a step lowers the loss, reruns and resumes are
bit-identical) and the data pipeline."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bayes_restore.learning import (
    HEADS,
    TEST_IMAGES,
    TRAIN_IMAGES,
    NetworkPosterior,
    PatchSampler,
    SRNet,
    categorical_moments,
    categorical_quantile,
    categorical_sample,
    degrade,
    dihedral,
    load_checkpoint,
    predict,
    torch_threads,
    train,
)
from bayes_restore.losses import (
    frequency_split_loss,
    intensity_cross_entropy,
    l1_loss,
    l2_loss,
)
from bayes_restore.operators import Downsample

LEVELS = 16


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors: one thread is several times faster than two on a busy machine
    with torch_threads(1):
        yield


def tiny_images(n: int = 2, size: int = 24, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    return [np.clip(0.5 + 0.3 * np.sin(6 * (xx + k * yy)) + 0.05 * rng.standard_normal(
        (size, size)), 0, 1) for k in range(n)]


# ---------------------------------------------------------------------------- heads
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("factor", [2, 3])
def test_head_shapes_and_losses(head, factor):
    net = SRNet(factor, head, channels=2, levels=LEVELS, features=8, hr_features=4)
    lr = torch.rand(3, 2, 4, 5, generator=torch.Generator().manual_seed(1))
    hr = torch.rand(3, 2, 4 * factor, 5 * factor, generator=torch.Generator().manual_seed(2))
    out = net(lr)
    loss = net.loss(out, hr)
    # the head's loss is the package's loss on the (N, L, C, H, W) layout of the losses
    if head in ("l1", "l2"):
        assert out.shape == hr.shape
        expected = (l1_loss if head == "l1" else l2_loss)(out, hr)
    elif head == "cs":
        assert out.shape == (3, LEVELS, 2, 4 * factor, 5 * factor)
        expected = intensity_cross_entropy(out.contiguous(), hr, levels=LEVELS)
    else:
        low, logits = out
        assert low.shape == hr.shape and logits.shape == (3, LEVELS) + hr.shape[1:]
        expected = frequency_split_loss(low, logits.contiguous(), hr, levels=LEVELS)
    assert loss.shape == () and torch.isfinite(loss)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert net.image(out).shape == hr.shape


def test_heads_start_from_bicubic():
    lr = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic")
    reg = SRNet(2, "l2")
    with torch.no_grad():
        reg.out.weight[:, :-1].zero_()  # only the small random part of the start removed
        assert torch.allclose(reg(lr), bicubic, atol=1e-6)
        # CS: a discretised Gaussian of std 0.05 around the bicubic value: mean ~ bicubic
        cs = SRNet(2, "cs", init_std=0.05)
        for conv in (cs.out, cs.centre, cs.log_width):
            conv.weight[:, :-1].zero_()
        mean = cs.image(cs(lr))
    inner = (bicubic > 0.2) & (bicubic < 0.8)  # away from the clipping ends of [0, 1]
    assert (mean - bicubic)[inner].abs().max() < 2e-3


@pytest.mark.parametrize("head", ["cs", "fcs"])
def test_classification_head_is_a_gaussian_plus_residual(head):
    # the softmax of the head is that of -(v_k - mu)^2 / (2 s^2) + r_k per pixel and
    # channel, with mu, log s and r the 1x1 convolutions of the maps (written out here)
    net = SRNet(2, head, channels=2, levels=LEVELS, features=8, hr_features=4).double()
    with torch.no_grad():
        for conv in (net.out, net.centre, net.log_width):  # not the initial values only
            conv.weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(3))
        lr = torch.rand(1, 2, 4, 5, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
        maps = net.hr_maps(lr)
        mu, log_s, r = (conv(maps) for conv in (net.centre, net.log_width, net.out))
        r = r.reshape(1, 2, LEVELS, 8, 10).transpose(1, 2)  # channel c L + k -> (k, c)
        v = net.class_values()[:, None, None, None]
        gauss = -(v - mu) ** 2 / (2 * torch.exp(2 * log_s.clamp(math.log(1e-4), 2.0)))
        expected = torch.softmax(gauss + r, 1)
        out = net(lr)
        logits = out if head == "cs" else out[1]
    torch.testing.assert_close(torch.softmax(logits[0], 0), expected[0], rtol=1e-9,
                               atol=1e-12)
    assert logits.shape == (1, LEVELS, 2, 8, 10)


@pytest.mark.parametrize("head", ["cs", "fcs"])
def test_predictive_width_is_learnt(head):
    # targets with the right centre (CS: the bicubic image of a random low-resolution
    # input, so each pixel has its own centre; FCS: a flat image, high-pass around 0) plus
    # noise of std 0.15 or 0.01: from the initial width 0.05, a few Adam steps widen /
    # narrow the predictive std toward the noise's. (CS with the width set by weights of
    # order 1 / 0.05^2 on the bicubic value stayed at 0.048-0.053 here.)
    g = torch.Generator().manual_seed(0)
    lr = 0.2 + 0.6 * torch.rand(2, 1, 6, 6, generator=g) if head == "cs" else torch.full(
        (2, 1, 6, 6), 0.5)
    centre = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic")
    noise = torch.randn(2, 1, 12, 12, generator=g)
    stds = {}
    for target_std in (0.15, 0.01):
        net = SRNet(2, head, features=4, hr_features=2)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(20):
            optimizer.zero_grad()
            net.loss(net(lr), centre + target_std * noise).backward()
            optimizer.step()
        stds[target_std] = float(predict(net, lr).std.mean())
    # the initial std is 0.05: more than a third of the way (in log) to 0.15 and to 0.01
    assert stds[0.15] > 0.05 * (0.15 / 0.05) ** (1 / 3) and stds[0.01] < 0.05 * 0.2 ** (1 / 3)


def test_network_leaves_global_rng_alone_and_is_seeded():
    state = torch.get_rng_state()
    a, b, c = SRNet(2, "cs", seed=3), SRNet(2, "cs", seed=3), SRNet(2, "cs", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_network_bad_arguments():
    with pytest.raises(ValueError, match="head"):
        SRNet(2, "ce")
    with pytest.raises(ValueError, match="factor"):
        SRNet(1)
    with pytest.raises(ValueError, match="lr"):
        SRNet(2)(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="no classes"):
        SRNet(2, "l1").class_values()


# ---------------------------------------------------------------------------- predictive
def test_categorical_moments_and_quantiles_closed_form():
    # uniform on k / (L - 1): mean 1/2, variance (L + 1) / (12 (L - 1))
    p = torch.full((2, LEVELS, 3), 1.0 / LEVELS, dtype=torch.float64)
    v = torch.arange(LEVELS, dtype=torch.float64) / (LEVELS - 1)
    mean, std = categorical_moments(p, v)
    assert torch.allclose(mean, torch.full((2, 3), 0.5, dtype=torch.float64))
    assert torch.allclose(std, torch.full((2, 3), math.sqrt((LEVELS + 1) / (12 * (LEVELS - 1))),
                                          dtype=torch.float64))
    # the q-quantile of the uniform: class ceil(q L) - 1
    for q in (0.05, 0.25, 0.5, 0.9):
        expected = (math.ceil(q * LEVELS) - 1) / (LEVELS - 1)
        assert torch.allclose(categorical_quantile(p, v, q), torch.full((2, 3), expected,
                                                                        dtype=torch.float64))
    # two points a, b with masses w, 1 - w: std = |a - b| sqrt(w (1 - w))
    two = torch.tensor([[0.3, 0.0, 0.7]])
    vals = torch.tensor([0.1, 0.5, 0.9])
    m, s = categorical_moments(two, vals)
    assert torch.allclose(m, torch.tensor([0.3 * 0.1 + 0.7 * 0.9]))
    assert torch.allclose(s, torch.tensor([0.8 * math.sqrt(0.21)]))


def test_categorical_sample_frequencies():
    p = torch.tensor([0.1, 0.0, 0.6, 0.3])
    draws = categorical_sample(p[None, :, None], torch.arange(4.0), 20000,
                               generator=torch.Generator().manual_seed(0))
    assert draws.shape == (20000, 1, 1)
    freq = torch.bincount(draws.flatten().long(), minlength=4) / 20000
    # 4 binomial standard errors at n = 20000 (at most 0.0035 each)
    assert torch.allclose(freq, p, atol=0.014) and freq[1] == 0


def known_softmax_model(probs: torch.Tensor, head: str = "cs") -> SRNet:
    """A network whose every pixel has the softmax ``probs`` (head weights zero)."""
    net = SRNet(2, head, levels=probs.numel())
    with torch.no_grad():
        # centre 0 and width 1: the Gaussian part is -v^2 / 2, which the residual cancels
        for conv in (net.out, net.centre, net.log_width):
            conv.weight.zero_()
            conv.bias.zero_()
        net.out.bias.copy_(probs.log() + 0.5 * net.class_values().square())
        if net.low is not None:
            net.low.weight.zero_()
            net.low.bias.fill_(0.25)
    return net


def test_predict_known_softmax_closed_form():
    # a discretised "triangle" on 8 levels, float64 arithmetic of the expected values
    w = torch.tensor([0, 1, 2, 3, 4, 3, 2, 1], dtype=torch.float64)
    probs = w / w.sum()
    v = torch.arange(8, dtype=torch.float64) / 7
    mean = float((probs * v).sum())
    std = math.sqrt(float((probs * (v - mean) ** 2).sum()))
    cdf = probs.cumsum(0)
    lo90 = float(v[int((cdf < 0.05).sum())])
    hi90 = float(v[int((cdf < 0.95).sum())])
    post = predict(known_softmax_model(probs.float()), np.zeros((3, 4)), probs=(0.9,),
                   num_samples=400)
    assert isinstance(post, NetworkPosterior) and post.method == "network"
    assert post.mean.shape == (6, 8) and isinstance(post.mean, np.ndarray)
    np.testing.assert_allclose(post.mean, mean, atol=1e-6)
    np.testing.assert_allclose(post.std, std, atol=1e-6)
    np.testing.assert_allclose(post.map, 4 / 7, atol=1e-7)  # the mode
    lo, hi = post.interval(0.9)
    np.testing.assert_allclose(lo, lo90)
    np.testing.assert_allclose(hi, hi90)
    # draws: (chain, draw, H, W), mean within 5 standard errors of the exact one
    assert post.samples.shape == (1, 400, 6, 8)
    assert abs(post.samples.mean() - mean) < 5 * std / math.sqrt(400 * 48)
    # another mass: from the draws; the coverage of the truth by the intervals
    lo50, hi50 = post.interval(0.5)
    assert (lo50 >= lo - 1e-7).all() and (hi50 <= hi + 1e-7).all()
    assert post.coverage(np.full((6, 8), 4 / 7), 0.9) == 1.0
    assert post.coverage(np.full((6, 8), 0.0), 0.9) == 0.0  # class 0 has mass 0


def test_predict_fcs_shifts_the_high_pass_by_the_low_pass():
    probs = torch.tensor([0.2, 0.5, 0.3])  # high-pass centres -1, 0, 1
    post = predict(known_softmax_model(probs, "fcs"), torch.zeros(1, 1, 2, 2), probs=(0.5,))
    assert isinstance(post.mean, torch.Tensor) and post.mean.shape == (1, 1, 4, 4)
    assert torch.allclose(post.mean, torch.tensor(0.25 + 0.3 - 0.2))
    assert torch.allclose(post.std, torch.tensor(math.sqrt(0.5 - 0.01)))
    lo, hi = post.interval(0.5)  # quartiles: centres 0 (cdf 0.7) and 1, shifted by y_L = 0.25
    assert torch.allclose(lo, torch.tensor(0.25)) and torch.allclose(hi, torch.tensor(1.25))
    with pytest.raises(ValueError, match="probs"):
        post.interval(0.9)


def test_predict_regression_head_and_bad_input():
    post = predict(SRNet(2, "l1"), torch.rand(1, 5, 5, dtype=torch.float64))
    assert post.map.shape == (1, 10, 10) and post.map.dtype == torch.float64
    assert post.std is None
    with pytest.raises(ValueError, match="no uncertainty"):
        post.interval(0.9)
    with pytest.raises(ValueError, match="probs"):
        predict(SRNet(2, "cs"), np.zeros((4, 4)), probs=(1.0,))
    with pytest.raises(TypeError, match="model"):
        predict(torch.nn.Identity(), np.zeros((4, 4)))


def test_predict_rows_chunking_is_exact():
    net = SRNet(2, "cs", levels=LEVELS)
    lr = torch.rand(1, 1, 7, 6, generator=torch.Generator().manual_seed(0))
    a, b = predict(net, lr, rows=3), predict(net, lr, rows=64)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.interval(0.9)[0], b.interval(0.9)[0])


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("head", HEADS)
def test_training_steps_lower_the_loss(head):
    # one fixed batch (the whole image, no augmentation, no noise): the loss must fall
    sampler = PatchSampler(tiny_images(1, 16), 2, patch_size=16, sigma=0.0, augment=False)
    net = SRNet(2, head, levels=LEVELS, features=8, hr_features=4)
    lr_batch, hr_batch = sampler.sample(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = float(net.loss(net(lr_batch), hr_batch))
    res = train(net, sampler, steps=5, batch_size=1, lr=1e-3, progress=False)
    assert res.losses[0] == pytest.approx(before, rel=1e-6)
    with torch.no_grad():
        after = float(net.loss(net(lr_batch), hr_batch))
    assert after < before


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    images = tiny_images()
    kwargs = dict(steps=6, batch_size=2, patch_size=8, seed=5, progress=False, num_threads=1,
                  checkpoint_every=2)
    whole = SRNet(2, "fcs", levels=LEVELS, features=8, hr_features=4)
    res_whole = train(whole, images, checkpoint=tmp_path / "whole.pt", **kwargs)
    part = SRNet(2, "fcs", levels=LEVELS, features=8, hr_features=4)
    first = train(part, images, checkpoint=tmp_path / "part.pt", stop_after=3, **kwargs)
    assert first.step == 3 and not first.complete
    resumed = SRNet(2, "fcs", levels=LEVELS, features=8, hr_features=4)  # a fresh process
    res = train(resumed, images, checkpoint=tmp_path / "part.pt", **kwargs)
    assert res.resumed_from == 3 and res.complete
    assert res.losses == res_whole.losses
    for p, q in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    loaded, state = load_checkpoint(tmp_path / "part.pt")
    assert state["step"] == 6 and torch.equal(loaded.out.weight, whole.out.weight)
    # a rerun from scratch with the same seed is the same run too
    again = SRNet(2, "fcs", levels=LEVELS, features=8, hr_features=4)
    assert train(again, images, **kwargs).losses == res_whole.losses
    # the checkpoint of another network is refused
    with pytest.raises(ValueError, match="another network"):
        train(SRNet(2, "cs", levels=LEVELS), images, checkpoint=tmp_path / "part.pt", **kwargs)


def test_train_restores_thread_count_and_checks_arguments():
    with torch_threads(2):
        train(SRNet(2, "l2"), tiny_images(1), steps=1, batch_size=1, patch_size=8,
              progress=False, num_threads=1)
        assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="steps"):
        train(SRNet(2), tiny_images(1), steps=0, progress=False)
    with pytest.raises(ValueError, match="factor"):
        train(SRNet(4), PatchSampler(tiny_images(1), 2, patch_size=8), steps=1, progress=False)


# ---------------------------------------------------------------------------- data
def test_split_is_by_image_and_disjoint():
    assert not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    assert "cat" not in TRAIN_IMAGES + TEST_IMAGES  # it is chelsea


def test_box_degradation_is_the_package_operator_and_commutes_with_flips():
    x = torch.rand(2, 12, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(degrade(x, 4), Downsample(4).forward(x))
    for k in range(8):
        assert torch.allclose(degrade(dihedral(x, k), 4), dihedral(degrade(x, 4), k))
    flat = np.full((16, 16), 0.3)
    np.testing.assert_allclose(degrade(flat, 2, "bicubic"), 0.3, atol=1e-6)
    assert len({tuple(dihedral(torch.arange(4).reshape(2, 2), k).flatten().tolist())
                for k in range(8)}) == 8
    with pytest.raises(ValueError, match="kernel"):
        degrade(flat, 2, "gaussian")


def test_patch_sampler_pairs_are_aligned():
    images = tiny_images(2, 20)
    for kind in ("box", "bicubic"):
        sampler = PatchSampler(images, 2, kind, patch_size=8, sigma=0.0)
        lr, hr = sampler.sample(6, torch.Generator().manual_seed(0))
        assert lr.shape == (6, 1, 4, 4) and hr.shape == (6, 1, 8, 8)
        if kind == "box":  # the low-resolution patch is the box average of its partner
            torch.testing.assert_close(degrade(hr, 2), lr, rtol=1e-6, atol=1e-6)
    noisy = PatchSampler(images, 2, patch_size=8, sigma=0.1)
    lr2, hr2 = noisy.sample(6, torch.Generator().manual_seed(0))
    assert 0.05 < float((lr2 - degrade(hr2, 2)).std()) < 0.15
    with pytest.raises(ValueError, match="multiple"):
        PatchSampler(images, 3, patch_size=8)


# ---------------------------------------------------------------------------- example
def test_sr_uncertainty_example(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("skimage")
    path = Path(__file__).resolve().parent.parent / "examples" / "plot_sr_uncertainty.py"
    spec = importlib.util.spec_from_file_location("_example_plot_sr_uncertainty", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "sr.png"
    result = module.main(steps=8, size=48, out=str(out), images=("moon", "text"))
    assert out.stat().st_size > 10_000
    # a few steps from the bicubic start: the predictive mean is about the bicubic image
    # and the intervals (a Gaussian of std 0.05 around it at the start) cover most pixels
    assert result["psnr_mean"] > result["psnr_bicubic"] - 1.0
    assert 0.5 < result["coverage_90"] <= 1.0
    assert result["coverage_50"] < result["coverage_90"]
    assert 0.01 < result["std_flat"] < 0.1 and 0.01 < result["std_edges"] < 0.1
