"""torch layers of optkit.mimo: the quantization-aware loss and the dithered quantizer.

This module imports torch at the top (its classes subclass ``torch.nn.Module``), so
``import optkit.mimo.layers`` needs torch; ``import optkit.mimo`` does not import it.
"""

from __future__ import annotations

import math

import torch

from .._errors import InvalidProblemError
from . import kernels

__all__ = ["IntervalProbitNLL", "DitheredQuantizer", "UnfoldedREDEEM", "REDEEMLayer"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _sum_to_shape(g, shape):
    """Undo broadcasting: sum ``g`` over the axes that ``shape`` broadcast along."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    if lead > 0:
        g = g.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if dims:
        g = g.sum(dim=dims, keepdim=True)
    return g.reshape(shape)


# ------------------------------------------------------------------------------- interval-probit loss
class _IntervalProbitFn(torch.autograd.Function):
    """Elementwise -log P with the analytic first derivatives in (mu, sigma).

    Returns ``(nll, r1, r2)``; r1 and r2 are non-differentiable by-products. The backward is
    once-differentiable: a double backward raises instead of returning a silently wrong Hessian
    (the curvature is :func:`optkit.mimo.kernels.curvature_weights`).
    """

    @staticmethod
    def forward(mu, lo, hi, sigma):
        logp, r1, r2 = kernels.truncnorm_terms(mu, lo, hi, sigma)
        return -logp, r1, r2

    @staticmethod
    def setup_context(ctx, inputs, output):
        mu, _, _, sigma = inputs
        _, r1, r2 = output
        ctx.mark_non_differentiable(r1, r2)
        ctx.save_for_backward(r1, r2, sigma)
        ctx.shapes = (mu.shape, sigma.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g, _g_r1, _g_r2):
        r1, r2, sigma = ctx.saved_tensors
        mu_shape, sigma_shape = ctx.shapes
        g_mu = g_sigma = None
        if ctx.needs_input_grad[0]:
            g_mu = _sum_to_shape(-g * r1 / sigma, mu_shape)  # -(mean - mu)/sigma^2
        if ctx.needs_input_grad[3]:
            g_sigma = _sum_to_shape(-g * r2 / sigma, sigma_shape)
        return g_mu, None, None, g_sigma


class IntervalProbitNLL(torch.nn.Module):
    """Quantization-aware loss: ``-log(Phi((hi - mu)/sigma) - Phi((lo - mu)/sigma))``.

    The likelihood of quantized measurements (spec section 2, MLE): each measurement ``mu`` is
    only known to lie in its quantizer cell ``[lo, hi]`` (scaled units, ``+-inf`` allowed) under
    Gaussian dither/noise of standard deviation ``sigma``. Evaluated by the stable kernel of
    :func:`optkit.mimo.kernels.truncnorm_terms` (never floors P, exact for mu far outside the cell).

    Parameters
    ----------
    reduction : {"sum", "mean", "none"}
        "sum"/"mean" reduce over the **last axis** only ((B, R) inputs give (B,)); "none" keeps
        the elementwise terms.

    Notes
    -----
    Gradients (backward of a ``torch.autograd.Function``)::

        dL/dmu    = -(E[w | cell] - mu)/sigma^2 = -r1/sigma
        dL/dsigma = -(a phi(a) - b phi(b))/(sigma P) = -r2/sigma

    reduced to the shapes of ``mu`` and ``sigma`` when they were broadcast (e.g. a scalar sigma).
    ``lo`` and ``hi`` get no gradient (do not set ``requires_grad`` on them). Only first
    derivatives: a double backward raises.

    Examples
    --------
    >>> import torch
    >>> loss = IntervalProbitNLL()
    >>> mu = torch.tensor([[0.3, 10.0]], dtype=torch.float64, requires_grad=True)
    >>> lo, hi = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])
    >>> val = loss(mu, lo, hi, torch.tensor(0.7, dtype=torch.float64))
    >>> val.shape
    torch.Size([1])
    """

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        if reduction not in ("sum", "mean", "none"):
            raise InvalidProblemError(f"reduction: must be 'sum', 'mean' or 'none', got {reduction!r}")
        self.reduction = reduction

    def forward(self, mu, lo, hi, sigma):
        mu, lo, hi, sigma = kernels._prepare(mu, lo, hi, sigma)
        kernels._check_sigma(sigma)
        nll = _IntervalProbitFn.apply(mu, lo, hi, sigma)[0]
        return kernels._reduce_last(nll, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


# --------------------------------------------------------------------------------- dithered quantizer
def _staircase(y, bits):
    """Mid-rise quantizer: thresholds -2^b+2 : 2 : 2^b-2, levels -2^b+1 : 2 : 2^b-1 (odd integers).

    ``2 ceil(y/2) - 1`` maps (2k-2, 2k] to 2k-1, so a value on a threshold goes to the lower cell.
    """
    top = float(2**bits - 1)
    return (2.0 * torch.ceil(0.5 * y) - 1.0).clamp(-top, top)


def _expected_slope(x, s, sigma, bits, chunk=64):
    """d/dx E_v[Q(s (x + v))]/s = sum_j (2/(s sigma)) phi((x - t_j/s)/sigma), v ~ N(0, sigma^2).

    Only thresholds within 40 sigma (in x units) of x contribute a representable term, so the sum
    runs over a window of thresholds around x instead of all 2^b - 1 (32767 at b = 15), in chunks
    of ``chunk`` thresholds to bound memory at numel(x) * chunk.
    """
    n_thr = 2**bits - 1
    first = float(2 - 2**bits)  # t_j = first + 2 j, j = 0 .. n_thr - 1
    # one host sync: the window width in thresholds (s sigma is the dither std in quantizer units)
    half = int(math.ceil(20.0 * float((s * sigma).max()))) + 1
    xs = x.unsqueeze(-1)
    ss = s.unsqueeze(-1)
    total = torch.zeros_like(x)
    if 2 * half + 1 >= n_thr:  # the window covers every threshold: enumerate them directly
        for j0 in range(0, n_thr, chunk):
            j = torch.arange(j0, min(j0 + chunk, n_thr), device=x.device, dtype=x.dtype)
            z = (xs - (first + 2.0 * j) / ss) / sigma
            total = total + torch.exp(-0.5 * z * z).sum(-1)
    else:
        center = torch.round((s * x - first) * 0.5).clamp(0, n_thr - 1).unsqueeze(-1)
        for k0 in range(-half, half + 1, chunk):
            k = torch.arange(k0, min(k0 + chunk, half + 1), device=x.device, dtype=x.dtype)
            j = center + k
            z = (xs - (first + 2.0 * j) / ss) / sigma
            term = torch.exp(-0.5 * z * z)
            total = total + torch.where((j >= 0) & (j < n_thr), term, torch.zeros_like(term)).sum(-1)
    return total * (2.0 * _INV_SQRT_2PI / sigma) / s


class _ExpectedGradFn(torch.autograd.Function):
    """Identity on the quantized value in forward; the dither-expected slope in backward."""

    @staticmethod
    def forward(x, out, s, sigma, bits):
        return out.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _, s, sigma, bits = inputs
        ctx.save_for_backward(x, s)
        ctx.sigma = sigma
        ctx.bits = bits

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        return g * _expected_slope(x, s, ctx.sigma, ctx.bits), None, None, None, None


class DitheredQuantizer(torch.nn.Module):
    """Dithered ``bits``-bit mid-rise quantizer with max-scaling, differentiable in its input.

    ``forward(x)`` with ``x`` of shape ``(..., R)``: per row (last axis) the scale
    ``s = 2^bits / max|x|`` (detached; rows of zeros use s = 1), dither ``v ~ N(0, sigma^2)``
    (``sigma`` in the units of ``x``), levels ``z = Q(s (x + v))`` of the quantizer of spec
    section 2 (thresholds ``-2^b+2 : 2 : 2^b-2``, levels ``-2^b+1 : 2 : 2^b-1``, a value on a
    threshold goes to the lower cell, values beyond the range to the outer levels), and returns
    the de-scaled ``z / s`` (same shape as ``x``). Meant for learning the sensing operator A
    through the UE's feedback.

    Parameters
    ----------
    bits : int
        1 .. 15.
    sigma : float
        Dither standard deviation in the units of ``x``; ``> 0`` for ``grad="expected"``, ``>= 0``
        for ``"ste"`` (0 = no dither).
    grad : {"expected", "straight-through" alias "ste"}
        Backward rule. "expected": the derivative of the dither expectation
        ``E_v[Q(s(x + v))]/s = (-2^b + 1 + sum_j 2 Phi((s x - t_j)/(s sigma)))/s`` with s held
        fixed, ``sum_j (2/(s sigma)) phi((x - t_j/s)/sigma)``: an exact gradient of the expected
        output, not an estimate. "ste": identity (straight-through).

    Notes
    -----
    The scale comes from the clean ``x`` (so ``s x`` spans ``[-2^b, 2^b]`` and a dithered value
    beyond it is clipped to an outer level) and is held fixed in the backward, whereas
    :func:`optkit.mimo.feedback.feedback` scales the dithered measurement as the authors' UE does;
    the two scales differ by about the dither level relative to ``max|x|``.

    Examples
    --------
    >>> import torch
    >>> q = DitheredQuantizer(2, 0.0, grad="ste")
    >>> q(torch.tensor([-1.0, -0.26, 0.0, 0.24, 0.6, 1.0])) * 4
    tensor([-3., -1., -1.,  1.,  3.,  3.])
    """

    def __init__(self, bits: int, sigma: float, grad: str = "expected"):
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 15:
            raise InvalidProblemError(f"bits: must be an integer in 1..15, got {bits!r}")
        if grad == "straight-through":
            grad = "ste"
        if grad not in ("expected", "ste"):
            raise InvalidProblemError(f"grad: must be 'expected' or 'ste', got {grad!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise InvalidProblemError(f"sigma: must be a finite float >= 0, got {sigma!r}")
        if grad == "expected" and sigma <= 0:
            raise InvalidProblemError("sigma: must be positive for grad='expected' (the expectation over the "
                                      "dither is what makes the staircase differentiable)")
        self.bits = bits
        self.sigma = float(sigma)
        self.grad = grad

    def forward(self, x, generator=None):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InvalidProblemError(f"x: must be a real floating-point tensor, got "
                                      f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim == 0:
            raise InvalidProblemError("x: must have at least one axis (the R measurements)")
        with torch.no_grad():
            xd = x.detach()
            m = xd.abs().amax(dim=-1, keepdim=True)
            s = torch.where(m > 0, 2.0**self.bits / m, torch.ones_like(m))
            y = xd
            if self.sigma > 0:
                y = xd + self.sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            out = _staircase(s * y, self.bits) / s
        if self.grad == "ste":
            return out + (x - xd)  # value exactly `out`, gradient the identity
        return _ExpectedGradFn.apply(x, out, s, self.sigma, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, sigma={self.sigma}, grad={self.grad!r}"


# ============================================================================ deep-unfolded REDEEM
_LEARNABLE = ("rho", "relax", "dual", "damping")
_INIT = {"rho": 1.0, "relax": 1.0, "dual": 1.0, "damping": 1e-3}


def _softplus_inv(y: float) -> float:
    return y + math.log(-math.expm1(-y))  # log(exp(y) - 1), stable for small and large y


def _check_count(name, v, low):
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise InvalidProblemError(f"{name}: must be an integer >= {low}, got {v!r}")
    return v


def _check_torch_feedback(fb):
    from .feedback import Feedback

    if not isinstance(fb, Feedback):
        raise InvalidProblemError(f"feedback: must be a Feedback (see optkit.mimo.feedback()), got "
                                  f"{type(fb).__name__}")
    if not isinstance(fb.lo, torch.Tensor):
        from .._errors import BackendError

        raise BackendError("feedback: must hold torch tensors (use feedback.to(device)) for a torch layer")


def _per_user(v, B, like):
    """A float or a (B,)/() tensor as a (B,) tensor on ``like``'s device and dtype (gradients kept)."""
    if isinstance(v, torch.Tensor):
        return v.to(device=like.device, dtype=like.dtype).reshape(-1).expand(B)
    return torch.full((B,), float(v), device=like.device, dtype=like.dtype)


