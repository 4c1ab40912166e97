"""The compiler as one readable function: one line per stage."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .build import Build
from .data import load_inputs
from .errors import InputFileError, UnsupportedError
from snncompile.verify.fidelity import (HTDA_MODEL, Tolerance, UnfaithfulError, compare, compiled_only,
                       htda_runner, not_checked)
from .frontends import import_checkpoint
from .ir import NEURON_TYPES, FxCoproc, Graph
from .passes.fold import fold_pools
from .passes.htda import lower_htda
from snncompile.mapping.coproc_assign import partition, partition_markdown
from snncompile.mapping.place import map_graph
from .passes.quantize import quantize
from snncompile.report.compile import SYNAPSE_COUNTS, compile_markdown, layer_rows
from snncompile.backends.float_model import run_float
from snncompile.backends.sim.simulator import Simulator
from .target import TargetSpec, load_target


NETX_SOURCE = "netx/network.net"
"""Where a build compiled from a netx file keeps a copy of it."""


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


def _compile(source, target, calib, calib_samples, chips, input_bits, input_signed,
             require_calib, strict, tolerance, st, *, dt, nir_convention, objective,
             max_cores) -> Build:
    st.start("import")
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    graph, htda = _frontend(source, input_bits, input_signed,  # HTDA: loop added later
                            dt=dt, nir_convention=nir_convention)
    graph.validate()                                                         # shapes, DAG
    float_cal = None
    if graph.stage == "fixed":                          # netx: already Loihi integers
        fixed, quant, float_graph = graph, [], None
        x_cal, cal_file = _calibration(calib, graph, calib_samples)
    else:
        if calib is None and require_calib:
            raise InputFileError(f"{_name(source)}: a float model needs calibration data to "
                                 "be compiled safely: pass --calib FILE.npz (sample inputs, "
                                 "e.g. training data) or --no-calib to skip the checks")
        st.start("fold pools")
        graph, _ = fold_pools(graph)                                         # pools -> weights
        x_cal, cal_file = _calibration(calib, graph, calib_samples)
        stats: dict | None = {} if x_cal is not None else None
        if x_cal is not None:
            st.start("calibration: float model")
            float_cal = run_float(graph, x_cal, record=stats,                # peak |u|, |v|
                                  progress="calibration: float model")
        st.start("quantise")
        fixed, quant = quantize(graph, spec, stats)                          # fixed point
        float_graph = graph
    if htda is not None:                                                     # HTDA loop
        fixed, float_graph = lower_htda(htda, fixed, spec, x_cal), None
        float_cal = htda_runner(htda)(x_cal)             # the trained loop is the float side
    if x_cal is not None:
        st.start("calibration: simulate compiled")
    sim = (Simulator(fixed, spec.numerics).run(x_cal, progress="calibration: simulate")
           if x_cal is not None else None)
    fid = _fidelity(fixed, graph.stage, sim, float_cal, tolerance, htda is not None)
    problems = ([NO_CALIB] if x_cal is None and graph.stage != "fixed" else []) + \
        fid.warnings()                                                 # float vs compiled
    if strict and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UnfaithfulError(f"{_name(source)}: {problems[0]}{more}; nothing written "
                              "(--strict)")
    st.start("map onto cores")
    rates = firing_rates(fixed, sim, x_cal) if sim is not None else None  # traffic weights
    mapping = map_graph(fixed, spec, chips=chips, rates=rates,               # split + place
                        objective=objective, max_cores=max_cores, compare=True)
    st.start("report")
    report = _report(fixed, spec, quant, sim.overflow if sim else {}, x_cal, cal_file)
    report["fidelity"] = dict(fid.to_json(), warnings=problems)
    report["mapping"] = mapping_summary(mapping)
    if graph.meta.get("nir"):                   # NIR: the dt used, where from, what assumed
        report["nir"] = graph.meta["nir"]
    md = compile_markdown(report) + "\n## Mapping\n\n```\n" + mapping.table() + "\n```\n"
    onnx_files = {}
    if fixed.nodes(FxCoproc):                                                # ANN branch
        report["partition"] = partition(fixed, spec)
        md += "\n## Partition (neurocores / co-processor)\n\n" + \
            partition_markdown(report["partition"]) + "\n"
        onnx_files = coproc_onnx(fixed)
    if fixed.meta.get("frontend") == "netx" and not isinstance(source, Graph):
        # the original file, for `verify --backends ...,netx` (lava-dl's own loader)
        onnx_files[NETX_SOURCE] = Path(source).read_bytes()
    if htda is not None and not isinstance(source, Graph):
        onnx_files[HTDA_MODEL] = Path(source).read_bytes()   # the float side for verify
    for line in problems:
        warnings.warn(line, FidelityWarning, stacklevel=3)
    return Build(graph=fixed, float_graph=float_graph, target=spec, report=report,
                 report_md=md, extra_files={"mapping.json": mapping.to_json()},
                 extra_bytes=onnx_files)


NO_CALIB = ("no calibration data: scales ignore the 24-bit state headroom, and wraps, "
            "saturation and fidelity to the float model were not checked; pass --calib "
            "FILE.npz")


class FidelityWarning(UserWarning):
    """A problem `compile_model` found on the calibration data (or: there was none)."""


def _name(source) -> str:
    return "<graph>" if isinstance(source, Graph) else str(source)


def _fidelity(fixed: Graph, stage: str, sim, float_cal, tolerance, htda: bool):
    """Float vs compiled on the calibration samples (snncompile.verify.fidelity)."""
    if sim is None:
        return not_checked("no calibration data" + (" (--no-calib)" if stage != "fixed"
                                                    else ""), tol=tolerance)
    if float_cal is None:
        return compiled_only(fixed, sim.spikes, "the model was imported in fixed point "
                             "(lava-dl netx): there is no float model to compare with",
                             sim.overflow, tolerance)
    what = f"HTDA checkpoint, {HTDA_MODEL}" if htda else "float graph, float/"
    return compare(fixed, float_cal, sim.spikes, None, tolerance, sim.overflow, what)


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
              dt: float | None = None, nir_convention: str | None = None
              ) -> tuple[Graph, object]:
    """(float graph, the HTDA model or None). A checkpoint is loaded once; an HTDA model's
    graph is its feed-forward SNN, its top-down branch is lowered after quantisation."""
    if isinstance(source, Graph):
        return source, None
    if Path(source).suffix not in (".pt", ".pth", ".ckpt") or input_bits is not None \
            or input_signed or dt is not None or nir_convention is not None:
        return import_model(source, input_bits, input_signed, dt, nir_convention), None
    from .frontends.torch_checkpoint import model_graph
    from .nn.checkpoint import load_checkpoint
    from .nn.htda import HTDA
    model, ckpt = load_checkpoint(source)
    htda = model if isinstance(model, HTDA) else None
    return model_graph(source, model, ckpt, htda_snn=htda is not None), htda


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
    if calib is None:
        return None, None
    if isinstance(calib, np.ndarray):
        return calib[:limit], "<array>"
    x, _ = load_inputs(calib, graph.input_node(), limit=limit)
    return x, str(calib)


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
    }
