"""REDEEM (stable / reference / fast) against the baselines on shared channels and feedback: NMSE vs bits and SNR.

Spec mimo §7. Protocol: the channel of trial t comes from SeedSequence([seed, t]) (shared across R and
schemes); operator, dither and noise from SeedSequence([seed, t, R, scheme, dither]); every method gets the
same Feedback. Experiments: ``bits`` (the paper's figure PE11: bits = 3R), ``snr`` (pilot SNR at R = 300),
``dither`` (dither SNR), ``kmodel`` (model order), ``readme`` (16 x 32, K = 6, b = 2, geometric and
clustered), ``ablation`` (one stable-mode component at a time) and ``timing`` (seconds per solve; users/s
batched on torch). BLAS is pinned to one thread per worker; ``--jobs`` runs trials in parallel processes.

Output in ``--out``: ``records.jsonl`` (one line per method x instance: nmse, bgain, cosine, status, nit,
time, seed, versions), ``summary.json`` / ``summary.csv`` (mean, median, p90, bootstrap CI per cell),
``table.md`` and with ``--plot`` ``nmse_vs_bits.png`` (log-y, linear NMSE vs payload bits as in the
figure), ``bgain_vs_bits.png``, ``nmse_vs_snr.png``, ``nmse_vs_dither.png``.
"""

from __future__ import annotations

import contextlib
import csv
import shlex
import sys
import time

import numpy as np

from ._common import _fmt, append_jsonl, machine_info, out_dir, require, write_json

EXPERIMENTS = ("bits", "snr", "dither", "kmodel", "readme", "ablation", "timing")
CONFIGS = {"pe11": dict(n_r=24, n_t=32, K=8, bits=3), "readme": dict(n_r=16, n_t=32, K=6, bits=2),
           "small": dict(n_r=8, n_t=8, K=2, bits=3)}
#: NMSE read off the paper's figure PE11 (spec §7), by payload bits
FIGURE = {1: {150: 1.8, 300: 0.51, 450: 0.022, 600: 0.010, 750: 0.0074, 900: 0.0065, 1050: 0.0054, 1200: 0.0048,
              1350: 0.0044, 1500: 0.0039},
          2: {150: 1.9, 300: 0.64, 450: 0.054, 600: 0.015, 750: 0.011, 900: 0.0094, 1050: 0.0080, 1200: 0.0070,
              1350: 0.0063, 1500: 0.0057}}
DEFAULT_METHODS = ("redeem:stable", "redeem:reference", "redeem:fast", "two-stage", "qiht", "omp", "lmmse", "oracle")
ABLATIONS = {
    "stable": {}, "sigma-clamp": dict(sigma="reference-clamp"), "floored-estep": dict(phi_floor=1e-3),
    "hr-pg": dict(hr_refine="pg-reference"), "no-joint-ls": dict(hr_joint_ls=False), "rho=3": dict(rho=3.0),
    "rho=10": dict(rho=10.0), "max_iter=300": dict(max_iter=300), "newton": dict(u_solver="newton"),
    "polish": dict(polish=True), "residual-balancing": dict(rho_schedule="residual-balancing"),
}


def _ints(text):
    return [int(v) for v in str(text).split(",") if v != ""]


def _floats(text):
    return [float(v) if v.lower() not in ("inf", "none") else None for v in str(text).split(",") if v != ""]


