"""Is a NOT FAITHFUL drift the compile's fault, or the float model's own sensitivity?

A compiled network can only be as close to its float model as rounding allows, and some
trained models move a long way under rounding-sized changes: a layer whose neurons are
driven mostly by a bias (a BatchNorm shift) and sit near threshold shifts whole channels'
spike times when the bias moves by 0.1% of its range, and a sparse layer downstream turns
that into a large change of its spike count. Then no compile of the model is faithful, and
the verdict says so; what the user needs to know next is whether the drift is more than
rounding of this size explains.

`float_spread` answers that by experiment: it runs the float model `draws` more times on
the same inputs, each time with every compiled synapse's float weights perturbed by
Gaussian noise of the quantisation's own relative RMS error (the build report's
`weight_rel_error`: ||w_q - w|| / ||w||) and every bias (a synapse's bias axon, a LIF's
voltage bias), threshold and decay by uniform noise within its largest rounding error
(`bias_max_abs_error`; for thresholds and decays the quantiser's rounding recomputed from
the float values at the layer's scale), and measures each layer's spike count and the
decisions against the unperturbed float model. Not perturbed: attention and co-processor
weights (integer arithmetic of their own). The noise is random where the rounding is
deterministic, so the spread says how large drifts of rounding size are for this model on
these inputs, not what the compiled network's drift must be.

`fidelity.add_sensitivity` runs it only when a verdict fails: `verify` of one inputs file
(`--sensitivity N`) and `compile`'s check on its calibration samples (DRAWS); a sharded
data-set `verify` does not (its shards are judged together).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from snncompile.ir import LIF, NEURON_TYPES, Graph
from snncompile.ir.timing import delay_neurons

DRAWS = 3
"""Perturbed float runs after a failed verdict (verify --sensitivity N; 0: none)."""
BOUNDS = {"du": (0.0, 1.0), "dv": (0.0, 1.0), "vth": (1e-9, np.inf)}


@dataclasses.dataclass
class Spread:
    """What `draws` perturbed float runs gave: per layer the smallest and largest relative
    change of its spike count against the unperturbed float model, and the smallest and
    largest fraction of samples on which the perturbed model takes the unperturbed one's
    decision (None without an output decision)."""

    draws: int
    seed: int
    layers: dict
    agreement: list | None
    perturbed: list
    not_perturbed: list

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def rounding_errors(build) -> dict:
    """{(node, field): (noise kind, size)} in float units: the relative RMS weight error
    ("gauss") of every synapse quantised with a LIF or readout (a residual block's second
    synapse and a recurrent one too) and the largest rounding error ("uniform") of every
    bias axon, every LIF's bias, and every LIF's threshold and decays (`_neuron_errors`)."""
    errors = {}
    for q in build.report.get("quantization") or []:
        for s in [q] + list(q.get("more_synapses") or []):
            if s.get("synapse") and s.get("weight_rel_error") is not None:
                errors[(s["synapse"], "weight")] = ("gauss", float(s["weight_rel_error"]))
            if s is not q and s.get("bias_max_abs_error"):
                errors[(s["synapse"], "bias")] = ("uniform", float(s["bias_max_abs_error"]))
        if q.get("bias_max_abs_error"):
            errors[(q["layer"], "bias")] = ("uniform", float(q["bias_max_abs_error"]))
        errors.update(_neuron_errors(build, q))
    for s in build.report.get("synapse_bias") or []:
        if s.get("bias_max_abs_error"):
            errors[(s["synapse"], "bias")] = ("uniform", float(s["bias_max_abs_error"]))
    return errors


def _neuron_errors(build, q: dict) -> dict:
    """The largest rounding errors of the threshold and decays of the LIF `q` reports,
    recomputed from the float values with the quantiser's rules at the report's scale
    (not read off the compiled graph, so that a compiled value that is wrong for another
    reason than rounding does not widen the noise)."""
    from snncompile.passes.quantize import _decay, _threshold
    name, fg = q["layer"], build.float_graph
    fl = fg.node(name) if fg is not None and name in fg else None
    if not isinstance(fl, LIF) or not q.get("scale"):
        return {}
    num, sigma = build.target.numerics, float(q["scale"])
    unity = num.decay_unity
    vth = fl.vth if not isinstance(fl.vth, np.ndarray) else np.asarray(fl.vth, np.float64)
    rounded = {"vth": np.asarray(_threshold(name, vth, sigma, "", num)[0], np.float64) / sigma,
               "du": _decay(name, "du", fl.du, unity, 1)[1],
               "dv": _decay(name, "dv", fl.dv, unity, 0)[1]}
    out = {}
    for field, r in rounded.items():
        err = float(np.max(np.abs(np.asarray(r, np.float64)
                                  - np.asarray(getattr(fl, field), np.float64))))
        if err > 0:
            out[(name, field)] = ("uniform", err)
    return out


def _counts(graph: Graph, out: dict) -> dict:
    """Each trained neuron layer's activity in `out`, as the fidelity verdict counts it."""
    from snncompile.verify.fidelity import _activity
    relays = delay_neurons(graph)
    return {n.name: float(_activity(n, out[n.name]).sum())
            for n in graph.nodes(NEURON_TYPES) if n.name in out and n.name not in relays}


