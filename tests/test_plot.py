"""Figures: each returns a matplotlib figure showing what it says."""

import numpy as np
import pytest

from bayes_restore import restore
from bayes_restore.plot import (
    calibration_curve,
    error_vs_std,
    image_panels,
    pixel_histograms,
    uncertainty_panel,
)

pytest.importorskip("matplotlib")


@pytest.fixture
def exact_post():
    rng = np.random.default_rng(0)
    truth = np.zeros((2, 24, 24))
    truth[:, 6:18, 6:18] = 1.0
    noisy = truth + 0.1 * rng.standard_normal(truth.shape)
    post = restore(noisy, "gaussian", sigma=0.1, scale=0.1, method="exact", num_samples=200)
    return truth, noisy, post


def test_uncertainty_panel_shows_four_images_with_colour_bars(exact_post, tmp_path):
    _, noisy, post = exact_post
    fig = uncertainty_panel(post, noisy, index=(1,))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["observed", "posterior mean", "posterior std", "90 % interval width"]
    assert len(fig.axes) == 8  # four images, four colour bars
    std_img = fig.axes[2].images[0].get_array()  # the four image axes come first
    np.testing.assert_allclose(std_img, post.std[1])
    fig.savefig(tmp_path / "panel.png")
    assert (tmp_path / "panel.png").stat().st_size > 1000


def test_uncertainty_panel_refuses_map():
    post = restore(np.zeros((8, 8)), "tv", sigma=0.1, weight=0.1)
    with pytest.raises(ValueError, match="no std"):
        uncertainty_panel(post)


def test_error_vs_std_reports_the_fraction_within_one_std(exact_post):
    truth, _, post = exact_post
    fig = error_vs_std(post, truth, index=(0,))
    title = fig.axes[0].get_title()
    inside = float(np.mean(np.abs(post.mean[0] - truth[0]) <= post.std[0]))
    assert title == f"{100 * inside:.0f} % of pixels within 1 std"


def test_pixel_histograms_and_calibration_curve(exact_post):
    truth, _, post = exact_post
    fig = pixel_histograms(post, [(0, 3, 3), (1, 12, 12)])
    assert [ax.get_title() for ax in fig.axes] == ["pixel (0, 3, 3)", "pixel (1, 12, 12)"]
    fig = calibration_curve({"exact": post}, truth, probs=[0.5, 0.9])
    line = fig.axes[0].lines[1]
    np.testing.assert_allclose(line.get_ydata(), [post.coverage(truth, 0.5),
                                                   post.coverage(truth, 0.9)])
    with pytest.raises(ValueError, match="draws"):
        pixel_histograms(post.with_fields(samples=None), [(0, 0, 0)])


def test_image_panels_grey_range_and_own_range():
    fig = image_panels({"a": np.full((4, 4), 0.5), "s": np.arange(16.0).reshape(4, 4)},
                       cmaps={"s": "magma"})
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0)
    lo, hi = fig.axes[1].images[0].get_clim()
    assert 0 <= lo < hi <= 15