def _scaled_sigma(fb, B, R, like):
    """sigma_i = s sqrt(sigma^2 + noise_var_i) in quantizer-scaled units, 1.0 where it is 0 (the "auto" rule
    of the stable and fast modes); differentiable in ``fb.sigma`` and ``fb.noise_var`` when they are tensors."""
    s = _per_user(fb.scale, B, like)
    sig = _per_user(fb.sigma, B, like)
    nv = fb.noise_var
    nv = nv.to(device=like.device, dtype=like.dtype).reshape(B, R) if isinstance(nv, torch.Tensor) else \
        torch.as_tensor(nv, device=like.device, dtype=like.dtype).reshape(B, R)
    inner = sig[:, None] ** 2 + nv
    pos = inner > 0
    # where-safe sqrt: no inf * 0 = nan in the backward where the variance is exactly 0
    return torch.where(pos, s[:, None] * torch.where(pos, inner, torch.ones_like(inner)) ** 0.5,
                       torch.ones_like(inner))


class _DenseOp:
    """q = A h for a dense Scheme-1 matrix A (R, n) shared by the users or (B, R, n) one per user."""

    def __init__(self, A):
        self.A = A
        self.shared = A.ndim == 2

    def matvec(self, h):
        if self.shared:
            return h @ self.A.transpose(-1, -2)
        if h.ndim == 3:  # (B, J, n) stacked vectors of each user
            return h @ self.A.transpose(-1, -2)
        return (self.A @ h[..., None])[..., 0]

    def rmatvec(self, w):
        if self.shared:
            return w @ self.A
        return (w[..., None, :] @ self.A)[..., 0, :]

    def gram(self):
        return self.A @ self.A.transpose(-1, -2)