def float_spread(build, inputs: np.ndarray, base_out: dict, decide, runner,
                 draws: int = DRAWS, seed: int = 0) -> Spread | None:
    """Run `runner` (the float model) `draws` times on `inputs` with the rounding-sized
    perturbations of the module docstring; `base_out` is its unperturbed output and
    `decide(out)` the decisions (or None). None when nothing can be perturbed."""
    fg = build.float_graph
    targets = []      # (node, field, noise kind, size, the unperturbed value)
    missing = []
    for (name, field), (kind, size) in rounding_errors(build).items():
        node = fg.node(name) if name in fg else None
        if node is None or getattr(node, field, None) is None:
            missing.append(f"{name}.{field}")
            continue
        targets.append((node, field, kind, size, getattr(node, field)))
    if not targets or draws < 1:
        return None
    rng = np.random.default_rng(seed)
    base = _counts(build.graph, base_out)
    base_dec = decide(base_out)
    changes = {name: [] for name in base}
    agree = []
    try:
        for _ in range(int(draws)):
            for node, f, kind, size, value in targets:
                orig = np.asarray(value)
                a = orig.astype(np.float64)
                if kind == "gauss":
                    rms = float(np.sqrt(np.mean(a * a))) if a.size else 0.0
                    a = a + rng.normal(0.0, size * rms, a.shape)
                else:
                    a = a + rng.uniform(-size, size, np.shape(a))
                if f in BOUNDS:         # decays stay in [0, 1], thresholds above 0
                    a = np.clip(a, *BOUNDS[f])
                setattr(node, f, a.astype(orig.dtype) if orig.dtype.kind == "f" else a)
            out = runner(inputs)
            for name, c in _counts(build.graph, out).items():
                b = base.get(name)
                if b:
                    changes[name].append((c - b) / b)
            dec = decide(out)
            if base_dec is not None and dec is not None:
                agree.append(float(np.mean(dec == base_dec)))
    finally:
        for node, f, _, _, value in targets:
            setattr(node, f, value)
    return Spread(draws=int(draws), seed=int(seed),
                  layers={k: [min(v), max(v)] for k, v in changes.items() if v},
                  agreement=[min(agree), max(agree)] if agree else None,
                  perturbed=sorted({f"{n.name}.{f}" for n, f, *_ in targets}),
                  not_perturbed=sorted(missing))


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def explain(rep, spread: Spread) -> list[str]:
    """One line per failed layer count and for a failed decision agreement: the compiled
    drift beside the spread rounding-sized noise gives the float model itself."""
    lines = []
    tol = rep.tolerance
    what = (f"the float model itself, its weights, biases, thresholds and decays perturbed "
            f"{spread.draws} times "
            "by random noise of their rounding errors' size")
    for r in rep.layers:
        d = r.get("difference")
        if d is None or abs(d) <= tol["spikes"] or r["layer"] not in spread.layers:
            continue
        lo, hi = spread.layers[r["layer"]]
        inside = abs(d) <= max(abs(lo), abs(hi))
        lines.append(
            f"sensitivity: {r['layer']}: {what}, moves its spike count by {_pct(lo)} to "
            f"{_pct(hi)}; the compiled {_pct(d)} is "
            + ("within that: drifts of this size are what rounding gives this model here, "
               "so the compile is not shown to be at fault (the model is this sensitive at "
               "the chip's precision)" if inside else
               "outside that: rounding noise of this size does not explain it; look at "
               "the layer's quantisation and wrap counts in the build report"))
    if (rep.agreement is not None and rep.agreement < tol["agreement"]
            and spread.agreement is not None):
        lo, hi = spread.agreement
        inside = rep.agreement >= lo
        lines.append(
            f"sensitivity: output: {what}, takes its own unperturbed decision on "
            f"{lo:.1%} to {hi:.1%} of the samples; the compiled network's {rep.agreement:.1%}"
            + (" is within that" if inside else " is below that"))
    return lines
