"""Channels: steering vectors, the K-path double-directional model and channel sources (spec mimo §2, §3.7).

H = sum_k beta_k a_r(omega_r_k) a_t(omega_t_k)^T with a_N(omega) = [1, e^{j omega}, ..., e^{j(N-1) omega}]
(plain transpose), omega = -pi sin(angle) for half-wavelength spacing. Every function takes leading
batch dimensions; arrays of either backend come back on the backend they came in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._errors import InvalidProblemError
from . import _xp

__all__ = ["Channel", "steering", "geometric_channel", "vec_real", "unvec_real"]


@dataclasses.dataclass(frozen=True)
class Channel:
    """A channel draw. ``H`` has shape (..., Nr, Nt); path parameters are None for external sources.

    ``omega_r``, ``omega_t`` (..., K) are spatial frequencies in radians, ``beta`` (..., K) complex gains,
    ``aoa``, ``aod`` (..., K) angles in radians (None when the source has no paths).
    """

    H: Any
    omega_r: Any = None
    omega_t: Any = None
    beta: Any = None
    aoa: Any = None
    aod: Any = None
    n_paths: int | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def n_r(self) -> int:
        return int(self.H.shape[-2])

    @property
    def n_t(self) -> int:
        return int(self.H.shape[-1])

    @property
    def batch_shape(self) -> tuple:
        return tuple(self.H.shape[:-2])


def steering(n: int, omega):
    """Steering vectors a_n(omega) = exp(j omega [0, ..., n-1]) of shape (..., n) for ``omega`` (...)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidProblemError(f"n: must be a positive integer, got {n!r}")
    if _xp.is_torch(omega):
        torch = _xp.get_torch()
        idx = torch.arange(n, device=omega.device, dtype=omega.dtype)
        return torch.exp(1j * omega[..., None] * idx)
    omega = np.asarray(omega, dtype=float)
    return np.exp(1j * omega[..., None] * np.arange(n))


def geometric_channel(omega_r, omega_t, beta, n_r: int, n_t: int):
    """H = A_r diag(beta) A_t^T for path parameters of shape (..., K); returns (..., n_r, n_t) complex."""
    ar = steering(n_r, omega_r)  # (..., Nr, K) after the swap below
    at = steering(n_t, omega_t)
    if _xp.is_torch(ar):
        beta = _xp.asarray_like(beta, ar, dtype=ar.dtype)
        return (ar.transpose(-1, -2) * beta[..., None, :]) @ at
    beta = np.asarray(beta)
    return (np.swapaxes(ar, -1, -2) * beta[..., None, :]) @ at


def vec_real(H):
    """Column-major vec of U = [Re H, Im H] (..., Nr, 2Nt) -> (..., 2 Nr Nt) real."""
    if _xp.is_torch(H):
        torch = _xp.get_torch()
        U = torch.cat([H.real, H.imag], dim=-1) if H.is_complex() else H
        return U.transpose(-1, -2).reshape(U.shape[:-2] + (-1,))
    H = np.asarray(H)
    U = np.concatenate([H.real, H.imag], axis=-1) if np.iscomplexobj(H) else H
    return np.swapaxes(U, -1, -2).reshape(U.shape[:-2] + (-1,))


def unvec_real(h, n_r: int, n_t: int, *, complex_out: bool = True):
    """Inverse of :func:`vec_real`: (..., 2 Nr Nt) -> complex (..., Nr, Nt) (or U if not ``complex_out``)."""
    if h.shape[-1] != 2 * n_r * n_t:
        raise InvalidProblemError(f"h: last dimension must be 2*n_r*n_t = {2 * n_r * n_t}, got {h.shape[-1]}")
    shape = tuple(h.shape[:-1]) + (2 * n_t, n_r)
    U = h.reshape(shape).swapaxes(-1, -2) if not _xp.is_torch(h) else h.reshape(shape).transpose(-1, -2)
    if not complex_out:
        return U
    return U[..., :n_t] + 1j * U[..., n_t:]


