"""Human-readable tables for compile and verify reports."""
from __future__ import annotations

import numpy as np

from .ir import NEURON_TYPES, FxConv2d, FxDense, Graph


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(r, widths, align)) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _fmt(c) -> str:
    if isinstance(c, float):
        if c == 0:
            return "0"
        return f"{c:.3g}" if abs(c) < 1e-2 or abs(c) >= 1e5 else f"{c:.4g}"
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        return f"{int(c):,}"
    return str(c)


def layer_rows(graph: Graph) -> list[dict]:
    """Per-layer structure: shapes, neuron and synapse counts."""
    rows = []
    for name in graph.order():
        node = graph.node(name)
        row = {"name": name, "op": type(node).__name__, "shape": list(graph.shape(name)),
               "neurons": 0, "synapses": 0, "nonzero_synapses": 0}
        if isinstance(node, NEURON_TYPES):
            row["neurons"] = int(np.prod(node.shape))
        elif isinstance(node, FxDense):
            row["synapses"] = int(node.weight.size)
            row["nonzero_synapses"] = int(np.count_nonzero(node.weight))
        elif isinstance(node, FxConv2d):
            o, oh, ow = graph.shape(name)
            per_out = node.weight[0].size
            row["synapses"] = int(o * oh * ow * per_out)  # connections, kernel shared
            row["kernel_weights"] = int(node.weight.size)
            row["nonzero_synapses"] = int(np.count_nonzero(node.weight)) * oh * ow
        rows.append(row)
    return rows


def compile_markdown(report: dict) -> str:
    src = report.get("source", "")
    out = [f"# Compile report: {src} -> {report['target']}", ""]
    out.append(f"{report['totals']['neurons']:,} neurons, {report['totals']['synapses']:,} "
               f"synapses ({report['totals']['nonzero_synapses']:,} non-zero), "
               f"{report['totals']['layers']} neuron layers.")
    if report.get("nir"):
        out += [""] + _nir_lines(report["nir"])
    out += ["", "## Layers", ""]
    out.append(table(["node", "op", "shape", "neurons", "synapses", "details"],
                     [[r["name"], r["op"], "x".join(map(str, r["shape"])), r["neurons"],
                       r["synapses"], r.get("summary", "")] for r in report["layers"]],
                     "lllrrl"))
    out += ["", "## Quantisation", ""] + (_quant_lines(report) if report["quantization"]
                                          else _fixed_import_lines(report))
    if report.get("fidelity"):
        from .fidelity import FidelityReport
        out += ["", "## Fidelity on calibration data", "",
                FidelityReport.from_json(report["fidelity"]).markdown()]
    for extra in report.get("sections", []):
        out += ["", f"## {extra['title']}", "", extra["text"]]
    return "\n".join(out) + "\n"


def _nir_lines(nir: dict) -> list[str]:
    """What a NIR import used: time step, its source, convention, assumptions."""
    unit = " s" if nir.get("dt_unit", "s") == "s" else " step"
    out = [f"NIR time step: dt = {nir['dt']:g}{unit} ({nir['dt_source']}"
           + ("; GUESSED, pass --dt if the exporter used another" if nir.get("dt_guessed")
              else "") + f"). Exporter convention: {nir['convention']} "
           f"({nir['convention_source']})."]
    if nir.get("assumptions"):
        out += ["", "Assumed on import:", ""] + [f"- {a}" for a in nir["assumptions"]]
    return out


def _fixed_import_lines(report: dict) -> list[str]:
    """A model imported in fixed point (netx) is not quantised: say so, with what
    calibration found."""
    out = [f"None: the model was imported in fixed point "
           f"({report.get('frontend') or 'fixed-stage graph'}), so its integers are compiled "
           "as they are."]
    calib = report.get("calibration")
    if calib:
        sat = report.get("saturation", {})
        found = "; ".join(f"{k}: " + ", ".join(f"{n} {c}" for n, c in v.items() if c)
                          for k, v in sorted(sat.items()))
        out += ["", f"On {calib['samples']} calibration samples from {calib['file']}: "
                + (found or "no wraps, saturations or over-wide messages") + "."]
    else:
        out += ["", "Pass --calib FILE.npz to count wraps, saturations and over-wide graded "
                "messages on sample inputs."]
    return out


def _quant_lines(report: dict) -> list[str]:
    out = ["scale = integer units per float unit of input current; errors are relative "
           "(weights: RMS, threshold: rounding); peak = calibrated peak |u|,|v| / 24-bit range.",
           ""]
    rows = []
    for q in report["quantization"]:
        sat = report.get("saturation", {}).get(q["layer"], {})
        peak = q["peak_state_fraction"]
        rows.append([q["layer"], q["synapse"], q["scale"], q["weight_exp"],
                     f"8b {q['sign_mode']}", q["weight_max_mant"], q["weight_rel_error"],
                     q["vth"], q["vth_rel_error"], f"{q['du']}/{q['dv']}", q["bias_exp"],
                     "-" if peak is None else f"{peak:.2f}",
                     "-" if not sat else sum(sat.values()), q["limited_by"]])
    out.append(table(["layer", "synapse", "scale", "w_exp", "weights", "max w", "w err",
                      "vth", "vth err", "du/dv", "b_exp", "peak", "sat", "scale limited by"],
                     rows, "llrrlrrrrlrrrl"))
    calib = report.get("calibration")
    out += ["", ("Calibration: " + (f"{calib['samples']} samples from {calib['file']}; "
                                    "'sat' counts wraps and saturations seen on them."
                                    if calib else "none (pass --calib FILE.npz to check "
                                    "state headroom; 'peak' and 'sat' are unknown)."))]
    return out
