"""Self-check diagnostics after solving (spec milp 3.7)."""

from __future__ import annotations

import dataclasses

__all__ = ["Diagnostic"]


@dataclasses.dataclass
class Diagnostic:
    """A note from the pipeline: ``code``, ``severity`` (info/warning/error), ``message``, ``constraints``."""

    code: str
    severity: str = "warning"
    message: str = ""
    constraints: list = dataclasses.field(default_factory=list)
