"""Which synapse's rounding moves a layer's spike count? A drift found by `verify`, taken
apart by experiment on the float model.

    .venv/bin/python bench/rounding_attribution.py BUILD --inputs INPUTS.npz [--limit N]

For each compiled synapse, the float model runs with that synapse's float weights (then,
separately, its float bias) replaced by the compiled values in float units (mantissas,
Lava's weight truncation, times 2**exponent, divided by the layer's scale); every other
value stays float. Then all weights at once, all biases at once, and both (which should
come close to the compiled network's own drift: thresholds and decays stay float). Each
row prints every layer's spike count change against the float model. A synapse whose
compiled shape differs from its float one (a pool folded into it) is skipped and named.

It takes the float model 2 + 2 x synapses runs. `verify --sensitivity` says whether a drift
is within what rounding-sized noise gives the float model; this says whose rounding it is.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snncompile.backends.sim.fixed import prepare_weights  # noqa: E402
from snncompile.build import Build  # noqa: E402
from snncompile.data import load_inputs  # noqa: E402
from snncompile.ir import NEURON_TYPES  # noqa: E402
from snncompile.ir.timing import delay_neurons  # noqa: E402
from snncompile.verify.fidelity import graph_runner  # noqa: E402


def compiled_in_float_units(build) -> dict:
    """synapse -> {"weight": float array or None, "bias": float array or None}."""
    scale = {}
    for q in build.report["quantization"]:
        for s in [q] + list(q.get("more_synapses") or []):
            scale[s["synapse"]] = q["scale"]
    out = {}
    for name, sigma in scale.items():
        fx = build.graph.node(name)
        e = int(getattr(fx, "weight_exp", 0))
        w = np.asarray(fx.weight)
        if getattr(fx, "sign_mode", None) is not None:      # dense: Lava's truncation
            w = prepare_weights(w, fx.sign_mode, fx.num_weight_bits)
        bias = None
        if getattr(fx, "bias_mant", None) is not None:
            bias = np.asarray(fx.bias_mant, np.float64) * 2.0 ** fx.bias_exp / sigma
        out[name] = {"weight": w.astype(np.float64) * 2.0 ** e / sigma, "bias": bias}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--inputs", required=True, help=".npz with 'inputs' (and 'labels')")
    ap.add_argument("--limit", type=int, default=None, help="first N samples only")
    args = ap.parse_args(argv)
    build = Build.load(args.build)
    fg = build.float_graph
    if fg is None or fg.stage == "fixed":
        print(f"{args.build}: the build keeps no float model", file=sys.stderr)
        return 2
    x, _ = load_inputs(args.inputs, build.graph.input_node(), limit=args.limit)
    relays = delay_neurons(build.graph)
    layers = [n.name for n in build.graph.nodes(NEURON_TYPES) if n.name not in relays]
    run = graph_runner(fg)

    def counts():
        o = run(x)
        return {n: float(np.abs(np.asarray(o[n], np.float64)).sum()) for n in layers if n in o}

    base = counts()
    compiled = compiled_in_float_units(build)
    skipped = [s for s, v in compiled.items() if s not in fg or
               np.shape(fg.node(s).weight) != v["weight"].shape]
    usable = {s: v for s, v in compiled.items() if s not in skipped}
    print(f"{args.build}: {len(x)} samples; float spike counts " +
          ", ".join(f"{n} {int(c):,}" for n, c in base.items()))
    if skipped:
        print("skipped (compiled shape differs from the float one): " + ", ".join(skipped))
    width = max([len(s) for s in usable] + [12]) + 9
    print(f"{'compiled values in':{width}s} " + " ".join(f"{n:>12s}" for n in base))

    def row(label, syns, fields):
        saved = []
        try:
            for s in syns:
                node = fg.node(s)
                for f in fields:
                    v = usable[s][f]
                    if v is None or getattr(node, f, None) is None:
                        continue
                    saved.append((node, f, getattr(node, f)))
                    setattr(node, f, v.reshape(np.shape(getattr(node, f))).astype(np.float32))
            if not saved:
                return
            c = counts()
        finally:
            for node, f, v in saved:
                setattr(node, f, v)
        print(f"{label:{width}s} " + " ".join(
            f"{100 * (c[n] - base[n]) / base[n]:+11.1f}%" if base[n] else f"{'silent':>12s}"
            for n in base), flush=True)

    for s in usable:
        row(f"{s} weight", [s], ["weight"])
        row(f"{s} bias", [s], ["bias"])
    row("all weights", list(usable), ["weight"])
    row("all biases", list(usable), ["bias"])
    row("weights and biases", list(usable), ["weight", "bias"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
