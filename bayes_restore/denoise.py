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
    channel_axis: int | None = None,
    seed: int | None = 0,
) -> Any:
    r"""MAP denoising under a gradient prior: the minimiser of ``|y - x|^2 + lambda R(x)``.

    The model is ``x ~ prior(b)``, ``y ~ N(x, sigma^2 I)``; its MAP minimises the
    energy ``|y - x|^2 + lambda sum |grad x|^beta`` with
    ``lambda = 2 sigma^2 / (beta b^beta)`` (see :mod:`bayes_restore.energy`).

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        Image(s): ``(H, W)`` grey, ``(C, H, W)`` colour (channels first, each with its
        own gradient) or ``(N, C, H, W)`` a batch; channels last with
        ``channel_axis=-1``. Float32/64 as they are, half precision computed in float32,
        integers scaled to ``[0, 1]`` as scikit-image does (float out): see
        :func:`~bayes_restore.restore`.
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
        evidence for ``"gaussian"`` (:func:`~bayes_restore.parameters.resolve_parameters`).
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
    channel_axis : int, optional
        The colour axis, as in scikit-image (``-1`` for ``(H, W, 3)``); ``None``:
        channels first, and an ``(H, W, 3)``-like array is refused as ambiguous.
    seed : int or None, default 0
        Seeds the random probe of the automatic (SURE) weight: reruns are identical.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The MAP image: same type, shape, float dtype (and device) as ``image``. A
        constant (noise-free) image with ``sigma=None`` comes back unchanged, with a
        warning.

    Raises
    ------
    ValueError
        Naming the argument: wrong ndim, NaN/inf or ambiguous channels-last image;
        ``sigma``, ``scale`` or ``weight`` not > 0; unknown prior name; both ``scale``
        and ``weight`` given.
    TypeError
        A non-number where a number is expected (``sigma="0.1"``).

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
                   method="map", solver=solver, tol=tol, max_iter=max_iter, progress=progress,
                   channel_axis=channel_axis, seed=seed)
    return post.map