def add_arguments(p) -> None:
    p.add_argument("--experiment", default="bits", choices=EXPERIMENTS)
    p.add_argument("--config", default="pe11", choices=sorted(CONFIGS))
    p.add_argument("--profile", default="quick", choices=("quick", "paper"),
                   help="quick: R in {100,150,300,500}, 3 trials; paper: R = 50..500, 20 trials")
    p.add_argument("--schemes", default="1,2", help="comma list of 1, 2")
    p.add_argument("--R", default=None, help="comma list of measurement counts (overrides the profile)")
    p.add_argument("--bits", type=int, default=None, help="bits per measurement (default: the config's)")
    p.add_argument("--trials", type=int, default=None, help="channels per point (overrides the profile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dither", default="both", choices=("on", "off", "both"),
                   help="feedback with the 30 dB dither added, without (the authors' default), or both")
    p.add_argument("--dither-snr", default="10,20,30,40", help="dither SNRs (dB) of the dither experiment")
    p.add_argument("--pilot-snr", default="0,5,10,15,20,30,inf", help="pilot SNRs (dB) of the snr experiment")
    p.add_argument("--k-model", default="6,7,8,9,10", help="model orders of the kmodel experiment")
    p.add_argument("--channel", default="geometric", help="geometric, clustered or file:PATH")
    p.add_argument("--backend", default="numpy", choices=("numpy", "torch"))
    p.add_argument("--batch", type=int, default=256, help="users per batched solve (timing experiment)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each pinned to one BLAS thread)")
    p.add_argument("--max-iter", type=int, default=None, help="ADMM iteration cap for every REDEEM mode")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--from-records", action="store_true",
                   help="do not solve: rebuild summary, table and plots from --out/records.jsonl")


def _method_spec(text):
    """'redeem:stable:rho=3:polish=1' -> ('redeem', {'mode': 'stable', 'rho': 3.0, 'polish': True})."""
    parts = text.split(":")
    name, kw = parts[0], {}
    for p in parts[1:]:
        if "=" not in p:
            kw["mode"] = p
            continue
        k, v = p.split("=", 1)
        if v.lower() in ("true", "false", "1", "0") and k in ("polish", "hr_joint_ls", "hr_warm_start"):
            kw[k] = v.lower() in ("true", "1")
        else:
            try:
                kw[k] = int(v) if v.isdigit() and k in ("max_iter", "em_iter", "hr_max_sweeps", "hr_oversample") \
                    else float(v)
            except ValueError:
                kw[k] = v
    return name, kw


def _channel(args, cfg, trial):
    from optkit.mimo import clustered_channel, load_channels, random_channel

    ss = np.random.SeedSequence([args.seed, trial])
    if args.channel == "geometric":
        return random_channel(cfg["n_r"], cfg["n_t"], cfg["K"], rng=np.random.default_rng(ss))
    if args.channel == "clustered":
        return clustered_channel(cfg["n_r"], cfg["n_t"], rng=np.random.default_rng(ss))
    if args.channel.startswith("file:"):
        ch = load_channels(args.channel[5:])
        H = ch.H[trial % ch.H.shape[0]] if ch.H.ndim == 3 else ch.H
        from optkit.mimo import Channel

        return Channel(H=H, n_paths=None, meta=dict(source=args.channel))
    raise SystemExit(f"--channel: unknown {args.channel!r}")


def _solve(method, kw, fb, K, channel, max_iter):
    from optkit.mimo import baselines, recover

    if method == "redeem":
        kw = dict(kw)
        if kw.get("sigma") == "reference-clamp":  # ablation: the authors' sigma rule inside stable mode
            kw.pop("sigma")
            s = float(fb.scale)
            kw["sigma"] = max(s * float(fb.sigma_nominal), 1.0)
        if max_iter is not None:
            kw.setdefault("max_iter", max_iter)
        return recover(fb, K, **kw)
    if method == "oracle":
        return baselines.oracle(fb, K, channel=channel, **kw)
    fn = {"two-stage": baselines.two_stage, "qiht": baselines.qiht, "omp": baselines.omp, "lmmse": baselines.lmmse}
    if method not in fn:
        raise SystemExit(f"--methods: unknown method {method!r}")
    return fn[method](fb, K, **kw)


