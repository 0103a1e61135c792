"""``denoise``: MAP denoising in one line (numpy in, numpy out; torch in, torch out)."""

from __future__ import annotations

from typing import Any

from bayes_restore.priors import GradientPrior
from bayes_restore.restore import restore

__all__ = ["denoise"]


def denoise(
    image: Any,
    prior: str | GradientPrior = "tv",
    *,
    sigma: float | None = None,
    scale: float | None = None,
    weight: float | None = None,
    beta: float | None = None,
    solver: str = "auto",
    tol: float | None = None,
    max_iter: int | None = None,
    progress: bool = False,
) -> Any:
    r"""MAP denoising under a gradient prior: the minimiser of ``|y - x|^2 + lambda R(x)``.

    The model is ``x ~ prior(b)``, ``y ~ N(x, sigma^2 I)``; its MAP minimises the
    energy ``|y - x|^2 + lambda sum |grad x|^beta`` with
    ``lambda = 2 sigma^2 / (beta b^beta)`` (see :mod:`bayes_restore.energy`).

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        Floating-point image(s): ``(H, W)`` grey, ``(C, H, W)`` colour (channels
        first, each with its own gradient) or ``(N, C, H, W)`` a batch.
    prior : str or GradientPrior, default "tv"
        ``"tv"``, ``"tv-anisotropic"``, ``"gaussian"`` (Gaussian-gradient / Tikhonov),
        ``"gradient"`` / ``"gradient-anisotropic"`` (order ``beta``), or a prior
        instance whose event shape is the image's (then give neither ``scale`` nor
        ``weight``).
    sigma : float, optional
        Noise standard deviation, > 0, in the image's units; estimated from the image
        when ``None`` (:func:`~bayes_restore.hyper.estimate_sigma`).
    scale : float, optional
        Prior scale ``b > 0``. Give ``scale`` or ``weight``, not both; with neither, it
        is chosen from the data: Stein's unbiased risk estimate for TV, the exact
        evidence for ``"gaussian"`` (:func:`~bayes_restore.restore.resolve_parameters`).
    weight : float, optional
        Energy weight ``lambda > 0`` (scikit-image's ``denoise_tv_chambolle`` weight
        is ``lambda / 2``: see :func:`~bayes_restore.energy.to_skimage_weight`).
    beta : float, optional
        Order of ``prior="gradient"``.
    solver : {"auto", "generic", "dct", "pdhg"}, default "auto"
        ``"auto"`` takes the exact fast solver when one fits (DCT closed form for
        ``"gaussian"``, certified primal-dual for TV), else the generic Pyro path.
    tol, max_iter, progress
        Passed to :func:`~bayes_restore.infer.map_estimate`.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The MAP image: same type, shape, float dtype (and device) as ``image``.

    Raises
    ------
    ValueError
        Naming the argument: non-float, wrong ndim, NaN/inf image; ``sigma``,
        ``scale`` or ``weight`` not > 0; unknown prior name; both ``scale`` and
        ``weight`` given.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.zeros((32, 32)); clean[8:24, 8:24] = 1.0
    >>> noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    >>> restored = denoise(noisy, "tv", sigma=0.1, weight=0.2)
    >>> bool(np.abs(restored - clean).mean() < np.abs(noisy - clean).mean())
    True
    """
    post = restore(image, prior, sigma=sigma, scale=scale, weight=weight, beta=beta,
                   method="map", solver=solver, tol=tol, max_iter=max_iter, progress=progress)
    return post.map
