"""`optkit demo` tour of optkit.mimo (a few seconds)."""

import time

import numpy as np


def run():
    from threadpoolctl import threadpool_limits

    from optkit.mimo import baselines, feedback, random_channel, recover
    from optkit.mimo.metrics import nmse

    n_r, n_t, K, R, bits = 16, 32, 6, 300, 3
    ch = random_channel(n_r, n_t, K, rng=0)
    fb = feedback(ch.H, scheme=1, R=R, bits=bits, rng=1)
    print(f"{n_r}x{n_t} channel with K = {K} paths; UE feeds back R = {R} real measurements x {bits} bits = "
          f"{fb.payload_bits} bits (+ {fb.side_info_bits} bits of scale), 30 dB Gaussian dither added")
    print(f"{'method':>18} {'status':>10} {'iters':>5} {'NMSE':>10} {'NMSE dB':>8} {'time':>7}")
    with threadpool_limits(limits=1):
        for label, fn in (("REDEEM fast", lambda: recover(fb, K, mode="fast", polish=True)),
                          ("REDEEM stable", lambda: recover(fb, K, mode="stable")),
                          ("two-stage", lambda: baselines.two_stage(fb, K)),
                          ("OMP", lambda: baselines.omp(fb, K)),
                          ("LMMSE", lambda: baselines.lmmse(fb, K)),
                          ("oracle paths", lambda: baselines.oracle(fb, K, channel=ch))):
            t0 = time.perf_counter()
            res = fn()
            dt = time.perf_counter() - t0
            e = float(nmse(res.H_hat, ch.H))
            print(f"{label:>18} {res.status.name:>10} {res.nit:>5} {e:10.2e} {10 * np.log10(e):8.1f} {dt:6.2f}s")
    res = recover(fb, K, mode="fast", polish=True)
    order = np.argsort(ch.aoa)
    got = np.sort(np.degrees(res.paths["aoa"]))
    print("true AoA (deg):      ", np.array2string(np.degrees(ch.aoa[order]), precision=1))
    print("recovered AoA (deg): ", np.array2string(got, precision=1))
