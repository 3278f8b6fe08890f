"""Gradient checks for differentiable layers (DESIGN.md §5): float64 gradcheck plus a seeded
finite-difference test of a random projection of the output."""

from __future__ import annotations

from .._backend import get_torch

__all__ = ["check_gradients"]


def check_gradients(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, seed=0):
    """Check the gradients of ``fn`` in float64 two independent ways.

    1. ``torch.autograd.gradcheck`` (full Jacobian against finite differences).
    2. For each differentiated input ``x_i``, the directional derivative of the scalar
       ``phi = <G, fn(inputs)>`` along a random direction ``d_i`` (``G`` and ``d_i`` seeded),
       ``<grad_i phi, d_i>`` from autograd, against the central difference
       ``(phi(x_i + eps d_i) - phi(x_i - eps d_i)) / (2 eps)``.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returning a tensor or a tuple of tensors.
    inputs : sequence
        Arguments of ``fn``. Floating tensors are cast to float64 copies; those with
        ``requires_grad`` are differentiated, or all of them when none has it. Other entries pass
        through unchanged.
    eps, atol, rtol : float
        Finite-difference step and tolerances (for both checks; the second passes when
        ``|analytic - fd| <= atol + rtol * |fd|``).
    seed : int
        Seed of ``G`` and of the directions.

    Returns
    -------
    dict
        ``max_abs_error`` and ``max_rel_error`` of the directional check, ``per_input``
        (input index -> absolute error) and ``gradcheck`` (True).

    Raises
    ------
    AssertionError
        With the details, when either check fails.
    """
    torch = get_torch()
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    floating = [i for i, x in enumerate(inputs) if torch.is_tensor(x) and x.is_floating_point()]
    if not floating:
        raise ValueError("inputs: no floating-point tensor to differentiate")
    diff = [i for i in floating if inputs[i].requires_grad] or floating
    xs = list(inputs)
    for i in floating:
        xs[i] = inputs[i].detach().to(torch.float64).requires_grad_(i in diff)

    try:
        torch.autograd.gradcheck(fn, tuple(xs), eps=eps, atol=atol, rtol=rtol)
    except RuntimeError as exc:  # GradcheckError and failures inside backward
        raise AssertionError(f"torch.autograd.gradcheck failed: {exc}") from exc

    def outputs(args):
        out = fn(*args)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    gen = torch.Generator().manual_seed(seed)
    outs = outputs(xs)
    Gs = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device) for o in outs]

    def phi(args):
        with torch.no_grad():
            return sum(float((G * o.detach()).sum()) for G, o in zip(Gs, outputs(args)))

    scalar = sum((G * o).sum() for G, o in zip(Gs, outs))
    grads = torch.autograd.grad(scalar, [xs[i] for i in diff], allow_unused=True)
    per_input, rel = {}, []
    for i, g in zip(diff, grads):
        d = torch.randn(xs[i].shape, generator=gen, dtype=torch.float64).to(xs[i].device)
        analytic = 0.0 if g is None else float((g * d).sum())
        plus, minus = list(xs), list(xs)
        plus[i], minus[i] = xs[i].detach() + eps * d, xs[i].detach() - eps * d
        fd = (phi(plus) - phi(minus)) / (2 * eps)
        err = abs(analytic - fd)
        per_input[i] = err
        rel.append(err / max(abs(fd), 1e-300))
        if err > atol + rtol * abs(fd):
            raise AssertionError(
                f"directional derivative of <G, fn(inputs)> along input {i} disagrees with "
                f"central finite differences: autograd {analytic:.10g}, finite difference "
                f"{fd:.10g} (eps={eps:g}), |error| {err:.3g} > atol + rtol*|fd| = "
                f"{atol + rtol * abs(fd):.3g}")
    return {"max_abs_error": max(per_input.values()), "max_rel_error": max(rel),
            "per_input": per_input, "gradcheck": True}
