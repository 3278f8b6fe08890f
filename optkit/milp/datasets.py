"""Loaders for the NL4Opt files shipped beside the project (spec milp 2 and 5).

The installed package never looks for data on its own: :func:`default_data_dir` takes an explicit path or the
environment variable ``OPTKIT_NL4OPT_DIR`` and nothing else. The data are MIT-licensed, (c) 2022 Huawei
Technologies (``LICENSE`` in the data directory).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from .._errors import InvalidProblemError

__all__ = ["ENV_VAR", "NERDocument", "default_data_dir", "load_nl4opt_generation", "load_nl4opt_ner"]

ENV_VAR = "OPTKIT_NL4OPT_DIR"


class NERDocument(NamedTuple):
    """One document of an NL4Opt NER file: parallel lists of tokens and BIO tags."""

    tokens: list[str]
    tags: list[str]


def default_data_dir(path: str | os.PathLike | None = None) -> str:
    """Directory holding the NL4Opt files: ``path`` if given, else ``$OPTKIT_NL4OPT_DIR``.

    Raises ``FileNotFoundError`` (saying how to set it) when neither is given or the directory is missing;
    no other location is searched.
    """
    source = "path argument"
    if path is None:
        path = os.environ.get(ENV_VAR) or None
        source = f"environment variable {ENV_VAR}"
        if path is None:
            raise FileNotFoundError(
                f"NL4Opt data directory not set: pass path=... or set the environment variable {ENV_VAR} "
                "to the folder holding generation_dev.jsonl, ner_train.txt and ner_dev.txt "
                "(in the optkit repository: ../shared/data/nl4opt)")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"NL4Opt data directory {path!r} (from the {source}) does not exist; set {ENV_VAR} "
                                "or pass path=... pointing at the folder with generation_dev.jsonl")
    return path


def load_nl4opt_generation(path: str | os.PathLike) -> list[dict]:
    """Read an NL4Opt generation file (one ``{"<input_hash>": record}`` JSON object per line).

    Returns the records in file order, each a new dict with the record's keys plus ``id`` = the top-level
    key (a string). Blank lines are skipped; a malformed line raises :class:`InvalidProblemError` naming it.
    """
    path = os.fspath(path)
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{os.path.basename(path)}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidProblemError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict) or len(obj) != 1:
                raise InvalidProblemError(f"{where}: expected one {{\"<id>\": record}} object per line")
            (key, rec), = obj.items()
            if not isinstance(rec, dict):
                raise InvalidProblemError(f"{where}: record {key!r} is not an object")
            records.append({**rec, "id": str(key)})
    return records


def load_nl4opt_ner(path: str | os.PathLike) -> list[NERDocument]:
    """Read an NL4Opt NER file: one token per line, tab-separated ``token _ _ TAG``; documents separated by
    blank lines; ``-DOCSTART-`` lines are markers, not tokens. Returns one :class:`NERDocument` per
    document (empty documents are not returned). A line without four columns raises
    :class:`InvalidProblemError` naming the line."""
    path = os.fspath(path)
    docs: list[NERDocument] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush():
        if tokens:
            docs.append(NERDocument(list(tokens), list(tags)))
        tokens.clear()
        tags.clear()

    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            cols = line.split("\t")
            if len(cols) != 4:
                cols = line.split()
            if len(cols) != 4:
                raise InvalidProblemError(
                    f"{os.path.basename(path)}:{lineno}: expected 4 columns 'token _ _ TAG', got {len(cols)}")
            if cols[0] == "-DOCSTART-":
                flush()
                continue
            tokens.append(cols[0])
            tags.append(cols[3])
    flush()
    return docs
