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
from snncompile.build import Build
from snncompile.errors import UnsupportedError
from snncompile.verify.fidelity import FidelityReport, Tolerance, decision  # noqa: F401 (decision: API)
from snncompile.ir import NEURON_TYPES, FxConv2d, FxCoproc, FxDense, FxSigmaDelta
from snncompile.backends.reference import reference_run
from snncompile.report.compile import table
from snncompile.backends.sim.simulator import Simulator

BACKENDS = ("reference", "sim", "lava")
EXTRA_BACKENDS = ("netx",)
"""`netx`: lava-dl's own netx loader running the build's copy of the netx file in Lava
(builds compiled from a netx file only)."""

LAVA_BACKENDS = ("lava", "netx")
"""Backends that run in Lava: they get `lava_samples` of the samples, the others all."""

LAVA_BUDGET_S = 120.0
"""Seconds of Lava time the default `lava_samples` aims at (so `verify` stays within a few
minutes: the reference and the simulator are one to two orders of magnitude faster)."""

# Lava (Loihi2SimCfg fixed_pt, CPU) cost model, fitted on this project's measurements
# (issue 13, a 2-core machine): per time step, seconds per conv synapse (Lava's conv runs
# a full convolution per step), per dense synapse (one matrix-vector product), per neuron,
# per co-processor partition (host-side Python), plus a fixed setup per run.
LAVA_S_PER_CONV_SYNAPSE = 3e-8     # gesture-sized TCSA net: ~11 s/sample at T = 12
LAVA_S_PER_DENSE_SYNAPSE = 1.5e-10  # 784-2048-2048-1024: ~0.12 s/sample at T = 100
LAVA_S_PER_NEURON = 2e-8
LAVA_S_PER_COPROC = 5e-3
LAVA_SETUP_S = 5.0


