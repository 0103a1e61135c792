"""Test images made by the tests themselves."""

import numpy as np


def piecewise_image(h: int = 32, w: int = 32) -> np.ndarray:
    """A clean piecewise-constant test image in [0, 1] with edges in both directions."""
    img = np.full((h, w), 0.2)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 0.8
    img[h // 2 :, : w // 3] = 0.5
    return img
