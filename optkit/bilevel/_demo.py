"""`optkit demo` tour of optkit.bilevel (a few seconds)."""

import time

import numpy as np


def run():
    from optkit.bilevel import solve
    from optkit.bilevel.kkt import kkt_hypergradient
    from optkit.bilevel.problems import budget_lp, sum_coupled_qp

    print("Barrier method (t: 1e-1 -> 1e-6) on the closed-form cases of the spec")
    print(f"{'problem':>18} {'method':>8} {'status':>10} {'it':>4} {'Newton':>6} {'x - x*':>9} "
          f"{'F(x, y*(x))':>12} {'F*':>8} {'time':>7}")
    for P in (sum_coupled_qp(4), sum_coupled_qp(100), budget_lp()):
        for method in ("barrier", "kkt"):
            t0 = time.perf_counter()
            res = solve(P, method=method)
            dt = time.perf_counter() - t0
            err = np.abs(res.x - P.solution["x"]).max()
            print(f"{P.name:>18} {method:>8} {res.status.name:>10} {res.nit:>4} {res.n_ll_iter:>6} {err:9.1e} "
                  f"{res.fun_resolved:12.8f} {P.solution['F']:8.4g} {dt:6.2f}s")
    P = sum_coupled_qp(4)
    x = np.array([0.5, 0.0, 1.0, 2.0])
    exact, _ = kkt_hypergradient(P, x)
    print("\nHypergradient bias at x = (0.5, 0, 1, 2): ||grad phi_t - grad phi|| (active-set reference)")
    from optkit.bilevel import BarrierSolver

    for t in (1e-2, 1e-4, 1e-6):
        st = BarrierSolver(P, t0=t, t_min=t).init(x0=x)
        print(f"  t = {t:7.0e}: {np.linalg.norm(st.grad[0] - exact):.2e}")
    import warnings

    from optkit.bilevel.lvhba import StabilityWarning
    from optkit.bilevel.problems import gaffa_toy, llc_toy

    print("\nLV-HBA (single loop, Hessian-free) on the LV-HBA / BiC-GAFFA toys")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StabilityWarning)
        for P, opts in ((llc_toy(100), dict(preset="llc")), (gaffa_toy(1000), dict(preset="gaffa", max_iter=30000))):
            t0 = time.perf_counter()
            res = solve(P, method="lvhba", **opts)
            xs = P.solution["x"]
            err = np.linalg.norm(res.x - xs) / np.linalg.norm(xs)
            bound = " (multiplier at the box edge)" if res.extra["lambda_at_bound"][0] else ""
            print(f"  {P.name:>16}: {res.status.name}, {res.nit} iterations, ||x - x*||/||x*|| = {err:.1e}, "
                  f"lambda = {res.multipliers[0]:.4f}{bound}, {time.perf_counter() - t0:.2f}s")
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    from optkit.bilevel.layers import BarrierArgmin

    a = torch.tensor(1 + 3 * np.arange(4) / 3)
    layer = BarrierArgmin(lambda x, y: 0.5 * ((y - a) ** 2).sum(), lambda x, y: (y.sum() - x.sum()).reshape(1),
                          n_y=4, t=1e-2)
    x = torch.tensor([0.5, 0.0, 1.0, 2.0], dtype=torch.float64)
    J = torch.autograd.functional.jacobian(layer, x)
    n, t = 4, 1e-2
    r = float(x.sum() - a.sum())
    dtau = (-1 + r / np.sqrt(r * r + 4 * n * t)) / (2 * n)
    print(f"\nBarrierArgmin: implicit dy_t/dx vs the closed form -tau' 1 1^T: max error "
          f"{np.abs(J.numpy() + dtau).max():.1e}")
