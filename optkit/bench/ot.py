"""Sparse OT (optkit.ot.sparse_ot) vs POT: time to a relative dual error, plans, peak memory.

``optkit bench ot --suite clouds --n 1000 --k 1 2 10 --reg 1 [--peers emd,sinkhorn,pot-sparse-dual]``

Suite ``clouds`` (spec ``ot.md`` §7.5): ``RandomState(seed)``, ``xs = randn(n, 2)``,
``xt = randn(n, 2) + (2, 1)``, uniform marginals, ``C`` = squared distances / max. For every
(n, seed, reg, k):

* reference value: k = 1 exactly, ``ot.emd2`` (numItermax 1e8) + (reg/2)||b||^2; k >= 2 a long optkit
  run (bfgs, tol 1e-10, max_iter 20000) flagged ``certified`` when its status is CONVERGED, else
  ``uncertified`` (then the best dual value met by any solver, all being lower bounds, is used,
  and the k-support relaxed primal value of the QOT plan, a feasible point, brackets it).
* optkit runs (``--methods``, default ``auto,bfgs``; ``torch`` = torch CPU/CUDA tensors, method bfgs)
  with a callback recording the dual value per iteration: time to relative dual error <= 1e-3,
  1e-4, 1e-6, final error, status, iterations, row residual, nnz, max nnz per column, peak memory.
* POT peers, each in its own subprocess (per-solver peak RSS; ``--time-limit`` per run, default
  300 s, a timeout is recorded as such): ``ot.emd``, ``ot.sinkhorn`` (reg 0.01, stopThr 1e-9) and
  ``ot.smooth.smooth_ot_dual(reg_type="sparsity_constrained", max_nz=k)``, whose dual value is
  evaluated by optkit's ``dual_kernel`` at POT's potentials.

Output (``--out``, default ``benchmarks/ot/results``): ``ot_<suite>.jsonl`` (one record per run),
``ot_<suite>.json`` (summary with machine info and the command line), ``ot_<suite>.png``
(``--plot``). ``--strict``: exit 1 unless optkit (first method of ``--methods``) reaches a dual value
at least as good as POT's sparse dual (or 1e-6 relative error) at least 10x faster, at n = 1000.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

from ._common import _fmt, append_jsonl, machine_info, out_dir, require, write_json

SUITES_SPEC = ("clouds", "synthetic-1d", "synthetic-2d", "colour-transfer", "moe", "small-exact")
SUITES_SUPPORTED = ("clouds",)
PEERS = ("emd", "sinkhorn", "pot-sparse-dual")
OPTKIT_METHODS = ("auto", "bfgs", "lbfgs", "ssn", "lp", "adam")
TOLS = (1e-3, 1e-4, 1e-6)
DEFAULT_TIME_LIMIT = 300.0
STARTUP_GRACE = 60.0  # seconds allowed for a child's imports and problem generation
STRICT_N = 1000
STRICT_FACTOR = 10.0
SINKHORN_DENSITY_THRESHOLD = 1e-12
POT_ENV = {key: "1" for key in ("POT_BACKEND_DISABLE_PYTORCH", "POT_BACKEND_DISABLE_JAX",
                                 "POT_BACKEND_DISABLE_CUPY", "POT_BACKEND_DISABLE_TENSORFLOW")}


# ----------------------------------------------------------------------------------------------
# command line


def add_arguments(p) -> None:
    p.add_argument("--suite", default="clouds", choices=SUITES_SPEC,
                   help="problem family (implemented: clouds)")
    p.add_argument("--n", type=int, nargs="+", default=[1000], help="problem sizes (m = n)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 10], help="max_nz values")
    p.add_argument("--reg", type=float, nargs="+", default=[1.0], help="gamma values")
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma list from {{{', '.join(PEERS)}}} (empty string: none)")
    p.add_argument("--pot-max-iter", type=int, default=500,
                   help="numItermax of POT's smooth_ot_dual (POT's default 500)")
    p.add_argument("--sinkhorn-reg", type=float, default=0.01, help="entropic reg of ot.sinkhorn")
    p.add_argument("--ref-max-iter", type=int, default=20000,
                   help="max_iter of the long reference run (k >= 2)")
    p.add_argument("--ref-tol", type=float, default=1e-10, help="tol of the long reference run")
    p.add_argument("--ref-time-limit", type=float, default=None,
                   help="seconds for the reference run (default: none)")


def _command_line(args) -> str:
    """The canonical ``optkit bench ot ...`` line equivalent to ``args``."""
    parts = ["optkit", "bench", "ot", "--suite", args.suite, "--n", *map(str, args.n),
             "--k", *map(str, args.k), "--reg", *(f"{r:g}" for r in args.reg),
             "--methods", ",".join(_methods(args)), "--peers", args.peers or "''",
             "--pot-max-iter", str(args.pot_max_iter), "--sinkhorn-reg", f"{args.sinkhorn_reg:g}",
             "--ref-max-iter", str(args.ref_max_iter), "--ref-tol", f"{args.ref_tol:g}",
             "--seeds", str(args.seeds), "--device", args.device, "--dtype", args.dtype]
    if args.time_limit is not None:
        parts += ["--time-limit", f"{args.time_limit:g}"]
    if args.ref_time_limit is not None:
        parts += ["--ref-time-limit", f"{args.ref_time_limit:g}"]
    if args.out:
        parts += ["--out", str(args.out)]
    if args.plot:
        parts.append("--plot")
    if args.strict:
        parts.append("--strict")
    return " ".join(shlex.quote(p) if p != "''" else p for p in parts)


def _methods(args):
    return list(args.methods) if args.methods else ["auto", "bfgs"]


def _parse_method(name):
    """'auto' -> ('numpy', 'auto'); 'torch' -> ('torch', 'bfgs'); 'torch-lbfgs' -> ('torch', 'lbfgs')."""
    if name == "torch":
        return "torch", "bfgs"
    if name.startswith("torch-") and name[6:] in OPTKIT_METHODS:
        return "torch", name[6:]
    if name in OPTKIT_METHODS:
        return "numpy", name
    return None


def _validate(args):
    from .._errors import InvalidProblemError

    if args.suite not in SUITES_SUPPORTED:
        raise InvalidProblemError(
            f"--suite: {args.suite!r} is not implemented yet; supported suites: "
            f"{', '.join(SUITES_SUPPORTED)}")
    for name in _methods(args):
        if _parse_method(name) is None:
            raise InvalidProblemError(
                f"--methods: unknown method {name!r}; supported: {', '.join(OPTKIT_METHODS)}, "
                "torch (torch tensors, method bfgs), torch-<method>")
    peers = [p.strip() for p in (args.peers or "").split(",") if p.strip()]
    for p in peers:
        if p not in PEERS:
            raise InvalidProblemError(f"--peers: unknown peer {p!r}; supported: {', '.join(PEERS)}")
    if any(n < 2 for n in args.n):
        raise InvalidProblemError(f"--n: sizes must be >= 2, got {args.n}")
    if any(k < 1 for k in args.k):
        raise InvalidProblemError(f"--k: max_nz values must be >= 1, got {args.k}")
    if any(not (r > 0 and math.isfinite(r)) for r in args.reg):
        raise InvalidProblemError(f"--reg: values must be finite and > 0, got {args.reg}")
    if args.seeds < 1:
        raise InvalidProblemError(f"--seeds: must be >= 1, got {args.seeds}")
    if args.pot_max_iter < 1:
        raise InvalidProblemError(f"--pot-max-iter: must be >= 1, got {args.pot_max_iter}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise InvalidProblemError(f"--time-limit: must be > 0, got {args.time_limit}")
    return peers


# ----------------------------------------------------------------------------------------------
# child processes (one per solver run)


def _problem(spec):
    from ..ot.problems import clouds

    return clouds(int(spec["n"]), seed=int(spec["seed"]))


def _rss_mb():
    """Peak resident memory of this process in MiB.

    ``VmHWM`` of ``/proc/self/status`` where available: ``ru_maxrss`` survives ``exec`` on Linux,
    so a child forked from a large parent would report the parent's peak. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    import resource

    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _ru_maxrss_mb():
    import resource

    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _plan_stats(G, a, b, C, threshold=0.0):
    import numpy as np

    mass = float(a.sum())
    nz = G > threshold
    return dict(
        cost=float(np.sum(G * C)),
        r_row=float(np.abs(G.sum(1) - a).sum() / mass),
        r_col=float(np.abs(G.sum(0) - b).sum() / mass),
        nnz=int(np.count_nonzero(nz)),
        density=float(np.count_nonzero(nz) / G.size),
        col_nnz_max=int(nz.sum(0).max()),
        row_nnz_max=int(nz.sum(1).max()),
        nnz_threshold=threshold,
    )


