"""LIBSVM / SVMlight text files, read into dense arrays (shared by optkit.nlp and optkit.bilevel)."""

from __future__ import annotations

import bz2
import gzip
import os

import numpy as np

from ._errors import InvalidProblemError

__all__ = ["load_libsvm"]


def _open_text(path):
    p = os.fspath(path)
    if p.endswith(".gz"):
        return gzip.open(p, "rt")
    if p.endswith(".bz2"):
        return bz2.open(p, "rt")
    return open(p)


def load_libsvm(path, n_features: int | None = None, *, binarize: bool = False):
    """Read a LIBSVM / SVMlight file (``label idx:val ...``, 1-based indices, ``#`` comments;
    ``.gz`` / ``.bz2`` allowed) into a dense ``X`` (N, n_features) and labels ``y`` (N,).

    ``n_features`` defaults to the largest index in the file. With ``binarize=True`` a file with
    exactly two distinct labels (e.g. mushrooms' {1, 2}) has them mapped to {-1, +1} (smaller ->
    -1). For small data sets only (the matrix is dense).
    """
    labels, rows, cols, vals = [], [], [], []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            try:
                labels.append(float(parts[0]))
            except ValueError:
                raise InvalidProblemError(
                    f"load_libsvm: line {lineno}: bad label {parts[0]!r}") from None
            r = len(labels) - 1
            for tok in parts[1:]:
                key, sep, val = tok.partition(":")
                if not sep:
                    raise InvalidProblemError(f"load_libsvm: line {lineno}: bad entry {tok!r}")
                if key == "qid":
                    continue
                try:
                    j = int(key)
                    v = float(val)
                except ValueError:
                    raise InvalidProblemError(f"load_libsvm: line {lineno}: bad entry {tok!r}") from None
                if j < 1:
                    raise InvalidProblemError(
                        f"load_libsvm: line {lineno}: feature index {j} < 1 (indices are 1-based)")
                rows.append(r)
                cols.append(j - 1)
                vals.append(v)
    if not labels:
        raise InvalidProblemError(f"load_libsvm: no samples in {os.fspath(path)!r}")
    max_idx = (max(cols) + 1) if cols else 0
    if n_features is None:
        n_features = max_idx
    elif isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features < max_idx:
        raise InvalidProblemError(
            f"load_libsvm: 'n_features' = {n_features!r} is smaller than the largest index {max_idx}")
    if n_features < 1:
        raise InvalidProblemError("load_libsvm: the file has no features; give 'n_features'")
    X = np.zeros((len(labels), int(n_features)))
    # duplicate indices in a row: the last one wins (as in LIBSVM's reader)
    X[np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)] = np.asarray(vals, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if binarize:
        u = np.unique(y)
        if u.size != 2:
            raise InvalidProblemError(f"load_libsvm: binarize=True needs exactly two labels, got {u.size}")
        y = np.where(y == u[1], 1.0, -1.0)
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise InvalidProblemError("load_libsvm: the file contains NaN or inf")
    return X, y
