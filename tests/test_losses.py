"""Training losses: the reference notes' formulas, their gradients as the priors' energy
gradients, and the cross-entropy losses as categorical negative log likelihoods."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import ndimage

from bayes_restore.differences import gradient_energy
from bayes_restore.likelihoods import GaussianLikelihood, LaplaceLikelihood
from bayes_restore.losses import (
    FrequencySplitLoss,
    IntensityCrossEntropyLoss,
    TVLoss,
    combine_frequency_split,
    frequency_split_loss,
    frequency_split_targets,
    intensity_cross_entropy,
    l1_loss,
    l2_loss,
    tv_loss,
)
from bayes_restore.operators import gaussian_psf
from bayes_restore.priors import GaussianGradient, GradientPrior, TotalVariation

# --- the reference notes' code ----------------------------------------------------------


def notes_tv_loss_ko(img):
    """tv-loss-notes-ko.txt, for one (H, W) image. The notes write Python's built-in
    ``sum``, which on a 2-D array sums rows only (and the two terms would not even
    broadcast): the intended total is ``np.sum``."""
    xv = img[1:, :] - img[:-1, :]
    yv = img[:, 1:] - img[:, :-1]
    loss = np.sum(abs(xv)) + np.sum(abs(yv))
    return loss


def tf_total_variation_nhwc(images):
    """tf.image.total_variation for a 4-D NHWC batch, transcribed to numpy."""
    pixel_dif1 = images[:, 1:, :, :] - images[:, :-1, :, :]
    pixel_dif2 = images[:, :, 1:, :] - images[:, :, :-1, :]
    return np.abs(pixel_dif1).sum(axis=(1, 2, 3)) + np.abs(pixel_dif2).sum(axis=(1, 2, 3))


class NotesTVLoss(nn.Module):
    """tv-loss-order-beta-notes-zh.txt, section 4.1 (``Variable`` dropped)."""

    def __init__(self, TVLoss_weight=1):  # noqa: N803 - as in the notes
        super(NotesTVLoss, self).__init__()  # noqa: UP008
        self.TVLoss_weight = TVLoss_weight

    def forward(self, x):
        batch_size = x.size()[0]
        h_x = x.size()[2]
        w_x = x.size()[3]
        count_h = self._tensor_size(x[:, :, 1:, :])
        count_w = self._tensor_size(x[:, :, :, 1:])
        h_tv = torch.pow((x[:, :, 1:, :] - x[:, :, : h_x - 1, :]), 2).sum()
        w_tv = torch.pow((x[:, :, :, 1:] - x[:, :, :, : w_x - 1]), 2).sum()
        return self.TVLoss_weight * 2 * (h_tv / count_h + w_tv / count_w) / batch_size

    def _tensor_size(self, t):
        return t.size()[1] * t.size()[2] * t.size()[3]


def _autograd(f, x):
    x = x.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(f(x), x)
    return g


# --- total variation ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 2, 7, 9), (2, 1, 5, 5)])
def test_tensorflow_convention_matches_tf_and_the_korean_notes(shape, rng):
    x = rng.standard_normal(shape)
    t = torch.from_numpy(x)
    per_image = tv_loss(t, reduction="none")
    assert per_image.shape == shape[:1]
    np.testing.assert_allclose(per_image.numpy(), tf_total_variation_nhwc(x.transpose(0, 2, 3, 1)),
                               rtol=1e-12)
    korean = [sum(notes_tv_loss_ko(ch) for ch in image) for image in x]
    np.testing.assert_allclose(per_image.numpy(), korean, rtol=1e-12)
    # default reduction: the notes' tf.reduce_sum(tf.image.total_variation(images))
    assert float(tv_loss(t)) == pytest.approx(float(np.sum(korean)), rel=1e-12)
    assert float(tv_loss(t, reduction="mean")) == pytest.approx(float(np.mean(korean)), rel=1e-12)
    # one image: (C, H, W) and (H, W) give a 0-dim tensor
    assert float(tv_loss(t[0], reduction="none")) == pytest.approx(korean[0], rel=1e-12)
    assert tv_loss(t[0, 0]).shape == ()
    assert float(tv_loss(t[0, 0])) == pytest.approx(notes_tv_loss_ko(x[0, 0]), rel=1e-12)


@pytest.mark.parametrize("shape", [(3, 2, 7, 9), (1, 3, 6, 6)])
def test_pytorch_convention_matches_the_notes_tvloss_class(shape, rng):
    x = torch.from_numpy(rng.standard_normal(shape))
    for weight in (1, 0.3):
        expected = NotesTVLoss(weight)(x)
        assert float(TVLoss(weight)(x)) == pytest.approx(float(expected), rel=1e-12)
        assert float(weight * tv_loss(x, convention="pytorch")) == pytest.approx(
            float(expected), rel=1e-12)
        g_ours = _autograd(TVLoss(weight), x)
        g_notes = _autograd(NotesTVLoss(weight), x)
        torch.testing.assert_close(g_ours, g_notes, rtol=1e-12, atol=1e-12)
    # per image: its batch mean is the class; "sum" is batch size times it
    per = tv_loss(x, convention="pytorch", reduction="none")
    assert per.shape == shape[:1]
    assert float(per.mean()) == pytest.approx(float(NotesTVLoss()(x)), rel=1e-12)
    # the notes' own example prints 4
    example = torch.tensor([[[1, 2, 3], [2, 3, 4], [3, 4, 5]]] * 2, dtype=torch.float32)
    assert float(TVLoss()(example.view(1, 2, 3, 3))) == 4.0
    assert float(NotesTVLoss()(example.view(1, 2, 3, 3))) == 4.0


@pytest.mark.parametrize("beta", [1.0, 1.5, 2.0, 0.8])
def test_isotropic_convention_is_the_prior_energy_and_its_gradient(beta, rng):
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 7)))
    prior = GradientPrior(0.7, beta, shape=(3, 6, 7))
    per = tv_loss(x, convention="isotropic", beta=beta, reduction="none")
    torch.testing.assert_close(per, prior.energy(x), rtol=1e-12, atol=0)
    g_loss = _autograd(lambda v: tv_loss(v, convention="isotropic", beta=beta), x)
    g_energy = _autograd(lambda v: prior.energy(v).sum(), x)
    torch.testing.assert_close(g_loss, g_energy, rtol=1e-12, atol=1e-12)
    # phi_beta = -beta b^beta (log p + const): the loss gradient is -beta b^beta d log p / dx
    b = float(prior.scale)
    g_logp = _autograd(lambda v: prior.log_prob(v).sum(), x)
    torch.testing.assert_close(g_loss, -beta * b**beta * g_logp, rtol=1e-10, atol=1e-10)


def test_tensorflow_gradient_is_minus_b_times_the_anisotropic_tv_prior_score(rng):
    x = torch.from_numpy(rng.standard_normal((3, 2, 5, 6)))
    b = 0.25
    prior = TotalVariation(b, shape=(2, 5, 6), isotropic=False)
    g_loss = _autograd(tv_loss, x)
    torch.testing.assert_close(g_loss, _autograd(lambda v: prior.energy(v).sum(), x),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_loss, -b * _autograd(lambda v: prior.log_prob(v).sum(), x),
                               rtol=1e-10, atol=1e-10)
    # an order-beta anisotropic variant is the anisotropic prior of that order
    g15 = _autograd(lambda v: tv_loss(v, beta=1.5), x)
    aniso = GradientPrior(1.0, 1.5, shape=(2, 5, 6), isotropic=False)
    torch.testing.assert_close(g15, _autograd(lambda v: aniso.energy(v).sum(), x))


def test_pytorch_gradient_is_the_gaussian_gradient_prior_score_for_square_images(rng):
    n, c, h = 2, 3, 6
    x = torch.from_numpy(rng.standard_normal((n, c, h, h)))
    b = 0.4
    prior = GaussianGradient(b, shape=(c, h, h))
    count = c * (h - 1) * h
    g_loss = _autograd(lambda v: tv_loss(v, convention="pytorch"), x)
    g_energy = _autograd(lambda v: prior.energy(v).sum(), x)
    torch.testing.assert_close(g_loss, 2 / (count * n) * g_energy, rtol=1e-12, atol=1e-12)
    g_logp = _autograd(lambda v: prior.log_prob(v).sum(), x)  # energy = -2 b^2 (log p + c)
    torch.testing.assert_close(g_loss, -2 / (count * n) * 2 * b**2 * g_logp, rtol=1e-10,
                               atol=1e-10)


def test_tv_loss_rejects_bad_arguments():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="convention"):
        tv_loss(x, convention="keras")
    with pytest.raises(ValueError, match="beta"):
        tv_loss(x, convention="pytorch", beta=1.0)
    with pytest.raises(ValueError, match="reduction"):
        tv_loss(x, reduction="max")
    with pytest.raises(ValueError, match="H, W >= 2"):
        tv_loss(torch.zeros(1, 1, 1, 4), convention="pytorch")
    with pytest.raises(ValueError, match="floating-point"):
        tv_loss(torch.zeros(4, 4, dtype=torch.long))


# --- cross-entropy ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 5, 6), (2, 3, 5, 6)])
def test_intensity_cross_entropy_is_the_categorical_negative_log_likelihood(shape, rng, gen):
    levels = 256
    logits = torch.randn((shape[0], levels) + shape[1:], generator=gen, dtype=torch.float64)
    t = torch.from_numpy(rng.uniform(0, 1, shape))
    classes = torch.round(t * 255).long()
    # the categorical likelihood, pixel by pixel: -sum log softmax(logits)[class]
    log_p = torch.log_softmax(logits, dim=1).gather(1, classes.unsqueeze(1)).squeeze(1)
    total = intensity_cross_entropy(logits, t, reduction="sum")
    assert float(total) == pytest.approx(-float(log_p.sum()), rel=1e-12)
    cat = torch.distributions.Categorical(logits=logits.movedim(1, -1))
    assert float(total) == pytest.approx(-float(cat.log_prob(classes).sum()), rel=1e-12)
    mean = intensity_cross_entropy(logits, t)
    torch.testing.assert_close(mean, nn.functional.cross_entropy(logits, classes))
    assert float(mean) == pytest.approx(float(total) / classes.numel(), rel=1e-12)
    # integer levels give the same as the intensities they came from
    torch.testing.assert_close(intensity_cross_entropy(logits, classes), mean)
    assert IntensityCrossEntropyLoss(reduction="sum")(logits, t) == total
    none = intensity_cross_entropy(logits, t, reduction="none")
    assert none.shape == shape


def test_intensity_cross_entropy_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="classes in dimension 1"):
        intensity_cross_entropy(torch.zeros(1, 10, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="0..255"):
        intensity_cross_entropy(torch.zeros(1, 256, 4, 4), torch.full((1, 4, 4), 300))
    with pytest.raises(ValueError, match="does not match"):
        intensity_cross_entropy(torch.zeros(1, 256, 4, 4), torch.zeros(1, 3, 3))


# --- the frequency-specific loss ----------------------------------------------------------


def _reference_frequency_split(low, high_logits, target, sigma, alpha, r, levels):
    """Eq. (2) of the paper, written out with scipy's periodic convolution."""
    psf = gaussian_psf(2 * math.ceil(3 * sigma) + 1, sigma).numpy()
    t = target.numpy()
    f_t = np.stack([ndimage.convolve(im, psf, mode="wrap")
                    for im in t.reshape((-1,) + t.shape[-2:])]).reshape(t.shape)
    g_t = t - f_t
    classes = np.clip(np.round((g_t + r) / (2 * r) * (levels - 1)), 0, levels - 1).astype(int)
    log_p = torch.log_softmax(high_logits, dim=1).numpy()
    ce = -np.take_along_axis(log_p, classes[:, None], axis=1)[:, 0]
    return ce + alpha * (low.numpy() - f_t) ** 2, f_t, g_t


