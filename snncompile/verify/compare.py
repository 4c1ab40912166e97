"""Spike-level equivalence of the integer reference, the simulator and Lava.

Every backend runs the same integer inputs; spikes are compared layer by layer, step by
step, neuron by neuron against the reference. On a mismatch the first divergence (earliest
sample, then earliest global time step, then earliest layer, then lowest neuron) is named
with the u and v values each side held at that step.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from snncompile.verify import fidelity
from snncompile.backends import backend_names, get_backend
from snncompile.build import Build
from snncompile.errors import UnsupportedError
from snncompile.verify.fidelity import FidelityReport, Tolerance, decision  # noqa: F401 (decision: API)
from snncompile.verify.sensitivity import DRAWS
from snncompile.backends.lava.cost import (LAVA_SETUP_S,  # noqa: F401 (API)
                                           lava_seconds_per_sample)
from snncompile.ir.timing import timing
from snncompile.report.compile import table


def default_backends(build: Build) -> tuple[str, ...]:
    """The backends `verify` runs unless told: every registered one that runs the build from
    its graph alone, in registry order (the first is the baseline). A backend that needs the
    build's netx source (netx) is added by asking for it."""
    return tuple(b for b in backend_names()
                 if get_backend(b).unsupported(build.graph, None) is None)


def is_lava(name: str) -> bool:
    """True for a backend that runs in Lava (verify runs it on `lava_samples` samples)."""
    return get_backend(name).is_lava


LAVA_BUDGET_S = 120.0
"""Seconds of Lava time the default `lava_samples` aims at (so `verify` stays within a few
minutes: the reference and the simulator are one to two orders of magnitude faster)."""