def _run_optkit(spec):
    import numpy as np

    from ..ot import sparse_ot

    a, b, C = _problem(spec)
    backend = spec.get("backend", "numpy")
    if backend == "torch":
        import torch

        dt = getattr(torch, spec.get("dtype", "float64"))
        dev = spec.get("device", "cpu")
        a, b, C = (torch.as_tensor(v, dtype=dt, device=dev) for v in (a, b, C))
    traj = []

    def cb(info):
        traj.append((float(info.elapsed), float(info.fun), float(info.residual)))

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    res = sparse_ot(a, b, C, max_nz=int(spec["k"]), reg=float(spec["reg"]), method=spec["method"],
                    tol=spec.get("tol"), max_iter=spec.get("max_iter"),
                    time_limit=spec.get("time_limit"), callback=cb)
    if backend == "torch" and str(spec.get("device", "cpu")).startswith("cuda"):
        torch.cuda.synchronize()
    outer = time.perf_counter() - t0
    rss1 = _rss_mb()
    r_row, r_col = (float(x) for x in res.marginal_residual)
    out = dict(status=res.status.name, fun=float(res.fun), nit=int(res.nit), nfev=int(res.nfev or 0),
               r_row=r_row, r_col=r_col, nnz=int(res.nnz), col_nnz_max=int(res.extra["col_nnz_max"]),
               wall_time=float(res.wall_time), outer_time=outer, regime=str(res.regime),
               method_used=str(res.extra.get("method")), message=str(res.message),
               duality_gap=_float_or_none(res.duality_gap), primal_cost=float(res.primal_cost),
               peak_rss_mb=rss1, rss_before_solve_mb=rss0, ru_maxrss_mb=_ru_maxrss_mb(), backend=res.backend, device=res.device,
               dtype=res.dtype)
    # final point: the polish / certificate after the last callback may change the value
    traj.append((float(res.wall_time), float(res.fun), float(max(r_row, r_col))))
    out["trajectory"] = traj if spec.get("record_trajectory", True) else traj[-1:]
    if not np.isfinite(out["fun"]):
        out["fun"] = None
    return out


