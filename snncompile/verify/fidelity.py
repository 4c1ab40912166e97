"""Is the compiled network faithful to the float model it was compiled from?

The one owner of "float vs compiled". `compare()` takes the float model's and the compiled
network's spikes on the same inputs and reports, per neuron layer:

* float and compiled activity: spike counts (for a graded layer, the sum of |graded spike|),
  summed over samples, steps and neurons;
* their relative difference (compiled - float) / float;
* the rate correlation: Pearson's r between the float and the compiled spike count of
  every neuron on every sample (summed over steps; (sample, neuron) pairs, so that a
  10-neuron output layer still gives a stable number);

and, for the network: the output agreement (fraction of samples on which both take the same
decision) and, with labels, both accuracies. The verdict is FAITHFUL when, within the
tolerance (`Tolerance`), every layer's count and correlation and the output agreement hold,
and no layer is silent; otherwise NOT FAITHFUL, naming every failure and the worst layer.

Default tolerance (`Tolerance()`): spike counts within +-5% per layer, per-neuron rate
correlation >= 0.9, same decision on >= 90% of samples. Measured on the demo models and the
committed attention checkpoints (README "Two verdicts"): calibrated builds are within
2.6% per layer on their test samples (correlation >= 0.991, agreement >= 97.8%) except
TCSA, whose integer attention fires 10-12% less than its float model (a rounding bias of
the gates); the MLP compiled without calibration is 46% off in lif1 (correlation 0.35)
with 26% agreement.

When a verdict fails, `check` can run the float model again under rounding-sized noise
(`snncompile.verify.sensitivity`) and say whether the drift is within what that gives the
float model itself: a model can be too sensitive to be compiled faithfully.

Where there is no float model (a netx file is fixed point already) the report is NOT
CHECKED with the reason, never faithful. An HTDA model's float graph holds its top-down
loop (TopDown, Delay, Gate nodes), so HTDA builds are checked like every other.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from snncompile.errors import SnnCompileError
from snncompile.ir import NEURON_TYPES, FxLI, FxSigmaDelta, Graph
from snncompile.ir.timing import delay_neurons
from snncompile.ir.registry import Rules
from snncompile.report.compile import table

OVERFLOW_WORDS = {"u_wrap": "24-bit current (u) wraps", "v_clip": "24-bit voltage (v) "
                  "saturations", "int32_wrap": "int32 wraps", "conv_wrap": "conv "
                  "accumulator wraps", "message_bits": "graded spikes wider than the "
                  "message width", "would_spike": "readout voltages above vth << 6 (a chip "
                  "would spike and reset)"}


class UnfaithfulError(SnnCompileError):
    """`compile --strict`: the compiled network wraps, saturates, goes silent or departs
    from the float model on the calibration data."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    spikes: float = 0.05
    """Largest |compiled - float| / float of a layer's spike count."""
    correlation: float = 0.9
    """Smallest per-neuron rate correlation of a layer (where defined)."""
    agreement: float = 0.9
    """Smallest fraction of samples on which float and compiled take the same decision."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and 0 <= v and v == v and v != float("inf")):
                raise SnnCompileError(f"tolerance {f.name}: {v!r} must be a finite number "
                                      ">= 0")
        if self.correlation > 1 or self.agreement > 1:
            raise SnnCompileError(f"tolerance: correlation ({self.correlation}) and "
                                  f"agreement ({self.agreement}) must be at most 1")

    def text(self) -> str:
        return (f"spike count within +-{self.spikes:.0%} per layer, per-neuron rate "
                f"correlation >= {self.correlation:g}, same decision on >= "
                f"{self.agreement:.0%} of samples")


@dataclasses.dataclass
class FidelityReport:
    checked: bool
    faithful: bool | None            # None when not checked
    reason: str                      # why it was not checked ("" when checked)
    float_model: str                 # what the float side was
    samples: int
    steps: int
    tolerance: dict
    layers: list = dataclasses.field(default_factory=list)
    """Per neuron layer: layer, neurons, float, compiled (activity), difference (relative,
    None when the float layer is silent), correlation (None where undefined), graded."""
    output: str = ""
    agreement: float | None = None
    accuracy: dict | None = None     # {"float", "compiled"} with labels
    worst: dict | None = None        # {"layer", "difference"}: the largest |difference|
    failures: list = dataclasses.field(default_factory=list)
    """One line each: why the verdict is NOT FAITHFUL."""
    notes: list = dataclasses.field(default_factory=list)
    """One line each: problems outside the verdict (wraps, saturation counts)."""
    sensitivity: dict | None = None
    """After a failed verdict: the float model's own spread under rounding-sized noise
    (`snncompile.verify.sensitivity.Spread.to_json`) and its lines; None when not run."""

    @property
    def verdict(self) -> str:
        if not self.checked:
            return "NOT CHECKED"
        return "FAITHFUL" if self.faithful else "NOT FAITHFUL"

    def to_json(self) -> dict:
        return dict(dataclasses.asdict(self), verdict=self.verdict)

    @classmethod
    def from_json(cls, doc: dict) -> "FidelityReport":
        return cls(**{f.name: doc[f.name] for f in dataclasses.fields(cls) if f.name in doc})

    def verdict_line(self) -> str:
        if not self.checked:
            return f"NOT CHECKED (faithfulness to the float model): {self.reason}"
        w = self.worst
        worst = (f"worst layer {w['layer']}, spike count {_pct(w['difference'])} vs float"
                 if w and w["difference"] is not None else "")
        if self.faithful:
            return (f"FAITHFUL to the float model ({self.float_model}): {worst} (tolerance: "
                    f"{Tolerance(**self.tolerance).text()})")
        parts = []
        if w and w["difference"] is not None and abs(w["difference"]) > self.tolerance["spikes"]:
            parts.append(f"{worst} (tolerance +-{self.tolerance['spikes']:.0%})")
        if self.agreement is not None and self.agreement < self.tolerance["agreement"]:
            parts.append(f"same decision on {self.agreement:.1%} of {self.samples} samples "
                         f"(minimum {self.tolerance['agreement']:.0%})")
        if not parts:
            parts.append(self.failures[0])
        n = len(self.failures)
        return (f"NOT FAITHFUL to the float model: {'; '.join(parts)}; {n} problem"
                f"{'s' if n > 1 else ''} in all")

    def text(self, what: str = "inputs") -> str:
        if not self.checked:
            return self.verdict_line()
        head, rows = self._rows(lambda r: r["layer"] + (" (output)" if r["layer"] ==
                                                        self.output else ""))
        lines = [f"fidelity to the float model ({self.float_model}) on {self.samples} {what} "
                 f"x {self.steps} steps:", table(head, rows)]
        if self.agreement is not None:
            lines.append(f"same decision as the float model on {self.agreement:.2%} of "
                         f"{self.samples} samples")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.verdict_line())
        lines += self.sensitivity_lines()
        return "\n".join(lines)

    def sensitivity_lines(self) -> list[str]:
        return list((self.sensitivity or {}).get("lines") or [])

    def _rows(self, label) -> tuple[list[str], list[list]]:
        """The per-layer table: header and rows. Where some layer counts something other
        than spikes (graded values, a readout's |v|), a "counted" column says what."""
        mixed = any(r.get("unit", SPIKES) != SPIKES for r in self.layers)
        head = ["layer", "neurons"] + (["counted", "float", "compiled"] if mixed else
                                       ["float spikes", "compiled spikes"]) + \
            ["difference", "rate corr"]
        rows = [[label(r), r["neurons"]] + ([r.get("unit", SPIKES)] if mixed else []) +
                [r["float"], r["compiled"],
                 "float silent" if r["difference"] is None else _pct(r["difference"]),
                 "-" if r["correlation"] is None else f"{r['correlation']:.3f}"]
                for r in self.layers]
        return head, rows

    def markdown(self) -> str:
        """report.md's "Fidelity on calibration data" section body."""
        if not self.checked:
            return f"Not checked: {self.reason}"
        head, rows = self._rows(lambda r: r["layer"])
        out = [f"Float model ({self.float_model}) and compiled network (simulator) on the "
               f"{self.samples} calibration samples x {self.steps} steps; spikes summed over "
               "samples, steps and neurons (graded layers: sum of |graded spike|; readouts: "
               "sum of |v| in the compiled integer units).", "", table(head, rows)]
        if self.agreement is not None:
            out += ["", f"Same decision on {self.agreement:.2%} of the samples."]
        out += ["", f"Tolerance: {Tolerance(**self.tolerance).text()}."]
        problems = self.failures + self.notes
        out += ["", (f"**{self.verdict}**" + (": " + "; ".join(problems) if problems else "")
                     + ".")]
        out += ["", "The compile or the model? " + " ".join(self.sensitivity_lines())] \
            if self.sensitivity_lines() else []
        return "\n".join(out)

    def warnings(self) -> list[str]:
        """Every problem, one line each (compile prints them; --strict refuses on any)."""
        return list(self.failures) + list(self.notes)


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def not_checked(reason: str, samples: int = 0, steps: int = 0,
                tol: Tolerance | None = None) -> FidelityReport:
    return FidelityReport(checked=False, faithful=None, reason=reason, float_model="",
                          samples=samples, steps=steps,
                          tolerance=dataclasses.asdict(tol or Tolerance()))


READING = Rules("fidelity reading")
"""Neuron type -> how fidelity reads its records, where spike counts do not apply: an object
with `decision(node, out)` (class per sample) and `activity(node, out)` (per sample and
neuron, additive integers comparable between the float and the compiled side)."""


class _Readout:
    """A leaky-integrator readout (FxLI). Its compiled records are v_int (integers, the
    value is v_int / scale + offset), the float model's are the values themselves."""

    unit = "summed |v| (readout)"

    @staticmethod
    def values(node: FxLI, out: np.ndarray) -> np.ndarray:
        """(N, T, neurons) readout values, float64."""
        a = np.asarray(out)
        flat = a.reshape(a.shape[0], a.shape[1], -1).astype(np.float64)
        offset = np.broadcast_to(np.asarray(node.offset, np.float64), node.shape).ravel()
        return flat / node.scale + offset if a.dtype.kind in "biu" else flat

    def decision(self, node: FxLI, out: np.ndarray) -> np.ndarray:
        """argmax over classes of the values' last step, sum or maximum (node.decision)."""
        v = self.values(node, out)
        agg = {"last": lambda a: a[:, -1], "sum": lambda a: a.sum(1),
               "max": lambda a: a.max(1)}[node.decision]
        return agg(v).argmax(1)

    def activity(self, node: FxLI, out: np.ndarray) -> np.ndarray:
        """Sum over steps of |v| (the state, without offset) in the compiled integer units:
        the float model's values are scaled by `scale` and rounded."""
        a = np.asarray(out)
        if a.dtype.kind in "biu":
            return np.abs(a.reshape(a.shape[0], a.shape[1], -1).astype(np.int64)).sum(1)
        offset = np.broadcast_to(np.asarray(node.offset, np.float64), node.shape).ravel()
        state = (self.values(node, a) - offset) * node.scale
        return np.rint(np.abs(state).sum(1)).astype(np.int64)


READING.add(FxLI, _Readout())

SPIKES = "spikes"


def _unit(node, graded: bool) -> str:
    """What a layer's activity counts: spikes, graded spikes' |value|, or its READING's."""
    reading = READING.get(node)
    if reading is not None:
        return reading.unit
    return "graded spikes (sum of |value|)" if graded else SPIKES


def decision(node, out: np.ndarray) -> np.ndarray:
    """Class per sample from an output layer's (N, T, ...) record: the spike count of a LIF
    layer, the last value of a sigma readout (it accumulates), the sum of a sigma-delta
    layer's graded spikes (they add up to its activation); a type in READING decides by
    its own rule (a leaky-integrator readout: last / sum / max of its values)."""
    reading = READING.get(node)
    if reading is not None:
        return reading.decision(node, out)
    n, t = out.shape[:2]
    flat = out.reshape(n, t, -1)
    if flat.dtype.kind not in "biu":        # (integers and spikes: no int64 copy of it all)
        flat = flat.astype(np.int64)
    if isinstance(node, FxSigmaDelta) and node.role == "sigma":
        return flat[:, -1].astype(np.int64).argmax(1)
    return flat.sum(1, dtype=np.int64).argmax(1)


def _activity(node, a: np.ndarray) -> np.ndarray:
    """Activity (N, neurons) of `node`'s record: its READING rule's, else `_per_neuron`."""
    reading = READING.get(node)
    return reading.activity(node, a) if reading is not None else _per_neuron(a)


def _per_neuron(a: np.ndarray) -> np.ndarray:
    """Activity (N, neurons) per sample and neuron, summed over steps: spikes, or
    |graded spike|."""
    a = np.asarray(a)
    flat = a.reshape(a.shape[0], a.shape[1], -1)
    if a.dtype == bool:
        return flat.sum(1, dtype=np.int64)
    return np.abs(flat.astype(np.int64)).sum(1)


def _moments(f: np.ndarray, c: np.ndarray) -> list[int]:
    """Exact integer sufficient statistics of Pearson's r: [n, sum f, sum c, sum f^2,
    sum c^2, sum f*c] (they add up over disjoint sets of samples)."""
    f, c = f.astype(np.int64, copy=False).ravel(), c.astype(np.int64, copy=False).ravel()
    big = max(int(np.abs(f).max(initial=0)), int(np.abs(c).max(initial=0)))
    if big * big * max(f.size, 1) >= 2 ** 62:      # int64 sums could wrap: Python ints
        f, c = f.astype(object), c.astype(object)
        return [int(f.size), int(f.sum()), int(c.sum()), int((f * f).sum()),
                int((c * c).sum()), int((f * c).sum())]
    # exact int64 sums that cannot wrap (above); dot products need no temporaries
    return [int(f.size), int(f.sum()), int(c.sum()), int(np.dot(f, f)), int(np.dot(c, c)),
            int(np.dot(f, c))]


def _correlation(m: list[int] | None) -> float | None:
    """Pearson's r from `_moments` (None where undefined: fewer than 2 pairs or a constant
    side); exact integers up to one division and one square root."""
    if m is None:
        return None
    n, sf, sc, sff, scc, sfc = m
    vf, vc = n * sff - sf * sf, n * scc - sc * sc
    if n < 2 or vf <= 0 or vc <= 0:
        return None
    return max(-1.0, min(1.0, (n * sfc - sf * sc) / (math.sqrt(vf) * math.sqrt(vc))))


def statistics(graph: Graph, float_out: dict | None, compiled_out: dict, labels=None,
               overflow: dict | None = None) -> dict:
    """What a fidelity verdict is made of, as additive integers: per neuron layer the float
    and compiled activity and the rate-correlation moments; decisions agreed, labels right;
    wrap counts. `merge_statistics` adds those of disjoint sample sets exactly, and
    `from_statistics` judges them, so a verdict over shards equals the one over their union.
    `float_out` None: there is no float model (compiled side only)."""
    out_name = graph.inputs(graph.output_node().name)[0]
    some = next(iter(compiled_out.values()))
    st = {"samples": int(some.shape[0]), "steps": int(some.shape[1]), "output": out_name,
          "layers": [], "agree": None, "labelled": 0, "right_float": None,
          "right_compiled": None,
          "overflow": {k: {kk: int(vv) for kk, vv in v.items()}
                       for k, v in (overflow or {}).items()}, "extra_notes": []}
    relays = delay_neurons(graph)      # path-balancing copies, not trained layers
    for node in graph.nodes(NEURON_TYPES):
        name = node.name
        if name not in compiled_out or name in relays:
            continue
        c_n = _activity(node, compiled_out[name])
        row = {"layer": name, "neurons": int(c_n.shape[1]), "float": None,
               "compiled": int(c_n.sum()), "moments": None,
               "graded": bool(compiled_out[name].dtype != bool)}
        row["unit"] = _unit(node, row["graded"])
        if float_out is not None and name in float_out:
            f_n = _activity(node, float_out[name])
            row["float"] = int(f_n.sum())
            if f_n.shape == c_n.shape:
                row["moments"] = _moments(f_n, c_n)
        row["has_float"] = float_out is not None and name in float_out
        st["layers"].append(row)
    if float_out is not None and out_name in compiled_out and out_name in float_out:
        node = graph.node(out_name)
        comp = decision(node, compiled_out[out_name])
        flt = decision(node, float_out[out_name])
        st["agree"] = int((comp == flt).sum())
        if labels is not None:
            labels = np.asarray(labels)
            st["labelled"] = int(labels.size)
            st["right_float"] = int((flt == labels).sum())
            st["right_compiled"] = int((comp == labels).sum())
    return st


def merge_statistics(parts: list[dict]) -> dict:
    """The statistics of the union of the (disjoint) sample sets `parts` were taken on."""
    first = parts[0]
    out = {"samples": sum(p["samples"] for p in parts), "steps": first["steps"],
           "output": first["output"], "layers": [], "overflow": {}, "extra_notes": []}
    for i, row in enumerate(first["layers"]):
        rows = [p["layers"][i] for p in parts]
        m = None
        if all(r["moments"] is not None for r in rows):
            m = [sum(r["moments"][k] for r in rows) for k in range(6)]
        out["layers"].append(dict(row, compiled=sum(r["compiled"] for r in rows),
                                  float=None if row["float"] is None else
                                  sum(r["float"] for r in rows), moments=m))
    for key in ("agree", "right_float", "right_compiled"):
        vals = [p[key] for p in parts]
        out[key] = None if any(v is None for v in vals) else sum(vals)
    out["labelled"] = sum(p["labelled"] for p in parts)
    for p in parts:
        for name, counts in p["overflow"].items():
            acc = out["overflow"].setdefault(name, {})
            for k, v in counts.items():
                acc[k] = acc.get(k, 0) + v
        out["extra_notes"] += [n for n in p["extra_notes"] if n not in out["extra_notes"]]
    return out


def from_statistics(st: dict, tol: Tolerance | None = None, float_model: str = "float graph",
                    reason: str | None = None) -> FidelityReport:
    """The verdict on `statistics` (`reason`: why there is no float model, NOT CHECKED)."""
    tol = tol or Tolerance()
    n, out_name = st["samples"], st["output"]
    if reason is not None:
        rep = not_checked(reason, n, st["steps"], tol)
        rep.output = out_name
        for r in st["layers"]:
            if r["compiled"] == 0:
                rep.notes.append(f"{r['layer']}{' (output)' if r['layer'] == out_name else ''}"
                                 f": silent in the compiled network on {n} samples")
    else:
        rep = FidelityReport(checked=True, faithful=None, reason="", float_model=float_model,
                             samples=n, steps=st["steps"], tolerance=dataclasses.asdict(tol),
                             output=out_name)
        _judge(rep, st, tol)
    for name, counts in sorted(st["overflow"].items()):
        found = [f"{v:,} {OVERFLOW_WORDS.get(k, k)}" for k, v in counts.items() if v]
        if found:
            rep.notes.append(f"{name}: " + ", ".join(found) + f" on {n} samples")
    rep.notes += st["extra_notes"]
    if reason is None:
        rep.faithful = not rep.failures
    rep.statistics = st   # not part of the JSON: what shards merge (see scale.py)
    return rep


def _judge(rep: FidelityReport, st: dict, tol: Tolerance) -> None:
    n, out_name, fails = st["samples"], st["output"], rep.failures
    for r in st["layers"]:
        name, cs = r["layer"], r["compiled"]
        unit = r.get("unit", SPIKES)         # results stored before units were recorded
        count = "spike count" if unit == SPIKES else unit
        if not r["has_float"]:
            fails.append(f"{name}: has no counterpart in the float model")
            rep.layers.append({"layer": name, "neurons": r["neurons"], "float": None,
                               "compiled": cs, "difference": None, "correlation": None,
                               "graded": r["graded"], "unit": unit})
            continue
        fs = r["float"]
        diff = (cs - fs) / fs if fs else None
        corr = _correlation(r["moments"])
        rep.layers.append({"layer": name, "neurons": r["neurons"], "float": fs,
                           "compiled": cs, "difference": diff, "correlation": corr,
                           "graded": r["graded"], "unit": unit})
        where = f"{name}{' (output)' if name == out_name else ''}"
        if fs == 0 and cs == 0:
            fails.append(f"{where}: silent in both the float model and the compiled network "
                         f"on {n} samples (nothing to compare; a float model that never "
                         "fires suggests a wrong import or input encoding)")
        elif fs == 0:
            fails.append(f"{where}: silent in the float model but {cs:,} compiled {unit}")
        elif cs == 0:
            fails.append(f"{where}: silent in the compiled network on {n} samples (float "
                         f"model: {fs:,} {unit})")
        elif abs(diff) > tol.spikes:
            fails.append(f"{where}: compiled {count} {cs:,} is {_pct(diff)} off the float "
                         f"model's {fs:,} (tolerance +-{tol.spikes:.0%})")
        if corr is not None and corr < tol.correlation and fs and cs:
            fails.append(f"{where}: per-neuron rate correlation {corr:.3f} is below "
                         f"{tol.correlation:g}")
    scored = [r for r in rep.layers if r["difference"] is not None]
    if scored:
        w = max(scored, key=lambda r: abs(r["difference"]))
        rep.worst = {"layer": w["layer"], "difference": w["difference"]}
    if st["agree"] is not None:
        rep.agreement = st["agree"] / n
        if rep.agreement < tol.agreement:
            fails.append(f"output {out_name}: same decision as the float model on only "
                         f"{rep.agreement:.1%} of {n} samples (minimum {tol.agreement:.0%})")
        if st["right_float"] is not None:
            rep.accuracy = {"float": st["right_float"] / st["labelled"],
                            "compiled": st["right_compiled"] / st["labelled"]}


def compare(graph: Graph, float_out: dict, compiled_out: dict, labels=None,
            tol: Tolerance | None = None, overflow: dict | None = None,
            float_model: str = "float graph") -> FidelityReport:
    """Float vs compiled on the same inputs. `graph`: the compiled (fixed-point) graph;
    `float_out`, `compiled_out`: layer name -> (N, T, *shape) spikes (bool) or graded
    spikes; `overflow`: the simulator's per-node wrap/saturation counts (notes only)."""
    return from_statistics(statistics(graph, float_out, compiled_out, labels, overflow),
                           tol, float_model)


def compiled_only(graph: Graph, compiled_out: dict, reason: str, overflow: dict | None = None,
                  tol: Tolerance | None = None) -> FidelityReport:
    """No float model: NOT CHECKED, with what the compiled side alone shows (silent layers,
    an output that never fires, wraps) as notes."""
    return from_statistics(statistics(graph, None, compiled_out, None, overflow), tol,
                           reason=reason)


FloatRunner = Callable[[np.ndarray], dict]

LEGACY_HTDA_MODEL = "htda/model.pt"
"""The checkpoint copy HTDA builds kept before their float graph held the loop."""


def graph_runner(float_graph: Graph) -> FloatRunner:
    from snncompile.backends.float_model import run_float
    return lambda x: run_float(float_graph, x, progress="float model")


def float_side(build) -> tuple[FloatRunner | None, str]:
    """(runner, description) of a build's float model, or (None, why there is none)."""
    if build.float_graph is not None and build.float_graph.stage != "fixed":
        return graph_runner(build.float_graph), "float graph, float/"
    if LEGACY_HTDA_MODEL in build.members:
        return None, (f"an HTDA build written before its top-down loop was part of the "
                      f"float graph (it keeps {LEGACY_HTDA_MODEL}, no float/): recompile it "
                      "for the float-vs-compiled check")
    if build.graph.meta.get("frontend") == "netx":
        return None, ("the model was imported from a lava-dl netx file, which is fixed point "
                      "already: there is no float model to compare with (the backend "
                      "verdict still holds)")
    return None, "the build keeps no float model to compare with"


def check(build, inputs: np.ndarray, compiled_out: dict, labels=None,
          tol: Tolerance | None = None, overflow: dict | None = None,
          sensitivity: int = 0) -> FidelityReport:
    """Run the build's float model on `inputs` and compare with `compiled_out`. When the
    verdict fails and `sensitivity` > 0, run the float model that many times more under
    rounding-sized noise (`snncompile.verify.sensitivity`) and say how far it moves."""
    runner, what = float_side(build)
    if runner is None:
        return compiled_only(build.graph, compiled_out, what, overflow, tol)
    float_out = runner(inputs)
    st = statistics(build.graph, float_out, compiled_out, labels, overflow)
    msg = steps_warning(build, inputs)
    if msg:
        st["extra_notes"].append(msg)
    rep = from_statistics(st, tol, what)
    if sensitivity > 0 and rep.faithful is False:
        add_sensitivity(rep, build, inputs, float_out, runner, sensitivity)
    return rep


def add_sensitivity(rep: FidelityReport, build, inputs: np.ndarray, float_out: dict,
                    runner: FloatRunner, draws: int) -> None:
    """Set `rep.sensitivity` (spread and lines) from `draws` perturbed float runs on
    `inputs` (`snncompile.verify.sensitivity`); `build` needs graph, float_graph, target
    and report (verify passes the Build, compile what it has assembled)."""
    from snncompile.verify.sensitivity import explain, float_spread
    out = build.graph.inputs(build.graph.output_node().name)[0]
    node = build.graph.node(out)
    decide = (lambda o: decision(node, o[out]) if out in o else None)
    spread = float_spread(build, inputs, float_out, decide, runner, draws)
    if spread is not None:
        rep.sensitivity = dict(spread.to_json(), lines=explain(rep, spread))


def calibration_steps(build_report: dict) -> int | None:
    calib = build_report.get("calibration") or {}
    steps = calib.get("steps")
    return int(steps) if isinstance(steps, int) and not isinstance(steps, bool) else None


def steps_warning(build, inputs: np.ndarray) -> str | None:
    """A line when `inputs` have another number of time steps than the calibration data:
    state headroom and fidelity were checked only for the calibrated length."""
    steps = calibration_steps(build.report)
    if steps is None or inputs.ndim < 2 or inputs.shape[1] == steps:
        return None
    return (f"inputs have {inputs.shape[1]} time steps but the build was calibrated on "
            f"{steps}: state headroom, wraps and fidelity were checked for {steps} steps only")