def _operator(fb, A, B, like):
    """The differentiable sensing operator of a torch feedback: the ``A`` override (Scheme 1), else the
    feedback's own operator (whose tensors keep their ``requires_grad``)."""
    op = fb.operator
    n = 2 * fb.n_r * fb.n_t
    if A is not None:
        if op.scheme != 1:
            raise InvalidProblemError("A: an operator override applies to scheme 1 only")
        if not isinstance(A, torch.Tensor) or A.is_complex() or not A.is_floating_point():
            raise InvalidProblemError("A: must be a real floating-point tensor")
        if tuple(A.shape) not in ((fb.R, n), (B, fb.R, n)):
            raise InvalidProblemError(f"A: shape {tuple(A.shape)}, expected {(fb.R, n)} or {(B, fb.R, n)}")
        return _DenseOp(A.to(device=like.device, dtype=like.dtype))
    if op.scheme == 1:
        return _DenseOp(op.A.to(device=like.device, dtype=like.dtype))
    return op


def _grid_peak(Res, f_r, f_t):
    """Frequencies of the largest |padded FFT2|^2 bin of Res (B, Nr, Nt): a constant (no gradient)."""
    with torch.no_grad():
        S = torch.fft.fft2(Res.detach(), s=(f_r, f_t))
        P = (S.real ** 2 + S.imag ** 2).reshape(S.shape[0], -1)
        idx = P.argmax(dim=-1)  # ties: lowest flat index
        i_t = idx % f_t
        i_r = torch.div(idx - i_t, f_t, rounding_mode="floor")
        two_pi = 2.0 * math.pi
        wr = math.pi - torch.remainder(math.pi - i_r.to(torch.float64) * (two_pi / f_r), two_pi)
        wt = math.pi - torch.remainder(math.pi - i_t.to(torch.float64) * (two_pi / f_t), two_pi)
    return wr, wt


class _VPFit:
    """Gains by joint least squares for given frequencies (variable projection), all differentiable."""

    def __init__(self, Y, wr, wt, m, n):
        self.wr, self.wt = wr, wt
        ar = torch.exp(1j * wr[..., None] * m)  # (B, K, Nr)
        at = torch.exp(1j * wt[..., None] * n)  # (B, K, Nt)
        G = (ar.conj() @ ar.transpose(-1, -2)) * (at.conj() @ at.transpose(-1, -2))  # (B, K, K)
        b = ((ar.conj() @ Y) * at.conj()).sum(-1)  # b_k = a_rk^H Y conj(a_tk)
        beta = torch.linalg.solve(G, b[..., None])[..., 0]
        H = (ar.transpose(-1, -2) * beta[:, None, :]) @ at
        self.ar, self.at, self.G, self.beta, self.H = ar, at, G, beta, H
        self.res = Y - H
        self.phi = (self.res.real ** 2 + self.res.imag ** 2).sum((-2, -1))


