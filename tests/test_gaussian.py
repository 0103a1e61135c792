"""Exact Gaussian-gradient posterior: marginal std and evidence against dense linear algebra."""

import numpy as np
import torch
from scipy.stats import multivariate_normal

from bayes_restore.differences import div, grad
from bayes_restore.infer import gaussian_log_evidence, gaussian_posterior_std


def _laplacian(h, w):
    n = h * w
    out = np.zeros((n, n))
    for k in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[k] = 1
        out[:, k] = (-div(grad(e.reshape(h, w)))).reshape(-1).numpy()
    return out


def test_marginal_std_matches_dense_posterior_covariance():
    h, w, sigma, b = 5, 6, 0.1, 0.07
    precision = np.eye(h * w) / sigma**2 + _laplacian(h, w) / b**2
    expected = np.sqrt(np.diag(np.linalg.inv(precision))).reshape(h, w)
    np.testing.assert_allclose(gaussian_posterior_std((h, w), sigma, b).numpy(), expected,
                               rtol=1e-10)


def test_evidence_matches_the_dense_marginal_likelihood_up_to_the_flat_direction(rng):
    """y = x + n with x ~ GMRF: differences of the evidence in (sigma, b) match the dense one.

    The dense reference integrates x over the complement of the constants; projecting out
    the mean of y removes the flat direction, which carries no information on (sigma, b).
    """
    h, w = 4, 5
    n = h * w
    lap = _laplacian(h, w)
    eigval, eigvec = np.linalg.eigh(lap)
    basis, mu = eigvec[:, 1:], eigval[1:]  # the non-constant eigenvectors
    y = rng.standard_normal((h, w))
    z = basis.T @ y.reshape(-1)

    def dense(sigma, b):
        return multivariate_normal(np.zeros(n - 1), np.diag(sigma**2 + b**2 / mu)).logpdf(z)

    ours = lambda s, b: float(gaussian_log_evidence(torch.from_numpy(y), s, b))  # noqa: E731
    for s, b in [(0.3, 0.2), (1.0, 0.5), (0.05, 2.0)]:
        np.testing.assert_allclose(ours(s, b), dense(s, b), rtol=1e-10)