def _instances(args, cfg):
    """(point dict, trial) pairs of the experiment; a point fixes R, scheme, dither and the SNRs."""
    exp = args.experiment
    trials = args.trials or (3 if args.profile == "quick" else 20)
    if args.R:
        Rs = _ints(args.R)
    elif exp in ("bits", "ablation", "timing"):
        Rs = [100, 150, 300, 500] if args.profile == "quick" else list(range(50, 501, 50))
    else:
        Rs = [300]
    if args.config == "small" and not args.R:
        Rs = [r for r in (24, 32, 48, 64) if r >= 4 * cfg["K"]]
    schemes = _ints(args.schemes)
    dithers = {"on": [True], "off": [False], "both": [True, False]}[args.dither]
    pts = []
    for R in Rs:
        for sch in schemes:
            base = dict(R=R, scheme=sch, dither_snr_db=30.0, pilot_snr_db=None, K_model=cfg["K"])
            if exp == "snr":
                for snr in _floats(args.pilot_snr):
                    for d in dithers:
                        pts.append(dict(base, pilot_snr_db=snr, add_dither=d))
            elif exp == "dither":
                for snr in _floats(args.dither_snr):
                    pts.append(dict(base, dither_snr_db=snr, add_dither=True))
                pts.append(dict(base, add_dither=False))
            elif exp == "kmodel":
                for k in _ints(args.k_model):
                    pts.append(dict(base, K_model=k, add_dither=True))
            else:
                for d in dithers:
                    pts.append(dict(base, add_dither=d))
    return [(pt, t) for t in range(trials) for pt in pts]


def _methods(args):
    if args.experiment == "ablation":
        return [("redeem", dict(ABLATIONS[k], mode="stable"), f"stable[{k}]") for k in ABLATIONS]
    names = args.methods or list(DEFAULT_METHODS)
    out = [(*_method_spec(m), m) for m in names]
    known = {"redeem", "oracle", "two-stage", "qiht", "omp", "lmmse"}
    bad = [label for name, _, label in out if name not in known]
    if bad:
        raise SystemExit(f"--methods: unknown method {bad[0]!r}; known: {', '.join(sorted(known))}")
    return out


def _run_instance(job):
    """One (point, trial): build the channel and the feedback once, run every method on it."""
    args, cfg, pt, trial, methods = job
    from threadpoolctl import threadpool_limits

    from optkit.mimo import feedback
    from optkit.mimo.metrics import beamforming_gain, cosine_similarity, nmse

    out = []
    with threadpool_limits(limits=1):
        ch = _channel(args, cfg, trial)
        ss = np.random.SeedSequence([args.seed, trial, pt["R"], pt["scheme"], int(pt["add_dither"])])
        bits = args.bits or cfg["bits"]
        fb = feedback(ch.H, scheme=pt["scheme"], R=pt["R"], bits=bits, dither_snr_db=pt["dither_snr_db"],
                      add_dither=pt["add_dither"], pilot_snr_db=pt["pilot_snr_db"], rng=np.random.default_rng(ss))
        for method, kw, label in methods:
            t0 = time.perf_counter()
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = _solve(method, kw, fb, pt["K_model"], ch, args.max_iter)
                dt = time.perf_counter() - t0
                H_hat = res.H_hat
                rec = dict(method=label, nmse=float(nmse(H_hat, ch.H)),
                           bgain=float(beamforming_gain(H_hat, ch.H)),
                           cosine=float(cosine_similarity(H_hat, ch.H)), status=res.status.name, nit=int(res.nit),
                           time=dt, time_hr=float(getattr(res, "time_hr", 0.0) or 0.0), fun=_f(res.fun))
            except Exception as exc:  # a crash is a recorded failure, never a silent skip
                rec = dict(method=label, nmse=float("nan"), bgain=float("nan"), cosine=float("nan"),
                           status=f"ERROR: {type(exc).__name__}: {exc}", nit=0, time=time.perf_counter() - t0)
            rec.update(pt, trial=trial, seed=args.seed, bits=bits, payload_bits=pt["R"] * bits,
                       n_r=cfg["n_r"], n_t=cfg["n_t"], K_true=cfg["K"], channel=args.channel,
                       power=float(np.sum(np.abs(ch.H) ** 2)))
            out.append(rec)
    return out