def _lm_step(Y, fit, damping, m, n, cols):
    """One variable-projection Levenberg-Marquardt step on the 2K frequencies (Kaufman's Gauss-Newton matrix
    Re(D^H (I - P) D), Marquardt damping ``damping * diag``), accepted per user where the residual does not
    grow (up to rounding)."""
    B, K = fit.beta.shape
    ar, at, beta = fit.ar, fit.at, fit.beta
    outer = ar[:, :, :, None] * at[:, :, None, :]  # (B, K, Nr, Nt)
    bo = beta[:, :, None, None] * outer
    D = torch.cat([bo * (1j * m)[:, None], bo * (1j * n)[None, :]], 1).reshape(B, 2 * K, -1)[:, cols]
    Phi = outer.reshape(B, K, -1)
    C = Phi.conj() @ D.transpose(-1, -2)  # Phi^H D (B, K, J)
    N = ((D.conj() @ D.transpose(-1, -2)) - C.conj().transpose(-1, -2) @ torch.linalg.solve(fit.G, C)).real
    g = (D.conj() @ fit.res.reshape(B, -1, 1))[..., 0].real  # Re(D^H r); r is orthogonal to span(Phi)
    N = 0.5 * (N + N.transpose(-1, -2))
    Nd = N + damping * torch.diag_embed(N.diagonal(dim1=-2, dim2=-1))
    delta = torch.linalg.solve(Nd, g[..., None])[..., 0]
    full = torch.zeros(B, 2 * K, dtype=delta.dtype, device=delta.device)
    full = full.index_put((torch.arange(B, device=delta.device)[:, None],
                           torch.as_tensor(cols, device=delta.device)[None, :]), delta)
    new = _VPFit(Y, fit.wr + full[:, :K], fit.wt + full[:, K:], m, n)
    # accept unless the residual grows beyond its rounding level (near the optimum the true decrease of a
    # Gauss-Newton step falls below the rounding error of phi; rejecting it would stall ~1e-9 short)
    ok = (new.phi <= fit.phi * (1.0 + 1e-13)).detach()
    return _select_fit(ok, new, fit)


def _select_fit(ok, a, b):
    out = object.__new__(_VPFit)
    for name in ("wr", "wt", "beta", "phi"):
        x, y = getattr(a, name), getattr(b, name)
        setattr(out, name, torch.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x, y))
    for name in ("ar", "at", "G", "H", "res"):
        x, y = getattr(a, name), getattr(b, name)
        setattr(out, name, torch.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x, y))
    return out


