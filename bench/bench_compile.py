"""Compile time against network size: a float dense layer of N LIF neurons with `--fan-in`
inputs each (N = 10k .. 1M; at fan-in 64, 1M neurons are 64M synapses), compiled for
Loihi 2 with a small calibration set, and the growth exponent (slope of log time over
log synapses; 1.0 is linear).

    .venv/bin/python bench/bench_compile.py [--sizes 10000 100000 1000000] [--fan-in 64]

Prints per size the total wall time, the process CPU time (all threads; on a shared machine
wall time also counts waiting for a core), and the wall time of each compile stage as
`compile_model` reports them (snncompile.progress.Stages): calibration's float model, the
quantisation (passes/quantize.py), calibration's simulation of the compiled network, the
mapping onto cores, and the rest; with the load average before and after the run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snncompile.ir import LIF, Dense, Graph, Input, Output  # noqa: E402
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
    from snncompile import progress
    from snncompile.pipeline import FidelityWarning
    # the random layer's decisions on 4 random samples are not the point of this bench
    warnings.simplefilter("ignore", FidelityWarning)
    real_start = progress.Stages.start
    spent: dict[str, float] = {}
    clock = {"stage": None, "t": 0.0}

    def timed_start(self, name):            # the wall time of each compile stage
        now = time.perf_counter()
        if clock["stage"] is not None:
            spent[clock["stage"]] = spent.get(clock["stage"], 0.0) + now - clock["t"]
        clock["stage"], clock["t"] = name, now
        return real_start(self, name)
    progress.Stages.start = timed_start
    cols = [("calibration: float model", "float cal"), ("quantise", "quantise"),
            ("calibration: simulate compiled", "simulate"), ("map onto cores", "map")]
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'neurons':>10}{'synapses':>13}{'compile s':>10}{'cpu s':>8}"
          + "".join(f"{c[1]:>10}" for c in cols) + f"{'other':>8}{'us/synapse':>11}")
    rows = []
    for n in args.sizes:
        graph = network(n, args.fan_in)
        spent.clear()
        clock["stage"] = None
        t0, c0 = time.perf_counter(), time.process_time()
        compile_model(graph, "loihi2", calib=x_cal)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        if clock["stage"] is not None:      # the last stage ends with the compile
            spent[clock["stage"]] = spent.get(clock["stage"], 0.0) + \
                t0 + total - clock["t"]
        other = total - sum(spent.get(c[0], 0.0) for c in cols)
        syn = n * args.fan_in
        rows.append((syn, total))
        print(f"{n:>10,}{syn:>13,}{total:>10.2f}{cpu:>8.2f}"
              + "".join(f"{spent.get(c[0], 0.0):>10.2f}" for c in cols)
              + f"{other:>8.2f}{total / syn * 1e6:>11.4f}", flush=True)
    progress.Stages.start = real_start
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
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