def lava_seconds_per_sample(graph, steps: int) -> float:
    """Estimated Lava wall time of one sample of `steps` steps (the cost model above)."""
    conv = dense = neurons = coproc = 0
    for node in graph.nodes():
        if isinstance(node, FxConv2d):
            w = np.shape(node.weight)
            conv += int(np.prod(graph.shape(node.name))) * int(np.prod(w[1:]))
        elif isinstance(node, FxDense):
            dense += int(np.size(node.weight))
        elif isinstance(node, NEURON_TYPES):
            neurons += int(np.prod(graph.shape(node.name)))
        elif isinstance(node, FxCoproc):
            coproc += 1
    return steps * (conv * LAVA_S_PER_CONV_SYNAPSE + dense * LAVA_S_PER_DENSE_SYNAPSE
                    + neurons * LAVA_S_PER_NEURON + coproc * LAVA_S_PER_COPROC)


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
        names = [b for b in self.backends if b in LAVA_BACKENDS]
        why = (f"the default for this network: Lava estimated at "
               f"{info['estimated_s_per_sample']:.2f} s/sample, {info['budget_s']:.0f} s "
               f"budget; pass --lava-samples N for more" if info["default"]
               else f"--lava-samples {info['limit']}")
        base = next(iter(self.backends))
        rest = (f"{base} is the baseline, so every comparison is on those {info['ran']}"
                if base in LAVA_BACKENDS else
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


def _reference(graph, inputs: np.ndarray, num, progress: bool, batch: int = 32) -> dict:
    """`reference_run` over batches of samples (samples are independent), with progress."""
    from snncompile.progress import bar
    n = len(inputs)
    if n <= batch:
        with bar(n, "reference", "sample", enabled=progress) as p:
            out = reference_run(graph, inputs, num)
            p.update(n)
        return out
    parts: dict[str, list] = {}
    with bar(n, "reference", "sample", enabled=progress) as p:
        for start in range(0, n, batch):
            for k, v in reference_run(graph, inputs[start:start + batch], num).items():
                parts.setdefault(k, []).append(v)
            p.update(min(batch, n - start))
    return {k: np.concatenate(v) for k, v in parts.items()}


def verify(build: Build, inputs: np.ndarray, labels: np.ndarray | None = None,
           backends: tuple[str, ...] = BACKENDS, progress: bool = False,
           tolerance: Tolerance | None = None, lava_samples: int | None = None) -> VerifyReport:
    """Run `backends` on `inputs` (N, T, *shape) and compare every LIF's spikes (verdict 1),
    then the first backend's spikes with the float model's (verdict 2, `tolerance`).

    The Lava backends (`LAVA_BACKENDS`) run only the first `lava_samples` samples (None:
    `default_lava_samples`, what the estimated Lava rate fits in `LAVA_BUDGET_S`); the
    others run all N. Each backend is compared with the first one on the samples both ran;
    the report names every backend's count."""
    graph, num = build.graph, build.target.numerics
    lifs = [n.name for n in graph.nodes(NEURON_TYPES)]
    n, t = inputs.shape[:2]
    est = lava_seconds_per_sample(graph, t)
    lava_default = lava_samples is None
    if lava_default:
        lava_samples = default_lava_samples(graph, t)
    elif int(lava_samples) < 1:
        raise ValueError(f"lava_samples must be at least 1, got {lava_samples}")
    counts = {b: (min(int(lava_samples), n) if b in LAVA_BACKENDS else n) for b in backends}
    results, walls, sent, overflow = {}, {}, {}, None
    for b in backends:
        x = inputs[:counts[b]]
        t0 = time.perf_counter()
        if b == "reference":
            out = _reference(graph, x, num, progress)
            results[b] = {k: v for k, v in out.items() if not k.startswith("@")}
            sent[b] = {k[1:]: v for k, v in out.items() if k.startswith("@")}
        elif b == "sim":
            res = Simulator(graph, num).run(x, progress=progress)
            results[b], sent[b], overflow = res.spikes, res.boundary, res.overflow
        elif b == "lava":
            from snncompile.backends.lava.run import run_lava
            res = run_lava(graph, x, progress=progress)
            results[b], sent[b] = res.spikes, res.boundary or {}
        elif b == "netx":
            from snncompile.formats.netx.run_lava import run_netx_samples
            from snncompile.pipeline import NETX_SOURCE
            src = build.member(NETX_SOURCE) if NETX_SOURCE in build.members else None
            if src is None:
                raise UnsupportedError("the netx backend needs a build compiled from a netx "
                                       f"file (it keeps a copy in {NETX_SOURCE})")
            results[b], sent[b] = run_netx_samples(src, graph, x, progress), {}
        else:
            raise ValueError(f"unknown backend '{b}'; choose from "
                             f"{BACKENDS + EXTRA_BACKENDS}")
        walls[b] = time.perf_counter() - t0
    base = backends[0]
    total, first, layers = 0, None, []
    order = {name: i for i, name in enumerate(lifs)}
    for name in lifs:
        row = {"layer": name, "neurons": int(np.prod(graph.shape(name))),
               "spikes": {b: int(np.count_nonzero(results[b][name])) for b in backends},
               "mismatches": {}}
        for b in backends[1:]:
            k = min(counts[b], counts[base])      # the samples both ran
            diff = results[b][name][:k] != results[base][name][:k]
            cnt = int(diff.sum())
            row["mismatches"][b] = cnt
            total += cnt
            if cnt:
                d = np.argwhere(diff.reshape(k, t, -1))
                key = sorted(d.tolist(), key=lambda r: (r[0], r[1] + graph.depth(name), r[2]))[0]
                cand = (key[0], key[1] + graph.depth(name), order[name], key[2], name, key[1], b)
                if first is None or cand[:4] < first[:4]:
                    first = cand
        layers.append(row)
    boundary, first_value = [], None
    for name in sorted(sent[base]):
        row = {"channel": name, "values": int(sent[base][name].size), "mismatches": {}}
        for b in backends[1:]:
            k = min(counts[b], counts[base])
            diff = np.asarray(sent[b][name])[:k] != np.asarray(sent[base][name])[:k]
            row["mismatches"][b] = int(diff.sum())
            if diff.any():
                depth = graph.depth(name.split("<-")[0])  # an output, or a partition's input
                kk = np.argwhere(diff.reshape(k, t, -1))
                kk = min(kk.tolist(), key=lambda r: (r[0], r[1] + depth, r[2]))
                cand = (kk[0], kk[1] + depth, name, kk[2], kk[1])
                if first_value is None or cand < first_value:
                    first_value = cand
        total += sum(row["mismatches"].values())
        boundary.append(row)
    divergence = _explain(build, inputs, first, results, backends, counts) if first else None
    if first_value is not None:  # what crossed the partition: each side's integer value
        sample, gstep, name, elem, step = first_value
        sides = {b: int(np.asarray(sent[b][name])[sample, step].reshape(-1)[elem])
                 for b in backends if sample < counts[b]}
        value = {"channel": name, "element": int(elem), "sample": int(sample),
                 "step": int(step), "global_step": int(gstep), "sides": sides}
        if divergence is None or (sample, gstep) <= (divergence["sample"],
                                                     divergence["global_step"]):
            divergence = dict(value, kind="co-processor value")
    nb = counts[base]          # the faithfulness verdict is the first backend's samples
    lab = labels[:nb] if labels is not None else None
    fid = fidelity.check(build, inputs[:nb], results[base], lab, tolerance, overflow)
    accuracy = None
    if labels is not None:
        out = graph.inputs(graph.output_node().name)[0]
        compiled = decision(graph.node(out), results[base][out])
        accuracy = {"samples": int(nb), "float": None,
                    "compiled": float((compiled == lab).mean()), "agreement": None}
        if fid.accuracy is not None:  # models imported in fixed point have no float side
            accuracy.update({"float": fid.accuracy["float"], "agreement": fid.agreement})
    compared = sum(row["neurons"] for row in layers) * n * t
    lava = [b for b in backends if b in LAVA_BACKENDS]
    lava_info = None
    if lava:
        lava_info = {"asked": int(n), "ran": int(counts[lava[0]]), "default": lava_default,
                     "limit": int(lava_samples), "estimated_s_per_sample": round(est, 3),
                     "budget_s": LAVA_BUDGET_S if lava_default else None}
    return VerifyReport(equivalent=total == 0, mismatches=total, samples=int(n), steps=int(t),
                        neurons_compared=int(compared), boundary=boundary,
                        backends={b: {"wall_s": round(walls[b], 4), "samples": counts[b],
                                      "spikes": int(sum(r["spikes"][b] for r in layers))}
                                  for b in backends},
                        lava_samples=lava_info,
                        layers=layers, first_divergence=divergence, accuracy=accuracy,
                        fidelity=fid)


def _explain(build, inputs, first, results, backends, counts) -> dict:
    """u, v and spike of each backend that ran the sample of the first divergence (re-runs
    that one sample)."""
    sample, gstep, _, neuron, name, step, _ = first
    backends = [b for b in backends if sample < counts[b]]
    graph, num = build.graph, build.target.numerics
    if isinstance(graph.node(name), FxSigmaDelta):   # graded: each side's value
        sides = {b: {"spike": int(np.asarray(results[b][name])[sample, step].reshape(-1)[
            neuron]), "u": None, "v": None} for b in backends}
        return {"layer": name, "neuron": int(neuron), "sample": int(sample),
                "step": int(step), "global_step": int(gstep), "sides": sides}
    one = inputs[sample:sample + 1]
    sides = {}
    for b in backends:
        spike = bool(results[b][name][sample, step].reshape(-1)[neuron])
        u = v = None
        if b == "reference":
            _, st = reference_run(graph, one, num, record_state=True)
            u, v = st[name][0][0, step], st[name][1][0, step]
        elif b == "sim":
            st = Simulator(graph, num).run(one, record_state=True).state
            u, v = st[name][0][0, step], st[name][1][0, step]
        elif b == "lava":
            try:
                from snncompile.backends.lava.run import lava_state
                u, v = lava_state(graph, one[0], name, step)
            except Exception as exc:  # diagnostics must not hide the mismatch itself
                u = v = f"unavailable ({type(exc).__name__})"
        if not isinstance(u, str):
            u = int(np.asarray(u).reshape(-1)[neuron])
            v = int(np.asarray(v).reshape(-1)[neuron])
        sides[b] = {"spike": spike, "u": u, "v": v}
    return {"layer": name, "neuron": int(neuron), "sample": int(sample), "step": int(step),
            "global_step": int(gstep), "sides": sides}