class UnfoldedREDEEM(torch.nn.Module):
    """Deep-unfolded REDEEM (spec mimo §5.4): ``n_layers`` ADMM iterations with learnable step parameters.

    ``forward(feedback, *, A=None)`` maps a batched torch :class:`~optkit.mimo.feedback.Feedback` (B users,
    shared or per-user operator) to the K-path estimate ``H_hat`` (B, Nr, Nt) complex, in physical units
    (a single-user feedback gives (Nr, Nt)). Everything is differentiable ("unroll"): in the layer
    parameters, in the operator (the Scheme-1 matrix ``A``, from the ``A=`` override or from
    ``feedback.operator.A`` when it requires grad; Scheme-2 ``C``/``S`` through the operator's own
    products) and in the dither level (``feedback.sigma``/``noise_var`` tensors).

    Layer l (quantizer-scaled units u = s h, U_c = U[:, :Nt] + j U[:, Nt:], as in §3.1):

    1. **HR** on Y = U - Lambda/rho_l. The first call on a nonzero Y (layer 1: layer 0's input is exactly 0
       because U = Lambda = 0, so HR(0) = 0 and layer 0's u-step is the ridge dequantization, as in REDEEM)
       is a greedy initialisation: for k = 1..K the peak of the zero-padded FFT2 of the current residual
       (grid ``2^ceil(log2(hr_oversample N))`` per dimension) adds a frequency pair -- the **argmax is
       detached**, the grid peak is a constant -- followed by ``hr_steps`` Levenberg-Marquardt steps on
       the k pairs found so far. Later layers warm-start from the previous layer's frequencies
       (``hr_steps`` steps). Each step is a variable-projection LM step on the 2K frequencies with joint
       least-squares gains (Kaufman's Gauss-Newton matrix, Marquardt damping ``damping_l * diag``),
       accepted per user where the residual drops.
    2. ``em_steps`` MM steps u <- u + gamma_l (u_MM - u), u_MM = M^{-1}(A^T Sigma^{-1} w_hat(A u) + lambda +
       rho_l r), M = A^T Sigma^{-1} A + rho_l I by Woodbury with a Cholesky of rho_l I + W W^T, W =
       Sigma^{-1/2} A; w_hat from the stable kernel (:func:`optkit.mimo.kernels.truncnorm_terms`),
       sigma_i = s sqrt(sigma^2 + noise_var_i) (1.0 where 0).
    3. Lambda += tau_l rho_l (R - U).

    The output is the structured iterate R / s of the last layer's HR (as ``recover`` returns R / s
    from before its last u-step), so the last layer stops after its HR; ``n_layers >= 2``.

    Parameters
    ----------
    n_r, n_t, n_paths : int
        Array sizes and the model order K.
    n_layers : int >= 2
    scheme : {1, 2}
        Must match the feedback's.
    em_steps, hr_steps : int
        MM steps per layer (>= 1) and LM steps per HR call (>= 0).
    hr_oversample : int >= 1
        FFT grid oversampling of the initialisation (fast mode's 4).
    learn : iterable of {"rho", "relax", "dual", "damping"}
        Which per-layer parameters are ``nn.Parameter`` s; the others are buffers fixed at their
        initial value. Stored raw: rho_l = softplus(raw) (init 1), relax gamma_l = 2 sigmoid(raw) in
        (0, 2) (init 1), dual step tau_l = softplus(raw) (init 1), damping_l = softplus(raw) (init 1e-3).
    share_across_layers : bool
        One value of each parameter for all layers.
    checkpoint : bool
        Wrap each layer in ``torch.utils.checkpoint`` (recompute in the backward, less memory).

    Notes
    -----
    Untrained, a layer is one REDEEM ADMM iteration with rho = 1, but it is *not* identical to
    ``recover(mode="fast")``: the u-step is ``em_steps`` plain MM steps (fast mode: up to 60
    Nesterov-accelerated steps, tol 1e-5); the HR is a greedy grid start plus LM steps on all paths, then
    warm starts (fast mode: full RELAX with 10 Newton steps per fit and 3 cyclic sweeps at iterations
    <= 3 and every 10th, warm starts otherwise, keeping the better fit); LM steps use a fixed damping
    (fast mode tries five). With many EM and HR steps the two agree (see the tests).
    """

    def __init__(self, n_r, n_t, n_paths, *, n_layers=10, scheme=1, em_steps=3, hr_steps=3, hr_oversample=4,
                 learn=("rho", "relax", "dual", "damping"), share_across_layers=False, checkpoint=False):
        super().__init__()
        self.n_r = _check_count("n_r", n_r, 1)
        self.n_t = _check_count("n_t", n_t, 1)
        self.n_paths = _check_count("n_paths", n_paths, 1)
        if 4 * self.n_paths > self.n_r * self.n_t:
            raise InvalidProblemError(f"n_paths: K = {n_paths} exceeds Nr Nt / 4 = {self.n_r * self.n_t / 4:g}")
        self.n_layers = _check_count("n_layers", n_layers, 2)
        if scheme not in (1, 2):
            raise InvalidProblemError(f"scheme: must be 1 or 2, got {scheme!r}")
        self.scheme = scheme
        self.em_steps = _check_count("em_steps", em_steps, 1)
        self.hr_steps = _check_count("hr_steps", hr_steps, 0)
        self.hr_oversample = _check_count("hr_oversample", hr_oversample, 1)
        if isinstance(learn, str):
            learn = (learn,)
        learn = tuple(learn)
        bad = [x for x in learn if x not in _LEARNABLE]
        if bad:
            raise InvalidProblemError(f"learn: unknown parameter {bad[0]!r}; choose from {_LEARNABLE}")
        self.learn = learn
        self.share_across_layers = bool(share_across_layers)
        self.checkpoint = bool(checkpoint)
        n_par = 1 if self.share_across_layers else self.n_layers
        raw0 = {"rho": _softplus_inv(_INIT["rho"]), "relax": math.log(_INIT["relax"] / (2.0 - _INIT["relax"])),
                "dual": _softplus_inv(_INIT["dual"]), "damping": _softplus_inv(_INIT["damping"])}
        for name in _LEARNABLE:
            t = torch.full((n_par,), raw0[name], dtype=torch.float64)
            if name in learn:
                setattr(self, f"{name}_raw", torch.nn.Parameter(t))
            else:
                self.register_buffer(f"{name}_raw", t)
        f_r, f_t = 1, 1
        while f_r < self.hr_oversample * self.n_r:
            f_r *= 2
        while f_t < self.hr_oversample * self.n_t:
            f_t *= 2
        self._grid = (f_r, f_t)

    # ------------------------------------------------------------------------------------ parameters
    @property
    def rho(self):
        return torch.nn.functional.softplus(self.rho_raw)

    @property
    def relax(self):
        return 2.0 * torch.sigmoid(self.relax_raw)

    @property
    def dual(self):
        return torch.nn.functional.softplus(self.dual_raw)

    @property
    def damping(self):
        return torch.nn.functional.softplus(self.damping_raw)

    def extra_repr(self) -> str:
        return (f"n_r={self.n_r}, n_t={self.n_t}, n_paths={self.n_paths}, n_layers={self.n_layers}, "
                f"scheme={self.scheme}, em_steps={self.em_steps}, hr_steps={self.hr_steps}, "
                f"hr_oversample={self.hr_oversample}, learn={self.learn}, "
                f"share_across_layers={self.share_across_layers}, checkpoint={self.checkpoint}")

    # ------------------------------------------------------------------------------------ forward
    def forward(self, feedback, *, A=None):
        """H_hat (B, Nr, Nt) complex (physical units) from a torch Feedback; ``A`` overrides the Scheme-1
        matrix ((R, 2 Nr Nt) shared or (B, R, 2 Nr Nt)), e.g. a learnable one."""
        from .admm import check_model_order

        fb = feedback
        _check_torch_feedback(fb)
        if fb.scheme != self.scheme:
            raise InvalidProblemError(f"feedback: is scheme-{fb.scheme} feedback, the layer was built for "
                                      f"scheme={self.scheme}")
        if (fb.n_r, fb.n_t) != (self.n_r, self.n_t):
            raise InvalidProblemError(f"feedback: {fb.n_r}x{fb.n_t} channels, the layer was built for "
                                      f"{self.n_r}x{self.n_t}")
        check_model_order(self.n_paths, self.n_r, self.n_t, fb.R)
        single = fb.z.ndim == 1
        lo = fb.lo.reshape(-1, fb.R)
        hi = fb.hi.reshape(-1, fb.R)
        if not lo.dtype.is_floating_point:
            lo, hi = lo.double(), hi.double()
        like = lo
        B, R = lo.shape
        n_r, n_t, K = self.n_r, self.n_t, self.n_paths
        n = 2 * n_r * n_t
        op = _operator(fb, A, B, like)
        sig = _scaled_sigma(fb, B, R, like)
        s = _per_user(fb.scale, B, like)
        d = 1.0 / sig
        G = op.gram()
        eye = torch.eye(R, dtype=like.dtype, device=like.device)
        m = torch.arange(n_r, dtype=torch.float64, device=like.device)
        nn_ = torch.arange(n_t, dtype=torch.float64, device=like.device)
        cols = [i for i in range(2 * K) if (i < K and n_r > 1) or (i >= K and n_t > 1)]
        par = {name: getattr(self, name).to(device=like.device, dtype=like.dtype) for name in _LEARNABLE}

        def p(name, li):
            v = par[name]
            return v[0] if self.share_across_layers else v[li]

        def hr(Y, wr, wt, damping):
            """Greedy grid start (wr is None) or warm start, then LM steps; returns the fit."""
            if wr is None:
                fit = None
                for k in range(K):
                    Res = Y if fit is None else fit.res
                    gr, gt = _grid_peak(Res, *self._grid)
                    wr = gr[:, None] if fit is None else torch.cat([fit.wr, gr[:, None]], 1)
                    wt = gt[:, None] if fit is None else torch.cat([fit.wt, gt[:, None]], 1)
                    fit = _VPFit(Y, wr, wt, m, nn_)
                    ck = [i for i in range(2 * (k + 1)) if (i <= k and n_r > 1) or (i > k and n_t > 1)]
                    for _ in range(self.hr_steps):
                        fit = _lm_step(Y, fit, damping, m, nn_, ck)
                return fit
            fit = _VPFit(Y, wr, wt, m, nn_)
            for _ in range(self.hr_steps):
                fit = _lm_step(Y, fit, damping, m, nn_, cols)
            return fit

        def u_step(U, v, rho, gamma):
            L = torch.linalg.cholesky(rho * eye + d[:, :, None] * G * d[:, None, :])
            w2 = d * d
            u = U
            for _ in range(self.em_steps):
                mu = op.matvec(u)
                _, r1, _ = kernels.truncnorm_terms(mu, lo, hi, sig)
                x = op.rmatvec((mu + sig * r1) * w2) + v
                t = torch.cholesky_solve((d * op.matvec(x))[..., None], L)[..., 0]
                u_mm = (x - op.rmatvec(d * t)) / rho
                u = u + gamma * (u_mm - u)
            return u

        def layer(li, U, Lam, wr, wt):
            rho = p("rho", li)
            last = li == self.n_layers - 1
            if wr is None and li == 0:  # HR(0) = 0: U = Lambda = 0 at the start
                Rv = torch.zeros_like(U)
                fit = None
            else:
                Yv = U - Lam / rho
                Y = Yv.reshape(B, 2 * n_t, n_r).transpose(-1, -2)
                Y = (Y[..., :n_t] + 1j * Y[..., n_t:]).to(torch.complex128)
                fit = hr(Y, wr, wt, p("damping", li).to(torch.float64))
                Hf = fit.H.to(_complex_of(like.dtype))
                Rv = torch.cat([Hf.real, Hf.imag], -1).transpose(-1, -2).reshape(B, n)
            if last:
                return U, Lam, fit.wr, fit.wt, fit.H
            U_new = u_step(U, Lam + rho * Rv, rho, p("relax", li))
            Lam = Lam + p("dual", li) * rho * (Rv - U_new)
            if fit is None:
                return U_new, Lam, None, None, None
            return U_new, Lam, fit.wr, fit.wt, fit.H

        U = torch.zeros(B, n, dtype=like.dtype, device=like.device)
        Lam = torch.zeros_like(U)
        wr = wt = Hc = None
        for li in range(self.n_layers):
            if self.checkpoint:
                from torch.utils.checkpoint import checkpoint as _ckpt

                U, Lam, wr, wt, Hc = _ckpt(layer, li, U, Lam, wr, wt, use_reentrant=False)
            else:
                U, Lam, wr, wt, Hc = layer(li, U, Lam, wr, wt)
        H_hat = (Hc / s.to(Hc.real.dtype)[:, None, None]).to(_complex_of(like.dtype))
        return H_hat[0] if single else H_hat


