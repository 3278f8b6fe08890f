"""``optkit.bilevel.solve``: one entry point for every bilevel method."""

from __future__ import annotations

from .._errors import InvalidProblemError

METHODS = ("barrier", "lvhba", "kkt")


def solve(problem, method: str = "barrier", *, x0=None, y0=None, tol=1e-6, max_iter=None, time_limit=None,
          verbose=0, callback=None, record_history=False, device=None, dtype=None, resolve_lower=True,
          **method_options):
    """Solve ``min_{x in X} F(x, y*(x))`` with coupled lower-level constraints.

    Parameters
    ----------
    problem : BilevelProblem
    method : {"barrier", "lvhba", "kkt"}
        ``"barrier"``: log-barrier smoothing with exact implicit hypergradients and ``t -> 0``
        (:class:`~optkit.bilevel.BarrierOptions`); ``"lvhba"``: the single-loop Hessian-free
        proximal-Lagrangian value-function method (:class:`~optkit.bilevel.lvhba.LVHBAOptions`);
        ``"kkt"``: exact lower-level solves with the active-set implicit gradient (baseline and
        reference).
    x0, y0 : array, optional
        Starts (default the problem's; y0 then ``y_interior(x0)`` or zeros). Torch tensors with a
        leading batch dimension solve a batch (barrier and lvhba; kkt runs one instance on the host).
    tol, max_iter, time_limit, verbose, callback, record_history
        As everywhere in optkit; ``max_iter`` defaults to 2000 (lvhba: 20000).
    device, dtype
        Move a solve to torch / choose its dtype.
    resolve_lower : bool
        After the clock stops, re-solve the lower level exactly at the final x (``fun_resolved``,
        ``y_resolved``, ``ll_gap``).
    **method_options
        Options of the method (unknown names raise TypeError).

    Returns
    -------
    BilevelResult
    """
    common = dict(tol=tol, time_limit=time_limit, verbose=verbose, callback=callback,
                  record_history=record_history)
    if max_iter is not None:
        common["max_iter"] = max_iter
    if method == "barrier":
        from .barrier import barrier

        return barrier(problem, x0=x0, y0=y0, device=device, dtype=dtype, resolve_lower=resolve_lower,
                       **common, **method_options)
    if method == "lvhba":
        from .lvhba import lvhba

        return lvhba(problem, x0=x0, y0=y0, device=device, dtype=dtype, resolve_lower=resolve_lower,
                     **common, **method_options)
    if method == "kkt":
        from .kkt import kkt

        return kkt(problem, x0=x0, y0=y0, device=device, dtype=dtype, resolve_lower=resolve_lower,
                   **common, **method_options)
    raise InvalidProblemError(f"method: expected one of {list(METHODS)}, got {method!r}")
