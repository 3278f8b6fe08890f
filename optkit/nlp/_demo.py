"""`optkit demo` tour of optkit.nlp (a few seconds)."""

import time

import numpy as np


def run():
    from optkit.nlp import solve
    from optkit.nlp.problems.hs_bt import get_problem
    from optkit.nlp.problems.pde import pde_qp

    print("Sketched Newton on the exact augmented Lagrangian, practical mode, from the standard starts")
    print(f"{'problem':>10} {'n':>3} {'m':>3} {'status':>10} {'it':>4} {'f':>15} {'f*':>15} "
          f"{'KKT':>9} {'K-prods':>8} {'time':>7}")
    for name in ("HS6", "HS7", "BT9", "HS61", "HS100LNP", "BYRDSPHR", "ORTHREGB", "MANCINONE"):
        P = get_problem(name)
        t0 = time.perf_counter()
        res = solve(P)
        dt = time.perf_counter() - t0
        fs = "-" if P.f_star is None else f"{P.f_star:15.9g}"
        print(f"{name:>10} {P.n:>3} {P.m:>3} {res.status.name:>10} {res.nit:>4} {res.fun:15.9g} {fs:>15} "
              f"{res.kkt_residual:9.1e} {res.n_kprod:>8} {dt:6.2f}s")
    print("\nThe authors' algorithm (mode='paper', Gaussian sketches) on HS7: "
          "the paper's 10 iterations, at the price of its inner rule")
    res = solve(get_problem("HS7"), mode="paper")
    print(f"  {res.status.name}, {res.nit} iterations, {res.n_inner} sketch steps, KKT {res.kkt_residual:.1e}")
    P = pde_qp(32)
    print(f"\nPDE-constrained QP, N = 32 (n = {P.n}, m = {P.m}), sparse K:")
    for solver in ("direct", "minres"):
        t0 = time.perf_counter()
        res = solve(P, linear_solver=solver)
        print(f"  {solver:>7}: {res.status.name}, {res.nit} iterations, f = {res.fun:.10g} "
              f"(f* {P.f_star:.10g}), {time.perf_counter() - t0:.2f}s")
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    from optkit.nlp import Problem
    from optkit.nlp.layers import EqualityConstrainedLayer

    B = 64
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(B, 3, generator=g, dtype=torch.float64)
    f = lambda x, th: 0.5 * ((x - th) ** 2).sum()
    c = lambda x, th: (x @ x - 1).reshape(1)
    t0 = time.perf_counter()
    res = solve(Problem.from_torch(f, c, torch.ones(B, 3, dtype=torch.float64), params=(theta,)))
    err = (res.x - theta / theta.norm(dim=1, keepdim=True)).abs().max().item()
    print(f"\ntorch batch of {B} sphere projections in one call: {sum(res.successes)}/{B} converged, "
          f"max error vs theta/||theta|| {err:.1e}, {time.perf_counter() - t0:.2f}s")
    layer = EqualityConstrainedLayer(f, c, n=3, m=1)
    th = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64, requires_grad=True)
    J = torch.autograd.functional.jacobian(lambda t: layer(t, x0=torch.ones(3, dtype=torch.float64)), th)
    xs = (th / th.norm()).detach()
    ref = (torch.eye(3, dtype=torch.float64) - torch.outer(xs, xs)) / th.norm().detach()
    print(f"EqualityConstrainedLayer: implicit dx*/dtheta vs (I - x x^T)/||theta||: "
          f"max error {np.abs((J - ref).numpy()).max():.1e}")
