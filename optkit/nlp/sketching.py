"""Randomized sketch-and-project (Gower & Richtarik 2015) for the symmetric KKT system ``K z = b``.

One step projects ``z`` onto ``{z : S^T K z = S^T b}``:
``z <- z - W (W^T W)^+ S^T (K z - b)`` with ``W = K S`` (K symmetric, so ``K^T S = W``). The
pseudo-inverse is taken through a thin QR of W (relative cut-off 1e-12), so rank-deficient
sketches (repeated rows, zero rows of K) are harmless.

Batched over instances ``(B, N)`` on numpy or torch. Sketch matrices are drawn with one RNG call
per step (spec nlp §5.2): ``standard_normal(N)`` per Gaussian step, ``integers(N)`` per Kaczmarz
step, ``standard_normal((N, q))`` per Gaussian block, so the same seed gives the same run.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SKETCHES", "draw_sketch", "project_step", "row_sampling_weights"]

SKETCHES = ("gaussian", "kaczmarz", "gaussian-block", "block-kaczmarz", "countsketch")


def block_size_of(sketch: str, q: int, N: int) -> int:
    return 1 if sketch in ("gaussian", "kaczmarz") else max(1, min(q, N))


def row_sampling_weights(K_rowsq):
    """Normalised sampling probabilities from squared row norms ``(B, N)``."""
    tot = K_rowsq.sum(-1, keepdims=True) if not hasattr(K_rowsq, "detach") else K_rowsq.sum(-1, keepdim=True)
    return K_rowsq / tot


def draw_sketch(sketch: str, B: int, N: int, q: int, gen, like, probs=None):
    """Sketch matrices ``S (B, N, q)`` (dense; one-hot columns for the Kaczmarz variants).

    ``gen`` is a ``numpy.random.Generator`` or a ``torch.Generator``; ``like`` an array giving the
    backend, dtype and device. ``probs (B, N)`` switches Kaczmarz rows to non-uniform sampling.
    """
    q = block_size_of(sketch, q, N)
    if hasattr(like, "detach"):
        import torch

        dev, dt = like.device, like.dtype
        if sketch in ("gaussian", "gaussian-block"):
            return torch.randn((B, N, q), generator=gen, device=dev, dtype=dt)
        if sketch in ("kaczmarz", "block-kaczmarz"):
            if probs is None:
                if q == 1:
                    idx = torch.randint(N, (B, 1), generator=gen, device=dev)
                else:
                    idx = torch.argsort(torch.rand((B, N), generator=gen, device=dev), dim=1)[:, :q]
            else:
                idx = torch.multinomial(probs, q, replacement=False, generator=gen)
            S = torch.zeros((B, N, q), dtype=dt, device=dev)
            cols = torch.arange(q, device=dev).expand(B, q)
            S[torch.arange(B, device=dev)[:, None], idx, cols] = 1.0
            return S
        # countsketch: each row hashed to one column with a random sign
        h = torch.randint(q, (B, N), generator=gen, device=dev)
        sgn = torch.randint(2, (B, N), generator=gen, device=dev).to(dt) * 2 - 1
        S = torch.zeros((B, N, q), dtype=dt, device=dev)
        S.scatter_(2, h[:, :, None], sgn[:, :, None])
        return S
    dt = like.dtype
    if sketch == "gaussian":
        return gen.standard_normal((B, N)).astype(dt, copy=False)[:, :, None] if B > 1 else \
            gen.standard_normal(N).astype(dt, copy=False)[None, :, None]
    if sketch == "gaussian-block":
        return gen.standard_normal((B, N, q)).astype(dt, copy=False) if B > 1 else \
            gen.standard_normal((N, q)).astype(dt, copy=False)[None]
    if sketch in ("kaczmarz", "block-kaczmarz"):
        S = np.zeros((B, N, q), dtype=dt)
        for i in range(B):
            if probs is None:
                idx = gen.integers(N) if q == 1 else gen.choice(N, size=q, replace=False)
            else:
                idx = gen.choice(N, size=q, replace=False, p=np.asarray(probs[i], dtype=np.float64))
            S[i, np.atleast_1d(idx), np.arange(q)] = 1.0
        return S
    h = gen.integers(q, size=(B, N))
    sgn = gen.integers(2, size=(B, N)) * 2.0 - 1.0
    S = np.zeros((B, N, q), dtype=dt)
    S[np.arange(B)[:, None], np.arange(N)[None, :], h] = sgn
    return S


def project_step(S, W, r):
    """The sketch-and-project correction ``W y`` with ``y = (W^T W)^+ S^T r`` for ``(B, N, q)``
    sketches ``S``, ``W = K S`` and residuals ``r (B, N)``; returns ``(dz, y)``."""
    s = (S * r[:, :, None]).sum(1)  # (B, q)
    q = W.shape[2]
    if q == 1:
        w2 = (W[:, :, 0] * W[:, :, 0]).sum(1)
        tiny = w2 <= 0
        w2 = w2 + tiny  # zero sketch image: no step
        y = (s[:, 0] / w2) * (1 - tiny * 1.0)
        y = y[:, None]
    elif hasattr(W, "detach"):
        import torch

        R = torch.linalg.qr(W, mode="r")[1]
        d = R.diagonal(dim1=1, dim2=2).abs()
        if bool((d > 1e-12 * d.amax(1, keepdim=True)).all()):
            # well-posed: two triangular solves, R^T u = s then R y = u (no SVD)
            u = torch.linalg.solve_triangular(R.transpose(1, 2), s[:, :, None], upper=False)
            y = torch.linalg.solve_triangular(R, u, upper=True)[:, :, 0]
        else:
            Rp = torch.linalg.pinv(R, rtol=1e-12)
            y = (Rp @ (Rp.transpose(1, 2) @ s[:, :, None]))[:, :, 0]
    else:
        import scipy.linalg as sla

        y = np.empty_like(s)
        for i in range(W.shape[0]):
            R = np.linalg.qr(W[i], mode="r")
            d = np.abs(np.diagonal(R))
            if np.all(d > 1e-12 * d.max()):
                u = sla.solve_triangular(R, s[i], trans="T", lower=False, check_finite=False)
                y[i] = sla.solve_triangular(R, u, lower=False, check_finite=False)
            else:
                Rp = np.linalg.pinv(R, rcond=1e-12)
                y[i] = Rp @ (Rp.T @ s[i])
    dz = (W @ y[:, :, None])[:, :, 0]
    return dz, y