def _f(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _timing_torch(args, cfg, out):
    """Users per second of the batched torch path (one shared operator, B users)."""
    import torch

    from optkit.mimo import feedback, random_channel, recover
    from optkit.mimo.metrics import nmse

    rows = []
    dev = args.device
    bits = args.bits or cfg["bits"]
    for R in (_ints(args.R) if args.R else [300]):
        ch = random_channel(cfg["n_r"], cfg["n_t"], cfg["K"], batch=args.batch, rng=args.seed)
        H = torch.as_tensor(ch.H, device=dev)
        fb = feedback(H, scheme=1, R=R, bits=bits, rng=args.seed)
        for method, kw, label in _methods(args):
            if method != "redeem":
                continue
            if args.max_iter is not None:
                kw = dict(kw, max_iter=args.max_iter)
            recover(feedback(H[:2], scheme=1, R=R, bits=bits, rng=1), cfg["K"], **kw)  # warm-up
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = recover(fb, cfg["K"], **kw)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            e = nmse(res.H_hat, H).cpu().numpy()
            rows.append(dict(method=label, R=R, batch=args.batch, device=dev, seconds=dt, users_per_s=args.batch / dt,
                             nmse_mean=float(np.mean(e)), nmse_median=float(np.median(e)),
                             converged=int(sum(res.successes)), nit=int(res.nit)))
            print(f"{label:>20} R={R} B={args.batch} {dev}: {dt:.2f} s, {args.batch / dt:.1f} users/s, "
                  f"median NMSE {np.median(e):.3g}", flush=True)
    write_json(out / "timing_torch.json", dict(machine=machine_info(), rows=rows))
    return rows


def _summaries(records):
    from optkit.mimo.metrics import summarize

    cells = {}
    for r in records:
        key = (r["method"], r["scheme"], r["R"], r["add_dither"], r.get("pilot_snr_db"), r["dither_snr_db"],
               r["K_model"])
        cells.setdefault(key, []).append(r)
    rows = []
    for key, recs in sorted(cells.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        method, scheme, R, dith, psnr, dsnr, km = key
        s = summarize(np.array([r["nmse"] for r in recs]))
        statuses = [r["status"] for r in recs]
        rows.append(dict(method=method, scheme=scheme, R=R, payload_bits=recs[0]["payload_bits"], add_dither=dith,
                         pilot_snr_db=psnr, dither_snr_db=dsnr, K_model=km, n=len(recs), nmse_mean=s["mean"],
                         nmse_median=s["median"], nmse_p90=s["p90"], ci_low=s["ci_low"], ci_high=s["ci_high"],
                         bgain_mean=float(np.nanmean([r["bgain"] for r in recs])),
                         time_mean=float(np.mean([r["time"] for r in recs])),
                         cap_rate=statuses.count("MAX_ITER") / len(statuses),
                         errors=sum(1 for x in statuses if x.startswith("ERROR")),
                         figure=FIGURE.get(scheme, {}).get(recs[0]["payload_bits"])))
    return rows


def _checks(rows):
    """Spec §7 acceptance, evaluated where the run has the needed cells."""
    out = []
    by = {(r["method"], r["scheme"], r["R"], r["add_dither"]): r for r in rows
          if r["pilot_snr_db"] is None and r["dither_snr_db"] == 30.0}
    for (m, sch, R, dith), r in sorted(by.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        fig = r["figure"]
        if m == "redeem:reference" and not dith and fig is not None and r["payload_bits"] >= 600:
            lo, hi = r["ci_low"] / 1.15, r["ci_high"] * 1.15
            out.append(dict(check=f"reference S{sch} {r['payload_bits']} bits matches the figure {fig}",
                            value=r["nmse_mean"], ci=[r["ci_low"], r["ci_high"]], ok=bool(lo <= fig <= hi)))
        if m == "redeem:reference" and not dith and fig is not None and r["payload_bits"] == 450:
            out.append(dict(check=f"reference S{sch} 450 bits mean <= 1.15 x the figure {fig}",
                            value=r["nmse_mean"], ok=bool(r["nmse_mean"] <= 1.15 * fig)))
        if m == "redeem:reference" and not dith and sch == 1 and R >= 200 and r["payload_bits"] == 3 * R:
            ratio = r["nmse_mean"] / (1.7 / R)
            out.append(dict(check=f"reference S1 R={R} within 0.5-2 x sanity_nmse 1.7/R", value=ratio,
                            ok=bool(0.5 <= ratio <= 2.0)))
        if m == "redeem:stable" and dith and sch == 1:
            ref = by.get(("redeem:reference", sch, R, False))
            if fig is not None and r["payload_bits"] >= 900:
                out.append(dict(check=f"stable S1 dithered {r['payload_bits']} bits below the figure {fig}",
                                value=r["nmse_mean"], ok=bool(r["nmse_mean"] < fig)))
            if ref is not None and R >= 300:
                out.append(dict(check=f"stable S1 dithered R={R} <= 0.5 x reference (undithered)",
                                value=r["nmse_mean"] / ref["nmse_mean"], ok=bool(r["nmse_mean"]
                                                                                <= 0.5 * ref["nmse_mean"])))
    return out


def _table(rows, checks, cmd):
    lines = [f"Command: `{cmd}`", "", "| method | scheme | R | bits | dither | pilot SNR | K_model | n | mean NMSE | "
             "95% CI | median | figure | cap rate | s/solve |", "|" + "---|" * 14]
    for r in rows:
        lines.append(f"| {r['method']} | {r['scheme']} | {r['R']} | {r['payload_bits']} | "
                     f"{'yes' if r['add_dither'] else 'no'} | {_fmt(r['pilot_snr_db'], 'g', 'inf')} | {r['K_model']} | "
                     f"{r['n']} | {_fmt(r['nmse_mean'])} | [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
                     f"{_fmt(r['nmse_median'])} | {_fmt(r['figure'])} | {r['cap_rate']:.2f} | "
                     f"{r['time_mean']:.2f} |")
    if checks:
        lines += ["", "| check | value | ok |", "|---|---|---|"]
        lines += [f"| {c['check']} | {_fmt(c['value'])} | {'yes' if c['ok'] else 'NO'} |" for c in checks]
    return "\n".join(lines) + "\n"


def _plots(rows, out, exp):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({r["method"] for r in rows})
    colors = plt.get_cmap("tab20").colors

    def style(method, scheme, dither):
        """Colour per method, line per scheme (S1 solid, S2 dashed), marker per dither (o none, s added)."""
        return dict(color=colors[(2 * methods.index(method)) % 20], ls="-" if scheme == 1 else "--",
                    marker="s" if dither else "o", ms=3, lw=1.2)

    def series(xkey, ykey, filt):
        groups = {}
        for r in rows:
            if filt(r):
                groups.setdefault((r["method"], r["scheme"], r["add_dither"]), []).append(r)
        return groups

    if exp in ("bits", "ablation"):
        # every method, then REDEEM and the oracle alone (the figure's comparison, readable)
        focus = lambda r: r["pilot_snr_db"] is None and r["method"].startswith(("redeem", "oracle"))  # noqa: E731
        for ykey, name, ylabel, logy, filt in (
                ("nmse_mean", "nmse_vs_bits.png", "NMSE (linear, mean)", True, lambda r: r["pilot_snr_db"] is None),
                ("nmse_mean", "nmse_vs_bits_redeem.png", "NMSE (linear, mean)", True, focus),
                ("bgain_mean", "bgain_vs_bits.png", "beamforming gain (matched)", False,
                 lambda r: r["pilot_snr_db"] is None)):
            fig, ax = plt.subplots(figsize=(8, 5))
            for (m, sch, d), rs in series("payload_bits", ykey, filt).items():
                rs = sorted(rs, key=lambda r: r["payload_bits"])
                ax.plot([r["payload_bits"] for r in rs], [r[ykey] for r in rs], **style(m, sch, d),
                        label=f"{m} S{sch}{' dither' if d else ''}")
            if ykey == "nmse_mean":
                for sch, pts in FIGURE.items():
                    xs = sorted(pts)
                    ax.plot(xs, [pts[x] for x in xs], color="k", ls="-" if sch == 1 else "--", lw=2, alpha=0.35,
                            label=f"paper figure S{sch}")
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel("feedback payload (bits)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
            fig.tight_layout()
            fig.savefig(out / name, dpi=130)
            plt.close(fig)
    if exp in ("snr", "dither"):
        key = "pilot_snr_db" if exp == "snr" else "dither_snr_db"
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (m, sch, d), rs in series(key, "nmse_mean", lambda r: True).items():
            rs = [r for r in rs if r[key] is not None]
            rs = sorted(rs, key=lambda r: r[key])
            if rs:
                ax.plot([r[key] for r in rs], [r["nmse_mean"] for r in rs], **style(m, sch, d),
                        label=f"{m} S{sch}{' dither' if d else ''}")
        ax.set_yscale("log")
        ax.set_xlabel("pilot SNR (dB)" if exp == "snr" else "dither SNR (dB)")
        ax.set_ylabel("NMSE (linear, mean)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / ("nmse_vs_snr.png" if exp == "snr" else "nmse_vs_dither.png"), dpi=130)
        plt.close(fig)


def run(args) -> int:
    require("threadpoolctl")
    if args.plot:
        require("matplotlib")
    cfg = dict(CONFIGS[args.config])
    if args.experiment == "readme" and args.config == "pe11":
        cfg = dict(CONFIGS["readme"])
    out = out_dir(args, "mimo")
    cmd = "optkit bench mimo " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 3 else \
        "optkit bench mimo"
    if args.experiment == "timing" and args.backend == "torch":
        _timing_torch(args, cfg, out)
        return 0
    rec_path = out / "records.jsonl"
    if args.from_records:
        import json

        records = [json.loads(line) for line in rec_path.read_text().splitlines() if line.strip()]
        wall = None
        if (out / "summary.json").exists():  # keep the command and time of the run that made the records
            old = json.loads((out / "summary.json").read_text())
            cmd, wall = old.get("command", cmd), old.get("wall_time")
        return _write_outputs(args, cfg, out, records, cmd, wall=wall)
    methods = _methods(args)
    jobs = [(args, cfg, pt, t, methods) for pt, t in _instances(args, cfg)]
    if rec_path.exists():
        rec_path.unlink()
    from .. import __version__

    versions = dict(optkit=__version__, numpy=np.__version__)
    records = []
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(total=len(jobs), disable=args.quiet, desc=f"mimo {args.experiment}") if tqdm else None
    pool_ctx = contextlib.nullcontext(None)
    if args.jobs > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        pool_ctx = cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn"))
    t_start = time.perf_counter()
    with pool_ctx as pool:
        it = map(_run_instance, jobs) if pool is None else pool.map(_run_instance, jobs)
        for recs in it:
            for r in recs:
                r["versions"] = versions
                append_jsonl(rec_path, r)
                records.append(r)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return _write_outputs(args, cfg, out, records, cmd, wall=time.perf_counter() - t_start)


def _write_outputs(args, cfg, out, records, cmd, wall):
    rows = _summaries(records)
    checks = _checks(rows)
    write_json(out / "summary.json", dict(command=cmd, machine=machine_info(), experiment=args.experiment,
                                          config=cfg, profile=args.profile, wall_time=wall,
                                          rows=rows, checks=checks, blas_threads=1, jobs=args.jobs))
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["method"])
        w.writeheader()
        for r in rows:
            w.writerow(r)
    table = _table(rows, checks, cmd)
    (out / "table.md").write_text(table)
    if not args.quiet:
        print(table)
    if args.plot:
        _plots(rows, out, args.experiment)
    if args.strict and any(not c["ok"] for c in checks):
        return 1
    return 0