def default_lava_samples(graph, steps: int, budget_s: float = LAVA_BUDGET_S) -> int:
    """How many samples Lava runs by default: as many as the estimated Lava rate fits in
    `budget_s` (setup included), at least 1."""
    per = lava_seconds_per_sample(graph, steps)
    return max(1, int((budget_s - LAVA_SETUP_S) // max(per, 1e-9)))


EXIT_OK = 0
EXIT_DISAGREE = 1      # the integer backends disagree
EXIT_UNFAITHFUL = 4    # they agree, but the compiled network departs from the float model
EXIT_BOTH = EXIT_DISAGREE | EXIT_UNFAITHFUL
"""`snncompile verify` exit status: 0 both verdicts hold (or faithfulness could not be
checked, which is said on stderr), 1 backends disagree, 4 not faithful, 5 both; 2 a user or
file error, 3 an internal error (see cli.main)."""


@dataclasses.dataclass
class VerifyReport:
    equivalent: bool
    mismatches: int
    samples: int
    steps: int
    neurons_compared: int
    backends: dict                 # name -> {"wall_s": float, "spikes": int}
    layers: list                   # per layer: neurons, spikes per backend, mismatches
    first_divergence: dict | None
    accuracy: dict | None = None
    boundary: list = dataclasses.field(default_factory=list)
    """Per co-processor output channel: values compared and mismatches per backend (every
    integer the co-processor sent at every step)."""
    fidelity: FidelityReport | None = None
    """The second verdict: the compiled network against the float model
    (`snncompile.verify.fidelity`)."""
    lava_samples: dict | None = None
    """When a Lava backend ran: samples asked (N) and run, whether the count is the default,
    the limit, Lava's estimated seconds per sample and the budget the default aimed at."""

    def counts_line(self) -> str:
        """'reference 4, sim 4, lava 1': the samples each backend ran and was compared on."""
        return ", ".join(f"{b} {v.get('samples', self.samples)}"
                         for b, v in self.backends.items())

    def lava_note(self) -> str | None:
        """A line when the Lava backends compared fewer samples than the others."""
        info = self.lava_samples
        if not info or info["ran"] >= info["asked"]:
            return None
        names = [b for b in self.backends if is_lava(b)]
        why = (f"the default for this network: Lava estimated at "
               f"{info['estimated_s_per_sample']:.2f} s/sample, {info['budget_s']:.0f} s "
               f"budget; pass --lava-samples N for more" if info["default"]
               else f"--lava-samples {info['limit']}")
        base = next(iter(self.backends))
        rest = (f"{base} is the baseline, so every comparison is on those {info['ran']}"
                if is_lava(base) else
                f"the other backends compared all {info['asked']} with {base}")
        return (f"{' and '.join(names)} compared only {info['ran']} of {info['asked']} "
                f"samples ({why}); {rest}")

    @property
    def faithful(self) -> bool | None:
        """True/False: the second verdict; None when it could not be checked."""
        return None if self.fidelity is None else self.fidelity.faithful

    def exit_code(self) -> int:
        return ((0 if self.equivalent else EXIT_DISAGREE)
                | (EXIT_UNFAITHFUL if self.faithful is False else 0))

    def summary(self) -> list[str]:
        """One line per verdict that failed or could not be made (for stderr)."""
        lines = []
        note = self.lava_note()
        if note:
            lines.append(note)
        if not self.equivalent:
            d = self.first_divergence or {}
            where = (f"; first divergence in {d.get('layer') or d.get('channel')} at sample "
                     f"{d.get('sample')}, step {d.get('step')}" if d else "")
            lines.append(f"NOT EQUIVALENT: {self.mismatches:,} mismatches between "
                         f"{', '.join(self.backends)} (samples {self.counts_line()}){where}")
        if self.fidelity is not None and self.fidelity.faithful is not True:
            lines.append(self.fidelity.verdict_line())
            lines += self.fidelity.sensitivity_lines()
        return lines

    def to_json(self) -> dict:
        doc = dataclasses.asdict(self)
        if self.fidelity is not None:
            doc["fidelity"] = self.fidelity.to_json()
        doc["faithful"] = self.faithful
        doc["exit_code"] = self.exit_code()
        return doc

    def text(self) -> str:
        names = list(self.backends)
        rows = []
        for lay in self.layers:
            rows.append([lay["layer"], lay["neurons"]]
                        + [lay["spikes"][b] for b in names]
                        + [lay["mismatches"].get(b, "") for b in names if b != "reference"])
        def tag(b):   # a backend that ran fewer samples than the others says so
            k = self.backends[b].get("samples", self.samples)
            return f"{b} ({k} samples)" if k != self.samples else b
        head = (["layer", "neurons"] + [f"spikes {tag(b)}" for b in names]
                + [f"mismatch {tag(b)}" for b in names if b != "reference"])
        lines = [table(head, rows)]
        if self.boundary:
            others = [b for b in names if b != "reference"]
            lines.append("")
            lines.append(table(["neurocore/co-processor boundary", "direction",
                                "values per run"] + [f"mismatch {b}" for b in others],
                               [[r["channel"], _direction(r["channel"]), r["values"]]
                                + [r["mismatches"].get(b, "") for b in others]
                                for r in self.boundary], "ll" + "r" * (1 + len(others))))
        lines.append("")
        lines.append("wall time: " + ", ".join(
            f"{b} {v['wall_s']:.2f} s ({v.get('samples', self.samples)} samples)"
            for b, v in self.backends.items()))
        if self.accuracy:
            acc = self.accuracy
            fl = "n/a (no float model)" if acc["float"] is None else f"{acc['float']:.2%}"
            lines.append(f"accuracy on {acc['samples']} labelled samples: float {fl}, "
                         f"compiled {acc['compiled']:.2%}")
        verdict = ("EQUIVALENT" if self.equivalent else "NOT EQUIVALENT")
        what = "spikes and co-processor values" if self.boundary else "spikes"
        lines.append(f"{verdict}: {self.mismatches} mismatching {what} over "
                     f"{self.samples} samples x {self.steps} steps x "
                     f"{self.neurons_compared // max(self.samples * self.steps, 1):,} neurons "
                     f"(samples compared: {self.counts_line()})")
        note = self.lava_note()
        if note:
            lines.append(f"note: {note}")
        d = self.first_divergence
        if d and d.get("kind") == "co-processor value":
            sides = "; ".join(f"{b}: {v}" for b, v in d["sides"].items())
            kind = ("co-processor input" if _direction(d["channel"]) == "into co-processor"
                    else "co-processor output")
            lines.append(f"first divergence: {kind} {d['channel']}, element "
                         f"{d['element']}, sample {d['sample']}, step {d['step']} (global "
                         f"step {d['global_step']}): {sides}")
        elif d:
            sides = "; ".join(f"{b}: spike={s['spike']} u={s['u']} v={s['v']}"
                              if s["u"] is not None else f"{b}: graded spike {s['spike']}"
                              for b, s in d["sides"].items())
            lines.append(f"first divergence: layer {d['layer']}, neuron {d['neuron']}, "
                         f"sample {d['sample']}, step {d['step']} (global step "
                         f"{d['global_step']}): {sides}")
        if self.fidelity is not None:
            lines += ["", self.fidelity.text("samples")]
        return "\n".join(lines)


def _direction(channel: str) -> str:
    """A boundary channel is a co-processor output, or `partition<-source`: what a partition
    receives from the neurocores."""
    return "into co-processor" if "<-" in channel else "out of co-processor"


def verify(build: Build, inputs: np.ndarray, labels: np.ndarray | None = None,
           backends: tuple[str, ...] | None = None, progress: bool = False,
           tolerance: Tolerance | None = None, lava_samples: int | None = None,
           sensitivity: int = DRAWS) -> VerifyReport:
    """Run `backends` (None: `default_backends(build)`) on `inputs` (N, T, *shape) and
    compare every neuron layer's values (verdict 1), then the first backend's with the float
    model's (verdict 2, `tolerance`). Backends are looked up by name in the registry
    (`snncompile.backends.get_backend`).

    The Lava backends (`is_lava`) run only the first `lava_samples` samples (None:
    `default_lava_samples`, what the estimated Lava rate fits in `LAVA_BUDGET_S`); the
    others run all N. Each backend is compared with the first one on the samples both ran;
    the report names every backend's count.

    When the faithfulness verdict fails, the float model runs `sensitivity` more times with
    its weights, biases, thresholds and decays perturbed by rounding-sized noise, and the
    report says whether the drift is within what that gives
    (`snncompile.verify.sensitivity`; 0: not run)."""
    graph = build.graph
    backends = default_backends(build) if backends is None else tuple(backends)
    n, t = inputs.shape[:2]
    est = lava_seconds_per_sample(graph, t)
    lava_default = lava_samples is None
    if lava_default:
        lava_samples = default_lava_samples(graph, t)
    elif int(lava_samples) < 1:
        raise ValueError(f"lava_samples must be at least 1, got {lava_samples}")
    counts = {b: (min(int(lava_samples), n) if is_lava(b) else n) for b in backends}
    runs, walls = _run_backends(build, inputs, backends, counts, progress)
    cmp = _Comparison(graph, runs, backends, counts, t)
    layers, first = cmp.layers()
    boundary, first_value = cmp.boundary()
    divergence = _first_divergence(build, inputs, cmp, first, first_value)
    base = backends[0]
    fid, accuracy = _faithfulness(build, inputs, labels, runs, base, counts[base], tolerance,
                                  sensitivity)
    lava = [b for b in backends if is_lava(b)]
    lava_info = None
    if lava:
        lava_info = {"asked": int(n), "ran": int(counts[lava[0]]), "default": lava_default,
                     "limit": int(lava_samples), "estimated_s_per_sample": round(est, 3),
                     "budget_s": LAVA_BUDGET_S if lava_default else None}
    compared = sum(row["neurons"] for row in layers) * n * t
    return VerifyReport(equivalent=cmp.total == 0, mismatches=cmp.total, samples=int(n),
                        steps=int(t), neurons_compared=int(compared), boundary=boundary,
                        backends={b: {"wall_s": round(walls[b], 4), "samples": counts[b],
                                      "spikes": int(sum(r["spikes"][b] for r in layers))}
                                  for b in backends},
                        lava_samples=lava_info,
                        layers=layers, first_divergence=divergence, accuracy=accuracy,
                        fidelity=fid)


def _run_backends(build: Build, inputs, backends, counts, progress) -> tuple[dict, dict]:
    """({backend: Run}, {backend: wall seconds of its run call, setup included}); each runs
    its first `counts[backend]` samples. Every backend is checked before any runs: one that
    cannot run the build (netx without a netx source) is refused in one line."""
    graph, num, source = build.graph, build.target.numerics, build.netx_source()
    chosen = {b: get_backend(b) for b in backends}     # unknown names: one line
    for b, backend in chosen.items():
        why = backend.unsupported(graph, source)
        if why:
            raise UnsupportedError(f"backend '{b}': {why}")
    runs, walls = {}, {}
    for b, backend in chosen.items():
        t0 = time.perf_counter()
        runs[b] = backend.run(graph, inputs[:counts[b]], numerics=num, source=source,
                              progress=progress)
        walls[b] = time.perf_counter() - t0
    return runs, walls


class _Comparison:
    """Every backend's Run against the first one's, on the samples both ran; `total` adds
    up the mismatches found. Places are ordered by (sample, global step, ...): a node's
    local step is turned into global time by `snncompile.ir.timing`."""

    def __init__(self, graph, runs: dict, backends: tuple, counts: dict, steps: int):
        self.graph, self.runs, self.backends, self.counts = graph, runs, backends, counts
        self.steps, self.time = steps, timing(graph, steps)
        self.base, self.total = backends[0], 0

    def _diff(self, b: str, a, ref):
        """(samples both ran, where backend `b`'s array differs from the baseline's)."""
        k = min(self.counts[b], self.counts[self.base])
        return k, np.asarray(a)[:k] != np.asarray(ref)[:k]

    def _earliest(self, diff, k: int, node: str) -> tuple[int, int, int, int]:
        """(sample, global step, element, local step) of the earliest differing element."""
        d = np.argwhere(diff.reshape(k, self.steps, -1)).tolist()
        s, step, elem = min(d, key=lambda r: (r[0], self.time.to_global(node, r[1]), r[2]))
        return s, self.time.to_global(node, step), elem, step

    def layers(self) -> tuple[list, tuple | None]:
        """Per neuron layer: neurons, nonzero values per backend, mismatches per backend;
        and the first divergence (sample, global step, layer index, neuron, layer, local
        step, backend), or None."""
        graph, base = self.graph, self.base
        neurons = [node.name for node in graph.nodes() if node.is_neuron]
        rows, first = [], None
        for index, name in enumerate(neurons):
            values = {b: self.runs[b].values[name] for b in self.backends}
            row = {"layer": name, "neurons": int(np.prod(graph.shape(name))),
                   "spikes": {b: int(np.count_nonzero(v)) for b, v in values.items()},
                   "mismatches": {}}
            for b in self.backends[1:]:
                k, diff = self._diff(b, values[b], values[base])
                cnt = int(diff.sum())
                row["mismatches"][b] = cnt
                self.total += cnt
                if cnt:
                    s, g, elem, step = self._earliest(diff, k, name)
                    cand = (s, g, index, elem, name, step, b)
                    if first is None or cand[:4] < first[:4]:
                        first = cand
            rows.append(row)
        return rows, first

    def boundary(self) -> tuple[list, tuple | None]:
        """Per channel crossing the partition (the baseline's): values per run and
        mismatches per backend; and the first differing value (sample, global step,
        channel, element, local step), or None."""
        sent = {b: self.runs[b].boundary or {} for b in self.backends}
        rows, first = [], None
        for name in sorted(sent[self.base]):
            ref = sent[self.base][name]
            row = {"channel": name, "values": int(np.asarray(ref).size), "mismatches": {}}
            for b in self.backends[1:]:
                k, diff = self._diff(b, sent[b][name], ref)
                row["mismatches"][b] = int(diff.sum())
                if diff.any():   # an output, or a partition's input: the partition's time
                    s, g, elem, step = self._earliest(diff, k, name.split("<-")[0])
                    cand = (s, g, name, elem, step)
                    if first is None or cand < first:
                        first = cand
            self.total += sum(row["mismatches"].values())
            rows.append(row)
        return rows, first


def _first_divergence(build, inputs, cmp: _Comparison, first, first_value) -> dict | None:
    """The earliest place where a backend departs from the baseline: a neuron's value
    (with each side's u and v, `_explain`) or a value crossing the partition, whichever
    comes first (a value crossing the partition wins a tie)."""
    divergence = _explain(build, inputs, first, cmp) if first else None
    if first_value is not None:  # what crossed the partition: each side's integer value
        sample, gstep, name, elem, step = first_value
        sides = {b: int(np.asarray(cmp.runs[b].boundary[name])[sample, step].reshape(-1)[elem])
                 for b in cmp.backends if sample < cmp.counts[b]}
        value = {"channel": name, "element": int(elem), "sample": int(sample),
                 "step": int(step), "global_step": int(gstep), "sides": sides}
        if divergence is None or (sample, gstep) <= (divergence["sample"],
                                                     divergence["global_step"]):
            divergence = dict(value, kind="co-processor value")
    return divergence


def _faithfulness(build, inputs, labels, runs, base, nb, tolerance, sensitivity=0):
    """(FidelityReport, accuracy dict or None) of the baseline's first `nb` samples (the
    ones it ran) against the float model; wrap/saturation counts from the backend that
    counts them (the simulator)."""
    graph, values = build.graph, runs[base].values
    overflow = next((r.overflow for r in runs.values() if r.overflow), None)
    lab = labels[:nb] if labels is not None else None
    fid = fidelity.check(build, inputs[:nb], values, lab, tolerance, overflow, sensitivity)
    accuracy = None
    if labels is not None:
        out = graph.inputs(graph.output_node().name)[0]
        compiled = decision(graph.node(out), values[out])
        accuracy = {"samples": int(nb), "float": None,
                    "compiled": float((compiled == lab).mean()), "agreement": None}
        if fid.accuracy is not None:  # models imported in fixed point have no float side
            accuracy.update({"float": fid.accuracy["float"], "agreement": fid.agreement})
    return fid, accuracy


def _explain(build, inputs, first, cmp: _Comparison) -> dict:
    """Each side's value at the first divergence, for every backend that ran its sample:
    a graded value on its own, a spike with the neuron's u and v (re-runs that sample)."""
    sample, gstep, _, neuron, name, step, _ = first
    backends = [b for b in cmp.backends if sample < cmp.counts[b]]
    value = {b: np.asarray(cmp.runs[b].values[name])[sample, step].reshape(-1)[neuron]
             for b in backends}
    where = {"layer": name, "neuron": int(neuron), "sample": int(sample), "step": int(step),
             "global_step": int(gstep)}
    if np.asarray(cmp.runs[cmp.base].values[name]).dtype != bool:   # graded: no u, v
        return dict(where, sides={b: {"spike": int(v), "u": None, "v": None}
                                  for b, v in value.items()})
    one = inputs[sample:sample + 1]
    sides = {}
    for b in backends:
        u, v = _lif_state(build, b, one, name, step)
        if not isinstance(u, str):
            u = int(np.asarray(u).reshape(-1)[neuron])
            v = int(np.asarray(v).reshape(-1)[neuron])
        sides[b] = {"spike": bool(value[b]), "u": u, "v": v}
    return dict(where, sides=sides)


def _lif_state(build, b: str, one: np.ndarray, name: str, step: int):
    """(u, v) of neuron layer `name` after local `step` of the single sample `one`
    (1, T, ...) on backend `b`: its `lif_state(graph, sample, node, step)` when it has one
    (Lava reads one run's Vars), else its Run with `record_state=True`. A backend that
    records no state, or fails, gives "unavailable (...)" (diagnostics must not hide the
    mismatch itself)."""
    graph, num, source = build.graph, build.target.numerics, build.netx_source()
    backend = get_backend(b)
    try:
        if hasattr(backend, "lif_state"):
            return backend.lif_state(graph, one[0], name, step, numerics=num, source=source)
        state = backend.run(graph, one, numerics=num, source=source,
                            record_state=True).state
    except Exception as exc:
        return (f"unavailable ({type(exc).__name__})",) * 2
    if not state or name not in state:
        return ("unavailable (no state)",) * 2
    return state[name][0][0, step], state[name][1][0, step]
