"""`snncompile report` and `snncompile inspect`: what a researcher sees of a build.

`build_page(build, ...)` gathers everything a build knows (compile report, mapping,
partition, verify and fidelity verdicts) and, given inputs, runs the float model, the
simulator and the energy model on them; `Page.html()` renders one self-contained HTML file
(inline CSS, figures as base64 PNG: it opens without network access) and
`Page.write_pngs(dir)` writes the same figures as PNG files. Every figure comes from
snncompile.report.plots, so each category keeps one colour everywhere.

`describe(build)` is what `inspect` prints: the input the build expects, its target, its
cores and its verdicts so far.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
from pathlib import Path

import numpy as np

from snncompile.report import plots
from snncompile.errors import InputFileError
from snncompile.report.compile import SYNAPSE_COUNTS, synapse_row

# A verify report is looked for, when none is given, in BUILD/verify.json, then
# BUILD.verify.json beside the build directory, then NAME.verify.json for NAME.build (what
# examples/demo.py writes).


@dataclasses.dataclass
class Figure:
    name: str        # file stem of its PNG, id of its <figure>
    caption: str
    png: bytes


@dataclasses.dataclass
class Section:
    title: str
    body: str = ""                     # HTML (already escaped)
    figures: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Page:
    title: str
    sections: list
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures]

    def html(self) -> str:
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               f"<title>{_e(self.title)}</title>", f"<style>{CSS}</style></head><body>",
               f"<h1>{_e(self.title)}</h1>"]
        if self.warnings:
            out.append('<div class="warn">' + "<br>".join(_e(w) for w in self.warnings)
                       + "</div>")
        out.append("<nav>" + " &middot; ".join(
            f'<a href="#s{i}">{_e(s.title)}</a>' for i, s in enumerate(self.sections))
            + "</nav>")
        for i, s in enumerate(self.sections):
            out.append(f'<section id="s{i}"><h2>{_e(s.title)}</h2>{s.body}')
            for f in s.figures:
                data = base64.b64encode(f.png).decode("ascii")
                out.append(f'<figure id="fig-{_e(f.name)}" class="plot">'
                           f'<img alt="{_e(f.caption)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{_e(f.caption)}</figcaption></figure>")
            out.append("</section>")
        out.append('<footer>Written by snncompile report. Estimates are marked as such; '
                   'counts say what they count.</footer></body></html>')
        return "\n".join(out) + "\n"

    def write_html(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            raise InputFileError(f"-o {path}: the report is an HTML page; name it .html")
        _atomic_write(path, self.html().encode("utf-8"))
        return path

    def write_pngs(self, folder: str | Path) -> list[Path]:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise InputFileError(f"--png-dir {folder}: exists and is not a directory")
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for f in self.figures:
            p = folder / f"{f.name}.png"
            _atomic_write(p, f.png)
            paths.append(p)
        return paths


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 2em;color:#222;background:#fff}
h1{font-size:1.5em;border-bottom:2px solid #1f77b4;padding-bottom:.3em}
h2{font-size:1.2em;margin-top:1.8em;color:#1f4e79}
nav{font-size:.9em;margin-bottom:1em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f4f8}
td.l,th.l{text-align:left}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:.92em}
dl.kv dt{font-weight:600}
dl.kv dd{margin:0}
figure.plot{margin:1em 0;border:1px solid #eee;padding:.5em;display:inline-block;
max-width:100%}
figure.plot img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#555;margin-top:.3em}
.na{color:#888;font-style:italic}
.ok{color:#1a7f37;font-weight:700}
.bad{color:#cf222e;font-weight:700}
.warn{background:#fff4e5;border:1px solid #f0b429;padding:.5em 1em;margin:1em 0}
.note{font-size:.85em;color:#555}
footer{margin-top:3em;font-size:.8em;color:#888}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _atomic_write(path: Path, data: bytes) -> None:
    from snncompile.safe_io import atomic_write_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _fmt(c) -> str:
    from snncompile.report.compile import _fmt as fmt
    return fmt(c)


def html_table(headers: list, rows: list[list], left: int = 1, last_left: bool = False) -> str:
    """A table; `headers` items are text or (text, tooltip); the first `left` columns (and
    the last one if `last_left`) are left-aligned."""
    n = len(headers)
    lcols = set(range(left)) | ({n - 1} if last_left else set())
    head = []
    for i, h in enumerate(headers):
        text, tip = (h, "") if isinstance(h, str) else h
        cls = ' class="l"' if i in lcols else ""
        head.append(f"<th{cls}" + (f' title="{_e(tip)}"' if tip else "") + f">{_e(text)}</th>")
    body = []
    for r in rows:
        body.append("<tr>" + "".join(
            ('<td class="l">' if i in lcols else "<td>") + f"{_e(_fmt(c))}</td>"
            for i, c in enumerate(r)) + "</tr>")
    return "<table><thead><tr>" + "".join(head) + "</tr></thead><tbody>" + "".join(body) \
        + "</tbody></table>"


def _kv(items: list[tuple[str, str]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>"
                                      for k, v in items) + "</dl>"


def _na(why: str) -> str:
    return f'<p class="na">Not available: {_e(why)}</p>'


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


# ------------------------------------------------------------------ what a build expects
def input_spec(build) -> dict:
    """What the build takes as input: shape, encoding, bits, sign, value range, steps."""
    inp = build.graph.input_node()
    lo, hi = inp.value_range()
    steps, why = None, "any: every sample is as many frames as the inputs file holds"
    if build.float_graph is not None:
        from snncompile.ir import Attention
        fixed = sorted({int(n.steps) for n in build.float_graph.nodes(Attention) if n.steps})
        if fixed:
            steps = fixed[0]
            why = f"{steps} (the attention blocks were built for {steps} steps)"
    return {"name": inp.name, "shape": list(inp.shape), "encoding": inp.encoding,
            "bits": int(inp.bits), "signed": bool(inp.signed), "value_range": [lo, hi],
            "steps": steps, "steps_text": why,
            "file_shape": f"(samples, steps, {', '.join(map(str, inp.shape))})"}


def find_verify(build, given: str | Path | None) -> tuple[dict | None, str | None]:
    """(verify report, its path) from `given`, BUILD/verify.json or BUILD.verify.json."""
    if given is not None:
        cands = [Path(given)]
        if not cands[0].is_file():
            raise InputFileError(f"--verify-json {given}: file not found")
    else:
        b = Path(build.path) if build.path is not None else None
        cands = [] if b is None else [b / "verify.json", b.parent / f"{b.name}.verify.json"]
        if b is not None and b.suffix == ".build":   # NAME.build -> NAME.verify.json
            cands.append(b.parent / f"{b.stem}.verify.json")
    for p in cands:
        if not p.is_file():
            continue
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{p}: not a readable verify JSON ({type(exc).__name__})") \
                from None
        if not isinstance(doc, dict) or not isinstance(doc.get("equivalent"), bool) \
                or not isinstance(doc.get("layers"), list):
            raise InputFileError(f"{p}: not a verify report (needs 'equivalent' and "
                                 "'layers'; write one with `snncompile verify --json`)")
        _check_verify(doc, p)
        lifs = {r.get("layer") for r in doc["layers"]}
        from snncompile.ir import NEURON_TYPES
        mine = {n.name for n in build.graph.nodes(NEURON_TYPES)}
        if lifs != mine:
            raise InputFileError(f"{p}: its layers ({', '.join(sorted(map(str, lifs)))}) are "
                                 f"not this build's ({', '.join(sorted(mine))}); it belongs "
                                 "to another build")
        return doc, str(p)
    return None, None


def _check_verify(doc: dict, p: Path) -> None:
    """The parts of a verify report the page reads have the types verify writes."""
    def bad(what):
        raise InputFileError(f"{p}: {what}; write it with `snncompile verify --json`")
    if not all(isinstance(r, dict) and isinstance(r.get("spikes", {}), dict)
               and isinstance(r.get("mismatches", {}), dict) for r in doc["layers"]):
        bad("'layers' must hold objects with 'spikes' and 'mismatches' objects")
    if not isinstance(doc.get("backends", {}), dict) or \
            not isinstance(doc.get("boundary", []), list) or \
            not all(isinstance(r, dict) for r in doc.get("boundary", [])):
        bad("'backends' must be an object and 'boundary' a list of objects")
    div = doc.get("first_divergence")
    if div is not None:
        ok = isinstance(div, dict) and isinstance(div.get("sides"), dict) and all(
            isinstance(div.get(k), int) and not isinstance(div.get(k), bool)
            and div[k] >= 0 for k in ("sample", "step", "global_step")) and \
            all(isinstance(v, (dict, int)) for v in div["sides"].values())
        if ok and div.get("kind") != "co-processor value":
            ok = isinstance(div.get("layer"), str) and isinstance(div.get("neuron"), int) \
                and all(isinstance(v, dict) for v in div["sides"].values())
        if not ok:
            bad("'first_divergence' must name layer, neuron, sample, step, global_step "
                "and each side")


def _fidelities(build, verify_doc) -> list[tuple[dict, str]]:
    """The "fidelity" entries of report.json (compile, on calibration samples) and of the
    verify report (on its inputs), with where each comes from."""
    return [(fid, where) for fid, where in
            ((build.report.get("fidelity"), "compile, on the calibration samples "
                                            "(report.json)"),
             ((verify_doc or {}).get("fidelity"), "verify, on its inputs (verify JSON)"))
            if isinstance(fid, dict)]


def verdicts(build, verify_doc, verify_path) -> list[str]:
    """One line per verdict known so far."""
    out = []
    if verify_doc is None:
        out.append("spike equivalence: not checked (run `snncompile verify BUILD --inputs "
                   "FILE --json BUILD.verify.json`; `snncompile report` and `inspect` "
                   "read it from there)")
    else:
        samples = verify_doc.get("samples", "?")
        names = ", ".join(   # a backend that compared fewer samples (Lava) says how many
            f"{b} on {v['samples']}" if isinstance(v, dict) and v.get("samples", samples)
            != samples else str(b) for b, v in verify_doc.get("backends", {}).items())
        verify_path = Path(str(verify_path)).name
        if verify_doc["equivalent"]:
            out.append(f"spike equivalence: EQUIVALENT ({names}; {samples} samples; "
                       f"{verify_path})")
        else:
            out.append(f"spike equivalence: NOT EQUIVALENT, {verify_doc.get('mismatches')} "
                       f"mismatches ({names}; {samples} samples; {verify_path})")
        acc = verify_doc.get("accuracy")
        if isinstance(acc, dict) and acc.get("compiled") is not None:
            fl = acc.get("float")
            out.append(f"accuracy on {acc.get('samples')} labelled samples: float "
                       + ("n/a" if fl is None else f"{fl:.2%}")
                       + f", compiled {acc['compiled']:.2%}")
    found = _fidelities(build, verify_doc)
    if not found:
        out.append("fidelity (float vs compiled): not available in this build")
    for fid, where in found:
        why = fid.get("reason") or "; ".join(map(str, (fid.get("failures") or [])[:1]))
        out.append(f"fidelity (float vs compiled): {fid.get('verdict') or 'see the report'}"
                   + (f": {why}" if why else "") + f" (from {where})")
    return out


def describe(build, verify_json: str | Path | None = None) -> dict:
    """What `snncompile inspect` reports, JSON-safe."""
    doc, vpath = find_verify(build, verify_json)
    m = build.report.get("mapping", {})
    tot = build.report.get("totals", {})
    return {
        "build": str(build.path) if build.path is not None else None,
        "source": build.report.get("source", ""),
        "frontend": build.report.get("frontend", ""),
        "target": build.target.name,
        "input": input_spec(build),
        "output_layer": build.report.get("output"),
        "neurons": tot.get("neurons"), "neuron_layers": tot.get("layers"),
        "cores": m.get("cores"), "chips": m.get("chips"),
        "coprocessor_partitions": len(build.report.get("partition", {}).get("partitions", [])),
        "float_model": build.float_graph is not None,
        "calibration": build.report.get("calibration"),
        "verify_json": vpath,
        "equivalent": None if doc is None else doc["equivalent"],
        "verdicts": verdicts(build, doc, vpath),
    }


def describe_text(d: dict) -> str:
    i = d["input"]
    enc = "spikes (0/1)" if i["encoding"] == "spikes" else \
        f"graded, {'signed' if i['signed'] else 'unsigned'} {i['bits']}-bit integers"
    cal = d["calibration"]
    lines = [
        f"build       {d['build']}",
        f"model       {d['source']} ({d['frontend'] or 'unknown frontend'})",
        f"target      {d['target']}",
        f"input       '{i['name']}': frames of shape {tuple(i['shape'])}, {enc}, values "
        f"{i['value_range'][0]}..{i['value_range'][1]}",
        f"steps       {i['steps_text']}",
        f"inputs file .npz with 'inputs' {i['file_shape']} integers, optional 'labels' "
        "(samples,)",
        f"output      layer {d['output_layer']}",
        f"size        {_plural(d['neurons'] or 0, 'neuron')} in "
        f"{_plural(d['neuron_layers'] or 0, 'spiking layer')}; "
        f"{_plural(d['cores'] or 0, 'core')} on {_plural(d['chips'] or 0, 'chip')}"
        + (f"; {_plural(d['coprocessor_partitions'], 'co-processor partition')}"
           if d["coprocessor_partitions"] else ""),
        f"float model {'kept (float/)' if d['float_model'] else 'none (imported in fixed point)'}",
        "calibration " + (f"{cal['samples']} samples from {cal['file']}" if cal else "none"),
    ]
    lines += ["verdict     " + v for v in d["verdicts"]]
    return "\n".join(lines)


# ------------------------------------------------------------------ the page
def build_page(build, inputs: np.ndarray | None = None, labels: np.ndarray | None = None,
               inputs_name: str = "", verify_json: str | Path | None = None,
               total_samples: int | None = None) -> Page:
    """Everything `snncompile report` shows, figures rendered."""
    rep = build.report
    model = Path(str(rep.get("source", ""))).name or (Path(build.path).name if build.path
                                                      else "model")
    vdoc, vpath = find_verify(build, verify_json)
    mapping = _read_mapping(build)
    page = Page(title=f"{model} on {build.target.name}: build report", sections=[])
    page.sections.append(_summary(build, model, vdoc, vpath, inputs, inputs_name,
                                  total_samples))
    page.sections.append(_layers(build, mapping))
    page.sections.append(_quant(build))
    page.sections.append(_fidelity_section(build, vdoc))
    sim = None
    if inputs is not None:
        sec, sim = _activity(build, inputs, labels)
        page.sections.append(sec)
    else:
        page.sections.append(Section("Spikes and firing rates (float vs compiled)",
                                     _na("pass --inputs FILE.npz to run the float model and "
                                         "the compiled network on sample inputs")))
    page.sections.append(_coremap(build, mapping, model, page))
    if rep.get("partition"):
        page.sections.append(_partition(build))
    page.sections.append(_energy(build, inputs, model))
    page.sections.append(_verify(build, vdoc, vpath, inputs))
    return page


def _read_mapping(build) -> dict | None:
    if build.path is None:
        return None
    p = Path(build.path) / "mapping.json"
    if not p.is_file():
        return None
    return json.loads(p.read_text())  # checksummed by Build.load


def _summary(build, model, vdoc, vpath, inputs, inputs_name, total) -> Section:
    d = describe(build, vpath) if vpath else describe(build)
    i = d["input"]
    enc = "spikes (0/1)" if i["encoding"] == "spikes" else \
        f"graded, {'signed' if i['signed'] else 'unsigned'} {i['bits']}-bit"
    tot = build.report.get("totals", {})
    m = build.report.get("mapping", {})
    items = [("model", f"{model} ({d['frontend'] or 'unknown frontend'})"),
             ("target", build.target.name),
             ("input", f"{tuple(i['shape'])} per step, {enc}, values "
                       f"{i['value_range'][0]}..{i['value_range'][1]}"),
             ("steps", i["steps_text"]),
             ("neurons", f"{tot.get('neurons', 0):,} in "
                         f"{_plural(tot.get('layers', 0), 'spiking layer')}"),
             ("synapses", f"{tot.get('synapses', 0):,} connections "
                          f"({tot.get('nonzero_synapses', 0):,} with a non-zero weight); "
                          "see the layer table for what each count counts"),
             ("cores", f"{_plural(m.get('cores', 0), 'core')} on "
                       f"{_plural(m.get('chips', 0), 'chip')}, "
                       f"{_plural(m.get('tiles', 0), 'tile')}; lower bound "
                       f"{_plural(m.get('lower_bound_cores', 0), 'core')}"),
             ("calibration", (f"{d['calibration']['samples']} samples from "
                              f"{d['calibration']['file']}") if d["calibration"] else
              "none: state headroom unchecked")]
    if inputs is not None:
        n = len(inputs)
        items.append(("inputs shown", f"{inputs_name}: {n} samples x {inputs.shape[1]} steps"
                      + (f" (first {n} of {total})" if total and total > n else "")))
    verdict_html = "<ul>" + "".join(
        f'<li class="{_verdict_class(v)}">{_e(v)}</li>' for v in d["verdicts"]) + "</ul>"
    return Section("Summary", _kv(items) + "<h3>Verdicts</h3>" + verdict_html)


def _verdict_class(line: str) -> str:
    if "NOT EQUIVALENT" in line or "NOT FAITHFUL" in line:
        return "bad"
    return "ok" if ": EQUIVALENT" in line or ": FAITHFUL" in line else ""


SYN_TIPS = SYNAPSE_COUNTS   # one definition of what each count counts (report.py)


def _layers(build, mapping) -> Section:
    rep = build.report
    mapped = {}
    if mapping:
        for lname, info in mapping.get("layers", {}).items():
            if info.get("synapse"):
                mapped[info["synapse"]] = (info["synapses"], lname)
            mapped.setdefault(lname, (None, lname))
    cores_of = {l: info.get("cores", []) for l, info in (mapping or {}).get("layers", {}).items()}
    rows = []
    for r in rep.get("layers", []):
        ms = mapped.get(r["name"], (None, None))[0]
        is_syn = synapse_row(r)
        cores = cores_of.get(r["name"])
        rows.append([r["name"], r["op"], "x".join(map(str, r["shape"])),
                     r["neurons"] or "", r["synapses"] if is_syn else "",
                     r["nonzero_synapses"] if is_syn else "", r.get("kernel_weights", ""),
                     "" if ms is None else ms,
                     "" if not cores else ",".join(map(str, cores[:8]))
                     + ("..." if len(cores) > 8 else ""), r.get("summary", "")])
    head = ["node", "op", "shape", ("neurons", "neurons of a spiking layer"),
            ("synapses", SYN_TIPS["synapses"]), ("non-zero", SYN_TIPS["nonzero"]),
            ("kernel weights", SYN_TIPS["kernel"]), ("mapped synapses", SYN_TIPS["mapped"]),
            ("on core #", "indices of the cores holding the layer's neurons"), "details"]
    notes = "<ul class=\"note\">" + "".join(
        f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in
        (("synapses", SYN_TIPS["synapses"]), ("non-zero", SYN_TIPS["nonzero"]),
         ("kernel weights", SYN_TIPS["kernel"]), ("mapped synapses", SYN_TIPS["mapped"]))) \
        + "</ul>"
    return Section("Layers", html_table(head, rows, left=3, last_left=True) + notes)


def _quant(build) -> Section:
    rep = build.report
    q = rep.get("quantization") or []
    if not q:
        return Section("Quantisation", "<p>None: the model was imported in fixed point ("
                       f"{_e(rep.get('frontend') or 'fixed-stage graph')}), so its integers "
                       "are compiled as they are.</p>")
    rows = []
    for r in q:
        sat = rep.get("saturation", {}).get(r["layer"], {})
        peak = r.get("peak_state_fraction")
        rows.append([r["layer"], r["synapse"], r["scale"], r["weight_exp"],
                     f"8b {r['sign_mode']}", r["weight_max_mant"], r["weight_rel_error"],
                     r["vth"], r["vth_rel_error"], f"{r['du']}/{r['dv']}", r["bias_exp"],
                     "unknown" if peak is None else f"{peak:.2f}",
                     "-" if not sat else sum(sat.values()), r["limited_by"]])
    head = ["layer", "synapse", ("scale", "integer units per float unit of input current"),
            ("w_exp", "weight exponent"), "weights", ("max w", "largest weight mantissa"),
            ("w err", "RMS relative weight error"), ("vth", "threshold mantissa"),
            ("vth err", "relative threshold rounding error"), ("du/dv", "12-bit decays"),
            ("b_exp", "bias exponent"),
            ("peak", "calibrated peak |u|,|v| / 24-bit range"),
            ("sat", "wraps and saturations seen on the calibration samples"),
            "scale limited by"]
    calib = rep.get("calibration")
    note = ("<p class=\"note\">Errors are relative (weights: RMS; threshold: rounding). "
            + (f"Calibration: {calib['samples']} samples from {_e(calib['file'])}; 'sat' "
               "counts wraps and saturations seen on them." if calib else
               "No calibration: 'peak' and 'sat' are unknown (compile with --calib).")
            + "</p>")
    fig = Figure("quantisation", "Quantisation error per layer and state headroom",
                 plots.png_bytes(plots.quant_figure(q)))
    return Section("Quantisation", html_table(head, rows, left=2) + note, [fig])


def _fidelity_section(build, vdoc) -> Section:
    """Float vs compiled per layer, as `compile` (on calibration data, report.json) and
    `verify` (on its inputs, verify JSON) record it under "fidelity"."""
    title = "Fidelity (float vs compiled, per layer)"
    found = _fidelities(build, vdoc)
    if not found:
        return Section(title, _na("this build's report.json and the verify report have no "
                                  "'fidelity' entry"))
    body, figs = "", []
    for k, (fid, where) in enumerate(found):
        body += f"<h3>From {_e(where)}</h3>" + _fidelity_html(fid)
        rows = [r for r in fid.get("layers", []) if isinstance(r, dict)]
        vals = {src: {str(r.get("layer")): r[src] for r in rows
                      if isinstance(r.get(src), (int, float)) and not isinstance(r[src], bool)}
                for src in ("float", "compiled")}
        if any(vals.values()):
            figs.append(Figure(f"fidelity_{k}", f"Float vs compiled activity per layer ("
                               f"{where})", plots.png_bytes(plots.rates_figure(
                                   vals, ylabel="activity (spikes, or graded events)",
                                   title="float vs compiled activity per layer"))))
    return Section(title, body, figs)


def _fidelity_html(fid: dict) -> str:
    verdict = str(fid.get("verdict", "?"))
    cls = "bad" if verdict.startswith("NOT") else "ok"
    out = f'<p class="{cls}">{_e(verdict)}' + (f": {_e(fid['reason'])}" if fid.get("reason")
                                                 else "") + "</p>"
    tol = fid.get("tolerance")
    items = [(k, str(fid[k])) for k in ("float_model", "samples", "steps", "output")
             if fid.get(k) not in (None, "")]
    if isinstance(fid.get("agreement"), (int, float)):
        items.append(("same decision", f"{fid['agreement']:.1%} of samples"))
    if isinstance(tol, dict):
        items.append(("tolerance", ", ".join(f"{k} {v}" for k, v in tol.items())))
    out += _kv(items)
    rows = [r for r in fid.get("layers", []) if isinstance(r, dict)]
    if rows:
        known = ["layer", "neurons", "float", "compiled", "difference", "correlation"]
        keys = [k for k in known if any(k in r for r in rows)] + \
            [k for k in dict.fromkeys(k for r in rows for k in r) if k not in known]
        tips = {"float": "activity of the float model", "compiled": "activity of the "
                "compiled network", "difference": "(compiled - float) / float; empty when "
                "the float layer is silent", "correlation": "per-neuron rate correlation"}
        out += html_table([(k, tips.get(k, "")) for k in keys],
                          [[_cell(r.get(k, "")) for k in keys] for r in rows])
    sens = fid.get("sensitivity")
    sens = sens.get("lines") if isinstance(sens, dict) else None
    for label, lines in (("Why not faithful", fid.get("failures")),
                         ("The compile or the model? (the float model under rounding-sized "
                          "noise)", sens), ("Notes", fid.get("notes")),
                         ("Warnings", fid.get("warnings"))):
        lines = [x for x in lines if isinstance(x, str)] if isinstance(lines, list) else []
        if lines:
            out += f"<p>{_e(label)}:</p><ul>" + "".join(f"<li>{_e(x)}</li>" for x in lines) \
                + "</ul>"
    return out


def _cell(v):
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return v


def _activity(build, x, labels=None) -> tuple[Section, object]:
    from snncompile.ir import NEURON_TYPES
    from snncompile.backends.sim.simulator import Simulator

    sim = Simulator(build.graph, build.target.numerics).run(x)
    compiled = {n.name: sim.spikes[n.name] for n in build.graph.nodes(NEURON_TYPES)}
    spikes = {}
    note = ""
    if build.float_graph is not None:
        from snncompile.backends.float_model import run_float
        fl = run_float(build.float_graph, x)
        spikes["float"] = {k: v for k, v in fl.items() if k in compiled}
        missing = [k for k in compiled if k not in fl]
        if missing:
            note = (f"<p class=\"note\">No float counterpart for {_e(', '.join(missing))} "
                    "(layers the compiler added).</p>")
    else:
        note = ("<p class=\"note\">No float model: the build was imported in fixed point; "
                "only the compiled network is shown.</p>")
    spikes["compiled"] = compiled

    def rate(a):
        return float(np.count_nonzero(a)) / a.size if a.size else 0.0

    rates = {src: {k: rate(v) for k, v in d.items()} for src, d in spikes.items()}
    rates_all = {"input": rate(x)}
    rows = []
    for k in compiled:
        f = rates.get("float", {}).get(k)
        c = rates["compiled"][k]
        rows.append([k, int(np.prod(build.graph.shape(k))),
                     "n/a" if f is None else f"{f:.4f}", f"{c:.4f}",
                     "n/a" if not f else f"{c / f:.3f}"])
    table = html_table(["layer", "neurons", ("float rate", "spikes per neuron per step"),
                        ("compiled rate", "spikes per neuron per step"),
                        ("compiled / float", "ratio of the compiled rate to the float rate")],
                       rows)
    acc = ""
    if labels is not None and len(labels) == len(x):
        from snncompile.verify.compare import decision
        out = build.graph.inputs(build.graph.output_node().name)[0]
        comp = float((decision(build.graph.node(out), compiled[out]) == labels).mean())
        fl = spikes.get("float", {}).get(out)
        fa = None if fl is None else float(
            (fl.reshape(len(x), x.shape[1], -1).sum(1).argmax(1) == labels).mean())
        acc = (f"<p>Accuracy on these {len(x)} labelled samples: float "
               + ("n/a" if fa is None else f"{fa:.2%}") + f", compiled {comp:.2%}.</p>")
    body = acc + (f"<p>Input: {rates_all['input']:.4f} spikes (non-zero values) per input "
                  f"per step over {len(x)} samples x {x.shape[1]} steps. Rates count events "
                  "per neuron per step (graded spikes count once each).</p>" + table + note)
    n_shown = min(200, max(int(np.prod(build.graph.shape(k))) for k in compiled))
    figs = [Figure("raster", f"Spike raster of sample 0 (first {n_shown} neurons of each "
                             "layer at most), float and compiled",
                   plots.png_bytes(plots.raster_figure(spikes))),
            Figure("firing_rates", "Firing rate per layer, float vs compiled, over all shown "
                                   "samples", plots.png_bytes(plots.rates_figure(rates)))]
    traces = _membrane_traces(build, x[:1])
    if traces:
        figs.append(Figure("membrane", "Membrane voltage v (after each step's reset) of the "
                                       "neurons of each LIF layer that spike closest to every "
                                       "other step (compiled, sample 0)",
                           plots.png_bytes(plots.membrane_figure(traces))))
    return Section("Spikes and firing rates (float vs compiled)", body, figs), sim


def _membrane_traces(build, one, per_layer: int = 3, max_layers: int = 4) -> dict:
    """v and spikes of `per_layer` neurons (spiking closest to every other step) of the
    first LIF layers over one sample (simulator, state recorded); empty for sigma-delta
    graphs (no v)."""
    from snncompile.ir import FxLIF, FxSigmaDelta, neuron_param, per_neuron
    from snncompile.backends.sim.simulator import Simulator

    if build.graph.nodes(FxSigmaDelta):
        return {}
    res = Simulator(build.graph, build.target.numerics).run(one, record_state=True)
    out = {}
    shift = int(build.target.numerics.vth_shift)
    for node in build.graph.nodes(FxLIF)[:max_layers]:
        t = one.shape[1]
        sp = res.spikes[node.name][0].reshape(t, -1)
        v = res.state[node.name][1][0].reshape(t, -1)
        # neurons that spike about every other step show integration, threshold and reset
        # (always-firing ones sit at v = 0, after the reset)
        cnt = sp.sum(0)
        top = np.lexsort((-cnt, np.abs(cnt - t / 2)))[:per_layer]
        vth = neuron_param(node, "vth").ravel()[top].astype(np.int64) << shift
        out[node.name] = {"v": v[:, top], "spike": sp[:, top], "neurons": top.tolist(),
                          "vth": int(vth[0]) if not per_neuron(node) else vth.tolist()}
    return out


def _coremap(build, mapping, model, page) -> Section:
    title = "Core map and traffic"
    if not mapping or "core_list" not in mapping:
        return Section(title, _na("the build has no mapping.json"))
    chip = build.target.chip
    if chip is None:
        return Section(title, _na(f"target {build.target.name} has no [chip] section"))
    traffic, note = None, ""
    try:
        traffic = plots.core_traffic(build.graph, build.target, mapping)
    except ValueError as exc:
        note = f'<p class="note">Traffic not drawn: {_e(exc)}.</p>'
        page.warnings.append(f"core map: traffic not drawn ({exc})")
    from snncompile.ir import NEURON_TYPES
    order = [n.name for n in build.graph.nodes(NEURON_TYPES)]
    fig = plots.coremap_figure(mapping, dataclasses.asdict(chip), traffic, order, model)
    rows = []
    rates = mapping.get("rates", {})
    for name, info in mapping.get("layers", {}).items():
        tr = mapping.get("layer_traffic", {}).get(name, {})
        msgs = tr.get("messages", 0)
        hops = (tr.get("hops_ew", 0) + tr.get("hops_ns", 0)) / msgs if msgs else 0.0
        per = msgs / info["neurons"] if info["neurons"] else 0.0
        rows.append([name, info["neurons"], info["blocks"], len(info.get("cores", [])),
                     f"{per:.2f}", f"{hops:.2f}", f"{rates.get(name, 1.0):.4f}"])
    head = ["layer", "neurons", ("blocks", "core-sized pieces the layer was split into"),
            ("cores", "cores holding its neurons"),
            ("messages per spike", "cores a spike of one neuron is sent to"),
            ("hops per message", "mean mesh hops of those messages"),
            ("placement rate", "spikes per neuron per step the placement was weighted by "
                               "(calibration; 1 without)")]
    u = mapping.get("mean_utilisation", {})
    util = ", ".join(f"{k} {v:.0%}" for k, v in u.items())
    body = (html_table(head, rows) + f"<p class=\"note\">Mean utilisation per core: {_e(util)}. "
            f"Packing efficiency (lower bound / cores) "
            f"{mapping.get('packing_efficiency', 0):.0%}.</p>" + note)
    return Section(title, body, [Figure("core_map", "Cores on the mesh coloured by layer; "
                                        "arrows: spike messages per step between cores",
                                        plots.png_bytes(fig))])


def _partition(build) -> Section:
    p = build.report["partition"]
    rows = [[f"{c['src']} -> {c['dst']}", c["direction"], c["values_per_step"],
             f"{c['bits']} {'signed' if c['signed'] else 'unsigned'}", c["bytes_per_step"]]
            for c in p["channels"]]
    t1 = html_table(["channel", "direction", ("values/step", "integers per time step"),
                     "bits", ("bytes/step", "bit-packed, per sample")], rows, left=2)
    t2 = html_table(["partition", "x86 core", "ops", "MACs", "adds", "compares", "lookups",
                     ("latency/step", "estimate")],
                    [[q["node"], q["x86_core"], len(q["ops"]), q["macs"], q["adds"],
                      q["compares"], q["lookups"], plots.eng(q["latency_s"], "s")]
                     for q in p["partitions"]])
    est = ", ".join(p.get("estimates", [])) or "none"
    body = (t1 + t2 + f"<p>{p['bytes_per_step']:,} bytes cross the boundary per step per "
            f"sample; the co-processor adds about {plots.eng(p['added_latency_per_step_s'], 's')}"
            f" per time step ({p['x86_cores']} x86 cores). Estimates: {_e(est)}.</p>")
    from snncompile.mapping.coproc_assign import window_lines
    body += "".join(f"<p>{_e(line)}</p>" for line in window_lines(p) if line)
    fig = plots.partition_figure(p, build.graph.order(), list(build.graph.g.edges))
    return Section("Co-processor partition", body,
                   [Figure("partition", "Nodes by where they run, with the boundary channels",
                           plots.png_bytes(fig))])


def _energy(build, x, model) -> Section:
    title = "Energy and latency (estimates marked)"
    if x is None:
        return Section(title, _na("pass --inputs FILE.npz: energy is estimated from the "
                                  "events of a run"))
    if build.target.energy is None:
        return Section(title, _na(f"target {build.target.name} has no energy table"))
    from snncompile.energy.run import energy_report
    rep, _ = energy_report(build, x)
    e = rep.to_json()
    est = plots.estimated_events(e["estimates"])
    items = [("per inference", f"{plots.eng(e['energy_per_inference_j'], 'J')}: dynamic "
                               f"{plots.eng(e['dynamic_j'], 'J')}, static "
                               f"{plots.eng(e['static_j'], 'J')}"
                               + (" (static is an estimate)" if "static" in est else "")),
             ("latency", f"{plots.eng(e['latency_per_step_s'], 's')} per step, "
                         f"{plots.eng(e['latency_per_inference_s'], 's')} per inference "
                         f"({e['steps']} steps); a lower bound (per-step averages)"),
             ("energy table", f"{e['energy_table']}"),
             ("events priced from estimates", ", ".join(sorted(est)) or "none"),
             ("ANN comparison", f"ANN {plots.eng(e['ann']['ann_j'], 'J')} vs SNN ops "
                                f"{plots.eng(e['ann']['snn_ops_j'], 'J')} (Horowitz 2014 "
                                f"E_MAC/E_AC): the ANN takes {e['ann']['ann_over_snn']:.2f}x "
                                "the SNN's energy")]
    notes = "".join(f"<li>{_e(n)}</li>" for n in e.get("notes", []))
    from snncompile.energy.report import EVENTS
    rows = [[layer] + [plots.eng(d.get(ev, 0.0), "J") for ev in EVENTS]
            + [plots.eng(sum(d.values()), "J")] for layer, d in e["per_layer"].items()]
    head = ["layer"] + [ev + (" (est.)" if ev in est else "") for ev in EVENTS] + ["total"]
    body = _kv(items) + (f"<ul class=\"note\">{notes}</ul>" if notes else "") \
        + html_table(head, rows)
    figs = [Figure("energy", "Energy per inference: dynamic per layer by event, and dynamic "
                             "vs static", plots.png_bytes(plots.energy_figure(e, model))),
            Figure("latency", "Latency per time step by part",
                   plots.png_bytes(plots.latency_figure(e, model)))]
    return Section(title, body, figs)


def _verify(build, doc, path, x) -> Section:
    title = "Verify verdicts"
    if doc is None:
        return Section(title, _na("no verify report beside the build (BUILD/verify.json, "
                                  "BUILD.verify.json or NAME.verify.json for NAME.build) "
                                  "and none given with --verify-json"))
    names = list(doc.get("backends", {}))
    others = [b for b in names if b != names[0]] if names else []
    rows = [[r.get("layer"), r.get("neurons")]
            + [r.get("spikes", {}).get(b, "") for b in names]
            + [r.get("mismatches", {}).get(b, "") for b in others] for r in doc["layers"]]
    head = ["layer", "neurons"] + [(f"spikes {b}", "spikes over all samples and steps")
                                   for b in names] \
        + [(f"mismatch {b}", f"spikes differing from {names[0]}") for b in others]
    ok = doc["equivalent"]
    body = (f'<p class="{"ok" if ok else "bad"}">'
            + ("EQUIVALENT" if ok else f"NOT EQUIVALENT: {doc.get('mismatches')} mismatches")
            + f" over {doc.get('samples')} samples x {doc.get('steps')} steps "
            f"({_e(', '.join(names))}; baseline {_e(names[0] if names else '?')})</p>"
            f'<p class="note">From {_e(path)}.</p>' + html_table(head, rows))
    if doc.get("boundary"):
        body += html_table(["co-processor channel (outputs, and inputs as 'partition<-src')",
                            ("values per run", "integers compared")]
                           + [f"mismatch {b}" for b in others],
                           [[r.get("channel"), r.get("values")]
                            + [r.get("mismatches", {}).get(b, "") for b in others]
                            for r in doc["boundary"]])
    acc = doc.get("accuracy")
    if isinstance(acc, dict) and acc.get("compiled") is not None:
        fl = acc.get("float")
        body += (f"<p>Accuracy on {acc.get('samples')} labelled samples: float "
                 + ("n/a" if fl is None else f"{fl:.2%}") + f", compiled {acc['compiled']:.2%}"
                 + (f"; float and compiled agree on {acc['agreement']:.2%}"
                    if acc.get("agreement") is not None else "") + ".</p>")
    figs = []
    div = doc.get("first_divergence")
    if isinstance(div, dict) and div.get("sides"):
        traces = _divergence_traces(build, div, x) if x is not None else None
        body += "<p>First divergence: " + _e(json.dumps(div)) + "</p>"
        if traces is not None and _traces_agree(traces):
            body += ('<p class="note">The re-run of reference and simulator agrees at this '
                     "neuron: the divergence comes from a backend not re-run here (e.g. Lava), "
                     "from other inputs than --inputs, or from a build changed since verify. "
                     "The values verify recorded are circled.</p>")
        if traces is None and div.get("kind") != "co-processor value":
            body += ('<p class="note">Pass the same --inputs as verify to draw the traces '
                     "around the divergence.</p>")
        figs.append(Figure("divergence", "First divergence: each side's u, v and spike",
                           plots.png_bytes(plots.divergence_figure(div, traces))))
    elif not ok:
        body += _na("the verify report names no first divergence")
    return Section(title, body, figs)


def _traces_agree(traces: dict) -> bool:
    vals = list(traces.values())
    return all(np.array_equal(vals[0][k], v[k]) for v in vals[1:] for k in ("u", "v", "spike"))


def _divergence_traces(build, div, x) -> dict | None:
    """u, v, spike of the diverging neuron over the sample's steps, re-run on the reference
    and the simulator (Lava's side is the value verify recorded)."""
    from snncompile.backends.reference import reference_run
    from snncompile.backends.sim.simulator import Simulator
    from snncompile.ir import neuron_param

    layer, s, k = div["layer"], int(div["sample"]), int(div["neuron"])
    node = build.graph.node(layer) if layer in build.graph else None
    if node is None or not node.records_uv or not 0 <= s < len(x) \
            or not 0 <= k < int(np.prod(build.graph.shape(layer))) \
            or not 0 <= int(div["step"]) < x.shape[1]:
        return None
    one = x[s:s + 1]
    num = build.target.numerics
    vth = int(neuron_param(node, "vth").ravel()[k]) << int(num.vth_shift)   # its own
    out = {}
    spk, st = reference_run(build.graph, one, num, record_state=True)
    out["reference"] = {"u": st[layer][0][0].reshape(one.shape[1], -1)[:, k],
                        "v": st[layer][1][0].reshape(one.shape[1], -1)[:, k],
                        "spike": spk[layer][0].reshape(one.shape[1], -1)[:, k], "vth": vth}
    res = Simulator(build.graph, num).run(one, record_state=True)
    out["sim"] = {"u": res.state[layer][0][0].reshape(one.shape[1], -1)[:, k],
                  "v": res.state[layer][1][0].reshape(one.shape[1], -1)[:, k],
                  "spike": res.spikes[layer][0].reshape(one.shape[1], -1)[:, k], "vth": vth}
    return out
