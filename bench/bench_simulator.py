"""Simulator vs Lava throughput on a dense 784-2048-2048-1024 network (7.9M synapses),
100 time steps, ~10% input spike rate. Both are measured in this run, on this machine.

    .venv/bin/python bench/bench_simulator.py [--steps 100] [--lava-samples 2] [--json F]
    .venv/bin/python bench/bench_simulator.py --neuron sdnn     # sigma-delta, graded

`--neuron sdnn` builds the same shape with sigma-delta neurons: a delta encoder on 8-bit
frames in which ~`--rate` of the pixels change each step, 16-bit graded messages, ReLU
sigma-delta layers; Lava then runs one sample per run (these neurons have no reset).

Lava runs samples one after another (it has no batch dimension), so its samples/s is
measured on `--lava-samples` samples chained in one run, including building and compiling
the Lava network, as a user experiences it. The simulator is timed at batch 1 and 64.
Spikes of every layer are compared between the two on the Lava samples.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snncompile.ir import FxDense, FxLIF, FxSigmaDelta, Graph, Input, Output  # noqa: E402
from snncompile.sim import Simulator  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--lava-samples", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--neuron", choices=("lif", "sdnn"), default="lif",
                    help="LIF with binary spikes, or sigma-delta with graded messages")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    graph = network(neuron=args.neuron)
    rng = np.random.default_rng(1)
    x = inputs(args, rng)
    n_syn = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    print(f"{args.neuron} network {'-'.join(map(str, SIZES))}: {sum(SIZES[1:]):,} neurons, "
          f"{n_syn:,} synapses; {args.steps} steps, input rate {args.rate:.0%}")

    sim = Simulator(graph)
    sim.run(x[:1, :5])  # warm up BLAS / allocations
    t0 = time.perf_counter()
    r1 = sim.run(x[:1], batch_size=1)
    t_b1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    r64 = sim.run(x, batch_size=args.batch)
    t_b64 = time.perf_counter() - t0
    rates = {k: float(np.count_nonzero(v) / v.size) for k, v in r64.spikes.items()}
    synops = sum(c.get("synops", 0) for c in r64.counts.values()) / args.batch

    from snncompile.backends.lava_backend import run_lava
    nl = args.lava_samples
    t0 = time.perf_counter()
    lava = run_lava(graph, x[:nl])
    t_lava = time.perf_counter() - t0
    same = all(np.array_equal(lava.spikes[k], r64.spikes[k][:nl]) for k in lava.spikes)

    res = {
        "neuron": args.neuron, "steps": args.steps, "synapses": n_syn, "firing_rates": rates,
        "synops_per_sample": synops,
        "sim_batch1_samples_per_s": 1 / t_b1,
        f"sim_batch{args.batch}_samples_per_s": args.batch / t_b64,
        "lava_samples_per_s": nl / t_lava,
        "ratio_batch1": (1 / t_b1) / (nl / t_lava),
        f"ratio_batch{args.batch}": (args.batch / t_b64) / (nl / t_lava),
        "lava_equals_sim": same,
    }
    print(f"firing rates: " + ", ".join(f"{k} {v:.1%}" for k, v in rates.items()))
    print(f"{'backend':<28}{'samples/s':>12}{'synops/s':>14}{'x Lava':>10}")
    rows = [("Lava fixed_pt", nl / t_lava),
            ("simulator batch 1", 1 / t_b1),
            (f"simulator batch {args.batch}", args.batch / t_b64)]
    for name, sps in rows:
        print(f"{name:<28}{sps:>12.3f}{sps * synops:>14.3g}{sps / (nl / t_lava):>10.1f}")
    print(f"spikes identical to Lava on {nl} samples: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
