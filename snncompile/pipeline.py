"""The compiler as one readable function: one line per stage."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .build import Build
from .data import is_dataset, load_inputs, take_samples
from .errors import InputFileError, UnsupportedError
from snncompile.verify.fidelity import (Tolerance, UnfaithfulError, add_sensitivity, compare,
                                        compiled_only, graph_runner, not_checked)
from snncompile.verify.sensitivity import DRAWS
from .frontends import import_checkpoint
from .ir import NEURON_TYPES, FxCoproc, Graph
from .ir.timing import balance
from .passes.fold import fold_pools
from .passes.htda import insert_loop, lower_htda, set_aside_loop
from snncompile.mapping.coproc_assign import partition, partition_markdown
from snncompile.mapping.place import map_graph
from .passes.quantize import quantize
from snncompile.report.compile import (SYNAPSE_COUNTS, bias_axons, compile_markdown,
                                       layer_rows)
from snncompile.backends.float_model import run_float
from snncompile.backends.sim.simulator import Simulator
from .target import TargetSpec, load_target


NETX_SOURCE = Build.NETX_SOURCE
"""Where a build compiled from a netx file keeps a copy of it (`Build.source_copy`)."""


def import_model(source: str | Path, input_bits: int | None = None,
                 input_signed: bool = False, dt: float | None = None,
                 nir_convention: str | None = None) -> Graph:
    """Pick the frontend by file type. `input_bits`, `input_signed`: netx only, the integer
    frames a sigma-delta network's delta encoder reads (default 8 bits, unsigned) or a
    bias-driven input layer's frames (signed, default 13 bits).
    `dt`, `nir_convention`: NIR only (see frontends.nir_import)."""
    path = Path(source)
    if (input_bits is not None or input_signed) and \
            path.suffix not in (".net", ".h5", ".hdf5"):
        raise UnsupportedError(f"{path}: the input width and sign can be set only for netx "
                               "networks (the other formats state their input encoding)")
    if (dt is not None or nir_convention is not None) and path.suffix != ".nir":
        raise UnsupportedError(f"{path}: --dt and --nir-convention apply only to .nir files "
                               "(the other formats are in time steps already)")
    if path.suffix in (".pt", ".pth", ".ckpt"):
        return import_checkpoint(path)
    if path.suffix == ".nir":
        from snncompile.formats.nir.read import import_nir
        return import_nir(path, dt=dt, convention=nir_convention)
    if path.suffix in (".net", ".h5", ".hdf5"):
        from snncompile.formats.netx.read import import_netx
        return import_netx(path, input_bits=input_bits, input_signed=input_signed)
    raise InputFileError(f"{path}: unknown model format '{path.suffix}'; supported: "
                         ".pt (snncompile checkpoint), .nir (NIR graph), .net/.h5 (lava-dl "
                         "netx)")


def compile_model(source: str | Path | Graph, target: str | Path | TargetSpec = "loihi2",
                  calib: str | Path | np.ndarray | None = None,
                  calib_samples: int = 256, chips: int | None = None,
                  input_bits: int | None = None, input_signed: bool = False,
                  require_calib: bool = False, strict: bool = False,
                  tolerance: Tolerance | None = None, dt: float | None = None,
                  nir_convention: str | None = None, objective: str = "cores",
                  max_cores: int | None = None) -> Build:
    """Compile a model file (or float graph) for a target; returns an unsaved `Build`.

        >>> build = compile_model("examples/checkpoints/digits_mlp.pt", "loihi2",
        ...                       calib="out/digits_train.npz")
        >>> build.save("out/digits.build")

    With `calib`, the float model and the compiled network run on the calibration samples
    (snncompile.verify.fidelity); each problem (a silent layer, wraps or saturation, a spike count
    off beyond `tolerance`, an output that never fires) is a `FidelityWarning` and a line in
    `build.report["fidelity"]["warnings"]`; report.md gets a "Fidelity on calibration data"
    table. `strict` raises `UnfaithfulError` on the first problem instead. A float model
    without `calib` warns that nothing was checked (`require_calib`, as the CLI does, makes
    that an error).
    """
    from .progress import Stages
    st = Stages(COMPILE_STAGES, "compile")
    try:
        return _compile(source, target, calib, calib_samples, chips, input_bits, input_signed,
                        require_calib, strict, tolerance, st, dt=dt,
                        nir_convention=nir_convention, objective=objective,
                        max_cores=max_cores)
    finally:
        st.close()


COMPILE_STAGES = ["import", "fold pools", "calibration: float model", "quantise",
                  "calibration: simulate compiled", "map onto cores", "report"]
"""The stages `compile_model` shows progress for (one bar, or periodic lines in a log)."""


@dataclasses.dataclass
class _Lowered:
    """What the float-to-fixed stages produced: the fixed-point graph, the quantisation
    reports, the build's float graph (None for a model imported in fixed point), the float
    graph's spikes on the calibration samples and those samples (None without)."""

    fixed: Graph
    quant: list
    float_graph: Graph | None
    float_cal: dict | None
    x_cal: np.ndarray | None
    cal_file: str | None
    cal_warnings: list = dataclasses.field(default_factory=list)  # calibration shards skipped


