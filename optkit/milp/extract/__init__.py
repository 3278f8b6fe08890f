"""Offline extraction: tokeniser and CRF tagger (spec milp 3.4)."""

from .crf import LABELS, Tagger, load_tagger, train_tagger
from .tokenize import Token, sentences, tokenize

__all__ = ["LABELS", "Tagger", "Token", "load_tagger", "sentences", "tokenize", "train_tagger"]
