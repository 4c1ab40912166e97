"""Benchmark: time to map (split + place) fixed-stage networks of growing size.

Networks: input (2, H, H) -> conv 3x3 16 ch -> conv 3x3/2 32 ch -> conv k x k/k 16 ch
(k = H/16, giving 16 x 16 x 16 = 4096 neurons) -> dense 4096 -> dense 4096 -> dense 10,
with a LIF after each synapse layer. Conv kernels are real random int arrays; the dense
layers are described by shape only (zero-stride `np.broadcast_to` weights, "all
connected"), so the largest network (H = 256: 1.6M neurons, 136M synapses) needs no weight
memory. `--real` makes the dense weights real int8 arrays (33M bytes at H = 256).

    .venv/bin/python bench/bench_mapping.py [--target loihi1] [--sizes 32 64 128 256] [--real]

`--system` maps an all-convolutional network (conv 3x3 16 ch -> conv 3x3/2 32 ch -> conv
3x3/2 16 ch, a LIF after each) of H = 1280 (41M neurons) on the multi-board targets
(targets/pohoiki-springs.toml, 768 Loihi chips; targets/hala-point.toml, 1,152 Loihi 2
chips): a case of several hundred chips.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from snncompile.ir.graph import Graph
from snncompile.ir.nodes import Flatten, FxConv2d, FxDense, FxLIF, Input, Output  # noqa: F401
from snncompile.mapping.place import place
from snncompile.mapping.split import split_graph
from snncompile.target import load_target


def build(h: int, real: bool = False, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)

    def kernel(shape):
        return (rng.integers(1, 64, shape) * rng.choice([-1, 1], shape)).astype(np.int32)

    def dense(n_out, n_in):
        if real:
            w = rng.integers(1, 127, (n_out, n_in), dtype=np.int8)
            return w
        return np.broadcast_to(np.int8(1), (n_out, n_in))

    k = max(1, h // 32)
    h2 = (h + 2 - 3) // 2 + 1
    h3 = h2 // k
    n3 = 16 * h3 * h3
    return Graph.sequential([
        Input("in", shape=(2, h, h)),
        FxConv2d("conv1", weight=kernel((16, 2, 3, 3)), padding=(1, 1)),
        FxLIF("lif1", shape=(16, h, h)),
        FxConv2d("conv2", weight=kernel((32, 16, 3, 3)), stride=(2, 2), padding=(1, 1)),
        FxLIF("lif2", shape=(32, h2, h2)),
        FxConv2d("conv3", weight=kernel((16, 32, k, k)), stride=(k, k)),
        FxLIF("lif3", shape=(16, h3, h3)),
        Flatten("flat"),
        FxDense("fc1", weight=dense(4096, n3)),
        FxLIF("lif4", shape=(4096,)),
        FxDense("fc2", weight=dense(4096, 4096)),
        FxLIF("lif5", shape=(4096,)),
        FxDense("fc3", weight=dense(10, 4096)),
        FxLIF("lif6", shape=(10,)),
        Output("out"),
    ])


def dense_net(*sizes) -> Graph:
    """Input -> (FxDense all-to-all -> FxLIF) per size (shape-only weights)."""
    nodes = [Input("in", shape=(sizes[0],))]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), 1):
        nodes += [FxDense(f"fc{i}", weight=np.broadcast_to(np.int8(1), (b, a))),
                  FxLIF(f"lif{i}", shape=(b,))]
    return Graph.sequential(nodes + [Output("out")])


def conv_net(h: int, seed: int = 0) -> Graph:
    """(2, h, h) -> conv 3x3 16 -> conv 3x3/2 32 -> conv 3x3/2 64, a LIF after each."""
    rng = np.random.default_rng(seed)

    def k(shape):
        return rng.integers(1, 64, shape).astype(np.int32)

    return Graph.sequential([
        Input("in", shape=(2, h, h)),
        FxConv2d("c1", weight=k((16, 2, 3, 3)), padding=(1, 1)), FxLIF("l1", shape=(16, h, h)),
        FxConv2d("c2", weight=k((32, 16, 3, 3)), stride=(2, 2), padding=(1, 1)),
        FxLIF("l2", shape=(32, h // 2, h // 2)),
        FxConv2d("c3", weight=k((64, 32, 3, 3)), stride=(2, 2), padding=(1, 1)),
        FxLIF("l3", shape=(64, h // 4, h // 4)), Output("out")])


SHAPES = {  # the packing benchmark: name -> network (bench and tests/test_mapping_objective.py)
    "dense 784-1024-1024-10": lambda: dense_net(784, 1024, 1024, 10),
    "dense 1000-2000-500-100": lambda: dense_net(1000, 2000, 500, 100),
    "dense 4096-4096-4096-10": lambda: dense_net(4096, 4096, 4096, 10),
    "conv 64": lambda: conv_net(64),
    "conv 128": lambda: conv_net(128),
    "mixed H=32": lambda: build(32),
    "mixed H=128": lambda: build(128),
}


def packing(targets=("loihi1", "loihi2")) -> list[dict]:
    """Cores (objective cores) against the lower bound for every SHAPES network; also the
    first split alone (`spread=False`: every block as large as a core allows) and the CPU
    seconds of each (process time: the machine may be shared)."""
    rows = []
    for t in targets:
        spec = load_target(t)
        for name, make in SHAPES.items():
            g = make()
            c0, t0 = time.process_time(), time.perf_counter()
            part = split_graph(g, spec)
            c1, t1 = time.process_time(), time.perf_counter()
            first = split_graph(g, spec, spread=False)
            c2 = time.process_time()
            rows.append({"target": t, "network": name, "cores": part.n_cores,
                         "bound": part.lower_bound["cores"],
                         "ratio": part.n_cores / part.lower_bound["cores"],
                         "first": first.n_cores, "seconds": t1 - t0, "cpu": c1 - c0,
                         "cpu_first": c2 - c1})
    return rows


def build_system(h: int, seed: int = 0) -> Graph:
    """All-convolutional: fan-ins stay small (18, 144, 288) however large H grows."""
    rng = np.random.default_rng(seed)

    def kernel(shape):
        return (rng.integers(1, 64, shape) * rng.choice([-1, 1], shape)).astype(np.int32)
    h2 = (h + 2 - 3) // 2 + 1
    h3 = (h2 + 2 - 3) // 2 + 1
    return Graph.sequential([
        Input("in", shape=(2, h, h)),
        FxConv2d("conv1", weight=kernel((16, 2, 3, 3)), padding=(1, 1)),
        FxLIF("lif1", shape=(16, h, h)),
        FxConv2d("conv2", weight=kernel((32, 16, 3, 3)), stride=(2, 2), padding=(1, 1)),
        FxLIF("lif2", shape=(32, h2, h2)),
        FxConv2d("conv3", weight=kernel((16, 32, 3, 3)), stride=(2, 2), padding=(1, 1)),
        FxLIF("lif3", shape=(16, h3, h3)),
        Output("out"),
    ])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="loihi1")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--real", action="store_true", help="real int8 dense weights")
    ap.add_argument("--packing-only", action="store_true",
                    help="only the cores / lower bound table")
    ap.add_argument("--system", action="store_true", help="H = 1280 on pohoiki-springs and "
                    "hala-point (hundreds of chips)")
    args = ap.parse_args(argv)
    if args.system:
        for target in ("pohoiki-springs", "hala-point"):
            run(load_target(target), [1280], args.real, build_system)
        return
    print("packing (objective cores): cores / lower bound; the bound counts conv halos, "
          "synapse encoding and all-to-all fan-out (mapping/split.py _lower_bound); "
          "'first': the first split alone (split_graph spread=False); cpu s: process time")
    print(f"{'target':<8}{'network':<26}{'cores':>7}{'bound':>7}{'ratio':>7}{'first':>7}"
          f"{'ratio':>7}{'cpu s':>7}{'first s':>8}{'wall s':>7}")
    for r in packing():
        flag = "" if r["ratio"] <= 1.15 else "  > 1.15"
        print(f"{r['target']:<8}{r['network']:<26}{r['cores']:>7}{r['bound']:>7}"
              f"{r['ratio']:>7.2f}{r['first']:>7}{r['first'] / r['bound']:>7.2f}"
              f"{r['cpu']:>7.2f}{r['cpu_first']:>8.2f}{r['seconds']:>7.2f}{flag}")
    if args.packing_only:
        return
    print()
    run(load_target(args.target), args.sizes, args.real)


def run(spec, sizes, real, network=None) -> None:
    print(f"target {spec.name}; dense weights {'real int8' if real else 'shape-only'}")
    print(f"{'H':>5}{'neurons':>12}{'synapses':>14}{'cores':>8}{'bound':>7}{'chips':>7}"
          f"{'split s':>9}{'place s':>9}{'total s':>9}{'us/neuron':>11}")
    for h in sizes:
        g = network(h) if network else build(h, real=real)
        t0 = time.perf_counter()
        part = split_graph(g, spec)
        t1 = time.perf_counter()
        m = place(part, spec)
        t2 = time.perf_counter()
        neurons = sum(v["neurons"] for k, v in m.layers.items() if k != "in")
        synapses = sum(v["synapses"] for v in m.layers.values())
        print(f"{h:>5}{neurons:>12,}{synapses:>14,}{m.n_cores:>8}{m.lower_bound['cores']:>7}"
              f"{m.chips:>7}{t1 - t0:>9.2f}{t2 - t1:>9.2f}{t2 - t0:>9.2f}"
              f"{1e6 * (t2 - t0) / neurons:>11.2f}")


if __name__ == "__main__":
    main()
