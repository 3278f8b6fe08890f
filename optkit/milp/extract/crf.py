"""Linear-chain CRF tagger in numpy/scipy (spec milp 3.4 item 2).

Potentials: emission ``X @ W`` (binary sparse features x labels), transitions ``T[i, j]`` (label i -> j),
start and end vectors. Training minimises the L2-regularised negative log-likelihood
``sum_docs (log Z - score(gold)) + c2 * |theta|^2`` with L-BFGS (``scipy.optimize.minimize``); marginals
come from log-space forward-backward over a padded batch; decoding is Viterbi.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np

__all__ = [
    "LABELS",
    "Tagger",
    "crf_nll",
    "forward_backward",
    "load_tagger",
    "token_features",
    "train_tagger",
    "viterbi",
]

TYPES = ("VAR", "PARAM", "LIMIT", "CONST_DIR", "OBJ_DIR", "OBJ_NAME")
LABELS = ("O",) + tuple(f"{p}-{t}" for t in TYPES for p in ("B", "I"))
DEFAULT_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "nl4opt_crf.npz")
C2_GRID = (0.01, 0.1, 1.0)

_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "billion dozen half third thirds quarter quarters fourth fifth twice thrice double triple percent".split()
)
_PUNCT = frozenset("$%-',.?!;:()\"/&")


def _shape(word: str) -> str:
    out = []
    for ch in word:
        c = "X" if ch.isupper() else "x" if ch.isalpha() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def token_features(words: list[str]) -> list[list[str]]:
    """Feature strings of each token of one document (spec 3.4 item 2)."""
    low = [w.lower() for w in words]
    n = len(words)
    feats = []
    for i, w in enumerate(words):
        lw = low[i]
        f = ["bias", "w=" + lw, "shape=" + _shape(w)]
        for k in (1, 2, 3):
            if len(lw) >= k:
                f.append(f"p{k}={lw[:k]}")
                f.append(f"s{k}={lw[-k:]}")
        if w.isdigit():
            f.append("isdigit")
        if any(c.isdigit() for c in w):
            f.append("hasdigit")
        if lw in _NUMBER_WORDS:
            f.append("numword")
        if w == "$":
            f.append("dollar")
        if w == "%":
            f.append("percent")
        if all(c in _PUNCT for c in w):
            f.append("punct")
        if w.istitle():
            f.append("title")
        for off in (-3, -2, -1, 1, 2, 3):
            j = i + off
            if 0 <= j < n:
                f.append(f"{off}:w={low[j]}")
        if i == 0:
            f.append("BOS")
        if i == n - 1:
            f.append("EOS")
        feats.append(f)
    return feats


# ----------------------------------------------------------------------------- inference primitives


def _lse(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def forward_backward(emit, mask, trans, start, end):
    """Log-space forward-backward over a padded batch.

    ``emit`` (B, T, L) emission scores, ``mask`` (B, T) bool (valid positions form a prefix, length >= 1),
    ``trans`` (L, L), ``start``/``end`` (L,). Returns ``(logZ (B,), unary (B, T, L) log-marginals,
    pair (L, L) expected transition counts summed over the batch)``."""
    B, T, L = emit.shape
    alpha = np.empty((B, T, L))
    beta = np.empty((B, T, L))
    alpha[:, 0] = start + emit[:, 0]
    for t in range(1, T):
        new = _lse(alpha[:, t - 1, :, None] + trans[None], axis=1) + emit[:, t]
        alpha[:, t] = np.where(mask[:, t, None], new, alpha[:, t - 1])
    beta[:, T - 1] = end
    for t in range(T - 2, -1, -1):
        new = _lse(trans[None] + (emit[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
        beta[:, t] = np.where(mask[:, t + 1, None], new, beta[:, t + 1])
    logZ = _lse(alpha[:, T - 1] + end, axis=1)
    unary = alpha + beta - logZ[:, None, None]
    pair = np.zeros((L, L))
    for t in range(1, T):
        m = mask[:, t]
        if not m.any():
            break
        lp = alpha[m, t - 1, :, None] + trans[None] + (emit[m, t] + beta[m, t])[:, None, :] - logZ[m, None, None]
        pair += np.exp(lp).sum(axis=0)
    return logZ, unary, pair


def viterbi(emit, trans, start, end) -> list[int]:
    """Best label sequence for one document: ``emit`` (n, L)."""
    n, L = emit.shape
    score = start + emit[0]
    back = np.zeros((n, L), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + trans
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(L)] + emit[t]
    best = [int(np.argmax(score + end))]
    for t in range(n - 1, 0, -1):
        best.append(int(back[t, best[-1]]))
    return best[::-1]


# ----------------------------------------------------------------------------- objective


class _Batch:
    """Padded training data: sparse features X (N tokens, F), gold label ids, layout of docs."""

    def __init__(self, X, y, lengths):
        self.X = X.tocsr()
        self.XT = self.X.T.tocsr()
        self.y = np.asarray(y, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        B, T = len(lengths), int(max(lengths))
        self.mask = np.arange(T)[None, :] < self.lengths[:, None]
        self.rows, self.cols = np.nonzero(self.mask)  # row-major = document order of X rows
        offs = np.concatenate([[0], np.cumsum(self.lengths)])
        self.first = self.y[offs[:-1]]
        self.last = self.y[offs[1:] - 1]
        same = np.ones(len(self.y), dtype=bool)
        same[offs[:-1]] = False  # token starting a doc has no incoming transition
        idx = np.nonzero(same)[0]
        self.prev_y, self.next_y = self.y[idx - 1], self.y[idx]
        self.shape = (B, T)


def _unpack(theta, F, L):
    W = theta[: F * L].reshape(F, L)
    k = F * L
    trans = theta[k : k + L * L].reshape(L, L)
    start = theta[k + L * L : k + L * L + L]
    end = theta[k + L * L + L : k + L * L + 2 * L]
    return W, trans, start, end


def crf_nll(theta, batch: _Batch, c2: float, L: int):
    """L2-regularised NLL and its gradient (flat theta: W (F, L), trans (L, L), start (L,), end (L,))."""
    F = batch.X.shape[1]
    W, trans, start, end = _unpack(theta, F, L)
    E = batch.X @ W  # (N, L)
    B, T = batch.shape
    emit = np.zeros((B, T, L))
    emit[batch.rows, batch.cols] = E
    logZ, unary, pair = forward_backward(emit, batch.mask, trans, start, end)
    N = len(batch.y)
    gold = E[np.arange(N), batch.y].sum() + trans[batch.prev_y, batch.next_y].sum()
    gold += start[batch.first].sum() + end[batch.last].sum()
    nll = logZ.sum() - gold + c2 * float(theta @ theta)
    P = np.exp(unary[batch.rows, batch.cols])  # (N, L) marginals
    P[np.arange(N), batch.y] -= 1.0
    gW = batch.XT @ P
    gT = pair.copy()
    np.subtract.at(gT, (batch.prev_y, batch.next_y), 1.0)
    lengths = batch.lengths
    gS = np.exp(unary[:, 0]).sum(axis=0) - np.bincount(batch.first, minlength=L)
    gE = np.exp(unary[np.arange(B), lengths - 1]).sum(axis=0) - np.bincount(batch.last, minlength=L)
    grad = np.concatenate([gW.ravel(), gT.ravel(), gS, gE]) + 2.0 * c2 * theta
    return nll, grad


# ----------------------------------------------------------------------------- tagger


class Tagger:
    """A trained CRF: ``tag(tokens) -> list of BIO tags`` (tokens: strings or objects with ``.text``)."""

    def __init__(self, features: list[str], W, trans, start, end, labels=LABELS, meta=None):
        self.labels = tuple(labels)
        self.index = {f: i for i, f in enumerate(features)}
        self.features = list(features)
        self.W = np.asarray(W, dtype=np.float64)
        self.trans = np.asarray(trans, dtype=np.float64)
        self.start = np.asarray(start, dtype=np.float64)
        self.end = np.asarray(end, dtype=np.float64)
        self.meta = dict(meta or {})

    def emissions(self, words: list[str]) -> np.ndarray:
        E = np.zeros((len(words), len(self.labels)))
        for i, fs in enumerate(token_features(words)):
            ids = [self.index[f] for f in fs if f in self.index]
            if ids:
                E[i] = self.W[ids].sum(axis=0)
        return E

    def tag(self, tokens) -> list[str]:
        words = [t if isinstance(t, str) else t.text for t in tokens]
        if not words:
            return []
        path = viterbi(self.emissions(words), self.trans, self.start, self.end)
        return [self.labels[k] for k in path]

    def marginals(self, tokens) -> np.ndarray:
        """Posterior label probabilities per token, shape (n, n_labels) (forward-backward)."""
        words = [t if isinstance(t, str) else t.text for t in tokens]
        if not words:
            return np.zeros((0, len(self.labels)))
        E = self.emissions(words)[None]
        _, unary, _ = forward_backward(E, np.ones(E.shape[:2], dtype=bool), self.trans, self.start, self.end)
        return np.exp(unary[0])

    def save(self, path) -> None:
        np.savez_compressed(
            path,
            features=np.array(self.features),
            labels=np.array(self.labels),
            W=self.W.astype(np.float32),
            trans=self.trans.astype(np.float32),
            start=self.start.astype(np.float32),
            end=self.end.astype(np.float32),
            meta=np.array(repr(self.meta)),
        )


def load_tagger(path=None) -> Tagger:
    """Load a tagger saved by :func:`train_tagger`; default: the weights shipped inside the package."""
    path = DEFAULT_WEIGHTS if path is None else os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"tagger weights not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        import ast

        meta = ast.literal_eval(str(z["meta"])) if "meta" in z else {}
        return Tagger([str(f) for f in z["features"]], z["W"], z["trans"], z["start"], z["end"],
                      labels=[str(s) for s in z["labels"]], meta=meta)


def _featurise(docs, index=None, min_count=2):
    feats = [token_features(d.tokens) for d in docs]
    if index is None:
        cnt = Counter(f for doc in feats for fs in doc for f in fs)
        kept = sorted(f for f, c in cnt.items() if c >= min_count)
        index = {f: i for i, f in enumerate(kept)}
    from scipy import sparse

    rows, cols = [], []
    r = 0
    for doc in feats:
        for fs in doc:
            for f in fs:
                j = index.get(f)
                if j is not None:
                    rows.append(r)
                    cols.append(j)
            r += 1
    X = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(r, len(index)))
    return X, index


def _fit(batch, F, L, c2, max_iter, theta0=None):
    from scipy.optimize import minimize

    theta0 = np.zeros(F * L + L * L + 2 * L) if theta0 is None else theta0
    res = minimize(crf_nll, theta0, args=(batch, c2, L), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "maxcor": 10, "gtol": 1e-4})
    return res


def train_tagger(train_path, dev_path=None, out_path=None, *, c2=None, max_iter=150, min_count=2, verbose=0):
    """Train the CRF on an NL4Opt NER file; ``c2=None`` tunes it on ``dev_path`` over {0.01, 0.1, 1}
    (dev F1). Saves to ``out_path`` (if given) and returns ``(Tagger, info)``. Never pass a test split."""
    from ..datasets import load_nl4opt_ner
    from ..scoring import ner_score

    t0 = time.perf_counter()
    train = load_nl4opt_ner(train_path)
    dev = load_nl4opt_ner(dev_path) if dev_path is not None else None
    lab = {s: i for i, s in enumerate(LABELS)}
    y = [lab[t] for d in train for t in d.tags]
    X, index = _featurise(train, min_count=min_count)
    batch = _Batch(X, y, [len(d.tokens) for d in train])
    F, L = X.shape[1], len(LABELS)
    feats = sorted(index, key=index.get)
    grid = [c2] if c2 is not None else list(C2_GRID)
    if c2 is None and dev is None:
        raise ValueError("dev_path: required to tune c2 (or pass c2=)")
    best = None
    scores = {}
    for c in grid:
        res = _fit(batch, F, L, c, max_iter)
        W, trans, start, end = _unpack(res.x, F, L)
        tagger = Tagger(feats, W, trans, start, end)
        f1 = None
        if dev is not None:
            f1 = ner_score([tagger.tag(d.tokens) for d in dev], dev)["f1"]
        scores[c] = f1
        if verbose:
            print(f"c2={c}: nit={res.nit} nll={res.fun:.2f} dev_f1={f1}")
        if best is None or (f1 is not None and f1 > best[0]):
            best = (f1 if f1 is not None else -1.0, c, tagger, res.nit)
    _, c_best, tagger, nit = best
    info = {"c2": c_best, "dev_f1": scores[c_best], "dev_f1_by_c2": scores, "n_features": F, "nit": nit,
            "train_seconds": time.perf_counter() - t0, "max_iter": max_iter}
    tagger.meta = info
    if out_path is not None:
        tagger.save(out_path)
    return tagger, info
