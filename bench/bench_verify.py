"""`verify` wall time per backend per sample on a gesture-sized attention network: 2x32x32
spike input, conv 64 (TCSA attention) / 128 / 128, fc 256 / 11 LIF, T = 12 (106,763 neurons,
about 53.6M synapses), compiled for Loihi 2 with calibration data. All backends are timed in
this run, on this machine, through `snncompile.verify.compare.verify` (setup included, as a user
sees it).

    .venv/bin/python bench/bench_verify.py [--samples 4] [--lava-samples 1] [--json F]

The reference and the simulator run `--samples` samples; Lava runs the first
`--lava-samples` of them (0: skip Lava), the same split `snncompile verify --lava-samples`
makes. Prints seconds per sample per backend, the ratios, and the Lava-sample default
`verify` would pick for this network.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snncompile.frontends import graph_from_model  # noqa: E402
from snncompile.ir import NEURON_TYPES  # noqa: E402
from snncompile.pipeline import compile_model  # noqa: E402

STEPS = 12
SHAPE = (2, 32, 32)


def network(seed: int = 0, width: int = 1):
    """The gesture-sized attention model (snncompile.nn), untrained, weights scaled so that
    every layer fires; `width` divides the channel counts (tests use a small copy)."""
    import torch

    from snncompile.nn.attention import AttentionSNN
    torch.manual_seed(seed)
    lif = {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5}
    att = {"type": "attention", "kind": "tcsa", "mode": "causal", "window": 3,
           "t_ratio": 1, "c_ratio": 8, "kernel": 3, "gain_bits": 8, "name": "att1"}
    c1, c2, c3, f = 64 // width, 128 // width, 128 // width, 256 // width
    layers = [{"type": "conv2d", "out": c1, "kernel": 3, "padding": 1, "name": "conv1"},
              att, dict(lif, name="lif1"),
              {"type": "conv2d", "out": c2, "kernel": 3, "padding": 1, "stride": 2,
               "name": "conv2"}, dict(lif, name="lif2"),
              {"type": "conv2d", "out": c3, "kernel": 3, "padding": 1, "stride": 2,
               "name": "conv3"}, dict(lif, name="lif3"),
              {"type": "flatten"},
              {"type": "dense", "out": f, "name": "fc4"}, dict(lif, name="lif4"),
              {"type": "dense", "out": 11, "name": "fc5"}, dict(lif, name="lif5")]
    model = AttentionSNN({"input": {"shape": list(SHAPE), "encoding": "spikes",
                                    "steps": STEPS}, "layers": layers})
    with torch.no_grad():
        for layer in model.layers:
            w = getattr(getattr(layer, "module", None), "weight", None)
            if w is not None and w.ndim in (2, 4):
                w.mul_(3.0)
    return model


def compiled(seed: int = 0, width: int = 1, n: int = 4, rate: float = 0.2):
    """(build, inputs): the network compiled with 8 calibration samples, `n` inputs. The
    untrained net is not faithful to its float model at 8 bits (compile's fidelity warnings
    are silenced here: this bench times the integer backends)."""
    import warnings

    from snncompile.pipeline import FidelityWarning
    warnings.simplefilter("ignore", FidelityWarning)
    graph = graph_from_model(network(seed, width))
    rng = np.random.default_rng(seed)
    calib = (rng.random((8, STEPS) + SHAPE) < rate).astype(np.int64)
    x = (rng.random((n, STEPS) + SHAPE) < rate).astype(np.int64)
    return compile_model(graph, "loihi2", calib=calib), x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--lava-samples", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3,
                    help="alternated reference / numpy-simulator runs (medians)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    from snncompile.verify.compare import default_lava_samples, verify
    t0 = time.perf_counter()
    build, x = compiled(n=args.samples)
    graph = build.graph
    neurons = sum(int(np.prod(graph.shape(n.name))) for n in graph.nodes(NEURON_TYPES))
    print(f"gesture-sized TCSA network: {neurons:,} neurons, {STEPS} steps, compiled in "
          f"{time.perf_counter() - t0:.1f} s")
    backends = ("reference", "sim") + (("lava",) if args.lava_samples else ())
    rep = verify(build, x, backends=backends, lava_samples=args.lava_samples or None)
    rows = {}
    for b, v in rep.backends.items():
        rows[b] = {"samples": v["samples"], "wall_s": v["wall_s"],
                   "s_per_sample": v["wall_s"] / max(v["samples"], 1)}
    # the reference against the pure-numpy simulator (its speed target), alternated
    # `--repeat` times so that both see the same load; medians
    from snncompile.backends import get_backend
    from snncompile.backends.sim import Simulator
    reference = get_backend("reference")
    times = {"reference": [], "sim numpy": [], "sim kernels": []}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        reference.run(graph, x, numerics=build.target.numerics, batch=len(x))
        times["reference"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        Simulator(graph, build.target.numerics, kernel="numpy").run(x)
        times["sim numpy"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()   # the mixed path: gates / partition on numpy inside
        Simulator(graph, build.target.numerics, kernel="numba").run(x)
        times["sim kernels"].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    for k in ("sim numpy", "sim kernels"):
        rows[k] = {"samples": len(x), "wall_s": round(med[k], 4),
                   "s_per_sample": med[k] / len(x)}
    print(f"'sim' kernel: {Simulator(graph, build.target.numerics).kernel_reason}")
    print(f"numpy simulator / kernels (mixed path), median of {args.repeat} alternated "
          f"runs: {med['sim numpy'] / med['sim kernels']:.2f}x")
    slow = rows.get("lava", rows["reference"])["s_per_sample"]
    print(f"{'backend':<12}{'samples':>8}{'wall s':>9}{'s/sample':>10}"
          f"{'x ' + ('lava' if 'lava' in rows else 'reference'):>10}")
    for b, r in rows.items():
        print(f"{b:<12}{r['samples']:>8}{r['wall_s']:>9.2f}{r['s_per_sample']:>10.3f}"
              f"{slow / r['s_per_sample']:>10.1f}")
    print(f"reference / numpy simulator, median of {args.repeat} alternated runs: "
          f"{med['reference']:.2f} s / {med['sim numpy']:.2f} s = "
          f"{med['reference'] / med['sim numpy']:.2f} (target <= 1); min "
          f"{min(times['reference']):.2f} s / {min(times['sim numpy']):.2f} s")
    default = default_lava_samples(graph, x.shape[1])
    print(f"verdict: {'EQUIVALENT' if rep.equivalent else 'NOT EQUIVALENT'} "
          f"({rep.mismatches} mismatches); verify's Lava-sample default for this network: "
          f"{default}")
    if args.json:
        Path(args.json).write_text(json.dumps({"backends": rows, "equivalent": rep.equivalent,
                                               "reference_vs_numpy": times,
                                               "lava_default": default}, indent=1))
    return 0 if rep.equivalent else 1


if __name__ == "__main__":
    sys.exit(main())
