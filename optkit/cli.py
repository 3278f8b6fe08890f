"""The ``optkit`` command line (also ``python -m optkit``).

Subcommands: ``info``, ``demo``, ``bench <module>`` (``bench --list``), and one subcommand per
module that ships ``optkit/<module>/_cli.py``. Exit codes (DESIGN.md §7): 0 ok, 1 failed check
(``--strict``), 2 bad input, 3 missing dependency, 4 external service failure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import platform
import sys
import time

from . import MODULES, __version__
from ._errors import DependencyError, InvalidProblemError, LLMError

EXIT_OK, EXIT_CHECK, EXIT_INPUT, EXIT_DEPENDENCY, EXIT_SERVICE = 0, 1, 2, 3, 4

#: benchmark name -> module implementing ``add_arguments(parser)`` and ``run(args) -> int``
BENCHMARKS = {mod: f"optkit.bench.{mod}" for mod in MODULES
              if importlib.util.find_spec(f"optkit.bench.{mod}") is not None}


OPTIONAL = ("numpy", "scipy", "torch", "cvxpy", "pyomo", "highspy", "ot", "matplotlib", "tqdm", "networkx",
            "pydantic", "cyipopt", "optiprofiler", "hypothesis", "pytest")


def _comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seed_count(text: str) -> int:
    """``N`` seeds (0 .. N-1), or the range ``0-K`` (K + 1 seeds), as some specs write it."""
    text = text.strip()
    if "-" in text:
        lo, _, hi = text.partition("-")
        if lo.strip() != "0" or not hi.strip().isdigit():
            raise argparse.ArgumentTypeError(f"--seeds: expected N or 0-K, got {text!r}")
        return int(hi) + 1
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected N or 0-K, got {text!r}") from None


def add_common_bench_flags(p: argparse.ArgumentParser) -> None:
    """Flags every benchmark understands (DESIGN.md §7)."""
    p.add_argument("--methods", type=_comma_list, default=None, help="comma list of methods")
    p.add_argument("--seeds", type=_seed_count, default=1, help="number of seeds from 0 (N), or 0-K")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per solve")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--out", default=None, help="output folder (default benchmarks/<module>/results)")
    p.add_argument("--plot", action="store_true", help="write PNG figures")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")


def _cmd_info(args) -> int:
    print(f"optkit {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    for name in OPTIONAL:
        spec = importlib.util.find_spec(name)
        if spec is None:
            print(f"  {name:<11} not installed")
            continue
        dist = {"ot": "POT", "cyipopt": "cyipopt-wheels"}.get(name, name)
        try:
            ver = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            ver = "installed"
        print(f"  {name:<11} {ver}")
    if importlib.util.find_spec("torch") is not None:
        import torch

        cuda = torch.cuda.is_available()
        dev = f" ({torch.cuda.get_device_name(0)})" if cuda else ""
        print(f"  torch CUDA available: {cuda}{dev}")
    print(f"modules: {', '.join(MODULES)}")
    return EXIT_OK


def _cmd_demo(args) -> int:
    wanted = args.modules or list(MODULES)
    for mod in wanted:
        if mod not in MODULES:
            print(f"optkit demo: unknown module {mod!r}; available: {', '.join(MODULES)}",
                  file=sys.stderr)
            return EXIT_INPUT
    for mod in wanted:
        print(f"=== optkit.{mod} ===")
        t0 = time.perf_counter()
        importlib.import_module(f"optkit.{mod}._demo").run()
        print(f"(optkit.{mod} demo took {time.perf_counter() - t0:.1f} s)\n")
    return EXIT_OK


def _cmd_bench(args) -> int:
    if args.list or args.module is None:
        for name, path in BENCHMARKS.items():
            print(f"{name:<10} {importlib.import_module(path).__doc__.strip().splitlines()[0]}")
        return EXIT_OK
    return args.bench_run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"optkit {__version__}")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("info", help="versions, optional dependencies, CUDA availability")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="a short tour of every module")
    p.add_argument("modules", nargs="*", help="modules to show (default: all)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bench", help="run a module's benchmark against its peers")
    p.add_argument("--list", action="store_true", help="list the benchmarks")
    p.set_defaults(func=_cmd_bench, module=None)
    bench_sub = p.add_subparsers(dest="module")
    for name, path in BENCHMARKS.items():
        mod = importlib.import_module(path)
        bp = bench_sub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0])
        add_common_bench_flags(bp)
        mod.add_arguments(bp)
        bp.set_defaults(bench_run=mod.run, list=False)

    for mod in MODULES:
        if importlib.util.find_spec(f"optkit.{mod}._cli") is not None:
            importlib.import_module(f"optkit.{mod}._cli").add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_INPUT
    try:
        return int(args.func(args) or 0)
    except DependencyError as exc:
        print(f"optkit: {exc}", file=sys.stderr)
        return EXIT_DEPENDENCY
    except (InvalidProblemError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"optkit: bad input: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except LLMError as exc:
        print(f"optkit: external service failed: {exc}", file=sys.stderr)
        return EXIT_SERVICE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
