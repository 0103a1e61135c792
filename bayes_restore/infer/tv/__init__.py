"""Total-variation MAP by primal-dual iterations, certified by a primal-dual gap.

The solvers share one workspace of preallocated buffers (``_workspace.py``):

- :func:`tv_denoise_pdhg` (``rof.py``), ``A = I`` (ROF): Chambolle & Pock's accelerated
  algorithm, on eager torch or on fused numba kernels (``_rof_numba.py``);
- :func:`tv_map_pdhg` (``splitting.py``), any
  :class:`~bayes_restore.operators.LinearOperator` ``A``: Chambolle & Pock with the
  data term in the primal prox where the operator solves its normal equations exactly
  (``_data_prox.py``: from ``solve_normal``, specialised for pixel-diagonal, block mean
  and periodic convolution), on fused numba kernels (``_splitting_numba.py``), else
  with ``K = [grad; A]`` (``A`` in the dual, no inner solve);
- :func:`tv_map_pdhg` with an operator diagonal in the FFT or the DCT (a blur): ADMM
  with the exact transform solve and warm-started fused ROF steps (``admm.py``), certified
  by the same gap;
- :func:`tv_l1_pdhg` (``l1.py``), TV-L1 (Laplace likelihood, ``A = I``): Chambolle &
  Pock with the shrinkage towards ``y`` as the primal prox; with an operator
  (``l1_operator.py``): the same with a pointwise or block-wise shrinkage (masks, box
  decimation; fused kernels in ``_splitting_numba.py``), ADMM for a blur diagonal in the
  FFT or the DCT, ``K = [grad; A]`` otherwise, certified by TV-L1's own dual.

Every public ``weight`` is ``lambda`` of the package's energy: ``|A x - y|^2 + lambda
TV(x)`` for the first two (twice scikit-image's ``weight``), ``|x - y|_1 + lambda TV(x)``
for TV-L1 (``|A x - y|_1 + lambda TV(x)`` with an operator); ``SolverInfo.objective``
is that energy. The quadratic solvers iterate on half
of it, ``0.5 |A x - y|^2 + w TV(x)`` with ``w = lambda / 2``, an internal quantity.

Each certifies its result by a relative primal-dual gap (``certificate.py`` for a
general ``A``); :func:`tv_energy` (``energy.py``) is the TV they all minimise.

Implementation notes: in eager torch an elementwise operation is one pass over memory
and costs a fixed ~20-30 us on a 512x512 image, so the number of passes is the cost.
Every solver runs on ``u = x / w`` (``w = lambda / 2``, or ``w = lambda`` for TV-L1: the
dual constraint is then ``|p| <= 1`` whatever the weight of each image), keeps the dual
field in a zero-padded buffer so that ``div p`` needs no boundary case, and updates in
place; the Benchmarks page of the documentation measures the result.
"""

from .energy import tv_energy
from .l1 import tv_l1_pdhg
from .rof import tv_denoise_pdhg
from .splitting import tv_map_pdhg

__all__ = ["tv_denoise_pdhg", "tv_map_pdhg", "tv_l1_pdhg", "tv_energy"]