def _complex_of(dtype):
    return torch.complex64 if dtype == torch.float32 else torch.complex128


# ============================================================================ REDEEM as a layer
def _detached_feedback(fb, A=None):
    """The feedback with every tensor detached (and the Scheme-1 matrix replaced by ``A``)."""
    import dataclasses

    det = lambda x: x.detach() if isinstance(x, torch.Tensor) else x  # noqa: E731
    op = fb.operator
    op = dataclasses.replace(op, A=det(A if A is not None else op.A), C=det(op.C), S=det(op.S))
    return dataclasses.replace(fb, scale=det(fb.scale), sigma=det(fb.sigma), sigma_nominal=det(fb.sigma_nominal),
                               noise_var=det(fb.noise_var), operator=op)


def _mv_stack(op, X):
    """A x for the stacked vectors X (B, J, n) of each user -> (B, J, R)."""
    if isinstance(op, _DenseOp):
        return op.matvec(X)
    return op.matvec(X.transpose(0, 1)).transpose(0, 1)


class _PathProblem:
    """f(theta) = -sum_i log P_i(mu(theta)), mu = A vec_real(H(theta)) (scaled units), theta = (omega_r,
    omega_t, Re beta, Im beta) (B, 4K): value, gradient and exact Hessian (spec §2, §5.4)."""

    def __init__(self, n_r, n_t, K, lo, hi):
        self.n_r, self.n_t, self.K = n_r, n_t, K
        self.lo, self.hi = lo, hi

    def split(self, theta):
        K = self.K
        return theta[:, :K], theta[:, K:2 * K], torch.complex(theta[:, 2 * K:3 * K], theta[:, 3 * K:])

    def H(self, theta):
        from .admm import _path_jacobian

        return _path_jacobian(self.n_r, self.n_t, *self.split(theta))

    def grad(self, theta, op, sig):
        """grad_theta f (B, 4K); differentiable in the operator and sigma (theta is held fixed)."""
        from .channels import vec_real

        H, J = self.H(theta)
        mu = op.matvec(vec_real(H))
        _, r1, _ = kernels.truncnorm_terms(mu, self.lo, self.hi, sig)
        e = -r1 / sig
        JA = _mv_stack(op, vec_real(J))
        return (JA * e[:, None, :]).sum(-1)

    def value(self, theta, op, sig):
        from .channels import vec_real

        H, _ = self.H(theta)
        logp, _, _ = kernels.truncnorm_terms(op.matvec(vec_real(H)), self.lo, self.hi, sig)
        return -logp.sum(-1)

    def all(self, theta, op, sig):
        """(f, grad, Hessian) at theta (no autograd): Hessian = (A J)^T diag(D) (A J) + sum_i e_i A_i h''."""
        from .channels import unvec_real, vec_real

        K, n_r, n_t = self.K, self.n_r, self.n_t
        H, J = self.H(theta)
        mu = op.matvec(vec_real(H))
        logp, r1, _ = kernels.truncnorm_terms(mu, self.lo, self.hi, sig)
        D = kernels.curvature_weights(mu, self.lo, self.hi, sig).clamp_min(0.0)
        e = -r1 / sig
        JA = _mv_stack(op, vec_real(J))
        g = (JA * e[:, None, :]).sum(-1)
        Hs = (JA * D[:, None, :]) @ JA.transpose(-1, -2)
        # second-order term <A^T e, vec_real(d^2 H / dtheta_p dtheta_q)> = Re sum conj(Gc) o d^2 H
        T = unvec_real(op.rmatvec(e), n_r, n_t).conj()  # (B, Nr, Nt)
        wr, wt, beta = self.split(theta)
        m = torch.arange(n_r, dtype=theta.dtype, device=theta.device)
        n = torch.arange(n_t, dtype=theta.dtype, device=theta.device)
        ar = torch.exp(1j * wr[..., None] * m)  # (B, K, Nr)
        at = torch.exp(1j * wt[..., None] * n)
        jm, jn = 1j * m, 1j * n

        def S(wm, wn):  # sum_{m,n} T[m, n] wm(m) wn(n) a_r[m] a_t[n] -> (B, K)
            return (((ar * wm) @ T) * (at * wn)).sum(-1)

        s_m, s_n = S(jm, 1.0), S(1.0, jn)
        s_mm, s_mn, s_nn = S(jm * jm, 1.0), S(jm, jn), S(1.0, jn * jn)
        idx = torch.arange(K, device=theta.device)
        H2 = torch.zeros_like(Hs)
        r_, t_, re_, im_ = idx, idx + K, idx + 2 * K, idx + 3 * K
        pairs = [(r_, r_, (beta * s_mm).real), (r_, t_, (beta * s_mn).real), (t_, t_, (beta * s_nn).real),
                 (r_, re_, s_m.real), (r_, im_, -s_m.imag), (t_, re_, s_n.real), (t_, im_, -s_n.imag)]
        for a, b, val in pairs:
            H2[:, a, b] = H2[:, a, b] + val
            if not torch.equal(a, b):
                H2[:, b, a] = H2[:, b, a] + val
        return -logp.sum(-1), g, Hs + H2


