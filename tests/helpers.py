"""Test images and small operators made by the tests themselves."""

import numpy as np
import torch

from bayes_restore.operators import LinearOperator, PixelDiagonal


def piecewise_image(h: int = 32, w: int = 32) -> np.ndarray:
    """A clean piecewise-constant test image in [0, 1] with edges in both directions."""
    img = np.full((h, w), 0.2)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 0.8
    img[h // 2 :, : w // 3] = 0.5
    return img


def random_dual_lower_bounds(ws, data, generator, scales=(0.1, 1.0, 10.0)) -> list[float]:
    """The data prox's lower bound at random feasible dual fields of several sizes.

    ``ws`` is the TV solver's workspace, ``data`` its data-term step; each field is drawn at
    ``scale``, its padding rows cleared and projected onto ``|p| <= 1``.
    """
    import torch

    scratch = torch.empty_like(data.ys)
    bounds = []
    for scale in scales:
        ws.p[..., 1:, 1:] = scale * torch.randn(ws.p[..., 1:, 1:].shape, generator=generator,
                                                dtype=ws.p.dtype)
        ws.p[..., 0, -1, :] = 0
        ws.p[..., 1, :, -1] = 0
        ws.project(ws.p)
        bounds.append(float(data.lower_bound(ws, scratch)))
    return bounds


def smooth_image(n: int) -> torch.Tensor:
    """A smooth float64 ``(n, n)`` image: a product of a sine and a cosine around 0.5."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    return 0.5 + 0.3 * torch.sin(3 * t)[:, None] * torch.cos(2 * t)[None, :]


class PlainGain(LinearOperator):
    """``A = diag(g)`` without a declared structure: a general operator to the solvers."""

    def __init__(self, g):
        self.g = g
        self.norm_bound = float(g.abs().max())

    def forward(self, x):
        return x * self.g.to(x)

    def adjoint(self, y):
        return y * self.g.to(y)


def gain_operator(g: torch.Tensor):
    """``A = diag(g)``, known to the package only through its declared ``PixelDiagonal``
    structure (``g`` with zeros: unseen pixels)."""

    class Gain(PlainGain):
        def structure(self):
            return PixelDiagonal(self.g)

    return Gain(g)
