"""Seeded test and benchmark problems of sparsity-constrained OT (spec ``ot.md`` §6-7).

Every generator draws from ``np.random.RandomState(seed)`` in the order the spec writes, so the
instances (and the reference values quoted below, checked against POT / HiGHS) are reproducible.
All return numpy float64 arrays; ``a`` and ``b`` are histograms (sum 1) unless stated.

========================  ======================================================================
generator                 spec / reference values
========================  ======================================================================
:func:`clouds`            §7.5: EMD 0.0516099 (n=1000), 0.0638951 (2000), 0.0591378 (5000),
                          0.0469203 (10000)
:func:`regression_120x160`  §6.4: reg = 10/n = 0.0625; k=1: 0.1121558190, k=2: 0.1120935567,
                          k=3: 0.1120885701, k=4: 0.1120885305
:func:`k1_regressions`    §6.4 (seed 0): OT = 0.24027802 (3x4) and 0.08710150 (20x30), gamma = 1
:func:`one_d`             §7.1 / §6.5: dataset A EMD 0.0380419
:func:`moe_logits`        §7.4: logits = scale randn(N, E) + linspace(0, 1.5, E)
========================  ======================================================================
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "clouds",
    "k1_regressions",
    "moe_logits",
    "one_d",
    "regression_120x160",
    "squared_distances",
]


def squared_distances(xs, xt, normalize=True):
    """Squared Euclidean distances ``C_ij = ||xs_i - xt_j||^2`` (divided by the max if ``normalize``)."""
    xs = np.asarray(xs, dtype=np.float64)
    xt = np.asarray(xt, dtype=np.float64)
    C = (xs * xs).sum(1)[:, None] + (xt * xt).sum(1)[None, :] - 2.0 * xs @ xt.T
    np.maximum(C, 0.0, out=C)
    if normalize:
        C /= C.max()
    return C


def _shift(dim):
    s = np.zeros(dim)
    s[: min(dim, 2)] = (2.0, 1.0)[: min(dim, 2)]
    return s


def clouds(n, m=None, seed=0, dim=2, return_points=False):
    """Two Gaussian point clouds (spec §7.5, the large-scale benchmark).

    ``rng = RandomState(seed)``; ``xs = rng.randn(n, dim)``; ``xt = rng.randn(m, dim) + (2, 1)``
    (the shift is (2, 1) padded with zeros when ``dim > 2``); uniform ``a = 1/n``, ``b = 1/m``;
    ``C`` = squared distances divided by their maximum.

    Parameters
    ----------
    n : int
        Number of source points (rows).
    m : int, optional
        Number of target points (columns); default ``n``.
    seed : int, default 0
    dim : int, default 2
    return_points : bool, default False
        Also return ``(xs, xt)`` (for costs evaluated lazily from points).

    Returns
    -------
    a (n,), b (m,), C (n, m)  [, xs (n, dim), xt (m, dim)]

    Notes
    -----
    EMD cost check (m = n, seed 0): 0.0516099 (n = 1000), 0.0638951 (2000), 0.0591378 (5000),
    0.0469203 (10000).
    """
    m = n if m is None else m
    rng = np.random.RandomState(seed)
    xs = rng.randn(n, dim)
    xt = rng.randn(m, dim) + _shift(dim)
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)
    C = squared_distances(xs, xt)
    if return_points:
        return a, b, C, xs, xt
    return a, b, C


def regression_120x160(seed=11):
    """The 120 x 160 nonsmooth regression instance of spec §6.4 (use ``reg = 10/160 = 0.0625``).

    ``rng = RandomState(seed)``; ``xs = rng.randn(120, 2)``; ``xt = rng.randn(160, 2) + (2, 1)``;
    ``C`` = squared distances / max; ``a = rng.rand(120) + 0.5``, ``b = rng.rand(160) + 0.5``, both
    normalised to sum 1.

    Returns
    -------
    a (120,), b (160,), C (120, 160)

    Notes
    -----
    Optimal values at gamma = 0.0625: k = 1: 0.1121558190 (HiGHS LP + (gamma/2)||b||^2);
    k = 2: 0.1120935567, k = 3: 0.1120885701 (certified kinks); k = 4: 0.1120885305 (smooth).
    """
    m, n = 120, 160
    rng = np.random.RandomState(seed)
    xs = rng.randn(m, 2)
    xt = rng.randn(n, 2) + np.array([2.0, 1.0])
    C = squared_distances(xs, xt)
    a = rng.rand(m) + 0.5
    b = rng.rand(n) + 0.5
    return a / a.sum(), b / b.sum(), C


def k1_regressions(seed=0):
    """The two small k = 1 regressions of spec §6.4 (gamma = 1), from one generator.

    ``rng = RandomState(seed)``; first ``a = rand(3), b = rand(4), C = rand(3, 4)``, then, continuing
    the same generator, ``a = rand(20), b = rand(30), C = rand(20, 30)``; marginals normalised.

    Returns
    -------
    list of two (a, b, C) tuples
        Exact OT values (seed 0): 0.24027802 and 0.08710150; the k = 1 optimum is
        OT + (gamma/2)||b||^2.
    """
    rng = np.random.RandomState(seed)
    out = []
    for m, n in ((3, 4), (20, 30)):
        a = rng.rand(m)
        b = rng.rand(n)
        C = rng.rand(m, n)
        out.append((a / a.sum(), b / b.sum(), C))
    return out


def _gauss(x, mean, std):
    h = np.exp(-((x - mean) ** 2) / (2.0 * std * std))
    return h / h.sum()


def one_d(dataset="A", n=32):
    """1-D histograms of the authors' figure (spec §7.1), ``x = 0, ..., n-1``.

    Dataset ``"A"``: ``a ~ exp(-(x-10)^2/32)`` (mean 10, std 4), ``b`` Gaussian with mean 16, std 5.
    Dataset ``"B"``: ``a = N(16, 5)``, ``b = 0.5 N(8, 5) + 0.5 N(24, 5)``. Histograms normalised to sum
    1; cost ``(x_i - x_j)^2 / max``.

    Returns
    -------
    a (n,), b (n,), C (n, n)

    Notes
    -----
    Dataset A: EMD 0.0380419; QOT value 0.045770 (gamma = 1) and 0.039548 (gamma = 0.1) (§6.5).
    """
    x = np.arange(n, dtype=np.float64)
    if dataset == "A":
        a = _gauss(x, 10.0, 4.0)
        b = _gauss(x, 16.0, 5.0)
    elif dataset == "B":
        a = _gauss(x, 16.0, 5.0)
        b = 0.5 * _gauss(x, 8.0, 5.0) + 0.5 * _gauss(x, 24.0, 5.0)
        b = b / b.sum()
    else:
        raise ValueError(f"dataset: expected 'A' or 'B', got {dataset!r}")
    C = (x[:, None] - x[None, :]) ** 2
    C /= C.max()
    return a, b, C


def moe_logits(N=128, E=8, scale=1.0, seed=0):
    """Router logits of the MoE emulation (spec §7.4): ``scale * randn(N, E) + linspace(0, 1.5, E)``.

    ``RandomState(seed).randn(N, E)``; the linear ramp makes later experts more popular, so plain
    top-k routing is unbalanced (scale 1, top-2: 8 to 71 tokens per expert; scale 3: 18 to 51).

    Returns
    -------
    logits : ndarray (N, E)
        For routing: scores = softmax(logits, axis=1), cost = -scores, a = 1_N, b = (N/E) 1_E.
    """
    rng = np.random.RandomState(seed)
    return scale * rng.randn(N, E) + np.linspace(0.0, 1.5, E)