def _newton_finish(prob, theta, op, sig, *, max_steps=50, gtol=1e-11):
    """Newton steps on f(theta) per user until the gradient vanishes (polish's fixed point to a tight
    tolerance, so that grad f(theta*) = 0 holds for the implicit function theorem). Where the Hessian is
    not positive definite the step uses |eigenvalues| (saddle-free Newton), so a saddle or a point short of
    the minimum is left; steps are halved until f does not increase."""
    f, g, Hs = prob.all(theta, op, sig)
    for _ in range(max_steps):
        scale = 1.0 + f.abs()
        live = g.abs().amax(-1) > gtol * scale
        if not bool(live.any()):
            break
        lam, V = torch.linalg.eigh(0.5 * (Hs + Hs.transpose(-1, -2)))
        lam = lam.abs().clamp_min(1e-10 * lam.abs().amax(-1, keepdim=True).clamp_min(1e-300))
        step = -(V @ ((V.transpose(-1, -2) @ g[..., None]) / lam[..., None]))[..., 0]
        t = torch.ones_like(f)
        for _ in range(40):
            f_try = prob.value(theta + t[:, None] * step, op, sig)
            ok = f_try <= f + 1e-13 * scale
            if bool((ok | ~live).all()):
                break
            t = torch.where(ok, t, 0.5 * t)
        ok = live & (f_try <= f + 1e-13 * scale)
        if not bool(ok.any()):
            break
        theta = torch.where(ok[:, None], theta + t[:, None] * step, theta)
        f, g, Hs = prob.all(theta, op, sig)
    return theta, g, Hs


class _ImplicitPaths(torch.autograd.Function):
    """H_hat = H(theta*(A, sigma)) / s, with the implicit-function backward of spec §5.4."""

    @staticmethod
    def forward(ctx, A, sig, holder):
        ctx.holder = holder
        ctx.save_for_backward(A, sig)
        H, _ = holder.prob.H(holder.theta)
        return H / holder.s[:, None, None]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, Hbar):
        from .._errors import ConvergenceError

        hd = ctx.holder
        A, sig = ctx.saved_tensors
        L, info = torch.linalg.cholesky_ex(hd.hess)
        if bool((info != 0).any()):
            bad = torch.nonzero(info != 0).reshape(-1).tolist()
            raise ConvergenceError(f"REDEEMLayer: the Hessian of the likelihood in the paths is not positive "
                                   f"definite at the returned estimate (users {bad}); the implicit gradient "
                                   f"is undefined there")
        _, J = hd.prob.H(hd.theta)
        # dL/dtheta_p = Re sum conj(Hbar) dH_hat/dtheta_p
        b = (Hbar.conj()[:, None] * J).real.sum((-2, -1)) / hd.s[:, None]
        v = torch.cholesky_solve(b[..., None], L)[..., 0]
        needs = ctx.needs_input_grad
        with torch.enable_grad():
            A_ = A.detach().requires_grad_(needs[0]) if A is not None else None
            sig_ = sig.detach().requires_grad_(needs[1])
            op = _DenseOp(A_) if A_ is not None else hd.op
            gf = hd.prob.grad(hd.theta, op, sig_)
            phi = (v * gf).sum()
            wrt = [x for x, nd in ((A_, needs[0]), (sig_, needs[1])) if nd]
            grads = list(torch.autograd.grad(phi, wrt, allow_unused=True)) if wrt else []
        gA = -grads.pop(0) if needs[0] else None
        gs = -grads.pop(0) if needs[1] else None
        return gA, gs, None


