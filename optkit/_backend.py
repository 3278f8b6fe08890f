"""Backend inference: numpy in -> numpy out, torch in -> torch out on the same device and dtype.

torch is imported lazily: nothing here imports it unless a tensor is passed (a tensor can only
exist if the caller already imported torch) or ``device=``/``dtype=`` asks for it.
"""

from __future__ import annotations

import dataclasses
import numbers
import sys
from typing import Any

import numpy as np

from ._errors import BackendError, DependencyError, InvalidProblemError

__all__ = [
    "Backend", "get_torch", "is_torch", "infer_backend", "to_backend", "to_numpy",
    "array_namespace", "check_finite",
]


def get_torch():
    """Import torch or raise :class:`DependencyError` naming the ``torch`` extra."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise DependencyError("torch", "torch") from exc
    return torch


def is_torch(x) -> bool:
    """True for a torch.Tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def array_namespace(*xs):
    """The array-API namespace of the inputs (``array_api_compat`` wrapper of numpy or torch)."""
    import array_api_compat

    return array_api_compat.array_namespace(*xs)


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where a computation runs: ``name`` is ``"numpy"`` or ``"torch"``."""

    name: str
    device: Any = None  # torch.device or None
    dtype: Any = None  # numpy dtype or torch dtype

    @property
    def is_torch(self) -> bool:
        return self.name == "torch"

    @property
    def device_str(self) -> str:
        return "cpu" if self.device is None else str(self.device)

    @property
    def dtype_str(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def asarray(self, x, name: str = "array"):
        """Convert ``x`` to this backend's array type, dtype and device (never mutates ``x``)."""
        return to_backend(x, self, name=name)


def _parse_dtype(dtype, torch_mode: bool):
    if dtype is None:
        return None
    if torch_mode:
        torch = get_torch()
        if isinstance(dtype, torch.dtype):
            return dtype
        name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        name = name.replace("torch.", "")
        try:
            return getattr(torch, name)
        except AttributeError:
            raise BackendError(f"dtype: unknown torch dtype {dtype!r}") from None
    if is_torch(dtype) or "torch" in str(type(dtype)):
        return np.dtype(str(dtype).replace("torch.", ""))
    return np.dtype(dtype)


def infer_backend(*arrays, names=None, device=None, dtype=None, default_dtype="float64") -> Backend:
    """Infer the backend of a call from its array arguments.

    Rules (DESIGN.md §4): any tensor makes the call torch; tensors on different devices raise
    :class:`BackendError` naming both; numpy arrays are then moved to the tensors' device. Passing
    ``device=`` makes the call torch and moves everything there explicitly. ``dtype`` overrides
    the floating dtype; otherwise the widest floating dtype of the tensors, or ``default_dtype``.
    ``None`` entries are ignored.
    """
    names = list(names) if names is not None else [f"argument {i}" for i in range(len(arrays))]
    tensors = [(n, a) for n, a in zip(names, arrays) if is_torch(a)]
    if tensors or device is not None:
        torch = get_torch()
        devs = {}
        for n, t in tensors:
            devs.setdefault(t.device, n)
        if device is not None:
            dev = torch.device(device)
        elif len(devs) > 1:
            (d1, n1), (d2, n2) = list(devs.items())[:2]
            raise BackendError(
                f"inputs are on different devices: '{n1}' on {d1} and '{n2}' on {d2}; "
                "move them to one device or pass device="
            )
        else:
            dev = next(iter(devs)) if devs else torch.device("cpu")
        if dtype is not None:
            dt = _parse_dtype(dtype, True)
        else:
            fl = [t.dtype for _, t in tensors if t.is_floating_point()]
            if fl:
                dt = max(fl, key=lambda d: torch.finfo(d).bits)
            else:
                dt = getattr(torch, default_dtype)
        return Backend("torch", dev, dt)
    dt = _parse_dtype(dtype, False) if dtype is not None else np.dtype(default_dtype)
    return Backend("numpy", None, dt)


def to_backend(x, backend: Backend, name: str = "array", dtype=None):
    """Return ``x`` as an array of ``backend`` (a copy whenever a conversion happens)."""
    if x is None:
        return None
    target = dtype if dtype is not None else backend.dtype
    if backend.is_torch:
        torch = get_torch()
        if is_torch(x):
            if not (x.is_floating_point() or x.is_complex()) and target.is_floating_point:
                pass  # ints cast below: callers decide whether integer input is allowed
            return x.to(device=backend.device, dtype=target)
        arr = np.asarray(x)
        if arr.dtype == object:
            raise InvalidProblemError(f"{name}: cannot convert object array to a tensor")
        return torch.as_tensor(arr, device=backend.device).to(target)
    if is_torch(x):
        raise BackendError(f"{name}: got a torch.Tensor on a numpy call")
    try:
        return np.asarray(x, dtype=target)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"{name}: cannot convert to a {target} array ({exc})") from None


def to_numpy(x):
    """A numpy view/copy of an array or tensor (detached, on the host)."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_finite(x, name: str):
    """Raise :class:`InvalidProblemError` naming ``name`` if ``x`` has NaN or inf entries."""
    if is_torch(x):
        torch = get_torch()
        bad = int((~torch.isfinite(x)).sum().item())
    else:
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.number):
            raise InvalidProblemError(f"{name}: expected numeric data, got dtype {arr.dtype}")
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise InvalidProblemError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")


def check_integer(value, name: str, low: int | None = None):
    """Validate an integer argument (rejecting bool and float) and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidProblemError(
            f"{name}: expected an integer, got {type(value).__name__} {value!r}"
        )
    value = int(value)
    if low is not None and value < low:
        raise InvalidProblemError(f"{name}: must be >= {low}, got {value}")
    return value
