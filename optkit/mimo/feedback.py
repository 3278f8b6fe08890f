"""UE side: sensing operators of the two compression schemes, the dithered b-bit quantizer and the
feedback payload (spec mimo §2).

Scheme 1: the UE estimates H with orthonormal Walsh pilots and sends q = A vec_real(H_hat), A (R, 2 Nr Nt)
i.i.d. N(0, 1/R). Scheme 2: R pilot slots; slot r sends q_r = c_r^T [Re y_r; Im y_r], y_r = H s_r + n_r.
Both are real linear maps of h = vec_real(H), so the base station sees one :class:`SensingOperator`.

All random draws are made with numpy from the given seed and then moved to the input's backend: the
same seed gives bit-identical feedback for numpy and torch channels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .._errors import InvalidProblemError
from .._logging import warn
from . import _xp
from .channels import vec_real

__all__ = ["SensingOperator", "make_operator", "quantize", "cell_edges", "Feedback", "feedback", "walsh_pilots"]


def _rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_int(name, v, low=1, high=None):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InvalidProblemError(f"{name}: must be an integer, got {v!r}")
    if v < low or (high is not None and v > high):
        rng_txt = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InvalidProblemError(f"{name}: must be {rng_txt}, got {v}")
    return int(v)


@dataclasses.dataclass(frozen=True)
class SensingOperator:
    """The real linear map h = vec_real(H) -> q (R measurements), shared by all users or one per user.

    Scheme 1 stores ``A`` (R, 2 Nr Nt) or (B, R, 2 Nr Nt). Scheme 2 stores ``C`` (R, 2 Nr) = [c1, c2] and the
    pilots ``S`` (R, Nt) (real, or complex for ``pilots="complex"``) with a leading B for per-user operators;
    its dense matrix is never needed: products cost O(R Nr Nt) and the Gram matrix is a Hadamard product
    [derived]: A A^T = Re((conj(Cc) Cc^T) o (S S^H)), Cc = c1 + j c2.
    """

    scheme: int
    n_r: int
    n_t: int
    R: int
    A: Any = None
    C: Any = None
    S: Any = None
    pilots: str = "real"

    @property
    def n(self) -> int:
        return 2 * self.n_r * self.n_t

    @property
    def shared(self) -> bool:
        arr = self.A if self.scheme == 1 else self.C
        return arr.ndim == 2

    @property
    def batch(self) -> int | None:
        arr = self.A if self.scheme == 1 else self.C
        return None if arr.ndim == 2 else int(arr.shape[0])

    @property
    def data(self):
        return self.A if self.scheme == 1 else self.C

    def _cc(self):
        return self.C[..., : self.n_r] + 1j * self.C[..., self.n_r:]

    def matvec(self, h):
        """q = A h for h (..., 2 Nr Nt) -> (..., R)."""
        if self.scheme == 1:
            if self.shared:
                return h @ self.A.T if not _xp.is_torch(h) else h @ self.A.transpose(-1, -2)
            return (self.A @ h[..., None])[..., 0]
        from .channels import unvec_real

        H = unvec_real(h, self.n_r, self.n_t)
        S = self.S
        St = S.swapaxes(-1, -2) if not _xp.is_torch(S) else S.transpose(-1, -2)
        if _xp.is_torch(St) and not St.is_complex():
            St = St.to(H.dtype)
        X = H @ St  # (..., Nr, R): column r is H s_r
        Cc = self._cc()
        Xt = X.swapaxes(-1, -2) if not _xp.is_torch(X) else X.transpose(-1, -2)
        return (Cc.conj() * Xt).sum(-1).real

    def rmatvec(self, w):
        """A^T w for w (..., R) -> (..., 2 Nr Nt)."""
        if self.scheme == 1:
            return w @ self.A if self.shared else (w[..., None, :] @ self.A)[..., 0, :]
        Cc = self._cc()
        Ct = Cc.swapaxes(-1, -2) if not _xp.is_torch(Cc) else Cc.transpose(-1, -2)
        wc = w.to(Cc.dtype) if _xp.is_torch(w) else w
        S = self.S.to(Cc.dtype) if _xp.is_torch(self.S) else self.S
        Gc = (Ct * wc[..., None, :]) @ S.conj()  # sum_r w_r Cc_r conj(s_r)^T, (..., Nr, Nt)
        return vec_real(Gc)

    def gram(self):
        """A A^T, (R, R) or (B, R, R)."""
        if self.scheme == 1:
            At = self.A.swapaxes(-1, -2) if not _xp.is_torch(self.A) else self.A.transpose(-1, -2)
            return self.A @ At
        Cc = self._cc()
        S = self.S
        tr = (lambda x: x.transpose(-1, -2)) if _xp.is_torch(S) else (lambda x: x.swapaxes(-1, -2))
        return ((Cc.conj() @ tr(Cc)) * (S @ tr(S).conj())).real

    def to_dense(self):
        """The (R, 2 Nr Nt) (or (B, R, 2 Nr Nt)) matrix; for tests and small problems."""
        if self.scheme == 1:
            return self.A
        # row r of A is A^T e_r
        R = self.R
        I_R = _xp.zeros(self.C, (R, R))
        for i in range(R):
            I_R[i, i] = 1.0
        if self.shared:
            return self.rmatvec(I_R)  # row r = A^T e_r = a_r
        # per-user: put the identity's rows in front so they broadcast against the user axis
        rows = self.rmatvec(I_R[:, None, :])  # (R, B, n)
        return rows.swapaxes(0, 1) if not _xp.is_torch(rows) else rows.transpose(0, 1)

    def row_norms_sq(self):
        """||a_i||^2 (Scheme 1) or ||c_i||^2 (Scheme 2): pilot noise variance per measurement is
        (sigma_n^2 / 2) times this."""
        return (self.A ** 2).sum(-1) if self.scheme == 1 else (self.C ** 2).sum(-1)

    def to(self, like):
        """This operator on the backend/device/dtype of the array ``like``."""
        conv = lambda a: None if a is None else _xp.asarray_like(  # noqa: E731
            _xp.to_host(a), like, dtype=(like.dtype if not np.iscomplexobj(_xp.to_host(a))
                                         else _xp.complex_dtype(like)))
        return dataclasses.replace(self, A=conv(self.A), C=conv(self.C), S=conv(self.S))

    def check(self, n_r, n_t, R=None, batch=None, name="operator"):
        """Raise InvalidProblemError naming ``name`` unless this operator fits the problem."""
        if not isinstance(self, SensingOperator):
            raise InvalidProblemError(f"{name}: must be a SensingOperator, got {type(self).__name__}")
        if (self.n_r, self.n_t) != (n_r, n_t):
            raise InvalidProblemError(f"{name}: built for {self.n_r}x{self.n_t} channels, got {n_r}x{n_t}")
        if R is not None and self.R != R:
            raise InvalidProblemError(f"{name}: has R = {self.R} rows, expected {R}")
        if self.batch is not None and batch is not None and self.batch != batch:
            raise InvalidProblemError(f"{name}: has {self.batch} per-user operators for {batch} users")
        if self.batch is not None and batch is None:
            raise InvalidProblemError(f"{name}: per-user operators ({self.batch}) for a single channel")
        return self


def walsh_pilots(n_t: int, n_pilots: int | None = None):
    """Orthonormal-row Walsh pilots S (n_t, Np), Np = 2^round(log2(3 n_t)) by default (128 for 32)."""
    from scipy.linalg import hadamard

    if n_pilots is None:
        n_pilots = 2 ** int(round(math.log2(3 * n_t)))
    n_pilots = _check_int("n_pilots", n_pilots)
    if n_pilots < n_t or n_pilots & (n_pilots - 1):
        raise InvalidProblemError(f"n_pilots: must be a power of two >= n_t = {n_t}, got {n_pilots}")
    return hadamard(n_pilots)[:n_t].astype(float) / math.sqrt(n_pilots)


def make_operator(scheme, n_r, n_t, R, *, pilots="real", batch=None, shared=True, rng=0, device=None,
                  dtype=None) -> SensingOperator:
    """Draw the sensing operator of ``scheme`` (1 or 2) with R real measurements.

    Scheme 1: A i.i.d. N(0, 1/R). Scheme 2: C = [c1, c2] i.i.d. N(0, 1/R) and pilots s_r ~ N(0, I) (real) or
    CN(0, I) (``pilots="complex"``). ``batch=B`` with ``shared=False`` draws one operator per user.
    ``device``/``dtype`` (torch) move it to a torch device; otherwise numpy float64.
    """
    if scheme not in (1, 2):
        raise InvalidProblemError(f"scheme: must be 1 or 2, got {scheme!r}")
    n_r, n_t, R = _check_int("n_r", n_r), _check_int("n_t", n_t), _check_int("R", R)
    if pilots not in ("real", "complex"):
        raise InvalidProblemError(f"pilots: must be 'real' or 'complex', got {pilots!r}")
    if pilots == "complex" and scheme == 1:
        raise InvalidProblemError("pilots: complex pilots apply to scheme 2 only")
    g = _rng(rng)
    lead = () if (batch is None or shared) else (_check_int("batch", batch),)
    sd = 1.0 / math.sqrt(R)
    if scheme == 1:
        op = SensingOperator(1, n_r, n_t, R, A=g.standard_normal(lead + (R, 2 * n_r * n_t)) * sd)
    else:
        C = g.standard_normal(lead + (R, 2 * n_r)) * sd
        S = g.standard_normal(lead + (R, n_t))
        if pilots == "complex":
            S = (S + 1j * g.standard_normal(lead + (R, n_t))) / math.sqrt(2.0)
        op = SensingOperator(2, n_r, n_t, R, C=C, S=S, pilots=pilots)
    if device is not None or (dtype is not None and "torch" in str(dtype)):
        torch = _xp.get_torch()
        like = torch.zeros((), device=device, dtype=dtype if dtype is not None else torch.float64)
        op = op.to(like)
    return op


# ----------------------------------------------------------------------------------------------- quantizer


def _check_bits(bits):
    return _check_int("bits", bits, 1, 15)


def _compand(x, mu):
    return np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)


def _expand(y, mu):
    return np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu


def cell_edges(z, bits, *, finite_outer=True, companding=None, mu=255.0):
    """Cell [lo, hi] of each code z in scaled units: [z - 1, z + 1] for the uniform quantizer.

    ``finite_outer=False`` (a fixed scale, where the input may exceed the range) makes the outer cells
    semi-infinite. Under mu-law the edges are mapped back through the inverse compander (the scaled
    input then lives on [-2^b, 2^b] as max|x| -> 2^b).
    """
    bits = _check_bits(bits)
    z = np.asarray(z, dtype=float)
    top = 2.0 ** bits
    lo, hi = z - 1.0, z + 1.0
    if companding == "mu-law":
        lo = top * _expand(lo / top, mu)
        hi = top * _expand(hi / top, mu)
    elif companding is not None:
        raise InvalidProblemError(f"companding: must be None or 'mu-law', got {companding!r}")
    if not finite_outer:
        lo = np.where(z <= -top + 1, -np.inf, lo)
        hi = np.where(z >= top - 1, np.inf, hi)
    return lo, hi


def quantize(x, bits, *, scale="max", companding=None, mu=255.0):
    """Mid-rise b-bit quantizer of spec §2: returns (z, s, lo, hi).

    ``scale="max"`` uses s = 2^b / max|x| over the last axis (side information); a float fixes s. Codes z
    are odd integers in [-2^b + 1, 2^b - 1] (int16); a value on a threshold goes to the lower cell. lo, hi
    are the cells in scaled units (see :func:`cell_edges`). numpy in, numpy out (the UE side).
    """
    bits = _check_bits(bits)
    x = np.asarray(_xp.to_host(x), dtype=float)
    if not np.all(np.isfinite(x)):
        raise InvalidProblemError("x: contains NaN or inf")
    top = 2.0 ** bits
    if isinstance(scale, str):
        if scale != "max":
            raise InvalidProblemError(f"scale: must be 'max' or a positive float, got {scale!r}")
        amax = np.max(np.abs(x), axis=-1)
        s = np.where(amax > 0, top / np.where(amax > 0, amax, 1.0), 1.0)
        finite_outer = True
    else:
        s = float(scale)
        if not (math.isfinite(s) and s > 0):
            raise InvalidProblemError(f"scale: must be positive and finite, got {scale!r}")
        s = np.full(x.shape[:-1], s)
        finite_outer = False
    y = x * s[..., None]
    if companding == "mu-law":
        y = top * _compand(np.clip(y / top, -1.0, 1.0), mu)
    elif companding is not None:
        raise InvalidProblemError(f"companding: must be None or 'mu-law', got {companding!r}")
    z = np.clip(2.0 * np.ceil(y / 2.0) - 1.0, -top + 1, top - 1).astype(np.int16)
    lo, hi = cell_edges(z, bits, finite_outer=finite_outer, companding=companding, mu=mu)
    return z, (s if s.ndim else float(s)), lo, hi


# ----------------------------------------------------------------------------------------------- feedback


@dataclasses.dataclass(frozen=True)
class Feedback:
    """What the base station receives: codes and side information (spec §5.1).

    ``z`` (..., R) int16 codes; ``scale`` s (...) so that the cells in scaled units are [lo, hi];
    ``sigma`` the dither standard deviation actually added (physical units, 0 if none), ``sigma_nominal`` the
    one the rule sigma = ||q|| / sqrt(R SNR_d) gives; ``noise_var`` (..., R) the pilot-noise variance of
    each measurement (physical units, 0 without pilot noise). ``payload_bits`` = R b; ``side_info_bits`` =
    32 for s (float32), reported separately. Arrays follow the channel's backend and device.
    """

    z: Any
    bits: int
    scale: Any
    sigma: Any
    sigma_nominal: Any
    noise_var: Any
    lo: Any
    hi: Any
    operator: SensingOperator
    scheme: int
    n_r: int
    n_t: int
    payload_bits: int
    side_info_bits: int = 32
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def R(self) -> int:
        return int(self.z.shape[-1])

    @property
    def batch(self) -> int | None:
        return None if self.z.ndim == 1 else int(self.z.shape[0])

    @property
    def dither_added(self) -> bool:
        return bool(np.any(_xp.to_host(self.sigma) > 0))

    def to(self, device=None, dtype=None) -> Feedback:
        """This feedback as torch tensors on ``device`` with floating ``dtype`` (default float64); codes stay
        int16. ``device="numpy"`` returns numpy arrays."""
        if device == "numpy":
            return feedback_to(self, np.zeros(0))
        torch = _xp.get_torch()
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype.replace("torch.", ""))
        return feedback_to(self, torch.zeros((), device=device, dtype=dtype or torch.float64))

    def midpoints(self):
        """Cell centres in physical units (outer semi-infinite cells: the finite edge moved by one step)."""
        lo, hi = _xp.to_host(self.lo), _xp.to_host(self.hi)
        mid = np.where(np.isfinite(lo) & np.isfinite(hi), 0.5 * (lo + hi), np.where(np.isfinite(lo), lo + 1.0,
                                                                                          hi - 1.0))
        return mid / np.asarray(_xp.to_host(self.scale))[..., None]


def _check_channel(H):
    if H.ndim not in (2, 3):
        raise InvalidProblemError(f"H: must have shape (Nr, Nt) or (B, Nr, Nt), got {tuple(H.shape)}")
    Hn = _xp.to_host(H)
    if not np.all(np.isfinite(Hn)):
        raise InvalidProblemError("H: contains NaN or inf")
    return np.asarray(Hn, dtype=complex)


def feedback(H, *, scheme=1, R, bits, dither_snr_db=30.0, add_dither=True, pilot_snr_db=None, n_pilots=None,
             scale="max", companding=None, mu=255.0, ber=0.0, operator=None, pilots="real", shared=True,
             rng=0) -> Feedback:
    """Simulate the UE: measure, compress, dither and quantize ``H`` (spec §2).

    Parameters
    ----------
    H : array (Nr, Nt) or (B, Nr, Nt), complex, numpy or torch
        True channel(s); the feedback follows its backend and device.
    scheme : {1, 2}
        1: estimate H with Walsh pilots, send A vec_real(H_hat). 2: R real (or complex) pilot slots.
    R, bits : int
        Real measurements and bits per measurement (payload R * bits).
    dither_snr_db : float
        sigma = ||q|| / sqrt(R 10^(SNR_d/10)); ``add_dither=False`` reproduces the authors' default (sigma
        still reported as ``sigma_nominal``).
    pilot_snr_db : float or None
        Complex Gaussian pilot noise with sigma_n = ||Y||_F / sqrt(SNR numel Y); None: noiseless.
    scale : "max" or float
        Quantizer scale (see :func:`quantize`). ``companding="mu-law"`` compands before quantizing.
    ber : float in [0, 1)
        Probability that a codeword is replaced by a uniformly random one (channel errors).
    operator : SensingOperator, optional
        Reuse an operator (e.g. one for all R of an experiment); otherwise one is drawn from ``rng``.
    rng : seed, SeedSequence or numpy Generator
    """
    if scheme not in (1, 2):
        raise InvalidProblemError(f"scheme: must be 1 or 2, got {scheme!r}")
    torch_in = _xp.is_torch(H)
    Hn = _check_channel(H)
    bits = _check_bits(bits)
    R = _check_int("R", R)
    batched = Hn.ndim == 3
    B = Hn.shape[0] if batched else None
    n_r, n_t = Hn.shape[-2:]
    for name, v in (("dither_snr_db", dither_snr_db), ("ber", ber)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidProblemError(f"{name}: must be a finite number, got {v!r}")
    if not 0.0 <= ber < 1.0:
        raise InvalidProblemError(f"ber: must be in [0, 1), got {ber}")
    if pilot_snr_db is not None and not (isinstance(pilot_snr_db, (int, float)) and math.isfinite(pilot_snr_db)):
        raise InvalidProblemError(f"pilot_snr_db: must be a finite number or None, got {pilot_snr_db!r}")
    if bits == 1 and not isinstance(scale, str) and not add_dither:
        warn("bits = 1 with a fixed scale and no dither: the channel norm is not identifiable", UserWarning)
    g = _rng(rng)
    if operator is None:
        op = make_operator(scheme, n_r, n_t, R, pilots=pilots, batch=B, shared=shared, rng=g)
    else:
        if not isinstance(operator, SensingOperator):
            raise InvalidProblemError(f"operator: must be a SensingOperator, got {type(operator).__name__}")
        if operator.scheme != scheme:
            raise InvalidProblemError(f"operator: is a scheme-{operator.scheme} operator, scheme={scheme} given")
        operator.check(n_r, n_t, R, B)
        op = operator.to(np.zeros(0)) if _xp.is_torch(operator.data) else operator
    lead = Hn.shape[:-2]
    noise_var = np.zeros(lead + (R,))
    if scheme == 1:
        if pilot_snr_db is None:
            H_est = Hn
        else:
            S = walsh_pilots(n_t, n_pilots)
            Y = Hn @ S
            sn = np.linalg.norm(Y, axis=(-2, -1)) / math.sqrt(10 ** (pilot_snr_db / 10) * Y.shape[-1] * n_r)
            N = (g.standard_normal(Y.shape) + 1j * g.standard_normal(Y.shape)) * (sn[..., None, None] / math.sqrt(2))
            H_est = (Y + N) @ S.T
            noise_var = 0.5 * sn[..., None] ** 2 * op.row_norms_sq()
        q = op.matvec(vec_real(H_est))
    else:
        Sp = op.S
        St = np.swapaxes(Sp, -1, -2)
        Y = Hn @ St  # (..., Nr, R)
        if pilot_snr_db is not None:
            sn = np.linalg.norm(Y, axis=(-2, -1)) / math.sqrt(10 ** (pilot_snr_db / 10) * Y.shape[-1] * n_r)
            Y = Y + (g.standard_normal(Y.shape) + 1j * g.standard_normal(Y.shape)) * (sn[..., None, None]
                                                                                       / math.sqrt(2))
            noise_var = 0.5 * sn[..., None] ** 2 * op.row_norms_sq()
        Cc = op.C[..., :n_r] + 1j * op.C[..., n_r:]
        q = (Cc.conj() * np.swapaxes(Y, -1, -2)).sum(-1).real
    noise_var = np.broadcast_to(noise_var, lead + (R,)).copy()
    sigma_nom = np.linalg.norm(q, axis=-1) / math.sqrt(R * 10 ** (dither_snr_db / 10))
    x = q + (g.standard_normal(q.shape) * sigma_nom[..., None] if add_dither else 0.0)
    z, s, lo, hi = quantize(x, bits, scale=scale, companding=companding, mu=mu)
    n_err = 0
    if ber > 0:
        hit = g.random(z.shape) < ber
        n_err = int(hit.sum())
        codes = (2 * g.integers(0, 2 ** bits, size=z.shape) - 2 ** bits + 1).astype(np.int16)
        z = np.where(hit, codes, z).astype(np.int16)
        lo, hi = cell_edges(z, bits, finite_outer=isinstance(scale, str), companding=companding, mu=mu)
    s = np.broadcast_to(np.asarray(s, dtype=float), lead).copy()
    sigma = sigma_nom * (1.0 if add_dither else 0.0)
    meta = dict(dither_snr_db=float(dither_snr_db), add_dither=bool(add_dither), pilot_snr_db=pilot_snr_db,
                companding=companding, mu=float(mu), ber=float(ber), n_codeword_errors=n_err,
                scale_rule=scale if isinstance(scale, str) else "fixed")
    fb = Feedback(z=z, bits=bits, scale=s if batched else float(s), sigma=sigma if batched else float(sigma),
                  sigma_nominal=sigma_nom if batched else float(sigma_nom),
                  noise_var=noise_var, lo=lo, hi=hi, operator=op, scheme=scheme, n_r=n_r, n_t=n_t,
                  payload_bits=R * bits, meta=meta)
    if torch_in:
        fb = feedback_to(fb, H)
    return fb


def feedback_to(fb: Feedback, like) -> Feedback:
    """The same feedback on the backend/device of the array ``like`` (floating dtype float64 unless
    ``like`` is a real float32 tensor)."""
    if not _xp.is_torch(like):
        conv = _xp.to_host
        return dataclasses.replace(
            fb, z=conv(fb.z), scale=_scalar_or(conv, fb.scale), sigma=_scalar_or(conv, fb.sigma),
            sigma_nominal=_scalar_or(conv, fb.sigma_nominal), noise_var=conv(fb.noise_var), lo=conv(fb.lo),
            hi=conv(fb.hi), operator=fb.operator.to(np.zeros(0)) if _xp.is_torch(fb.operator.data) else fb.operator)
    torch = _xp.get_torch()
    real = _xp.real_dtype(like)
    if real not in (torch.float32, torch.float64):
        real = torch.float64
    ref = torch.zeros((), dtype=real, device=like.device)
    conv = lambda a: _xp.asarray_like(_xp.to_host(a), ref, dtype=real)  # noqa: E731
    return dataclasses.replace(
        fb, z=_xp.asarray_like(_xp.to_host(fb.z), ref, dtype=torch.int16), scale=_scalar_or(conv, fb.scale),
        sigma=_scalar_or(conv, fb.sigma), sigma_nominal=_scalar_or(conv, fb.sigma_nominal),
        noise_var=conv(fb.noise_var), lo=conv(fb.lo), hi=conv(fb.hi), operator=fb.operator.to(ref))


def _scalar_or(conv, v):
    return float(v) if isinstance(v, float) else conv(v)
