"""Compile time against network size: a float dense layer of N LIF neurons with `--fan-in`
inputs each (N = 10k .. 1M; at fan-in 64, 1M neurons are 64M synapses), compiled for
Loihi 2 with a small calibration set, and the growth exponent (slope of log time over
log synapses; 1.0 is linear).

    .venv/bin/python bench/bench_compile.py [--sizes 10000 100000 1000000] [--fan-in 64]

Prints the total and the quantisation step (passes/quantize.py) per size.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snncompile.ir import LIF, Dense, Graph, Input, Output  # noqa: E402
from snncompile.passes import quantize as Q  # noqa: E402
from snncompile.pipeline import compile_model  # noqa: E402


def network(n: int, fan_in: int, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1 / np.sqrt(fan_in), (n, fan_in)).astype(np.float32)
    return Graph.sequential([Input("in", shape=(fan_in,)), Dense("fc", weight=w),
                             LIF("lif", shape=(n,), du=0.1, dv=0.1, vth=1.0),
                             Output("out")])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+",
                    default=[10_000, 31_623, 100_000, 316_228, 1_000_000])
    ap.add_argument("--fan-in", type=int, default=64)
    ap.add_argument("--calib", type=int, default=4, help="calibration samples (8 steps)")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    x_cal = (rng.random((args.calib, 8, args.fan_in)) < 0.2).astype(np.uint8)
    real_q = Q.quantize
    rows = []
    print(f"{'neurons':>10}{'synapses':>14}{'compile s':>11}{'quantise s':>12}{'us/synapse':>12}")
    for n in args.sizes:
        graph = network(n, args.fan_in)
        spent = {"q": 0.0}

        def timed_quantize(*a, **k):
            t0 = time.perf_counter()
            try:
                return real_q(*a, **k)
            finally:
                spent["q"] += time.perf_counter() - t0
        import snncompile.pipeline as P
        P.quantize = timed_quantize
        t0 = time.perf_counter()
        compile_model(graph, "loihi2", calib=x_cal)
        total = time.perf_counter() - t0
        P.quantize = real_q
        syn = n * args.fan_in
        rows.append((syn, total))
        print(f"{n:>10,}{syn:>14,}{total:>11.2f}{spent['q']:>12.2f}{total / syn * 1e6:>12.4f}",
              flush=True)
    if len(rows) > 1:
        s, t = np.log([r[0] for r in rows]), np.log([r[1] for r in rows])
        slope = np.polyfit(s, t, 1)[0]
        s2, t2 = s[len(s) // 2:], t[len(t) // 2:]
        tail = np.polyfit(s2, t2, 1)[0] if len(s2) > 1 else float("nan")
        print(f"growth exponent (time ~ synapses^k): k = {slope:.2f} over all sizes, "
              f"{tail:.2f} over the larger half")
    return 0


if __name__ == "__main__":
    sys.exit(main())
