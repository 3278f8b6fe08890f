"""``optkit milp formulate|solve|evaluate|train-tagger`` (spec milp 5).

Exit codes: 0 ok (any solver status), 1 with ``--strict`` unless CONVERGED, 2 bad input, 3 missing dependency,
4 LLM transport failure. The API key of an HTTP backend is read only from ``OPTKIT_LLM_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .._errors import DependencyError, InvalidProblemError, LLMError

__all__ = ["add_parser", "add_arguments", "main", "format_lp"]

EXIT_OK, EXIT_CHECK, EXIT_INPUT, EXIT_DEPENDENCY, EXIT_SERVICE = 0, 1, 2, 3, 4
API_KEY_ENV = "OPTKIT_LLM_API_KEY"


# ------------------------------------------------------------------------------------------------ helpers
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _guard(handler):
    """Map errors to exit codes with a one-line message, whichever parser dispatches to the handler."""

    def run(args) -> int:
        try:
            return int(handler(args) or 0)
        except DependencyError as exc:
            print(f"optkit milp: {_one_line(exc)}", file=sys.stderr)
            return EXIT_DEPENDENCY
        except LLMError as exc:
            print(f"optkit milp: LLM request failed: {_one_line(exc)}", file=sys.stderr)
            return EXIT_SERVICE
        except (InvalidProblemError, ValueError, TypeError, FileNotFoundError, IsADirectoryError,
                NotImplementedError) as exc:
            print(f"optkit milp: bad input: {_one_line(exc)}", file=sys.stderr)
            return EXIT_INPUT

    run.__name__ = getattr(handler, "__name__", "run")
    return run


def _json_safe(obj):
    import numpy as np

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def _write(text: str, out) -> None:
    if out in (None, "-"):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")


def _status_name(status) -> str:
    from .._result import Status

    return Status(status).name if status is not None else "NONE"


def _exit_for(status, strict: bool) -> int:
    from .._result import Status

    if strict and (status is None or Status(status) != Status.CONVERGED):
        return EXIT_CHECK
    return EXIT_OK


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def _lp_name(name: str) -> str:
    """LP-file names cannot hold spaces or operators; readable substitutes keep them recognisable."""
    out = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in str(name))
    return out if out and not out[0].isdigit() and out[0] != "." else "x_" + out


def format_lp(lf) -> str:
    """A readable CPLEX-LP-like text of a :class:`~optkit.milp.build.LinearForm` (names sanitised)."""
    import numpy as np

    names = [_lp_name(n) for n in lf.names]
    seen: dict[str, int] = {}
    for j, n in enumerate(names):  # sanitising can merge distinct names
        if n in seen:
            names[j] = f"{n}_{j}"
        seen[names[j]] = j

    def expr(coefs) -> str:
        parts = []
        for j, a in coefs:
            if a == 0:
                continue
            sign = "-" if a < 0 else "+"
            mag = abs(a)
            term = names[j] if mag == 1 else f"{_fmt(mag)} {names[j]}"
            parts.append(f"{sign} {term}")
        if not parts:
            return "0"
        s = " ".join(parts)
        return s[2:] if s.startswith("+ ") else "-" + s[1:]

    lines = [f"\\ optkit.milp linear form (integrality policy {lf.policy!r})",
             "Maximize" if lf.sense == "maximize" else "Minimize"]
    obj = expr([(j, float(lf.c[j])) for j in range(lf.n)])
    if lf.c0:
        obj += f" {'+' if lf.c0 > 0 else '-'} {_fmt(abs(lf.c0))}"
    lines += [f" obj: {obj}", "Subject To"]
    A = lf.A.tocsr()
    for i in range(lf.m):
        lo, hi = float(lf.row_lb[i]), float(lf.row_ub[i])
        e = expr(zip(A.indices[A.indptr[i]:A.indptr[i + 1]].tolist(), A.data[A.indptr[i]:A.indptr[i + 1]].tolist()))
        tag = f"c{int(lf.row_origin[i])}_r{i}" if len(lf.row_origin) == lf.m else f"r{i}"
        if lo == hi:
            lines.append(f" {tag}: {e} = {_fmt(hi)}")
            continue
        if math.isfinite(lo):
            lines.append(f" {tag}{'_lo' if math.isfinite(hi) else ''}: {e} >= {_fmt(lo)}")
        if math.isfinite(hi):
            lines.append(f" {tag}{'_hi' if math.isfinite(lo) else ''}: {e} <= {_fmt(hi)}")
    bounds = []
    integ = np.asarray(lf.integrality).astype(bool)
    binary = [j for j in range(lf.n) if integ[j] and lf.col_lb[j] == 0 and lf.col_ub[j] == 1]
    for j in range(lf.n):
        if j in binary:
            continue
        lo, hi = float(lf.col_lb[j]), float(lf.col_ub[j])
        if lo == 0 and not math.isfinite(hi):
            continue  # the LP-format default
        lo_s = _fmt(lo) if math.isfinite(lo) else "-inf"
        hi_s = _fmt(hi) if math.isfinite(hi) else "+inf"
        bounds.append(f" {lo_s} <= {names[j]} <= {hi_s}")
    if bounds:
        lines += ["Bounds", *bounds]
    general = [names[j] for j in range(lf.n) if integ[j] and j not in binary]
    if general:
        lines += ["General", " " + " ".join(general)]
    if binary:
        lines += ["Binary", " " + " ".join(names[j] for j in binary)]
    lines.append("End")
    return "\n".join(lines) + "\n"


def _model_summary(model) -> list[str]:
    """The IR in a compact algebraic form (numbers as written)."""
    o = model.objective
    if o.type == "objvar" or not o.terms:
        obj = " + ".join(o.vars) if o.vars else "0"
    else:
        obj = " + ".join(f"{v} {k}" for k, v in o.terms.items())
    lines = [f"  {o.sense} {obj}" + (f"   ({o.name})" if o.name else "")]
    lines.append("  subject to")
    for i, c in enumerate(model.constraints):
        d = c.model_dump(exclude_none=True, exclude={"id", "direction", "text", "confidence"})
        ctype = d.pop("type")
        lines.append(f"   [{i}] {ctype}: " + ", ".join(f"{k}={v}" for k, v in d.items()))
    lines.append("  variables: " + ", ".join(f"{v.name} ({v.domain})" for v in model.variables))
    return lines


# ------------------------------------------------------------------------------------------------ formulate
def _backend(args):
    if args.backend == "rules":
        if args.base_url or args.model:
            raise ValueError("--base-url/--model: only used with --backend http")
        return "rules"
    if not args.base_url or not args.model:
        raise ValueError("--backend http: needs --base-url URL and --model NAME")
    from .llm import OpenAICompatibleBackend

    # the key comes only from the environment: a command-line flag would leak into shell history and ps
    return OpenAICompatibleBackend(args.base_url, args.model, api_key=os.environ.get(API_KEY_ENV) or None,
                                   timeout=args.llm_timeout, max_retries=args.llm_retries)


def _read_text(args) -> str:
    if args.file is not None:
        if args.text is not None:
            raise ValueError("TEXT and --file: give one of them")
        if args.file == "-":
            return sys.stdin.read()
        if not os.path.isfile(args.file):
            raise FileNotFoundError(f"--file: no such file: {args.file}")
        with open(args.file, encoding="utf-8") as fh:
            return fh.read()
    if args.text is None:
        raise ValueError("TEXT: give the problem text or --file F")
    return args.text


def _cmd_formulate(args) -> int:
    from .formulate import formulate

    text = _read_text(args)
    if not text.strip():
        raise InvalidProblemError("text: empty problem text")
    backend = _backend(args)
    kw = {"entities": args.entities} if args.entities else {}
    res = formulate(text, backend=backend, integrality=args.integrality, solve=not args.no_solve,
                    time_limit=args.time_limit, **kw)
    model = res.model
    if args.format == "json":
        sol = res.solution
        out = {"status": _status_name(res.status), "message": res.message, "fun": res.fun,
               "values": dict(sol.values) if sol is not None else None,
               "model": None if model is None else model.model_dump(mode="json", exclude_none=True),
               "diagnostics": [{"code": d.code, "severity": d.severity, "message": d.message}
                               for d in res.diagnostics],
               "phases": dict(res.phases or {}), "backend": res.backend, "n_llm_calls": res.n_llm_calls,
               "n_repairs": res.n_repairs}
        _write(json.dumps(_json_safe(out), indent=2, allow_nan=False), args.output)
    elif args.format == "lp":
        if model is None:
            print(f"optkit milp: no model to write ({res.message})", file=sys.stderr)
        else:
            from .build import to_linear_form

            policy = "ir" if args.integrality == "auto" else args.integrality
            _write(format_lp(to_linear_form(model, integrality=policy)), args.output)
    else:
        lines = [f"status: {_status_name(res.status)}" + (f" ({res.message})" if res.message else "")]
        if res.fun is not None and res.solution is not None:
            lines.append(f"objective: {_fmt(float(res.fun))}")
            lines += [f"  {k} = {_fmt(v)}" for k, v in res.solution.values.items()]
        if model is not None:
            lines.append("model:")
            lines += _model_summary(model)
        for d in res.diagnostics:
            lines.append(f"{d.severity}: {d.code}: {d.message}")
        _write("\n".join(lines), args.output)
    return _exit_for(res.status, args.strict)


# ------------------------------------------------------------------------------------------------ solve
def _load_model_file(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL: no such file: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            obj = json.load(fh)
        except json.JSONDecodeError as exc:
            raise InvalidProblemError(f"MODEL: {path} is not valid JSON ({exc.msg})") from None
    # the JSON written by `formulate --format json` wraps the IR; accept it as well
    if isinstance(obj, dict) and "model" in obj and "variables" not in obj:
        if obj["model"] is None:
            raise InvalidProblemError(f"MODEL: {path} holds no model (status {obj.get('status')})")
        obj = obj["model"]
    return obj


def _cmd_solve(args) -> int:
    from .solve import solve

    model = _load_model_file(args.model)
    res = solve(model, method=args.method, integrality=args.integrality, time_limit=args.time_limit)
    if args.json:
        out = {"status": _status_name(res.status), "success": bool(res.success), "message": res.message,
               "fun": res.fun, "values": dict(res.values), "raw_status": res.raw_status, "mip_gap": res.mip_gap,
               "dual_bound": res.dual_bound, "integrality": res.integrality, "method": res.method,
               "wall_time": res.wall_time}
        if args.integrality == "both":
            out["lp_fun"] = res.lp_fun
            out["lp_status"] = None if res.lp_status is None else _status_name(res.lp_status)
        print(json.dumps(_json_safe(out), indent=2, allow_nan=False))
    else:
        print(f"status: {_status_name(res.status)}" + (f" ({res.message})" if res.message else ""))
        if res.fun is not None:
            print(f"objective: {_fmt(float(res.fun))}")
            for k, v in res.values.items():
                print(f"  {k} = {_fmt(v)}")
        if args.integrality == "both" and res.lp_fun is not None:
            print(f"LP relaxation: {_fmt(float(res.lp_fun))}")
    return _exit_for(res.status, args.strict)


# ------------------------------------------------------------------------------------------------ evaluate
def _cmd_evaluate(args) -> int:
    from .evaluate import evaluate

    if not os.path.isfile(args.data):
        raise FileNotFoundError(f"--data: no such file: {args.data}")
    if args.formulator == "http":
        args.backend = "http"
        formulator = _backend(args)
    else:
        if args.base_url or args.model:
            raise ValueError("--base-url/--model: only used with --formulator http")
        formulator = args.formulator
    progress = True if args.progress else (False if args.no_progress else None)
    rep = evaluate(args.data, formulator=formulator, entities=args.entities, metrics=args.metrics,
                   integrality=args.integrality, tolerance=args.tolerance, references=args.references,
                   processes=args.processes, progress=progress)
    print(rep.summary())
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(_json_safe(rep.to_dict()), fh, indent=1, allow_nan=False)
    if args.records:
        rep.to_jsonl(args.records)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ train-tagger
def _cmd_train_tagger(args) -> int:
    from .extract.crf import train_tagger

    for flag, path in (("--train", args.train), ("--dev", args.dev)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{flag}: no such file: {path}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"--out: directory does not exist: {out_dir}")
    if args.max_iter < 1:
        raise ValueError(f"--max-iter: expected >= 1, got {args.max_iter}")
    if args.c2 is not None and not args.c2 > 0:
        raise ValueError(f"--c2: expected > 0, got {args.c2}")
    _, info = train_tagger(args.train, args.dev, args.out, c2=args.c2, max_iter=args.max_iter,
                           verbose=int(args.verbose))
    # np.savez appends .npz to a name without it; report the file actually written
    written = args.out if args.out.endswith(".npz") else args.out + ".npz"
    f1 = info.get("dev_f1")
    print(f"tagger written to {written}: c2={info['c2']} dev_f1={'n/a' if f1 is None else f'{f1:.4f}'} "
          f"features={info['n_features']} iterations={info['nit']} ({info['train_seconds']:.1f} s)")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ parser
def _comma(allowed):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}; got {text!r}")
        return tuple(items)
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def _add_llm_flags(p) -> None:
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    p.add_argument("--model", default=None, help="model name sent to the endpoint")
    p.add_argument("--llm-timeout", type=_positive_float, default=60.0, help="seconds per HTTP request")
    p.add_argument("--llm-retries", type=int, default=3, help="retries of 429/5xx/connection resets")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``milp`` and its subcommands on the top-level ``optkit`` subparsers."""
    p = subparsers.add_parser("milp", help="natural-language problems -> MILP IR -> HiGHS",
                              description=__doc__.splitlines()[0])
    p.set_defaults(func=lambda args: (p.print_help(), EXIT_INPUT)[1])
    sub = p.add_subparsers(dest="milp_command")

    f = sub.add_parser("formulate", help="formulate (and solve) a word problem")
    f.add_argument("text", nargs="?", default=None, help="problem text (or --file)")
    f.add_argument("--file", default=None, help="read the text from a file ('-' = stdin)")
    f.add_argument("--backend", choices=["rules", "http"], default="rules",
                   help=f"offline rules or an OpenAI-compatible HTTP endpoint (key from ${API_KEY_ENV})")
    _add_llm_flags(f)
    f.add_argument("--entities", choices=["tagger"], default=None, help="entity source for the rules backend")
    f.add_argument("--integrality", choices=["auto", "ir", "all-integer", "continuous"], default="auto")
    f.add_argument("--time-limit", type=_positive_float, default=None, help="seconds for the solve")
    f.add_argument("--no-solve", action="store_true", help="build the IR only")
    f.add_argument("--format", choices=["summary", "json", "lp"], default="summary")
    f.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    f.add_argument("--strict", action="store_true", help="exit 1 unless the status is CONVERGED")
    f.set_defaults(func=_guard(_cmd_formulate))

    s = sub.add_parser("solve", help="solve a JSON IR model (or a formulate --format json output)")
    s.add_argument("model", help="MODEL.json")
    s.add_argument("--method", choices=["highspy", "pyomo"], default="highspy")
    s.add_argument("--integrality", choices=["ir", "all-integer", "continuous", "both"], default="ir")
    s.add_argument("--time-limit", type=_positive_float, default=None, help="seconds")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--strict", action="store_true", help="exit 1 unless the status is CONVERGED")
    s.set_defaults(func=_guard(_cmd_solve))

    e = sub.add_parser("evaluate", help="declaration, component and execution accuracy on NL4Opt records")
    e.add_argument("--data", required=True, help="NL4Opt generation JSONL file")
    e.add_argument("--formulator", choices=["rules", "gold", "http"], default="rules")
    _add_llm_flags(e)
    e.add_argument("--entities", choices=["gold", "gold-spans", "tagger"], default="gold")
    e.add_argument("--metrics", type=_comma(("declaration", "components", "execution")),
                   default=("declaration", "components", "execution"), help="comma list")
    e.add_argument("--integrality", type=_comma(("all-integer", "continuous", "ir", "either")),
                   default=("all-integer", "continuous", "ir"), help="comma list of policies")
    e.add_argument("--tolerance", type=_comma(("strict", "loose")), default=("strict", "loose"), help="comma list")
    e.add_argument("--references", default=None, help="JSON/JSONL references (default: gold declarations solved)")
    e.add_argument("--out", default=None, help="write the full report (JSON)")
    e.add_argument("--records", default=None, help="write one JSON line per problem")
    e.add_argument("--processes", type=_positive_int, default=1)
    g = e.add_mutually_exclusive_group()
    g.add_argument("--progress", action="store_true", help="always show the progress bar")
    g.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    e.set_defaults(func=_guard(_cmd_evaluate))

    t = sub.add_parser("train-tagger", help="train the CRF entity tagger on NL4Opt NER files")
    t.add_argument("--train", required=True, help="NER training file (never a test split)")
    t.add_argument("--dev", default=None, help="NER dev file (tunes c2 when --c2 is not given)")
    t.add_argument("--out", required=True, help="weights file (.npz)")
    t.add_argument("--c2", type=float, default=None, help="L2 weight (default: tuned on --dev)")
    t.add_argument("--max-iter", type=int, default=150)
    t.add_argument("--verbose", action="store_true")
    t.set_defaults(func=_guard(_cmd_train_tagger))
    return p


#: the brief's name for the registration hook
add_arguments = add_parser


def main(argv=None) -> int:
    """``python -m optkit.milp._cli ...`` without the top-level parser (same exit codes)."""
    parser = argparse.ArgumentParser(prog="optkit")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["milp", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
