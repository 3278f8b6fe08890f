"""Helpers shared by the benchmarks: output folders, JSON/JSONL records, subprocess timing."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time

from .._result import _jsonable


def out_dir(args, module: str) -> pathlib.Path:
    path = pathlib.Path(args.out) if args.out else pathlib.Path("benchmarks") / module / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def write_json(path: pathlib.Path, obj) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


def append_jsonl(path: pathlib.Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(_jsonable(record)) + "\n")


def require(module: str, extra: str = "bench"):
    """Import an optional benchmark dependency or raise DependencyError naming the extra."""
    import importlib

    from .._errors import DependencyError

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError({"ot": "pot"}.get(module, module), extra) from exc


def _fmt(v, spec=".3g", none="-"):
    """A table cell: ``none`` for None, strings as they are, numbers with ``spec``."""
    if v is None:
        return none
    if isinstance(v, str):
        return v
    return format(v, spec)
