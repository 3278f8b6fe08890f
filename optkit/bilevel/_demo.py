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