@pytest.mark.parametrize("shape", [(2, 8, 9), (2, 3, 8, 8)])
def test_frequency_split_loss_matches_the_paper_written_out(shape, rng, gen):
    levels, sigma, alpha, r = 64, 1.3, 0.7, 0.8
    target = torch.from_numpy(rng.uniform(0, 1, shape))
    low = torch.from_numpy(rng.uniform(0, 1, shape))
    logits = torch.randn((shape[0], levels) + shape[1:], generator=gen, dtype=torch.float64)
    expected, f_t, g_t = _reference_frequency_split(low, logits, target, sigma, alpha, r, levels)
    kw = dict(cutoff_sigma=sigma, alpha=alpha, levels=levels, high_range=r)
    none = frequency_split_loss(low, logits, target, reduction="none", **kw)
    np.testing.assert_allclose(none.numpy(), expected, rtol=1e-10)
    assert float(frequency_split_loss(low, logits, target, **kw)) == pytest.approx(
        expected.mean(), rel=1e-10)
    module = FrequencySplitLoss(reduction="sum", **kw)
    assert float(module(low, logits, target)) == pytest.approx(expected.sum(), rel=1e-10)
    # the low target is the low-pass, and low + decoded high is the target to a class step
    low_t, classes = frequency_split_targets(target, cutoff_sigma=sigma, levels=levels,
                                             high_range=r)
    np.testing.assert_allclose(low_t.numpy(), f_t, rtol=1e-10, atol=1e-12)
    assert np.abs(g_t).max() <= r  # nothing clipped at this range
    one_hot = nn.functional.one_hot(classes, levels).movedim(-1, 1).double() * 200.0
    restored = combine_frequency_split(low_t, one_hot, high_range=r, mode="argmax")
    assert float((restored - target).abs().max()) <= r / (levels - 1) + 1e-12
    soft = combine_frequency_split(low_t, one_hot, high_range=r)
    torch.testing.assert_close(soft, restored)