def _compile(source, target, calib, calib_samples, chips, input_bits, input_signed,
             require_calib, strict, tolerance, st, *, dt, nir_convention, objective,
             max_cores) -> Build:
    st.start("import")
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    graph = _frontend(source, input_bits, input_signed, dt=dt, nir_convention=nir_convention)
    graph.validate()                                                         # shapes, DAG
    low = _lower(graph, source, spec, calib, calib_samples, require_calib, st)
    fixed, x_cal = low.fixed, low.x_cal
    if x_cal is not None:
        st.start("calibration: simulate compiled")
    sim = (Simulator(fixed, spec.numerics).run(x_cal, progress="calibration: simulate")
           if x_cal is not None else None)
    fid = _fidelity(fixed, graph.stage, sim, low.float_cal, tolerance)
    problems = ([NO_CALIB] if x_cal is None and graph.stage != "fixed" else []) + \
        low.cal_warnings + fid.warnings()                              # float vs compiled
    if strict and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UnfaithfulError(f"{_name(source)}: {problems[0]}{more}; nothing written "
                              "(--strict)")
    st.start("map onto cores")
    rates = firing_rates(fixed, sim, x_cal) if sim is not None else None  # traffic weights
    mapping = map_graph(fixed, spec, chips=chips, rates=rates,               # split + place
                        objective=objective, max_cores=max_cores, compare=True)
    st.start("report")
    report = _report(fixed, spec, low.quant, sim.overflow if sim else {}, x_cal, low.cal_file)
    if fid.faithful is False and low.float_cal is not None:   # the compile, or the model?
        add_sensitivity(fid, SimpleNamespace(graph=fixed, float_graph=low.float_graph,
                                             target=spec, report=report),
                        x_cal, low.float_cal, graph_runner(low.float_graph), DRAWS)
        problems += fid.sensitivity_lines()
    report["fidelity"] = dict(fid.to_json(), warnings=problems)
    report["mapping"] = mapping_summary(mapping)
    if graph.meta.get("nir"):                   # NIR: the dt used, where from, what assumed
        report["nir"] = graph.meta["nir"]
    md = compile_markdown(report) + "\n## Mapping\n\n```\n" + mapping.table() + "\n```\n"
    onnx_files = {}
    if fixed.nodes(FxCoproc):                                                # ANN branch
        report["partition"] = partition(fixed, spec)
        if report["partition"].get("added_delay_steps"):            # window attention
            report["partition"]["window_delay"] = _window_delay(
                fixed, mapping, spec, sim, x_cal, report["partition"]["added_delay_steps"])
        md += "\n## Partition (neurocores / co-processor)\n\n" + \
            partition_markdown(report["partition"]) + "\n"
        onnx_files = coproc_onnx(fixed)
    for line in problems:
        warnings.warn(line, FidelityWarning, stacklevel=3)
    return Build(graph=fixed, float_graph=low.float_graph, target=spec, report=report,
                 report_md=md, extra_files={"mapping.json": mapping.to_json()},
                 extra_bytes=onnx_files, source_copy=_netx_copy(source, fixed))


