"""Simulator vs Lava throughput on a dense 784-2048-2048-1024 network (7.9M synapses),
100 time steps, ~10% input spike rate. Both are measured in this run, on this machine.

    .venv/bin/python bench/bench_simulator.py [--steps 100] [--lava-samples 2] [--json F]
    .venv/bin/python bench/bench_simulator.py --neuron sdnn     # sigma-delta, graded
    .venv/bin/python bench/bench_simulator.py --baseline DIR      # + an older checkout

`--baseline DIR` also times the kernels of another checkout of snncompile (for example
`git worktree add --detach /tmp/base <commit>`) on the same network and inputs, in a child
process started right after this checkout's kernel timings, so that old and new are
compared at the same load (the child imports DIR's own bench and simulator).

`--neuron sdnn` builds the same shape with sigma-delta neurons: a delta encoder on 8-bit
frames in which ~`--rate` of the pixels change each step, 16-bit graded messages, ReLU
sigma-delta layers; Lava then runs one sample per run (these neurons have no reset).

Lava runs samples one after another (it has no batch dimension), so its samples/s is
measured on `--lava-samples` samples chained in one run, including building and compiling
the Lava network, as a user experiences it. The simulator's compiled kernels are timed at
batch 1 (median of 5 runs) and at `--batch` (median of 2, samples on threads), the
pure-numpy fallback once each. Spikes of every layer are compared between Lava and the
kernels on the Lava samples, and between the kernels and the fallback.

The LIF run also prints the fraction of the machine's physical limit reached: synaptic
events per sample over the int8 row-add rate of one core, measured in the same run with
the compiled loop on all-active rows (x threads at large batch).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snncompile.ir import FxDense, FxLIF, FxSigmaDelta, Graph, Input, Output  # noqa: E402
from snncompile.backends.sim import Simulator  # noqa: E402

SIZES = (784, 2048, 2048, 1024)


def network(seed: int = 0, neuron: str = "lif") -> Graph:
    """Random zero-mean 8-bit weights; thresholds give moderate firing rates (printed)."""
    rng = np.random.default_rng(seed)
    sdnn = neuron == "sdnn"
    nodes = [Input("in", shape=(SIZES[0],), encoding="graded" if sdnn else "spikes",
                   bits=8)]
    if sdnn:
        nodes.append(FxSigmaDelta("enc", shape=(SIZES[0],), role="delta", vth=8))
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), 1):
        w = (rng.integers(-127, 128, (n_out, n_in)) * 2).astype(np.int32)
        nodes.append(FxDense(f"fc{i}", weight=w, weight_exp=-6 if sdnn else 0,
                             sign_mode="mixed", num_message_bits=16 if sdnn else 0))
        if sdnn:
            nodes.append(FxSigmaDelta(f"sd{i}", shape=(n_out,), vth=64,
                                      bias_mant=np.full(n_out, 1, np.int32)))
        else:
            nodes.append(FxLIF(f"lif{i}", shape=(n_out,), du=1024, dv=512,
                               vth=int(100 * n_in ** 0.5)))
    nodes.append(Output("out"))
    return Graph.sequential(nodes)


def inputs(args, rng) -> np.ndarray:
    shape = (args.batch, args.steps, SIZES[0])
    if args.neuron == "lif":
        return (rng.random(shape) < args.rate).astype(np.uint8)
    x = np.empty(shape, np.int64)          # 8-bit frames; ~rate of the pixels change a step
    x[:, 0] = rng.integers(0, 256, (args.batch, SIZES[0]))
    for t in range(1, args.steps):
        change = rng.random((args.batch, SIZES[0])) < args.rate
        x[:, t] = np.where(change, rng.integers(0, 256, (args.batch, SIZES[0])), x[:, t - 1])
    return x


def peak_add_rate(reps: int = 5) -> float:
    """Adds/s of the compiled int8 row-add loop on one core, every row active (the best
    case of the event-driven kernel): the machine's limit the issue measures against."""
    from snncompile.backends.sim import kernels as K
    rng = np.random.default_rng(0)
    wt = rng.integers(-128, 128, (2048, 2048)).astype(np.int8)
    x = np.ones((8, 2048), np.uint8)
    out, ic, acc = np.zeros((9, 2048), np.int64), np.zeros(2048, np.int64), np.zeros(2048, np.int32)
    K.dense_binary(x, wt, 255, acc, 1, 0, out, ic, 0, 2048, True)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        K.dense_binary(x, wt, 255, acc, 1, 0, out, ic, 0, 2048, True)
        best = min(best, time.perf_counter() - t0)
    return x.size * wt.shape[1] / best