def _float_or_none(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _run_emd(spec):
    import numpy as np
    import ot

    a, b, C = _problem(spec)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    G, log = ot.emd(a, b, C, numItermax=int(1e8), log=True)
    t = time.perf_counter() - t0
    rss1 = _rss_mb()
    out = dict(time=t, peak_rss_mb=rss1, rss_before_solve_mb=rss0, ru_maxrss_mb=_ru_maxrss_mb(), status="ok",
               pot_warning=log.get("warning"), emd_cost=float(log["cost"]))
    out.update(_plan_stats(np.asarray(G), a, b, C))
    return out


def _run_sinkhorn(spec):
    import numpy as np
    import ot

    a, b, C = _problem(spec)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    G, log = ot.sinkhorn(a, b, C, reg=float(spec["sinkhorn_reg"]), stopThr=1e-9, log=True)
    t = time.perf_counter() - t0
    rss1 = _rss_mb()
    errs = log.get("err") or [None]
    out = dict(time=t, peak_rss_mb=rss1, rss_before_solve_mb=rss0, ru_maxrss_mb=_ru_maxrss_mb(), status="ok",
               nit=int(log.get("niter", -1)), sinkhorn_reg=float(spec["sinkhorn_reg"]),
               last_err=_float_or_none(errs[-1]))
    out.update(_plan_stats(np.asarray(G), a, b, C, threshold=SINKHORN_DENSITY_THRESHOLD))
    return out


def _run_pot_sparse_dual(spec):
    import numpy as np
    import ot

    from ..ot import dual_kernel, semi_dual_kernel

    a, b, C = _problem(spec)
    k, reg = int(spec["k"]), float(spec["reg"])
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    G, log = ot.smooth.smooth_ot_dual(a, b, C, reg, reg_type="sparsity_constrained", max_nz=k,
                                      numItermax=int(spec["pot_max_iter"]), stopThr=1e-9, log=True)
    t = time.perf_counter() - t0
    rss1 = _rss_mb()
    alpha, beta = np.asarray(log["alpha"], dtype=float), np.asarray(log["beta"], dtype=float)
    res = log["res"]
    CT = np.ascontiguousarray(C.T)
    D = float(dual_kernel(alpha, beta, a, b, CT, k, reg)[0])
    S = float(semi_dual_kernel(alpha, a, b, CT, k, reg)[0])
    out = dict(time=t, peak_rss_mb=rss1, rss_before_solve_mb=rss0, ru_maxrss_mb=_ru_maxrss_mb(), status="ok",
               nit=int(getattr(res, "nit", -1)), scipy_status=int(getattr(res, "status", -1)),
               scipy_message=str(getattr(res, "message", "")), pot_fun=-float(res.fun),
               fun=D, semi_dual_at_alpha=S, max_iter=int(spec["pot_max_iter"]))
    out.update(_plan_stats(np.asarray(G), a, b, C))
    return out


def _run_qot_bound(spec):
    """Upper bounds on the k-sparse optimum: P_k(T_QOT), the k-support relaxed primal value of the
    quadratically regularised OT plan (k = m), which lies in U(a, b) up to its residual."""
    from ..ot import relaxed_primal_value, sparse_ot

    a, b, C = _problem(spec)
    n = C.shape[0]
    t0 = time.perf_counter()
    res = sparse_ot(a, b, C, max_nz=n, reg=float(spec["reg"]), method="bfgs", tol=1e-12)
    bounds = {str(k): float(relaxed_primal_value(res.plan, C, int(k), float(spec["reg"])))
              for k in spec["ks"]}
    return dict(status=res.status.name, qot_value=float(res.fun),
                qot_r_row=float(res.marginal_residual[0]), qot_r_col=float(res.marginal_residual[1]),
                time=time.perf_counter() - t0, bounds=bounds)


_WORKERS = {"qot-bound": _run_qot_bound, "optkit": _run_optkit, "emd": _run_emd, "sinkhorn": _run_sinkhorn,
            "pot-sparse-dual": _run_pot_sparse_dual}


def _worker_main(argv=None):
    """Entry point of a child: ``python -c '...' IN.json OUT.json``."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(pathlib.Path(argv[0]).read_text())
    load0, cpu0 = _loadavg(), time.process_time()
    try:
        out = _WORKERS[spec["kind"]](spec)
        # contention check: a single-threaded solve on a busy machine has cpu_time << wall time
        out.update(child_cpu_time=time.process_time() - cpu0, load_average_before=load0,
                   load_average_after=_loadavg())
    except Exception as exc:  # reported, never hidden
        import traceback

        out = dict(status="error", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc()[-4000:])
    pathlib.Path(argv[1]).write_text(json.dumps(out))


def _spawn(spec, timeout, workdir):
    """Run one solver in a fresh interpreter; return its output dict (status 'timeout'/'error')."""
    tag = f"{spec['kind']}-{os.getpid()}-{time.monotonic_ns()}"
    fin = pathlib.Path(workdir) / f"{tag}.in.json"
    fout = pathlib.Path(workdir) / f"{tag}.out.json"
    fin.write_text(json.dumps(spec))
    code = "from optkit.bench.ot import _worker_main; _worker_main()"
    env = dict(os.environ)
    if spec["kind"] != "optkit":
        env.update(POT_ENV)  # numpy inputs: keep POT from importing torch/jax/cupy/tensorflow
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(fin), str(fout)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(status="timeout", timeout_s=timeout, elapsed_s=time.perf_counter() - t0)
    if proc.returncode != 0 or not fout.exists():
        err = proc.stderr.decode(errors="replace")[-2000:] if proc.stderr else ""
        return dict(status="error", error=f"child exited with code {proc.returncode}: {err}")
    return json.loads(fout.read_text())


# ----------------------------------------------------------------------------------------------
# metrics


def _rel_err(value, ref):
    if value is None or ref is None:
        return None
    return abs(ref - value) / max(abs(ref), 1e-300)


def _time_to(traj, ref, tol):
    """First (time, residual) of a trajectory whose relative dual error is <= tol, else None."""
    for t, v, r in traj:
        e = _rel_err(v, ref)
        if e is not None and e <= tol:
            return t, r
    return None


def _tol_key(tol):
    return f"{tol:.0e}"


def _finalize_optkit(rec, ref):
    traj = rec.get("trajectory") or []
    rec["final_rel_err"] = _rel_err(rec.get("fun"), ref)
    rec["time_to"] = {}
    rec["residual_at"] = {}
    for tol in TOLS:
        hit = _time_to(traj, ref, tol)
        rec["time_to"][_tol_key(tol)] = hit[0] if hit else None
        rec["residual_at"][_tol_key(tol)] = hit[1] if hit else None


# ----------------------------------------------------------------------------------------------
# main


def run(args) -> int:
    require("ot")
    require("numpy")
    if args.plot:
        require("matplotlib")
    peers = _validate(args)
    import numpy as np
    import ot

    from .. import __version__
    from ..ot.problems import clouds

    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a core dependency; degrade to no progress bar anyway
        tqdm = None

    out = out_dir(args, "ot")
    stem = f"ot_{args.suite}"
    jsonl = out / f"{stem}.jsonl"
    jsonl.write_text("")
    methods = _methods(args)
    limit = args.time_limit if args.time_limit is not None else DEFAULT_TIME_LIMIT
    seeds = list(range(args.seeds))
    command = _command_line(args)
    load_start = _loadavg()
    sources = _source_digest()  # children import the same files (hash taken at start)
    t_run = time.perf_counter()

    configs = [(n, s, r, k) for n in args.n for s in seeds for r in args.reg for k in args.k]
    per_ns = [(n, s) for n in args.n for s in seeds]
    references, runs, peer_recs, comparisons = [], [], [], []
    qot_bounds = {}
    bar = None
    if tqdm is not None:
        bar = tqdm(total=len(configs) + len(per_ns) * sum(p in peers for p in ("emd", "sinkhorn")),
                   desc="optkit bench ot", disable=not sys.stderr.isatty(), file=sys.stderr)

    def note(text):
        if bar is not None:
            bar.set_postfix_str(text)

    def done():
        if bar is not None:
            bar.update(1)

    with tempfile.TemporaryDirectory(prefix="optkit_bench_ot_") as work:
        # peers that solve other objectives: once per (n, seed)
        for n, s in per_ns:
            for peer in ("emd", "sinkhorn"):
                if peer not in peers:
                    continue
                note(f"n={n} {peer}")
                spec = dict(kind=peer, n=n, seed=s, sinkhorn_reg=args.sinkhorn_reg)
                rec = _spawn(spec, limit + STARTUP_GRACE, work)
                if rec.get("status") == "ok" and rec.get("time", 0.0) > limit:
                    rec["status"] = "timeout"
                rec.update(record="peer", peer=peer, suite=args.suite, n=n, seed=s, time_limit=limit)
                peer_recs.append(rec)
                append_jsonl(jsonl, rec)
                done()

        for n, s, reg, k in configs:
            a, b, C = clouds(n, seed=s)
            cfg = dict(suite=args.suite, n=n, seed=s, reg=reg, k=k)
            # --- reference value
            note(f"n={n} reg={reg:g} k={k} reference")
            if k == 1:
                t0 = time.perf_counter()
                emd_val = float(ot.emd2(a, b, C, numItermax=int(1e8)))
                ref = dict(cfg, record="reference", value=emd_val + 0.5 * reg * float(b @ b),
                           emd=emd_val, kind="exact", certified=True,
                           source="ot.emd2 + (reg/2)||b||^2", time=time.perf_counter() - t0)
            else:
                spec = dict(kind="optkit", n=n, seed=s, k=k, reg=reg, method="bfgs", tol=args.ref_tol,
                            max_iter=args.ref_max_iter, time_limit=args.ref_time_limit,
                            record_trajectory=False)
                tl = None if args.ref_time_limit is None else args.ref_time_limit + STARTUP_GRACE
                r = _spawn(spec, tl, work)
                certified = r.get("status") == "CONVERGED"
                ref = dict(cfg, record="reference", value=r.get("fun"),
                           kind="certified" if certified else "uncertified", certified=certified,
                           source=f"optkit bfgs tol {args.ref_tol:g} max_iter {args.ref_max_iter}",
                           run={key: v for key, v in r.items() if key != "trajectory"})
                if (n, s, reg) not in qot_bounds:
                    note(f"n={n} reg={reg:g} QOT upper bound")
                    qot_bounds[(n, s, reg)] = _spawn(
                        dict(kind="qot-bound", n=n, seed=s, reg=reg, ks=[kk for kk in args.k if kk > 1]),
                        None, work)
                qb = qot_bounds[(n, s, reg)]
                ub = (qb.get("bounds") or {}).get(str(k))
                ref.update(upper_bound=ub, upper_bound_source=(
                    "P_k(T_QOT): k-support relaxed primal value of the QOT plan (max_nz = m, status "
                    f"{qb.get('status')}, row residual {_fmt(qb.get('qot_r_row'), '.1e')})"))
            # --- optkit runs
            cfg_runs = []
            for name in methods:
                backend, meth = _parse_method(name)
                if meth == "lp" and k != 1:
                    rec = dict(cfg, record="optkit", method=name, status="skipped",
                               reason="method 'lp' is the k = 1 exact path")
                    cfg_runs.append(rec)
                    continue
                note(f"n={n} reg={reg:g} k={k} optkit {name}")
                spec = dict(kind="optkit", n=n, seed=s, k=k, reg=reg, method=meth, backend=backend,
                            device=args.device, dtype=args.dtype, time_limit=limit)
                rec = _spawn(spec, limit + STARTUP_GRACE, work)
                rec.update(cfg, record="optkit", method=name, solver_method=meth, backend_kind=backend)
                cfg_runs.append(rec)
            # --- POT sparse dual
            pot = None
            if "pot-sparse-dual" in peers:
                if k >= n:
                    pot = dict(cfg, record="peer", peer="pot-sparse-dual", status="skipped",
                               reason=f"POT's sparse dual crashes for max_nz >= m (k = {k}, m = {n})")
                else:
                    note(f"n={n} reg={reg:g} k={k} POT sparse dual")
                    spec = dict(kind="pot-sparse-dual", n=n, seed=s, k=k, reg=reg,
                                pot_max_iter=args.pot_max_iter)
                    pot = _spawn(spec, limit + STARTUP_GRACE, work)
                    if pot.get("status") == "ok" and pot.get("time", 0.0) > limit:
                        pot["status"] = "timeout"
                    pot.update(cfg, record="peer", peer="pot-sparse-dual", time_limit=limit)
            # --- uncertified reference: every dual value is a lower bound, keep the best one
            if not ref["certified"]:
                cands = [(ref["value"], "reference run")]
                cands += [(r.get("fun"), f"optkit {r['method']}") for r in cfg_runs]
                if pot is not None:
                    cands += [(pot.get("fun"), "POT sparse dual (D_k)"),
                              (pot.get("semi_dual_at_alpha"), "S_k at POT's alpha")]
                cands = [(v, src) for v, src in cands if v is not None and math.isfinite(v)]
                if cands:
                    best = max(cands, key=lambda c: c[0])
                    if ref["value"] is None or best[0] > ref["value"]:
                        ref["value_reference_run"] = ref["value"]
                        ref["value"] = best[0]
                        ref["source"] += f"; raised to the best dual value met ({best[1]})"
            refv = ref["value"]
            if ref.get("upper_bound") is not None and refv is not None:
                # optimum in [value, upper_bound]: the reference's own relative error is at most this
                ref["bracket_rel"] = (ref["upper_bound"] - refv) / abs(refv)
            references.append(ref)
            append_jsonl(jsonl, ref)
            for rec in cfg_runs:
                if rec.get("status") not in ("skipped", "error", "timeout"):
                    _finalize_optkit(rec, refv)
                runs.append(rec)
                append_jsonl(jsonl, rec)
            if pot is not None:
                if pot.get("status") == "ok":
                    pot["rel_err"] = _rel_err(pot.get("fun"), refv)
                    pot["rel_err_semi_dual_at_alpha"] = _rel_err(pot.get("semi_dual_at_alpha"), refv)
                peer_recs.append(pot)
                append_jsonl(jsonl, pot)
                for rec in cfg_runs:
                    comparisons.append(_compare(cfg, rec, pot, limit, refv))
            done()
    if bar is not None:
        bar.close()

    strict = _strict_check(comparisons, methods[0], args)
    summary = dict(
        suite=args.suite, command=command, argv=list(sys.argv), optkit_version=__version__,
        pot_version=getattr(ot, "__version__", None), numpy_version=np.__version__,
        machine=machine_info(), load_average_start=load_start, load_average_end=_loadavg(),
        optkit_ot_sources=sources, elapsed_s=time.perf_counter() - t_run,
        config=dict(n=args.n, k=args.k, reg=args.reg, seeds=seeds, methods=methods, peers=peers,
                    pot_max_iter=args.pot_max_iter, sinkhorn_reg=args.sinkhorn_reg,
                    time_limit=limit, ref_max_iter=args.ref_max_iter, ref_tol=args.ref_tol,
                    ref_time_limit=args.ref_time_limit, device=args.device, dtype=args.dtype,
                    tolerances=list(TOLS), sinkhorn_density_threshold=SINKHORN_DENSITY_THRESHOLD),
        notes=["relative dual error = |ref - value| / |ref|; every dual value is a lower bound on the "
               "optimum", "times exclude interpreter start-up and problem generation; each solver "
               "runs in its own subprocess; peak_rss_mb = the child's VmHWM (its ru_maxrss, kept as "
               "ru_maxrss_mb, inherits the parent's peak across exec on Linux); rss_before_solve_mb = "
               "after imports and problem generation; POT children run with "
               "POT_BACKEND_DISABLE_{PYTORCH,JAX,CUPY,TENSORFLOW}=1 (numpy inputs only)",
               "speedup_vs_pot = POT sparse-dual time / optkit time to reach max(1e-6, POT's final "
               "relative error)", "EMD and Sinkhorn solve other objectives: time, <T,C>, "
               "residuals and density only"],
        references=references,
        runs=[{k_: v for k_, v in r.items() if k_ != "trajectory"} for r in runs],
        peers=peer_recs, comparisons=comparisons, strict=strict,
        files=dict(jsonl=jsonl.name, summary=f"{stem}.json",
                   plot=f"{stem}.png" if args.plot else None))
    write_json(out / f"{stem}.json", summary)
    _print_table(references, runs, peer_recs, comparisons)
    if args.plot:
        _plot(out / f"{stem}.png", runs, peer_recs, references, args)
        print(f"plot: {out / f'{stem}.png'}")
    print(f"results: {out / f'{stem}.json'} and {jsonl}")
    if args.strict:
        print(strict["message"])
        if not strict["passed"]:
            return 1
    return 0


def _source_digest():
    """sha256 (first 16 hex digits) of the optkit.ot sources that produced the numbers."""
    import hashlib

    from .. import ot as ot_pkg

    root = pathlib.Path(ot_pkg.__file__).parent
    out = {}
    for f in sorted(root.glob("*.py")):
        out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    return dict(path=str(root), files=out)


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:  # pragma: no cover
        return None


def _compare(cfg, rec, pot, limit, ref):
    out = dict(cfg, method=rec.get("method"))
    if rec.get("status") in ("skipped", "error", "timeout", None) or "time_to" not in rec:
        out.update(speedup_vs_pot=None, reason=f"optkit run {rec.get('status')}")
        return out
    timed_out = pot.get("status") == "timeout"
    if pot.get("status") not in ("ok", "timeout"):
        out.update(speedup_vs_pot=None, reason=f"POT run {pot.get('status')}: {pot.get('reason', '')}")
        return out
    pot_err = pot.get("rel_err")
    pot_time = pot.get("time") if not timed_out else limit
    # time for optkit to be at least as good as POT's final value (or 1e-6, whichever is looser)
    target = 1e-6 if (timed_out or pot_err is None) else max(1e-6, pot_err)
    hit = _time_to(rec.get("trajectory") or [], ref, target)
    t_hit = hit[0] if hit else None
    t_1e6 = rec["time_to"].get(_tol_key(1e-6))
    better = (None if timed_out or pot.get("fun") is None or rec.get("fun") is None
              else rec["fun"] >= pot["fun"])
    out.update(pot_time=pot_time, pot_timed_out=timed_out, pot_rel_err=pot_err,
               optkit_final_rel_err=rec.get("final_rel_err"), target_rel_err=target,
               optkit_time_to_target=t_hit, optkit_time_to_1e_6=t_1e6, optkit_value_better=better,
               speedup_vs_pot=(pot_time / t_hit if t_hit else None),
               speedup_vs_pot_to_1e_6=(pot_time / t_1e6 if t_1e6 else None),
               speedup_is_lower_bound=timed_out)
    return out


def _strict_check(comparisons, method, args):
    rows = [c for c in comparisons if c.get("n") == STRICT_N and c.get("method") == method]
    if not rows:
        return dict(checked=False, passed=True, failures=[],
                    message=f"--strict: no n = {STRICT_N} comparison with POT's sparse dual for "
                            f"method {method!r}; nothing checked")
    failures = []
    for c in rows:
        sp = c.get("speedup_vs_pot")
        if sp is None or sp < STRICT_FACTOR or c.get("optkit_value_better") is False:
            failures.append(dict(reg=c["reg"], k=c["k"], seed=c["seed"], speedup=sp,
                                 value_better=c.get("optkit_value_better")))
    passed = not failures
    msg = (f"--strict: optkit {method} is >= {STRICT_FACTOR:g}x faster than POT's sparse dual to a "
           f"better value at n = {STRICT_N} in all {len(rows)} configurations" if passed else
           f"--strict FAILED: {len(failures)}/{len(rows)} configurations at n = {STRICT_N} miss the "
           f"{STRICT_FACTOR:g}x target: " + "; ".join(
               f"reg={f['reg']:g} k={f['k']} speedup={_fmt(f['speedup'], '.2f')}" for f in failures))
    return dict(checked=True, passed=passed, failures=failures, message=msg)


def _print_table(references, runs, peers, comparisons):
    print()
    print("clouds: relative dual error vs the reference (k = 1 exact; k >= 2 long optkit run)")
    hdr = (f"{'n':>6} {'reg':>5} {'k':>3} {'solver':<18} {'status':<11} {'its':>6} {'time s':>8} "
           f"{'t(1e-3)':>8} {'t(1e-4)':>8} {'t(1e-6)':>8} {'final err':>9} {'r_row':>8} {'r_col':>8} "
           f"{'nnz':>7} {'colmax':>6} {'MB':>6} {'xPOT':>6}")
    print(hdr)
    print("-" * len(hdr))
    speed = {(c["n"], c["seed"], c["reg"], c["k"], c["method"]): c.get("speedup_vs_pot")
             for c in comparisons}
    for ref in references:
        key = (ref["n"], ref["seed"], ref["reg"], ref["k"])
        bracket = (f"  (optimum within {ref['bracket_rel']:.1e} relative: QOT-plan upper bound)"
                   if ref.get("bracket_rel") is not None and not ref["certified"] else "")
        print(f"{ref['n']:>6} {ref['reg']:>5g} {ref['k']:>3} {'reference':<18} "
              f"{ref['kind']:<11} value {ref['value']!r}{bracket}" if ref["value"] is not None else
              f"{ref['n']:>6} {ref['reg']:>5g} {ref['k']:>3} reference unavailable")
        for r in runs:
            if (r["n"], r["seed"], r["reg"], r["k"]) != key:
                continue
            st = r.get("status")
            if st in ("skipped", "error", "timeout"):
                print(f"{r['n']:>6} {r['reg']:>5g} {r['k']:>3} {'optkit ' + r['method']:<18} {st:<11} "
                      f"{r.get('reason') or r.get('error') or ''}")
                continue
            tt = r["time_to"]
            print(f"{r['n']:>6} {r['reg']:>5g} {r['k']:>3} {'optkit ' + r['method']:<18} {st:<11} "
                  f"{r['nit']:>6} {r['wall_time']:>8.2f} {_fmt(tt['1e-03'], '.2f'):>8} "
                  f"{_fmt(tt['1e-04'], '.2f'):>8} {_fmt(tt['1e-06'], '.2f'):>8} "
                  f"{_fmt(r['final_rel_err'], '.1e'):>9} {r['r_row']:>8.1e} {r['r_col']:>8.1e} "
                  f"{r['nnz']:>7} {r['col_nnz_max']:>6} {r['peak_rss_mb']:>6.0f} "
                  f"{_fmt(speed.get(key + (r['method'],)), '.1f'):>6}")
        for p in peers:
            if p.get("peer") != "pot-sparse-dual" or (p["n"], p["seed"], p["reg"], p["k"]) != key:
                continue
            st = p.get("status")
            if st != "ok":
                print(f"{p['n']:>6} {p['reg']:>5g} {p['k']:>3} {'POT sparse dual':<18} {st:<11} "
                      f"{p.get('reason') or p.get('error') or ''}")
                continue
            print(f"{p['n']:>6} {p['reg']:>5g} {p['k']:>3} {'POT sparse dual':<18} "
                  f"{'sc' + str(p['scipy_status']):<11} {p['nit']:>6} {p['time']:>8.2f} {'':>8} {'':>8} "
                  f"{'':>8} {_fmt(p.get('rel_err'), '.1e'):>9} {p['r_row']:>8.1e} {p['r_col']:>8.1e} "
                  f"{p['nnz']:>7} {p['col_nnz_max']:>6} {p['peak_rss_mb']:>6.0f}")
    others = [p for p in peers if p.get("peer") in ("emd", "sinkhorn")]
    if others:
        print()
        print("other objectives (per n): time, <T,C>, residuals, density (sinkhorn: entries > 1e-12)")
        for p in others:
            if p.get("status") != "ok":
                print(f"{p['n']:>6} {p['peer']:<10} {p.get('status')} {p.get('error', '')}")
                continue
            its = f" its {p['nit']}" if "nit" in p else ""
            print(f"{p['n']:>6} {p['peer']:<10} time {p['time']:.3f} s{its}  <T,C> {p['cost']:.7f}  "
                  f"r_row {p['r_row']:.1e}  r_col {p['r_col']:.1e}  density {p['density']:.4f}  "
                  f"peak {p['peak_rss_mb']:.0f} MB")
    print()


def _plot(path, runs, peers, references, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 7.5))
    reg0 = args.reg[0]
    seed0 = 0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", "-.", ":"]
    methods = _methods(args)
    # panel 1: time vs n (time to 1e-6 when reached, else the wall time, hollow marker)
    for ik, k in enumerate(args.k):
        col = colors[ik % len(colors)]
        for im, name in enumerate(methods):
            pts = [(r["n"], r["time_to"]["1e-06"] or r["wall_time"], r["time_to"]["1e-06"] is not None)
                   for r in runs if r.get("method") == name and r["k"] == k and r["reg"] == reg0
                   and r["seed"] == seed0 and "time_to" in r]
            if not pts:
                continue
            pts.sort()
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], styles[im % 4], color=col,
                     label=f"optkit {name}, k={k}")
            for x, y, hit in pts:
                ax1.plot([x], [y], "o", color=col, mfc=col if hit else "none")
        pts = sorted((p["n"], p["time"]) for p in peers if p.get("peer") == "pot-sparse-dual"
                     and p.get("k") == k and p.get("reg") == reg0 and p.get("seed") == seed0
                     and p.get("status") == "ok")
        if pts:
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], ":", marker="s", color=col,
                     label=f"POT sparse dual, k={k}")
    for peer, mk in (("emd", "^"), ("sinkhorn", "v")):
        pts = sorted((p["n"], p["time"]) for p in peers if p.get("peer") == peer
                     and p.get("seed") == seed0 and p.get("status") == "ok")
        if pts:
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], ":", marker=mk, color="gray",
                     label=f"ot.{peer} (other objective)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("n (= m)")
    ax1.set_ylabel("seconds")
    ax1.set_title(f"clouds, reg={reg0:g}: optkit time to rel. dual error 1e-6\n"
                  "(hollow: not reached, wall time); POT: its own stop")
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    ax1.grid(True, which="both", alpha=0.3)
    # panel 2: value error vs time, largest n
    nmax = max(args.n)
    refs = {(r["reg"], r["k"]): r["value"] for r in references if r["n"] == nmax and r["seed"] == seed0}
    for ik, k in enumerate(args.k):
        col = colors[ik % len(colors)]
        ref = refs.get((reg0, k))
        if ref is None:
            continue
        for im, name in enumerate(methods):
            for r in runs:
                if (r.get("method") == name and r["k"] == k and r["reg"] == reg0 and r["n"] == nmax
                        and r["seed"] == seed0 and r.get("trajectory")):
                    t = [p[0] for p in r["trajectory"]]
                    e = [max(_rel_err(p[1], ref), 1e-16) for p in r["trajectory"]]
                    ax2.plot(t, e, styles[im % 4], color=col, label=f"optkit {name}, k={k}")
        for p in peers:
            if (p.get("peer") == "pot-sparse-dual" and p.get("k") == k and p.get("reg") == reg0
                    and p.get("n") == nmax and p.get("seed") == seed0 and p.get("status") == "ok"):
                ax2.plot([p["time"]], [max(p["rel_err"], 1e-16)], "s", color=col, ms=9,
                         label=f"POT sparse dual, k={k} ({p['nit']} its)")
    for tol in TOLS:
        ax2.axhline(tol, color="gray", lw=0.5, ls=":")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("seconds")
    ax2.set_ylabel("relative dual error")
    ax2.set_title(f"n = {nmax}, reg = {reg0:g}: dual value error vs time")
    ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