def _window_delay(fixed: Graph, mapping, spec, sim, x_cal, steps: int) -> dict:
    """The added latency of whole-window attention in seconds: `steps` steps at the energy
    and latency model's per-step estimate on the calibration samples ({} without them)."""
    if sim is None or spec.energy is None:
        return {"steps": steps}
    from snncompile.energy import estimate_energy
    counts = {n: dict(c) for n, c in sim.counts.items()}
    counts[fixed.input_node().name] = {"spikes": int(np.count_nonzero(x_cal))}
    rep = estimate_energy(fixed, mapping, counts, spec, samples=len(x_cal),
                          steps=x_cal.shape[1])
    step_s = rep.latency_per_step_s
    return {"steps": steps, "step_s": step_s, "seconds": steps * step_s,
            "source": f"latency model, {spec.name} timing table, on {len(x_cal)} "
                      "calibration samples"}


def _lower(graph: Graph, source, spec, calib, calib_samples: int, require_calib: bool,
           st) -> _Lowered:
    """Float graph -> fixed-point graph: fold pools, calibrate (peak |u|, |v| on the float
    graph), quantise; an HTDA graph's top-down loop is set aside before quantisation and
    lowered after it (snncompile.passes.htda). A fixed-point import passes as it is."""
    if graph.stage == "fixed":                          # netx: already Loihi integers
        _balance(graph)
        x_cal, cal_file, skipped = _calibration(calib, graph, calib_samples)
        return _Lowered(graph, [], None, None, x_cal, cal_file, skipped)
    if calib is None and require_calib:
        raise InputFileError(f"{_name(source)}: a float model needs calibration data to "
                             "be compiled safely: pass --calib FILE.npz (sample inputs, "
                             "e.g. training data) or --no-calib to skip the checks")
    graph, loop = set_aside_loop(graph)                 # HTDA: its loop is lowered last
    st.start("fold pools")
    graph, _ = fold_pools(graph)                                             # pools -> weights
    x_cal, cal_file, skipped = _calibration(calib, graph, calib_samples)
    stats: dict | None = {} if x_cal is not None else None
    float_cal = None
    if x_cal is not None:
        st.start("calibration: float model")
        float_cal = run_float(graph, x_cal, record=stats,                    # peak |u|, |v|
                              progress="calibration: float model")
    st.start("quantise")
    fixed, quant = quantize(graph, spec, stats)                              # fixed point
    _balance(fixed)                                     # before the loop: it reads depths
    if loop is None:
        return _Lowered(fixed, quant, graph, float_cal, x_cal, cal_file, skipped)
    float_graph = insert_loop(graph, loop)              # the whole network, for float/
    if x_cal is not None:                               # the float side, loop included
        float_cal = run_float(float_graph, x_cal, progress="calibration: float model")
    fixed = lower_htda(loop, fixed, spec,
                       None if float_cal is None else float_cal[loop.source])
    return _Lowered(fixed, quant, float_graph, float_cal, x_cal, cal_file, skipped)


def _balance(fixed: Graph) -> None:
    """Delay the early paths into every neuron (residual shortcuts, `ir.timing.balance`);
    what was inserted is kept in the graph's meta for the report."""
    inserted = balance(fixed)
    if inserted:
        fixed.meta["path_delays"] = inserted


def _netx_copy(source, fixed: Graph) -> bytes | None:
    """The bytes of the netx file compiled (for `verify --backends ...,netx`, which runs
    it with lava-dl's own loader), or None for other sources."""
    if fixed.meta.get("frontend") == "netx" and not isinstance(source, Graph):
        return Path(source).read_bytes()
    return None


NO_CALIB = ("no calibration data: scales ignore the 24-bit state headroom, and wraps, "
            "saturation and fidelity to the float model were not checked; pass --calib "
            "FILE.npz")


class FidelityWarning(UserWarning):
    """A problem `compile_model` found on the calibration data (or: there was none)."""


def _name(source) -> str:
    return "<graph>" if isinstance(source, Graph) else str(source)


def _fidelity(fixed: Graph, stage: str, sim, float_cal, tolerance):
    """Float vs compiled on the calibration samples (snncompile.verify.fidelity)."""
    if sim is None:
        return not_checked("no calibration data" + (" (--no-calib)" if stage != "fixed"
                                                    else ""), tol=tolerance)
    if float_cal is None:
        return compiled_only(fixed, sim.spikes, "the model was imported in fixed point "
                             "(lava-dl netx): there is no float model to compare with",
                             sim.overflow, tolerance)
    return compare(fixed, float_cal, sim.spikes, None, tolerance, sim.overflow,
                   "float graph, float/")


