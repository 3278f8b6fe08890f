"""The few array operations optkit.mimo needs beyond the array API, for numpy and torch.

Every numeric routine of the module is written once over these helpers and runs batched on a
leading axis; a numpy call is the torch call with ``torch`` replaced by ``numpy``/``scipy``. torch
is only touched when a tensor is passed in (``is_torch``), so ``import optkit.mimo`` stays torch-free.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special

from .._backend import get_torch, is_torch

__all__ = ["is_torch", "erfcx", "ndtr", "log_ndtr", "fft2", "cholesky", "cho_solve", "eigh", "solve",
           "real_dtype", "complex_dtype", "zeros", "eye", "asarray_like", "to_host", "argmax_flat", "where",
           "sync_any"]


def erfcx(x):
    return get_torch().special.erfcx(x) if is_torch(x) else scipy.special.erfcx(x)


def ndtr(x):
    return get_torch().special.ndtr(x) if is_torch(x) else scipy.special.ndtr(x)


def log_ndtr(x):
    return get_torch().special.log_ndtr(x) if is_torch(x) else scipy.special.log_ndtr(x)


def fft2(x, s):
    """Zero-padded 2-D FFT over the last two axes to size ``s`` (batched)."""
    if is_torch(x):
        return get_torch().fft.fft2(x, s=s)
    import scipy.fft

    return scipy.fft.fft2(x, s=s, workers=1)


def cholesky(a):
    """Lower Cholesky factor, batched; raises numpy/torch LinAlgError when not PD."""
    if is_torch(a):
        return get_torch().linalg.cholesky(a)
    return np.linalg.cholesky(a)


def cho_solve(L, b):
    """Solve (L L^T) x = b for a lower factor ``L`` (..., n, n) and ``b`` (..., n, k)."""
    if is_torch(L):
        return get_torch().cholesky_solve(b, L)
    if L.ndim == 2:
        return scipy.linalg.cho_solve((L, True), b, check_finite=False)
    out = np.empty(np.broadcast_shapes(L.shape[:-2], b.shape[:-2]) + b.shape[-2:],
                   dtype=np.result_type(L, b))
    Lb = np.broadcast_to(L, out.shape[:-2] + L.shape[-2:])
    bb = np.broadcast_to(b, out.shape)
    for i in np.ndindex(out.shape[:-2]):
        out[i] = scipy.linalg.cho_solve((Lb[i], True), bb[i], check_finite=False)
    return out


def eigh(a):
    return get_torch().linalg.eigh(a) if is_torch(a) else np.linalg.eigh(a)


def solve(a, b):
    return get_torch().linalg.solve(a, b) if is_torch(a) else np.linalg.solve(a, b)


def real_dtype(x):
    """The real dtype matching ``x`` (float64 for complex128 ...)."""
    if is_torch(x):
        torch = get_torch()
        return {torch.complex128: torch.float64, torch.complex64: torch.float32}.get(x.dtype, x.dtype)
    return np.empty(0, dtype=x.dtype).real.dtype


def complex_dtype(x):
    if is_torch(x):
        torch = get_torch()
        return {torch.float64: torch.complex128, torch.float32: torch.complex64}.get(x.dtype, x.dtype)
    return np.result_type(x.dtype, np.complex64)


def zeros(like, shape, dtype=None):
    """Zeros of ``shape`` on the backend/device of ``like`` (dtype of ``like`` unless given)."""
    if is_torch(like):
        return get_torch().zeros(shape, dtype=dtype or like.dtype, device=like.device)
    return np.zeros(shape, dtype=dtype or like.dtype)


def eye(like, n):
    """The n x n identity with the dtype and backend/device of ``like``."""
    if is_torch(like):
        return get_torch().eye(n, dtype=like.dtype, device=like.device)
    return np.eye(n, dtype=like.dtype)


def asarray_like(x, like, dtype=None):
    """``x`` (numpy data or a Python scalar) as an array of the backend/device of ``like``."""
    if is_torch(like):
        torch = get_torch()
        if is_torch(x):
            return x.to(device=like.device, dtype=dtype or x.dtype)
        return torch.as_tensor(np.asarray(x), device=like.device, dtype=dtype)
    return np.asarray(x, dtype=dtype)


def to_host(x):
    """A numpy copy (detached, on the CPU) of an array of either backend."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def argmax_flat(x):
    """Flat argmax over the last two axes (ties: lowest flat index, as numpy and torch both do)."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    if is_torch(x):
        return flat.argmax(dim=-1)
    return flat.argmax(axis=-1)


def where(cond, a, b):
    return get_torch().where(cond, a, b) if is_torch(cond) else np.where(cond, a, b)


def sync_any(mask) -> bool:
    """One host synchronisation: is any entry of a boolean mask true?"""
    return bool(mask.any())