class _Holder:
    pass


class REDEEMLayer(torch.nn.Module):
    """REDEEM (:func:`optkit.mimo.recover`) as a torch layer: ``forward(feedback, *, A=None) -> H_hat``.

    Parameters
    ----------
    n_paths : int
        Model order K.
    diff_mode : {"none", "implicit"}
        "none": the estimate is returned detached (no gradient). "implicit": gradients by the implicit
        function theorem at the polished paths theta* = (omega_r, omega_t, Re beta, Im beta) (scaled
        units), where grad_theta f = 0: v = (Hess_theta f)^{-1} J^T H_bar and
        p_bar = -(d_p grad_theta f)^T v for p = the Scheme-1 matrix A (``A=`` override or
        ``feedback.operator.A``) and the scaled sigma (which carries the gradient on to
        ``feedback.sigma``/``noise_var`` tensors under the "auto" sigma rule). Needs ``polish=True``.
    **recover_options
        Passed to :func:`optkit.mimo.recover` (``mode``, ``max_iter``, ``polish`` ...).

    Notes
    -----
    In "implicit" mode the polished paths get up to 50 more Newton steps on the likelihood with the exact
    4K x 4K Hessian (per user; |eigenvalues| where it is indefinite; halved until f does not increase) so that the
    stationarity the backward assumes holds to ~1e-11; the returned H_hat is H(theta*)/s of those paths
    (within the polish tolerance of ``recover``'s). The Hessian is the exact one: the Gauss-Newton part
    (A J)^T diag(D) (A J) plus the second-order term sum_i (df/dmu_i) A_i d^2 h/dtheta^2. A Hessian that is
    not positive definite at the returned point raises ConvergenceError in the backward (never a silent
    zero gradient). Scheme 2 operators get no gradient (only sigma). The quantizer scale s is held fixed.
    """

    def __init__(self, n_paths, *, diff_mode="none", **recover_options):
        super().__init__()
        from .admm import REDEEMOptions

        self.n_paths = _check_count("n_paths", n_paths, 1)
        if diff_mode not in ("none", "implicit"):
            raise InvalidProblemError(f"diff_mode: must be 'none' or 'implicit', got {diff_mode!r}")
        opts = REDEEMOptions.from_kwargs(**recover_options)  # validates the names and values now
        if diff_mode == "implicit":
            if not opts.polish:
                raise InvalidProblemError("diff_mode: 'implicit' needs polish=True (the implicit gradient is taken "
                                          "at the polished stationary point of the likelihood in the paths)")
            if opts.ber_model > 0:
                raise InvalidProblemError("diff_mode: 'implicit' supports ber_model=0 only")
        self.diff_mode = diff_mode
        self.recover_options = dict(recover_options)
        self._opts = opts

    def extra_repr(self) -> str:
        return f"n_paths={self.n_paths}, diff_mode={self.diff_mode!r}, options={self.recover_options}"

    def forward(self, feedback, *, A=None):
        from .admm import REDEEM

        fb = feedback
        _check_torch_feedback(fb)
        single = fb.z.ndim == 1
        if A is not None and fb.operator.scheme != 1:
            raise InvalidProblemError("A: an operator override applies to scheme 1 only")
        fb_det = _detached_feedback(fb, A)
        if A is not None:
            _operator(fb, A, 1 if single else fb.batch, fb.lo)  # shape checks
        solver = REDEEM(fb_det, self.n_paths, **self.recover_options)
        with torch.no_grad():
            res = solver.run()
        if self.diff_mode == "none":
            return res.H_hat.detach()
        st = solver.state
        if st.omega is None:
            raise InvalidProblemError("max_iter: recover made no HR step, so there are no paths to differentiate")
        B, R = solver.B, solver.R
        like = solver.lo
        wr, wt = st.omega
        theta = torch.cat([wr, wt, st.beta.real, st.beta.imag], -1).to(like.dtype)
        prob = _PathProblem(fb.n_r, fb.n_t, self.n_paths, solver.lo, solver.hi)
        # the differentiable sigma: the "auto" rule of the stable/fast modes, else the solver's constant
        o = self._opts
        if isinstance(o.sigma, str) and o.sigma == "auto" and o.mode != "reference":
            sig = _scaled_sigma(fb, B, R, like)
        else:
            sig = solver.sigma
        A_src = None
        if fb.operator.scheme == 1:
            A_src = A if A is not None else fb.operator.A
            A_src = A_src.to(device=like.device, dtype=like.dtype)
        op_det = _DenseOp(A_src.detach()) if A_src is not None else solver.op
        with torch.no_grad():
            theta, _, hess = _newton_finish(prob, theta, op_det, sig.detach())
        holder = _Holder()
        holder.prob, holder.theta, holder.hess, holder.op = prob, theta, hess, op_det
        holder.s = solver.s.to(like.dtype)
        H_hat = _ImplicitPaths.apply(A_src, sig, holder)
        return H_hat[0] if single else H_hat