def test_frequency_split_loss_is_a_gaussian_times_categorical_negative_log_likelihood(rng, gen):
    """sum = -log Categorical(high classes) - log N(f(t); low, 1/(2 alpha)) + M log(...)"""
    shape, levels, alpha = (1, 6, 6), 16, 2.0
    target = torch.from_numpy(rng.uniform(0, 1, shape))
    low = torch.from_numpy(rng.uniform(0, 1, shape))
    logits = torch.randn((1, levels) + shape[1:], generator=gen, dtype=torch.float64)
    low_t, classes = frequency_split_targets(target, levels=levels)
    total = frequency_split_loss(low, logits, target, alpha=alpha, levels=levels,
                                 reduction="sum")
    sigma = 1 / math.sqrt(2 * alpha)
    m = low.numel()
    gauss = GaussianLikelihood(low, sigma).log_prob(low_t).sum() + m * math.log(
        sigma * math.sqrt(2 * math.pi))
    cat = torch.distributions.Categorical(logits=logits.movedim(1, -1)).log_prob(classes).sum()
    assert float(total) == pytest.approx(-float(cat) - float(gauss), rel=1e-12)


# --- L1 and L2 ------------------------------------------------------------------------------


def test_l1_and_l2_are_laplace_and_gaussian_negative_log_likelihoods(rng):
    pred = torch.from_numpy(rng.standard_normal((2, 3, 4, 5)))
    target = torch.from_numpy(rng.standard_normal((2, 3, 4, 5)))
    m, b, sigma = pred.numel(), 0.3, 0.2
    laplace = LaplaceLikelihood(pred, b, event_dim=3).log_prob(target).sum()
    assert float(l1_loss(pred, target, reduction="sum")) == pytest.approx(
        -b * float(laplace) - m * b * math.log(2 * b), rel=1e-12)
    gauss = GaussianLikelihood(pred, sigma, event_dim=3).log_prob(target).sum()
    assert float(l2_loss(pred, target, reduction="sum")) == pytest.approx(
        -2 * sigma**2 * (float(gauss) + m * math.log(sigma * math.sqrt(2 * math.pi))), rel=1e-12)
    assert float(l2_loss(pred, target)) == pytest.approx(float(((pred - target) ** 2).mean()))
    assert float(l1_loss(pred, target)) == pytest.approx(float((pred - target).abs().mean()))


def test_losses_share_the_differences_code():
    """tv_loss's tensorflow and isotropic conventions are gradient_energy itself."""
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(tv_loss(x, reduction="none"),
                               gradient_energy(x, 1.0, isotropic=False, event_dim=3))