def coproc_onnx(graph: Graph) -> dict[str, bytes]:
    """Each co-processor partition as a standalone ONNX model, checked by onnx.checker."""
    import onnx

    from .coproc.onnx_export import build_onnx
    files = {}
    for node in graph.nodes(FxCoproc):
        model = build_onnx(node.cgraph)
        onnx.checker.check_model(model, full_check=True)
        files[f"coproc/{node.name}.onnx"] = model.SerializeToString()
    return files


def _frontend(source, input_bits: int | None = None, input_signed: bool = False,
              dt: float | None = None, nir_convention: str | None = None) -> Graph:
    """The source's graph (float, or fixed point for netx); a graph passes as it is."""
    if isinstance(source, Graph):
        return source
    return import_model(source, input_bits, input_signed, dt, nir_convention)


def firing_rates(graph: Graph, sim, x: np.ndarray) -> dict[str, float]:
    """Spikes per neuron per step of every LIF (and of the input) in a simulation."""
    rates = {graph.input_node().name: float(np.count_nonzero(x)) / max(x.size, 1)}
    for name, spikes in sim.spikes.items():
        rates[name] = float(np.count_nonzero(spikes)) / spikes.size if spikes.size else 0.0
    return rates


def mapping_summary(mapping) -> dict:
    """The mapping without its per-core and per-block lists (those go to mapping.json)."""
    full = mapping.to_json()
    return {k: v for k, v in full.items() if k not in ("core_list", "blocks", "core_work")}


def _calibration(calib, graph: Graph, limit: int):
    """(samples, where from, one warning per calibration shard skipped)."""
    if calib is None:
        return None, None, []
    if isinstance(calib, np.ndarray):
        return calib[:limit], "<array>", []
    if is_dataset(calib):                    # a data set: shard by shard, `limit` samples
        x, used, bad = take_samples(calib, graph.input_node(), limit)
        where = f"{calib} ({len(x)} samples from {len(used)} shard(s))"
        return x, where, [f"calibration shard {b}; not used" for b in bad]
    x, _ = load_inputs(calib, graph.input_node(), limit=limit)
    return x, str(calib), []


def _report(fixed: Graph, spec, quant, saturation, x_cal, cal_file) -> dict:
    layers = layer_rows(fixed)
    for row in layers:
        row["summary"] = fixed.node(row["name"]).summary()
        row["depth"] = fixed.depth(row["name"])
    return {
        "source": fixed.meta.get("source", ""),
        "target": spec.name,
        "totals": {"neurons": sum(r["neurons"] for r in layers),
                   "synapses": sum(r["synapses"] for r in layers),
                   "nonzero_synapses": sum(r["nonzero_synapses"] for r in layers),
                   "layers": len(fixed.nodes(NEURON_TYPES))},
        "counts": {"synapses": SYNAPSE_COUNTS["synapses"],          # what each count counts
                   "nonzero_synapses": SYNAPSE_COUNTS["nonzero"],
                   "kernel_weights": SYNAPSE_COUNTS["kernel"],
                   "mapping.layers.*.synapses": SYNAPSE_COUNTS["mapped"]},
        "layers": layers,
        "quantization": [q.to_json() for q in quant],
        "saturation": {k: v for k, v in saturation.items() if any(v.values())},
        "calibration": (None if x_cal is None else
                        {"file": Path(cal_file).name, "samples": int(len(x_cal)),
                         "steps": int(x_cal.shape[1])}),
        "output": fixed.inputs(fixed.output_node().name)[0],
        "frontend": fixed.meta.get("frontend", ""),
        "sections": list(fixed.meta.get("report_sections", [])),  # e.g. a netx input layer
        "path_delays": list(fixed.meta.get("path_delays", [])),   # residual path balancing
        "folded": list(fixed.meta.get("folded", [])),     # BatchNorm folded into synapses
        "synapse_bias": bias_axons(fixed, quant),
    }