_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import bench.bench_simulator as B
from snncompile.backends.sim import Simulator
a = json.loads(sys.argv[2])
class Args: pass
args = Args()
for k, v in a.items():
    setattr(args, k, v)
graph = B.network(neuron=args.neuron)
x = B.inputs(args, np.random.default_rng(1))
sim = Simulator(graph, kernel="numba")
sim.run(x[:1, :5], batch_size=1)
t1, r1 = B.timed(lambda: sim.run(x[:1], batch_size=1), 5)
tb, rb = B.timed(lambda: sim.run(x, batch_size=args.batch), 2)
np.save(a["spikes"], np.concatenate([rb.spikes[k].reshape(-1) for k in sorted(rb.spikes)]))
print(json.dumps({"batch1_s": t1, "batch_s": tb}))
"""


def baseline(directory: str, args) -> dict:
    """Kernel timings of the checkout at `directory` (see the module docstring), and
    whether its spikes equal this checkout's (written to a temporary file)."""
    import tempfile
    rev = subprocess.run(["git", "-C", directory, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    with tempfile.TemporaryDirectory() as tmp:
        a = {"batch": args.batch, "steps": args.steps, "rate": args.rate,
             "neuron": args.neuron, "spikes": str(Path(tmp) / "spikes.npy")}
        env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
        p = subprocess.run([sys.executable, "-c", _CHILD, str(Path(directory).resolve()),
                            json.dumps(a)], capture_output=True, text=True, env=env,
                           cwd=directory)
        if p.returncode != 0:
            raise SystemExit(f"--baseline {directory}: the child run failed:\n{p.stderr}")
        res = json.loads(p.stdout.strip().splitlines()[-1])
        res["spikes"] = np.load(a["spikes"])
    res["rev"] = rev
    return res


def timed(fn, reps: int):
    """Median wall time of `reps` calls, and the last result."""
    ts, res = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--lava-samples", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--numpy-samples", type=int, default=8,
                    help="samples timed on the pure-numpy fallback at --batch")
    ap.add_argument("--neuron", choices=("lif", "sdnn"), default="lif",
                    help="LIF with binary spikes, or sigma-delta with graded messages")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also time the kernels of the snncompile checkout at DIR")
    args = ap.parse_args()
    graph = network(neuron=args.neuron)
    rng = np.random.default_rng(1)
    x = inputs(args, rng)
    n_syn = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    print(f"{args.neuron} network {'-'.join(map(str, SIZES))}: {sum(SIZES[1:]):,} neurons, "
          f"{n_syn:,} synapses; {args.steps} steps, input rate {args.rate:.0%}")

    # compiled kernels: setup, first run in this process (loads numba's cached machine
    # code, or compiles it in a fresh checkout), then steady state
    t0 = time.perf_counter()
    sim = Simulator(graph, kernel="numba")
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim.run(x[:1, :5], batch_size=1)
    t_first = time.perf_counter() - t0
    t_b1, r1 = timed(lambda: sim.run(x[:1], batch_size=1), 5)
    t_b64, r64 = timed(lambda: sim.run(x, batch_size=args.batch), 2)
    threads = sim._fast.threads
    base = baseline(args.baseline, args) if args.baseline else None
    # the pure-numpy fallback (SNNCOMPILE_SIM_KERNEL=numpy)
    npy = Simulator(graph, kernel="numpy")
    npy.run(x[:1, :5])
    t_np1, n1 = timed(lambda: npy.run(x[:1], batch_size=1), 1)
    nn = min(args.numpy_samples, args.batch)
    t_npb, nb = timed(lambda: npy.run(x[:nn], batch_size=args.batch), 1)
    same_np = (all(np.array_equal(n1.spikes[k], r1.spikes[k]) for k in r1.spikes)
               and all(np.array_equal(nb.spikes[k], r64.spikes[k][:nn]) for k in nb.spikes)
               and n1.counts == r1.counts and n1.overflow == r1.overflow)
    rates = {k: float(np.count_nonzero(v) / v.size) for k, v in r64.spikes.items()}
    synops = sum(c.get("synops", 0) for c in r64.counts.values()) / args.batch

    from snncompile.backends import get_backend
    nl = args.lava_samples
    t0 = time.perf_counter()
    lava = get_backend("lava").run(graph, x[:nl])
    t_lava = time.perf_counter() - t0
    same = all(np.array_equal(lava.spikes[k], r64.spikes[k][:nl]) for k in lava.spikes)
    lava_sps = nl / t_lava

    peak = peak_add_rate() if args.neuron == "lif" else None
    rows = [("Lava fixed_pt", lava_sps, None),
            ("numpy fallback, batch 1", 1 / t_np1, 1),
            (f"numpy fallback, batch {args.batch}", nn / t_npb, None),
            ("kernel, batch 1", 1 / t_b1, 1),
            (f"kernel, batch {args.batch}", args.batch / t_b64, threads)]
    if base:
        same_base = bool(np.array_equal(base["spikes"], np.concatenate(
            [r64.spikes[k].reshape(-1) for k in sorted(r64.spikes)])))
        rows += [(f"baseline {base['rev']}, batch 1", 1 / base["batch1_s"], 1),
                 (f"baseline {base['rev']}, batch {args.batch}", args.batch / base["batch_s"],
                  threads)]
    res = {
        "neuron": args.neuron, "steps": args.steps, "synapses": n_syn, "firing_rates": rates,
        "synops_per_sample": synops, "threads": threads,
        "kernel_setup_s": t_setup, "kernel_first_run_s": t_first,
        "lava_samples_per_s": lava_sps,
        "rows": {name: sps for name, sps, _ in rows},
        "ratio_batch1": (1 / t_b1) / lava_sps,
        f"ratio_batch{args.batch}": (args.batch / t_b64) / lava_sps,
        "lava_equals_sim": same, "numpy_equals_kernel": same_np,
    }
    if base:
        res["baseline"] = {"rev": base["rev"], "batch1_s": base["batch1_s"],
                           "batch_s": base["batch_s"], "spikes_identical": same_base}
    print("firing rates: " + ", ".join(f"{k} {v:.1%}" for k, v in rates.items()))
    print(f"kernel setup {t_setup:.3f} s; first run in this process {t_first:.2f} s (imports "
          f"numba, loads the kernels' cached machine code, or compiles it when the cache is "
          f"missing or stale); batch {args.batch} on {threads} threads")
    lim = "of limit" if peak else ""
    print(f"{'backend':<30}{'samples/s':>11}{'synops/s':>12}{'x Lava':>9}{lim:>10}")
    for name, sps, cores in rows:
        frac = ""
        if peak and cores:
            frac = f"{sps * synops / (peak * cores):.0%}"
        print(f"{name:<30}{sps:>11.3f}{sps * synops:>12.3g}{sps / lava_sps:>9.1f}{frac:>10}")
    if peak:
        res["peak_adds_per_s_one_core"] = peak
        res["limit_samples_per_s_one_core"] = peak / synops
        print(f"physical limit: {synops / args.steps / 1e6:.2f}M synaptic events per step "
              f"at {peak / 1e9:.1f}G int8 adds/s per core (measured now, compiled loop, all "
              f"rows active) = {peak / synops:.0f} samples/s per core")
    targets = ([("batch 1", res["ratio_batch1"], 100),
                (f"batch {args.batch} per sample", res[f"ratio_batch{args.batch}"], 200)]
               if args.neuron == "lif" else [("batch 1", res["ratio_batch1"], 50)])
    for what, got, want in targets:
        print(f"target {want}x Lava at {what}: {got:.0f}x, {'met' if got >= want else 'NOT met'}")
    print(f"spikes identical to Lava on {nl} samples: {same}; kernel identical to the numpy "
          f"fallback (spikes, counts, overflow) on {nn} samples: {same_np}")
    if base:
        print(f"baseline {base['rev']} (at {args.baseline}): kernel batch 1 "
              f"{base['batch1_s'] / t_b1:.2f}x slower than this checkout, batch {args.batch} "
              f"{base['batch_s'] / t_b64:.2f}x; spikes identical on {args.batch} samples: "
              f"{same_base}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0 if same and same_np and (not base or same_base) else 1


if __name__ == "__main__":
    sys.exit(main())
