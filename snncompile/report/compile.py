"""Human-readable tables for compile and verify reports."""
from __future__ import annotations

import numpy as np

from snncompile.ir import Graph


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


SYNAPSE_COUNTS = {
    "synapses": "connections: dense = weight-matrix entries (zeros included); conv = output "
                "neurons x kernel taps per output (padding taps included)",
    "nonzero": "connections with a non-zero weight: dense = non-zero entries; conv = non-zero "
               "kernel weights x output positions (padding taps included)",
    "kernel": "conv only: weights stored once and shared across positions",
    "mapped": "synapses stored on the cores (mapping): conv = taps that land inside the "
              "input (padding excluded, zeros included); dense = non-zero weights",
}
"""What each synapse count of the reports counts (report.md, the mapping table, report.json
`synapses` / `nonzero_synapses` / `kernel_weights`, the HTML report's legend)."""


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 core', '2 cores', '1,024 neurons'."""
    return f"{int(n):,} {word if int(n) == 1 else (many or word + 's')}"


def count_legend(keys=("synapses", "nonzero", "kernel"), names=None) -> list[str]:
    """One '- name: what it counts' line per count (Markdown list)."""
    names = names or {"synapses": "synapses", "nonzero": "non-zero", "kernel": "kernel weights",
                      "mapped": "mapped synapses"}
    return [f"- {names[k]}: {SYNAPSE_COUNTS[k]}" for k in keys]


def synapse_row(row: dict) -> bool:
    """Whether a `layer_rows` row is a synapse node (its node type's `is_synapse` trait)."""
    from snncompile.ir.nodes import NODE_TYPES
    cls = NODE_TYPES.get(row.get("op"))
    return cls is not None and cls.is_synapse


def layer_rows(graph: Graph) -> list[dict]:
    """Per-layer structure: shapes, neuron and synapse counts."""
    rows = []
    for name in graph.order():
        node = graph.node(name)
        row = {"name": name, "op": type(node).__name__, "shape": list(graph.shape(name)),
               "neurons": 0, "synapses": 0, "nonzero_synapses": 0}
        if node.is_neuron:
            row["neurons"] = int(np.prod(node.shape))
        else:
            row.update(node.connections(tuple(graph.shape(name))))
        rows.append(row)
    return rows


def compile_markdown(report: dict) -> str:
    src = report.get("source", "")
    out = [f"# Compile report: {src} -> {report['target']}", ""]
    tot = report["totals"]
    out.append(f"{plural(tot['neurons'], 'neuron')}, {plural(tot['synapses'], 'synapse')} "
               f"(connections, zeros included; {tot['nonzero_synapses']:,} with a non-zero "
               f"weight), {plural(tot['layers'], 'neuron layer')}.")
    if report.get("nir"):
        out += [""] + _nir_lines(report["nir"])
    out += ["", "## Layers", ""]
    out.append(table(["node", "op", "shape", "neurons", "synapses", "non-zero",
                      "kernel weights", "details"],
                     [[r["name"], r["op"], "x".join(map(str, r["shape"])), r["neurons"] or "",
                       r["synapses"] if synapse_row(r) else "",
                       r["nonzero_synapses"] if synapse_row(r) else "",
                       r.get("kernel_weights", ""), r.get("summary", "")]
                      for r in report["layers"]],
                     "lllrrrrl"))
    out += ["", "Counts (the mapping table's 'mapped synapses' are what the cores store):"] \
        + count_legend()
    out += ["", "## Quantisation", ""] + (_quant_lines(report) if report["quantization"]
                                          else _fixed_import_lines(report))
    if report.get("fidelity"):
        from snncompile.verify.fidelity import FidelityReport
        out += ["", "## Fidelity on calibration data", "",
                FidelityReport.from_json(report["fidelity"]).markdown()]
    if report.get("path_delays"):
        out += ["", "## Inserted path delays", "",
                "Paths of unequal depth meet in step: each early synapse holds its output "
                "the extra steps (in local time the network is the delay-free one it was "
                "trained as).", ""]
        out += [f"- {d['synapse']} -> {d['into']}: +{d['steps']} step(s) on "
                f"{d['synapses']} synapses; {d['cost']}" for d in report["path_delays"]]
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
