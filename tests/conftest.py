import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # test-only helpers such as _ridge_solver

from _chat_server import chat_server  # noqa: E402,F401  (fixture: a local chat-completions server)

try:
    import torch
except ImportError:  # pragma: no cover - CI always installs torch
    torch = None

HAS_CUDA = bool(torch is not None and torch.cuda.is_available())

BACKENDS = ["numpy"] + (["torch"] if torch is not None else [])
if HAS_CUDA:
    BACKENDS.append("cuda")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """'numpy', 'torch' (CPU) and 'cuda' when a GPU is present."""
    if request.param == "cuda":
        request.applymarker(pytest.mark.gpu)
    return request.param


@pytest.fixture
def asarray(backend):
    """Convert a numpy array to the backend under test (float64)."""

    def conv(x, dtype=None):
        if x is None:
            return None
        if backend == "numpy":
            return np.asarray(x, dtype=dtype or np.float64)
        dev = "cuda" if backend == "cuda" else "cpu"
        return torch.as_tensor(np.asarray(x), dtype=dtype or torch.float64, device=dev)

    return conv


def as_backend(x, backend, dtype=None):
    """numpy float64 array, or a CPU torch tensor (float64 unless ``dtype``)."""
    x = np.asarray(x, dtype=np.float64)
    if backend == "numpy":
        return x
    return torch.tensor(x, dtype=dtype or torch.float64)


def to_np(x):
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
