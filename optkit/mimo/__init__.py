"""FDD massive-MIMO downlink CSI recovery from quantized feedback (REDEEM; spec mimo).

UE side: :func:`random_channel` (and the other channel sources), :func:`make_operator`, :func:`quantize`,
:func:`feedback`. Base station: :func:`recover` (ADMM + EM + 2-D harmonic retrieval, modes "stable",
"reference", "fast") and the baselines in :mod:`optkit.mimo.baselines`; metrics in :mod:`optkit.mimo.metrics`;
torch layers (the quantization-aware loss, the deep-unfolded estimator) in :mod:`optkit.mimo.layers`.

``import optkit.mimo`` imports neither torch nor sionna: a torch path is taken when the feedback holds tensors.
"""

import importlib

from . import _register  # noqa: F401  (registers the solvers for the contract tests)
from .admm import (
    REDEEM,
    BatchedMIMOResult,
    MIMOResult,
    REDEEMOptions,
    REDEEMState,
    dequantize,
    recover,
)
from .channels import (
    Channel,
    clustered_channel,
    geometric_channel,
    load_channels,
    random_channel,
    sionna_cdl_channel,
    steering,
    ula_correlation,
    unvec_real,
    vec_real,
)
from .feedback import Feedback, SensingOperator, feedback, make_operator, quantize
from .harmonic import HRResult, harmonic_retrieval
from .kernels import interval_probit_nll, truncnorm_moments

_LAZY = {"baselines", "metrics", "layers"}

__all__ = ["recover", "REDEEM", "REDEEMOptions", "REDEEMState", "MIMOResult", "BatchedMIMOResult", "dequantize",
           "Channel", "random_channel", "clustered_channel", "sionna_cdl_channel", "load_channels", "steering",
           "geometric_channel", "ula_correlation", "vec_real", "unvec_real", "Feedback", "SensingOperator",
           "feedback", "make_operator", "quantize", "harmonic_retrieval", "HRResult", "truncnorm_moments",
           "interval_probit_nll", *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'optkit.mimo' has no attribute {name!r}")