# ---------------------------------------------------------------------------------------------
# Channel sources (spec mimo §2 generator, §3.7)
# ---------------------------------------------------------------------------------------------

__all__ += ["random_channel", "clustered_channel", "sionna_cdl_channel", "load_channels", "ula_correlation"]

_MAX_ROUNDS = 100_000  # rounds of the rejection / redraw loops before giving up


def _check_int(value, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidProblemError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise InvalidProblemError(f"{name}: must be >= {low}, got {value}")
    return int(value)


def _check_real(value, name: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    if isinstance(value, bool):
        raise InvalidProblemError(f"{name}: expected a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"{name}: expected a real number, got {value!r}") from None
    if not np.isfinite(v):
        raise InvalidProblemError(f"{name}: must be finite, got {value!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise InvalidProblemError(f"{name}: must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise InvalidProblemError(f"{name}: must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def _batch_shape(batch) -> tuple:
    if batch is None:
        return ()
    if isinstance(batch, (tuple, list)):
        return tuple(_check_int(b, "batch") for b in batch)
    return (_check_int(batch, "batch"),)


def _seed_info(rng):
    return int(rng) if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) else None


def _output_spec(device, dtype):
    """(torch?, complex dtype, real dtype) for the requested output (numpy complex128 by default)."""
    is_torch_dtype = dtype is not None and "torch" in type(dtype).__module__
    if device is None and not is_torch_dtype:
        if dtype is None:
            return False, np.dtype(np.complex128), np.dtype(np.float64)
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise InvalidProblemError(f"dtype: unknown dtype {dtype!r}") from None
        if dt.kind == "c":
            return False, dt, np.empty(0, dt).real.dtype
        if dt.kind == "f":
            return False, np.result_type(dt, np.complex64), dt
        raise InvalidProblemError(f"dtype: must be a floating or complex dtype, got {dtype!r}")
    torch = _xp.get_torch()
    if dtype is None:
        return True, torch.complex128, torch.float64
    if not is_torch_dtype:
        try:
            dtype = getattr(torch, np.dtype(dtype).name)
        except (TypeError, AttributeError):
            raise InvalidProblemError(f"dtype: unknown dtype {dtype!r}") from None
    pairs = {torch.complex128: torch.float64, torch.complex64: torch.float32}
    if dtype in pairs:
        return True, dtype, pairs[dtype]
    inv = {v: k for k, v in pairs.items()}
    if dtype in inv:
        return True, inv[dtype], dtype
    raise InvalidProblemError(f"dtype: must be float32/float64/complex64/complex128, got {dtype!r}")


def _finish(H, omega_r, omega_t, beta, aoa, aod, n_paths, meta, device, dtype) -> Channel:
    """Cast the float64/complex128 numpy draw to the requested backend, device and precision."""
    use_torch, cdt, rdt = _output_spec(device, dtype)
    if not use_torch:
        cast = [x.astype(cdt if np.iscomplexobj(x) else rdt, copy=False) for x in (H, omega_r, omega_t, beta, aoa, aod)]
    else:
        torch = _xp.get_torch()
        dev = torch.device(device) if device is not None else torch.device("cpu")
        cast = [torch.as_tensor(x, device=dev).to(cdt if np.iscomplexobj(x) else rdt)
                for x in (H, omega_r, omega_t, beta, aoa, aod)]
    H, omega_r, omega_t, beta, aoa, aod = cast
    return Channel(H=H, omega_r=omega_r, omega_t=omega_t, beta=beta, aoa=aoa, aod=aod, n_paths=n_paths, meta=meta)


def _omega(angle_rad, spacing):
    return -2.0 * np.pi * spacing * np.sin(angle_rad)


def _min_gap(x):
    """Smallest pairwise |x_i - x_j| over the last axis (inf for one point)."""
    if x.shape[-1] < 2:
        return np.full(x.shape[:-1], np.inf)
    s = np.sort(x, axis=-1)
    return np.diff(s, axis=-1).min(axis=-1)


def _min_wrapped_gap(omega):
    """Smallest pairwise wrapped |omega_i - omega_j| (distance on the circle of length 2 pi)."""
    if omega.shape[-1] < 2:
        return np.full(omega.shape[:-1], np.inf)
    s = np.sort(np.mod(omega, 2 * np.pi), axis=-1)
    gaps = np.concatenate([np.diff(s, axis=-1), (s[..., :1] + 2 * np.pi) - s[..., -1:]], axis=-1)
    return gaps.min(axis=-1)


def _sample_spacing(gen, m, k, lo, hi, sep):
    """m independent sets of k points on [lo, hi], pairwise >= sep, uniform over all valid sets.

    Sorted points x_(1) < ... < x_(k) with gaps >= sep are in volume-preserving bijection with sorted
    points y_(i) = x_(i) - (i-1) sep on [lo, hi - (k-1) sep]; a uniform random permutation then removes
    the ordering (otherwise AoAs and AoDs would come out co-sorted).
    """
    y = np.sort(gen.uniform(lo, hi - (k - 1) * sep, size=(m, k)), axis=-1)
    x = y + sep * np.arange(k)
    return gen.permuted(x, axis=-1)


def _sample_redraw(gen, m, k, lo, hi, sep):
    """The authors' rule: draw, then redraw the later member of every too-close pair, until valid."""
    x = gen.uniform(lo, hi, size=(m, k))
    iu = np.triu(np.ones((k, k), dtype=bool), 1)
    for _ in range(_MAX_ROUNDS):
        close = (np.abs(x[:, :, None] - x[:, None, :]) < sep) & iu  # pair (i, j), i < j
        bad = close.any(axis=1)  # j is the later member of a violating pair
        n_bad = int(bad.sum())
        if n_bad == 0:
            return x
        x[bad] = gen.uniform(lo, hi, size=n_bad)
    raise InvalidProblemError(
        f"sampler: 'redraw' found no valid angle set in {_MAX_ROUNDS} rounds; use sampler='spacing'")


def random_channel(n_r: int, n_t: int, n_paths: int, *, batch=None, spacing: float = 0.5, edge_deg: float = 4.0,
                   min_sep_deg: float = 4.0, separation: str = "angle", sampler: str = "spacing",
                   beta_low: float = 0.5, beta_high: float = 1.0, rng=0, device=None, dtype=None) -> Channel:
    """Random K-path channels, the authors' generator (spec mimo §2, §3.7).

    AoAs and AoDs are independent sets of ``n_paths`` angles, uniform on [-(90 - edge_deg), 90 - edge_deg]
    degrees (±86° by default) with every pairwise gap >= ``min_sep_deg`` (in [0, 90)) within each set. Gains
    beta_k = U_k e^{j psi_k} / sqrt(K), U_k ~ U[beta_low, beta_high], psi_k ~ U[0, 2 pi), so
    E||H||_F^2 = Nr Nt (low^2 + low high + high^2)/3 (7 Nr Nt / 12 = 448 for 24x32). Spatial
    frequencies omega = -2 pi spacing sin(angle) (spacing in wavelengths; 0.5 gives -pi sin).

    sampler:
      ``"spacing"`` (default) is exactly uniform over the valid sets: K points uniform on
      [L, U - (K-1) delta], sorted, the i-th shifted by (i-1) delta, then randomly permuted (separately for
      AoA and AoD). Vectorised over the batch.
      ``"redraw"`` is the authors' rule: draw all, then repeatedly redraw the later member of each pair
      closer than delta until none is left (not uniform over the valid sets).
    separation:
      ``"angle"`` enforces only the angle gap. ``"frequency"`` additionally requires the wrapped spatial
      frequency gap min_{i != j} |omega_i - omega_j| mod 2 pi >= 2 pi spacing sin(min_sep_deg) (the omega
      difference between broadside and an angle min_sep_deg away; 0.2191 rad for the defaults), enforced by
      rejecting whole AoA (or AoD) sets. Under the angle rule alone, +-86° alias to |Delta omega| = 0.0153.

    ``batch=None`` gives one (Nr, Nt) channel; an int B (or a tuple) gives B independent draws (B, Nr, Nt),
    path parameters (B, K). ``rng`` is anything :func:`numpy.random.default_rng` takes. Draws are made in
    numpy float64; ``device`` and/or a torch ``dtype`` return torch tensors (a float dtype sets the real
    parts, its complex counterpart H and beta), a numpy dtype returns numpy arrays of that precision.
    """
    n_r = _check_int(n_r, "n_r")
    n_t = _check_int(n_t, "n_t")
    k = _check_int(n_paths, "n_paths")
    if 4 * k > n_r * n_t:
        raise InvalidProblemError(f"n_paths: must be <= n_r*n_t/4 = {n_r * n_t / 4:g} (4K real unknowns "
                                  f"against 2 n_r n_t), got {k}")
    spacing = _check_real(spacing, "spacing", low=0.0, low_open=True)
    edge_deg = _check_real(edge_deg, "edge_deg", low=0.0, high=90.0, high_open=True)
    min_sep_deg = _check_real(min_sep_deg, "min_sep_deg", low=0.0, high=90.0, high_open=True)
    if min_sep_deg * (k - 1) > 180.0 - 2.0 * edge_deg:
        raise InvalidProblemError(
            f"min_sep_deg: {k} angles {min_sep_deg:g}° apart do not fit in [-{90 - edge_deg:g}°, {90 - edge_deg:g}°] "
            f"(need min_sep_deg*(n_paths-1) <= 180 - 2*edge_deg = {180 - 2 * edge_deg:g})")
    if separation not in ("angle", "frequency"):
        raise InvalidProblemError(f"separation: must be 'angle' or 'frequency', got {separation!r}")
    if sampler not in ("spacing", "redraw"):
        raise InvalidProblemError(f"sampler: must be 'spacing' or 'redraw', got {sampler!r}")
    beta_low = _check_real(beta_low, "beta_low", low=0.0, low_open=True)
    beta_high = _check_real(beta_high, "beta_high")
    if beta_high < beta_low:
        raise InvalidProblemError(f"beta_high: must be >= beta_low = {beta_low:g}, got {beta_high:g}")
    sep_omega = 2.0 * np.pi * spacing * np.sin(np.deg2rad(min_sep_deg))
    if separation == "frequency" and k > 1 and k * sep_omega > 2.0 * np.pi:
        raise InvalidProblemError(
            f"min_sep_deg: {k} spatial frequencies {sep_omega:.4g} rad apart do not fit on the circle of length 2 pi")
    bshape = _batch_shape(batch)
    _output_spec(device, dtype)  # validate before drawing
    gen = np.random.default_rng(rng)
    m = int(np.prod(bshape)) if bshape else 1
    hi = 90.0 - edge_deg
    draw = _sample_spacing if sampler == "spacing" else _sample_redraw

    def angle_set():
        x = draw(gen, m, k, -hi, hi, min_sep_deg)
        if separation == "frequency":
            for _ in range(_MAX_ROUNDS):
                bad = _min_wrapped_gap(_omega(np.deg2rad(x), spacing)) < sep_omega
                n_bad = int(bad.sum())
                if n_bad == 0:
                    break
                x[bad] = draw(gen, n_bad, k, -hi, hi, min_sep_deg)
            else:
                raise InvalidProblemError(f"separation: no angle set with wrapped omega gaps >= {sep_omega:.4g} "
                                          f"found in {_MAX_ROUNDS} rounds; lower min_sep_deg or n_paths")
        return x

    aoa_deg = angle_set()
    aod_deg = angle_set()
    mag = gen.uniform(beta_low, beta_high, size=(m, k))
    psi = gen.uniform(0.0, 2.0 * np.pi, size=(m, k))
    beta = mag * np.exp(1j * psi) / np.sqrt(k)
    aoa, aod = np.deg2rad(aoa_deg), np.deg2rad(aod_deg)
    omega_r, omega_t = _omega(aoa, spacing), _omega(aod, spacing)
    H = geometric_channel(omega_r, omega_t, beta, n_r, n_t)
    shp = bshape if bshape else ()
    arrs = [a.reshape(shp + a.shape[1:]) for a in (H, omega_r, omega_t, beta, aoa, aod)]
    meta = dict(source="random_channel", spacing=spacing, edge_deg=edge_deg, min_sep_deg=min_sep_deg,
                separation=separation, sampler=sampler, beta_low=beta_low, beta_high=beta_high,
                min_sep_omega=float(sep_omega) if separation == "frequency" else None, seed=_seed_info(rng),
                expected_power=n_r * n_t * (beta_low ** 2 + beta_low * beta_high + beta_high ** 2) / 3.0)
    return _finish(*arrs, k, meta, device, dtype)


def clustered_channel(n_r: int, n_t: int, *, n_clusters: int = 4, rays_per_cluster: int = 10, decay_db: float = 3.0,
                      centre_deg: float = 60.0, spread_bs_deg: float = 2.0, spread_ue_deg: float = 10.0,
                      rician_k=None, spacing: float = 0.5, batch=None, rng=0, device=None, dtype=None) -> Channel:
    """Clustered multipath channels for model-mismatch experiments (spec mimo §3.7, [optkit] defaults).

    Each of ``n_clusters`` clusters has an AoD centre and an AoA centre drawn independently from
    U[-centre_deg, centre_deg]; cluster c (0-based) has power 10^(-decay_db c / 10) (normalised over the
    clusters) shared equally by its ``rays_per_cluster`` rays. Ray angles are the centre plus a Laplacian
    offset whose standard deviation (RMS angular spread) is ``spread_bs_deg`` for the AoD (BS, n_t side)
    and ``spread_ue_deg`` for the AoA (UE, n_r side); an angle past ±90° is folded back by
    theta -> arcsin(sin theta), which leaves its omega unchanged. Every ray has an independent
    U[0, 2 pi) phase. ``rician_k`` (linear K-factor, None = no LoS) adds a line-of-sight path at the
    strongest cluster's centre angles holding the power fraction K/(K+1), the rays keeping 1/(K+1).

    Normalisation: sum_k |beta_k|^2 = 1 exactly, so E||H||_F^2 = Nr Nt (the cross terms have zero mean
    under the independent phases). This fixes the expected power, not each draw's: a draw's ||H||^2
    fluctuates around Nr Nt (per-draw normalisation would bias E and couple the paths).

    All K_true = n_clusters * rays_per_cluster (+1 LoS, stored last) paths are returned in omega_r,
    omega_t, beta, aoa, aod (cluster-major order); use a model order K_model < K_true when estimating.
    ``batch``, ``rng``, ``device``, ``dtype`` as in :func:`random_channel`.
    """
    n_r = _check_int(n_r, "n_r")
    n_t = _check_int(n_t, "n_t")
    n_c = _check_int(n_clusters, "n_clusters")
    n_m = _check_int(rays_per_cluster, "rays_per_cluster")
    decay_db = _check_real(decay_db, "decay_db", low=0.0)
    centre_deg = _check_real(centre_deg, "centre_deg", low=0.0, high=90.0)
    spread_bs_deg = _check_real(spread_bs_deg, "spread_bs_deg", low=0.0)
    spread_ue_deg = _check_real(spread_ue_deg, "spread_ue_deg", low=0.0)
    spacing = _check_real(spacing, "spacing", low=0.0, low_open=True)
    if rician_k is not None:
        rician_k = _check_real(rician_k, "rician_k", low=0.0)
    bshape = _batch_shape(batch)
    _output_spec(device, dtype)
    gen = np.random.default_rng(rng)
    m = int(np.prod(bshape)) if bshape else 1

    p = 10.0 ** (-decay_db * np.arange(n_c) / 10.0)
    p = p / p.sum()
    c_aod = gen.uniform(-centre_deg, centre_deg, size=(m, n_c))
    c_aoa = gen.uniform(-centre_deg, centre_deg, size=(m, n_c))
    # Laplace(0, b) has standard deviation b sqrt(2)
    off_aod = gen.laplace(0.0, spread_bs_deg / np.sqrt(2.0), size=(m, n_c, n_m))
    off_aoa = gen.laplace(0.0, spread_ue_deg / np.sqrt(2.0), size=(m, n_c, n_m))
    aod = np.arcsin(np.sin(np.deg2rad(c_aod[..., None] + off_aod))).reshape(m, n_c * n_m)
    aoa = np.arcsin(np.sin(np.deg2rad(c_aoa[..., None] + off_aoa))).reshape(m, n_c * n_m)
    amp = np.repeat(np.sqrt(p / n_m), n_m)  # (n_c * n_m,)
    nlos_frac = 1.0 if rician_k is None else 1.0 / (rician_k + 1.0)
    beta = np.sqrt(nlos_frac) * amp * np.exp(1j * gen.uniform(0.0, 2.0 * np.pi, size=(m, n_c * n_m)))
    if rician_k is not None:
        los = np.sqrt(rician_k / (rician_k + 1.0)) * np.exp(1j * gen.uniform(0.0, 2.0 * np.pi, size=(m, 1)))
        beta = np.concatenate([beta, los], axis=-1)
        aod = np.concatenate([aod, np.deg2rad(c_aod[:, :1])], axis=-1)
        aoa = np.concatenate([aoa, np.deg2rad(c_aoa[:, :1])], axis=-1)
    k_true = beta.shape[-1]
    omega_r, omega_t = _omega(aoa, spacing), _omega(aod, spacing)
    H = geometric_channel(omega_r, omega_t, beta, n_r, n_t)
    arrs = [a.reshape(bshape + a.shape[1:]) for a in (H, omega_r, omega_t, beta, aoa, aod)]
    meta = dict(source="clustered_channel", n_clusters=n_c, rays_per_cluster=n_m, decay_db=decay_db,
                centre_deg=centre_deg, spread_bs_deg=spread_bs_deg, spread_ue_deg=spread_ue_deg,
                rician_k=rician_k, spacing=spacing, los_index=(k_true - 1) if rician_k is not None else None,
                expected_power=float(n_r * n_t), seed=_seed_info(rng))
    return _finish(*arrs, k_true, meta, device, dtype)


def sionna_cdl_channel(n_r: int, n_t: int, *, model: str = "C", delay_spread: float = 100e-9,
                       carrier_frequency: float = 3.5e9, subcarrier: int = 0, subcarrier_spacing: float = 30e3,
                       batch: int = 1, rng=0) -> Channel:
    """3GPP TR 38.901 CDL channels from Sionna (>= 2.0, PyTorch-based; extra ``mimo-3gpp``).

    Downlink CDL ``model`` ("A".."E") between a BS with an n_t-element and a UE with an n_r-element
    horizontal ULA of omnidirectional, single-polarised elements at half-wavelength spacing; the
    frequency response at baseband frequency ``subcarrier * subcarrier_spacing`` (Hz) of
    ``cir_to_ofdm_channel`` is returned as H (batch, n_r, n_t) (numpy complex128). The CDL power-delay
    profile has unit energy, so E|H_ij|^2 = 1. Path parameters are None (the model has ~20 clusters of
    20 rays each, not a K-path model). ``rng`` (an int) seeds Sionna's global generator.
    """
    n_r = _check_int(n_r, "n_r")
    n_t = _check_int(n_t, "n_t")
    batch = _check_int(batch, "batch")
    subcarrier = _check_int(subcarrier, "subcarrier", low=-(2 ** 31))
    if model not in ("A", "B", "C", "D", "E"):
        raise InvalidProblemError(f"model: must be one of 'A'..'E', got {model!r}")
    delay_spread = _check_real(delay_spread, "delay_spread", low=0.0, low_open=True)
    carrier_frequency = _check_real(carrier_frequency, "carrier_frequency", low=0.0, low_open=True)
    subcarrier_spacing = _check_real(subcarrier_spacing, "subcarrier_spacing", low=0.0, low_open=True)
    try:
        import sionna.phy
        from sionna.phy.channel import cir_to_ofdm_channel
        from sionna.phy.channel.tr38901 import CDL, PanelArray
    except ImportError as exc:
        from .._errors import DependencyError

        raise DependencyError("sionna-no-rt", "mimo-3gpp", feature="3GPP CDL channels") from exc
    torch = _xp.get_torch()
    seed = _seed_info(rng)
    if seed is not None:
        sionna.phy.config.seed = seed

    def ula(n):
        return PanelArray(num_rows_per_panel=1, num_cols_per_panel=n, polarization="single",
                          polarization_type="V", antenna_pattern="omni", carrier_frequency=carrier_frequency)

    cdl = CDL(model, delay_spread, carrier_frequency, ut_array=ula(n_r), bs_array=ula(n_t), direction="downlink",
              precision="double")
    a, tau = cdl(batch_size=batch, num_time_steps=1, sampling_frequency=subcarrier_spacing)
    freqs = torch.as_tensor([subcarrier * subcarrier_spacing], dtype=torch.float64, device=a.device)
    h = cir_to_ofdm_channel(freqs, a, tau, normalize=False)
    # downlink: rx = UE (n_r antennas), tx = BS (n_t antennas)
    # h: [batch, num_rx=1, num_rx_ant=n_r, num_tx=1, num_tx_ant=n_t, num_time_steps=1, n_freq=1]
    if tuple(h.shape) != (batch, 1, n_r, 1, n_t, 1, 1):
        raise RuntimeError(f"sionna_cdl_channel: unexpected Sionna output shape {tuple(h.shape)}")
    H = h[:, 0, :, 0, :, 0, 0].detach().cpu().numpy().astype(np.complex128)
    meta = dict(source="sionna_cdl", model=model, delay_spread=delay_spread, carrier_frequency=carrier_frequency,
                subcarrier=subcarrier, subcarrier_spacing=subcarrier_spacing, seed=seed,
                sionna_version=getattr(sionna, "__version__", None), expected_power=float(n_r * n_t))
    return Channel(H=H, meta=meta)


def _read_mat_v73(path, key):
    try:
        import h5py
    except ImportError as exc:
        from .._errors import DependencyError

        raise DependencyError("h5py", "mimo-3gpp", feature="MATLAB v7.3 files") from exc
    with h5py.File(path, "r") as f:
        if key not in f:
            raise InvalidProblemError(f"key: {key!r} not in {path} (has {sorted(f.keys())})")
        arr = f[key][()]
        extra = {}
        if "actual_num_paths" in f:
            extra["actual_num_paths"] = np.asarray(f["actual_num_paths"][()]).T
    if arr.dtype.names and {"real", "imag"} <= set(arr.dtype.names):
        arr = arr["real"] + 1j * arr["imag"]
    # MATLAB is column-major: HDF5 stores the dimensions reversed
    return np.asarray(arr).T, extra


def load_channels(path, *, key=None) -> Channel:
    """Channel matrices from a file: ``.npz`` (array ``key``, default ``"H"``), ``.npy`` (``key`` unused), or ``.mat``
    (variable ``key``, default ``"user_channel_data"``, users x Nr x Nt, as the authors' Boston5G file;
    v7.3/HDF5 files need h5py). Returns a Channel with H (Nr, Nt) or (users, Nr, Nt) complex128 and no
    path parameters; ``meta`` has the path, key and, when the file has it, ``actual_num_paths``.
    """
    import os

    fname = os.fspath(path)
    ext = os.path.splitext(fname)[1].lower()
    if not os.path.exists(fname):
        raise InvalidProblemError(f"path: no such file {fname!r}")
    extra: dict = {}
    if ext == ".npz":
        key = "H" if key is None else key
        with np.load(fname, allow_pickle=False) as data:
            if key not in data.files:
                raise InvalidProblemError(f"key: {key!r} not in {fname} (has {sorted(data.files)})")
            arr = data[key]
    elif ext == ".npy":
        arr = np.load(fname, allow_pickle=False)
    elif ext == ".mat":
        key = "user_channel_data" if key is None else key
        import scipy.io

        try:
            data = scipy.io.loadmat(fname)
        except NotImplementedError:  # MATLAB v7.3 = HDF5
            arr, extra = _read_mat_v73(fname, key)
        else:
            if key not in data:
                keys = sorted(k for k in data if not k.startswith("__"))
                raise InvalidProblemError(f"key: {key!r} not in {fname} (has {keys})")
            arr = data[key]
            if "actual_num_paths" in data:
                extra["actual_num_paths"] = np.asarray(data["actual_num_paths"])
    else:
        raise InvalidProblemError(f"path: unsupported file type {ext!r} for {fname!r} (use .npz, .npy or .mat)")
    where_ = f"{fname}[{key!r}]" if key is not None else fname
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biufc" or arr.dtype.kind == "b":
        raise InvalidProblemError(f"key: {where_} must hold a real or complex numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise InvalidProblemError(f"key: {where_} must be 2-D (Nr, Nt) or 3-D (users, Nr, Nt), got shape {arr.shape}")
    H = arr.astype(np.complex128)
    if not np.all(np.isfinite(H)):
        n_bad = int(H.size - np.count_nonzero(np.isfinite(H)))
        raise InvalidProblemError(f"key: {where_} contains {n_bad} non-finite value(s)")
    meta = dict(source="file", path=fname, key=key, **extra)
    return Channel(H=H, meta=meta)


def ula_correlation(n: int, max_angle_deg: float = 86.0, *, spacing: float = 0.5):
    """Spatial correlation of a ULA under angles uniform on [-L, L] (spec mimo §3.6 LMMSE prior).

    Real symmetric Toeplitz T (n, n) with T[d] = (1/2L) int_{-L}^{L} cos(2 pi spacing d sin theta) dtheta
    (= cos(pi d sin theta) for half-wavelength spacing), L = max_angle_deg in radians; T[0] = 1. Gauss-Legendre
    quadrature on [0, L] (the integrand is even) with enough nodes for ~1e-14 absolute accuracy.
    """
    n = _check_int(n, "n")
    max_angle_deg = _check_real(max_angle_deg, "max_angle_deg", low=0.0, high=90.0, low_open=True)
    spacing = _check_real(spacing, "spacing", low=0.0, low_open=True)
    L = np.deg2rad(max_angle_deg)
    n_nodes = int(np.ceil(4.0 * spacing * n)) + 64
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    theta = 0.5 * L * (x + 1.0)
    w = 0.5 * L * w
    d = np.arange(n, dtype=float)
    t = np.cos(2.0 * np.pi * spacing * d[:, None] * np.sin(theta)[None, :]) @ w / L
    t[0] = 1.0
    idx = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    return t[idx]
