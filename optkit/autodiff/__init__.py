"""Implicit differentiation shared by the torch layers, and gradient-check helpers."""

from .gradcheck import check_gradients
from .implicit import implicit_function

__all__ = ["check_gradients", "implicit_function"]
