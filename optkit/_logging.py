"""The ``optkit`` logger. Library code never prints; ``verbose`` attaches a temporary handler."""

from __future__ import annotations

import contextlib
import logging
import sys

logger = logging.getLogger("optkit")
logger.addHandler(logging.NullHandler())

_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.INFO, 3: logging.DEBUG}


def get_logger(name: str | None = None) -> logging.Logger:
    return logger if not name else logger.getChild(name)


@contextlib.contextmanager
def verbosity(verbose: int, stream=None):
    """Within the block, log optkit messages at the level of ``verbose`` (0-3) to ``stream``.

    0 adds nothing (warnings go to the user's own logging setup); 1 prints a summary line, 2 an
    iteration table, 3 debug detail. Output goes to stderr by default so stdout stays clean.
    """
    if not verbose:
        yield logger
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(_LEVELS.get(int(verbose), logging.DEBUG))
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def warn(message: str, category=UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside optkit (the user's call, however deep)."""
    import os
    import sys
    import warnings

    pkg = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)

