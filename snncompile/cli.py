"""`snncompile` command line: compile | run | verify | energy | export | report | inspect.

Every error a user can cause is one line on stderr and a non-zero exit; set
SNNCOMPILE_DEBUG=1 to see the traceback of an internal error.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from .backends import backend_names, get_backend
from .errors import InputFileError, SnnCompileError, UnsupportedError


def _number(text: str, cast, ok, need: str):
    """`cast(text)` if it parses and `ok(value)`, else argparse's usage error (exit 2)
    naming the value and what it must be."""
    try:
        value = cast(text)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise argparse.ArgumentTypeError(f"'{text}' is not {kind}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{value} must be {need}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so a limit of 0 or -5 is a usage error, not a
    silently empty or truncated run)."""
    return _number(text, int, lambda v: v >= 1, "at least 1")


def draws(text: str) -> int:
    """argparse type: an integer from 0 to 100 (how many extra float-model runs)."""
    return _number(text, int, lambda v: 0 <= v <= 100, "between 0 and 100")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, float, lambda v: v > 0 and v != float("inf"),
                   "a finite number > 0")


EPILOG = textwrap.dedent("""\
    Input files are .npz archives with 'inputs', an integer array shaped
    (samples, steps, *input_shape) -- spikes 0/1, graded values below 2**bits for a
    network with graded input, or signed bias frames (held for all steps of a sample) for
    a netx network driven through its input layer's bias -- and optional 'labels'
    (samples,) of class indices.

    examples:
      snncompile compile model.pt --target loihi2 --calib train.npz -o model.build
      snncompile run model.build --inputs test.npz --backend sim
      snncompile verify model.build --inputs test.npz --json verify.json
      snncompile energy model.build --inputs test.npz --json energy.json --plot energy.png
    """)


def _nir_conventions():
    from snncompile.formats.nir.read import CONVENTIONS
    return CONVENTIONS


def _parser() -> argparse.ArgumentParser:
    from .target import available_targets
    from .verify.sensitivity import DRAWS

    p = argparse.ArgumentParser(
        prog="snncompile", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compile trained spiking neural networks to Loihi fixed point, run them "
                    "on a bit-accurate simulator or on Lava, and verify spike-level "
                    "equivalence.", epilog=EPILOG)
    _add_version(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    c = sub.add_parser("compile", help="compile a checkpoint into a build directory",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Import a trained model, fold pooling into weights, quantise to the target's fixed
        point (8-bit weights with exponent, 12-bit decays, 24-bit state) and write a build
        directory: graph.json + arrays.npz (the fixed-point graph), float/ (the float
        graph), report.md and report.json (per-layer shapes, neuron and synapse counts,
        chosen exponents and bit widths, quantisation error, saturation counts, fidelity on
        calibration data, and the core mapping: cores and chips used, lower bound, per-core
        utilisation of every limited resource, how each layer is split), mapping.json
        (every block and core). Scales are chosen from the weights and thresholds and from
        the calibration data. A float model needs --calib FILE or an explicit --no-calib;
        after quantisation the float and compiled networks run on the calibration samples
        and every problem is one warning line on stderr (--strict: an error)."""),
        epilog=EPILOG)
    c.add_argument("model", help="model file: .pt (snncompile checkpoint), .nir (NIR graph) "
                   "or .net/.h5 (lava-dl netx, already fixed point: not re-quantised)")
    c.add_argument("--target", default="loihi2",
                   help=f"target name ({', '.join(available_targets())}) or a .toml file "
                        "(default: loihi2)")
    c.add_argument("-o", "--output", required=True, help="build directory to write")
    cal = c.add_mutually_exclusive_group()
    cal.add_argument("--calib", help="calibration inputs (.npz, see below, or a data set: a "
                     "directory or glob of .npz shards, read shard by shard until "
                     "--calib-samples; e.g. training data): scales are chosen from them, and the float and compiled networks "
                     "run on them to find wraps, saturation, silent layers and spike counts "
                     "off the float model. Required for float models (.pt, .nir)")
    cal.add_argument("--no-calib", action="store_true",
                     help="compile a float model without calibration data: nothing above is "
                     "checked (a warning says so)")
    c.add_argument("--strict", action="store_true",
                   help="refuse (exit 2, nothing written) instead of warning about any "
                        "problem found on the calibration data, or about --no-calib")
    _tolerance_args(c)
    c.add_argument("--calib-samples", type=positive_int, default=256,
                   help="use at most this many calibration samples (default: 256)")
    c.add_argument("--chips", type=positive_int,
                   help="number of chips to place on (default: as few as needed); too few is "
                        "an error naming the shortfall")
    c.add_argument("--objective", choices=["cores", "latency"], default="cores",
                   help="mapping objective: cores = fewest cores (default); latency = spread "
                        "the busiest layers so the slowest core's synaptic ops per step are "
                        "balanced within --max-cores; the report compares both")
    c.add_argument("--max-cores", type=positive_int, metavar="N",
                   help="core budget of --objective latency (default: every core of the "
                        "chips the fewest-cores mapping needs)")
    c.add_argument("--input-bits", type=positive_int,
                   help="netx sigma-delta networks: width of the unsigned integer frames "
                        "the input delta encoder reads (default: 8); netx networks driven "
                        "through the input layer's bias: width of the signed bias frames "
                        "(default: 13)")
    c.add_argument("--input-signed", action="store_true",
                   help="netx sigma-delta networks: the frames are signed (two's complement "
                        "of --input-bits bits), e.g. audio samples")
    c.add_argument("--dt", type=positive_float, metavar="SECONDS",
                   help="NIR files: the exporter's time step in seconds, for files that do "
                        "not record it (a file that does and disagrees is refused); the "
                        "report says which dt was used and where it came from")
    c.add_argument("--nir-convention", choices=list(_nir_conventions()),
                   help="NIR files: the exporter whose conventions the file follows, when "
                        "it cannot be detected (default: detected from the file)")
    c.add_argument("--quiet", action="store_true", help="print only the build path (no "
                   "report, no progress on stderr)")

    r = sub.add_parser("run", help="run a build on the simulator or on Lava",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Run a compiled network on its inputs and write the output layer's spikes (uint8;
        int32 graded spikes for a sigma-delta output) and the predictions to an .npz file:
        the argmax of output spike counts, of the summed graded spikes, or of a sigma
        readout's last value. Prints accuracy when the inputs file has labels. The build
        directory is not written to: without -o the output goes beside the inputs file,
        as INPUTS.BUILDNAME.BACKEND.npz (e.g. test.digits.sim.npz for --inputs test.npz
        and digits.build)."""),
        epilog=EPILOG)
    r.add_argument("build", help="build directory written by `snncompile compile`")
    r.add_argument("--inputs", required=True, help="inputs .npz file")
    r.add_argument("--backend", default="sim", metavar="{" + ",".join(backend_names()) + "}",
                   help="sim: fast bit-accurate simulator (default); lava: Lava "
                        "Loihi2SimCfg(select_tag='fixed_pt'); reference: integer reference; "
                        "netx: lava-dl's netx loader on the build's netx source (builds "
                        "compiled from a netx file)")
    r.add_argument("-o", "--output", help="output .npz (default: beside the inputs file, "
                   "INPUTS.BUILDNAME.BACKEND.npz)")
    _quiet_arg(r)
    r.add_argument("--limit", type=positive_int, help="use only the first N samples")
    r.add_argument("--strict", action="store_true",
                   help="sim only: stop at the first wrap or saturation, naming it")

    v = sub.add_parser("verify", help="check the backends agree spike for spike and the "
                       "compiled network is faithful to the float model",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Two verdicts. (1) EQUIVALENT: the integer reference (PyTorch, layer by layer), the
        simulator (numpy, step by step) and Lava (Loihi2SimCfg fixed_pt) run the same
        integer inputs and agree on every spike of every layer at every step (else the
        first divergence is named: layer, neuron, step, u/v on each side). (2) FAITHFUL:
        the compiled network (first backend) against the float model it was compiled from,
        per layer: float and compiled spike counts, their relative difference, per-neuron
        rate correlation; the fraction of samples with the same decision; with labels both
        accuracies. Default tolerance: spike counts within 5%, correlation >= 0.9, same
        decision on >= 90% of samples. Builds without a float model (netx) say NOT CHECKED
        and why.

        exit status: 0 both verdicts hold (or faithfulness could not be checked: said on
        stderr); 1 backends disagree; 4 not faithful; 5 both; 2 user or file error;
        3 internal error."""),
        epilog=EPILOG)
    v.add_argument("build", help="build directory")
    v.add_argument("--inputs", required=True, help="inputs .npz file, or a data set: a "
                   "directory or glob of .npz shards, read shard by shard")
    v.add_argument("--json", help="write the machine-readable report here")
    _scale_args(v)
    v.add_argument("--backends",
                   help="comma-separated, of " + ", ".join(backend_names()) + "; first is "
                        "the baseline (default: every backend that runs the build from its "
                        "graph: reference,sim,lava); add 'netx' for a build compiled from a "
                        "netx file to run it with lava-dl's own netx loader in Lava too")
    v.add_argument("--limit", type=positive_int, help="use only the first N samples")
    v.add_argument("--lava-samples", type=positive_int, metavar="N",
                   help="samples the Lava backends (lava, netx) run: the first N (the "
                        "others run all). Default: what Lava's rate, estimated from the "
                        "network's synapses and neurons, fits in about 2 minutes; the "
                        "report and stderr say when Lava compared fewer samples than the "
                        "others")
    v.add_argument("--sensitivity", type=draws, default=DRAWS, metavar="N",
                   help="when the faithfulness verdict fails: run the float model N more "
                        "times with its weights, biases, thresholds and decays perturbed by "
                        "random noise of their rounding errors' size, and say whether the "
                        "compiled drift is within what that gives (a model this sensitive "
                        "cannot be "
                        f"compiled faithfully; default {DRAWS}; 0: off; not run on data "
                        "sets)")
    _tolerance_args(v)
    _quiet_arg(v)

    e = sub.add_parser("energy", help="estimate on-chip energy and latency per inference",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Run the build on the simulator, count events (synaptic operations, neuron updates,
        spikes with their hop counts from the core placement) and turn them into energy
        per inference (dynamic + static), latency per step and per inference, and the
        energy-delay product, with a per-layer / per-event breakdown, using the energy
        table of the build's target (targets/*.toml: every number with its source, Loihi 2
        numbers flagged as estimates). Also prints the MAC/AC estimate the attention-SNN
        literature uses (E_MAC 4.6 pJ, E_AC 0.9 pJ) for the same topology."""),
        epilog=EPILOG)
    e.add_argument("build", help="build directory")
    e.add_argument("--inputs", required=True, help="inputs: one .npz file, or a data set (a "
                   "directory or glob of .npz shards, counted shard by shard and summed)")
    e.add_argument("--energy-table", help="alternative energy table: a target name (e.g. "
                   "loihi1-sanafe) or a .toml file with an [energy] section")
    e.add_argument("--chips", type=positive_int, help="re-place on this many chips (default: "
                   "price the build's own placement, mapping.json)")
    e.add_argument("--replace", action="store_true",
                   help="re-place the network with the firing rates of --inputs instead of "
                        "pricing the build's own placement (mapping.json)")
    e.add_argument("--backend", choices=("model", "sanafe", "both"), default="model",
                   help="model: snncompile's energy model; sanafe: also run the placed "
                   "network through the SANA-FE simulator and print both side by side; "
                   "both: the model's full breakdown and the SANA-FE comparison")
    e.add_argument("--sanafe-samples", type=positive_int, default=16,
                   help="samples SANA-FE simulates (it runs one sample at a time)")
    e.add_argument("--json", help="write the machine-readable report here")
    e.add_argument("--plot", help="write a per-layer breakdown chart (.png) here")
    e.add_argument("--limit", type=positive_int, help="use only the first N samples")
    _scale_args(e)
    _quiet_arg(e)

    x = sub.add_parser("export", help="write a build in another format (NIR, lava-dl netx)",
                       formatter_class=fmt, description=textwrap.dedent("""\
        nir:  the float spiking graph (after pool folding) as a NIR file (CubaLIF neurons,
              dt = --dt seconds), readable by NIR-aware tools.
        netx: the fixed-point graph as a lava-dl netx HDF5 network, for graphs netx can
              express exactly: dense/conv + CUBA (or sigma-delta) chains whose dense
              layers' effective weights (mantissa x 2**weight_exp) lie within [-256, 254]
              (mixed signs) or [0, 255] / [-256, 0] (one sign), since netx re-derives and
              clips dense weights to 8 bits, LIF biases multiples of 64 (netx's
              bias_exp = 6) and graded input only through a delta encoder; a layer quantised
              with weight_exp > 0 (large float weights, e.g. the demo's digits_conv fc2) is
              refused naming the layer and its span, as is anything else netx cannot
              express. Nothing is written then."""))
    x.add_argument("build", help="build directory")
    x.add_argument("--format", required=True, choices=["nir", "netx"])
    x.add_argument("-o", "--output", required=True, help="file to write: .nir for nir; "
                   ".net (or .h5/.hdf5) for netx; another extension is refused")
    x.add_argument("--dt", type=positive_float, default=1e-3, help="NIR time step in seconds "
                   "(default: 1e-3)")
    _add_report_parsers(sub, fmt)
    return p


def _quiet_arg(p) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or progress lines on stderr")


def _scale_args(p) -> None:
    p.add_argument("--workers", type=positive_int, help="data sets: run the shards on an "
                   "embedded Dask LocalCluster of N worker processes (N > 1)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="data sets: run the shards on an "
                   "existing Dask cluster (e.g. tcp://host:8786; workers must see the build "
                   "and shards at the same paths)")
    p.add_argument("--fresh", action="store_true", help="data sets: ignore the per-shard "
                   "results stored by an earlier (interrupted) run and recompute all")


def _tolerance_args(p) -> None:
    from snncompile.verify.fidelity import Tolerance
    d = Tolerance()
    p.add_argument("--tolerance", type=fraction, default=d.spikes, metavar="FRAC",
                   help="faithful: each layer's compiled spike count within this relative "
                        f"difference of the float model's (default: {d.spikes:g})")
    p.add_argument("--min-correlation", type=fraction, default=d.correlation, metavar="R",
                   help="faithful: per-neuron rate correlation at least this (default: "
                        f"{d.correlation:g})")
    p.add_argument("--min-agreement", type=fraction, default=d.agreement, metavar="FRAC",
                   help="faithful: same decision as the float model on at least this "
                        f"fraction of samples (default: {d.agreement:g})")


def _tolerance(args):
    from snncompile.verify.fidelity import Tolerance
    return Tolerance(spikes=args.tolerance, correlation=args.min_correlation,
                     agreement=args.min_agreement)


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    return _number(text, float, lambda v: 0 <= v <= 1, "between 0 and 1")


def _warn(line: str) -> None:
    print(f"snncompile: warning: {line}", file=sys.stderr)


OUTPUTS = {"compile": (("output", True),), "run": (("output", False),),
           "verify": (("json", False),), "energy": (("json", False), ("plot", False)),
           "export": (("output", False),), "report": (("output", False), ("png_dir", True))}
"""Output options per command (attribute, is a directory): checked before any work."""


def one_line(text: str) -> str:
    """`text` as one terminal-safe line: newlines, control characters, ANSI escapes and
    other invisible format characters (names come from files) are shown escaped."""
    return "".join(ch if ch == " " or not unicodedata.category(ch).startswith(("C", "Z"))
                   else ch.encode("unicode_escape").decode("ascii") for ch in text)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        status = _dispatch(args)
    if status in (0, 1) or os.environ.get("SNNCOMPILE_DEBUG"):
        # a finished command shows third-party warnings; an error shows only its one line
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return status


def _dispatch(args) -> int:
    from .safe_io import check_output_path
    try:
        for attr, is_dir in OUTPUTS.get(args.command, ()):
            if getattr(args, attr, None):
                check_output_path(getattr(args, attr), directory=is_dir, make_parents=is_dir)
        from .progress import cli_run   # progress on stderr for the command, unless --quiet
        return cli_run({"compile": cmd_compile, "run": cmd_run, "verify": cmd_verify,
                        "energy": cmd_energy, "export": cmd_export, "report": cmd_report,
                        "inspect": cmd_inspect, "nodes": cmd_nodes}[args.command], args)
    except SnnCompileError as exc:
        print(f"snncompile: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment (disk full, permissions), not a bug
        where = exc.filename if exc.filename is not None else "snncompile"
        print(f"snncompile: error: {one_line(str(where))}: "
              f"{one_line(exc.strerror or str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snncompile: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal bug: still one line unless debugging
        if os.environ.get("SNNCOMPILE_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"snncompile: internal error: {type(exc).__name__}: {one_line(msg)} "
              "(set SNNCOMPILE_DEBUG=1 for a traceback)", file=sys.stderr)
        return 3


def cmd_compile(args) -> int:
    import warnings

    from .pipeline import FidelityWarning, compile_model

    from .cli_checks import naming
    with warnings.catch_warnings(), naming("--calib", args.calib):
        warnings.simplefilter("ignore", FidelityWarning)   # printed below, one line each
        build = compile_model(args.model, args.target, calib=args.calib,
                              calib_samples=args.calib_samples, chips=args.chips,
                              input_bits=args.input_bits, input_signed=args.input_signed,
                              require_calib=not args.no_calib, strict=args.strict,
                              tolerance=_tolerance(args), dt=args.dt,
                              nir_convention=args.nir_convention,
                              objective=args.objective, max_cores=args.max_cores)
    for line in (build.report.get("nir") or {}).get("warnings", []):
        print(f"snncompile: warning: {line}", file=sys.stderr)  # e.g. a guessed NIR dt

    path = build.save(args.output)
    if args.quiet:
        print(path)
    else:
        print(build.report_md)
        print(f"wrote {path}/ (graph.json, arrays.npz, report.md, report.json)")
    for line in build.report.get("fidelity", {}).get("warnings", []):
        _warn(line)
    return 0


def _load(build_dir, inputs, limit):
    from .build import Build
    from .cli_checks import check_build_dir, naming
    from .data import load_inputs

    check_build_dir(build_dir)
    build = Build.load(build_dir)
    out = build.graph.inputs(build.graph.output_node().name)[0]
    n_classes = int(np.prod(build.graph.shape(out)))
    with naming("--inputs", inputs):
        x, labels = load_inputs(inputs, build.graph.input_node(), n_classes, limit)
    from snncompile.verify.fidelity import steps_warning
    msg = steps_warning(build, x)
    if msg:
        _warn(msg)
    return build, out, x, labels


def cmd_run(args) -> int:
    backend = get_backend(args.backend)       # an unknown name: one line, exit 2
    build, out, x, labels = _load(args.build, args.inputs, args.limit)
    why = backend.unsupported(build.graph, build.netx_source())
    if why:
        raise UnsupportedError(f"--backend {args.backend}: {why}")
    options = {"strict": True} if args.strict else {}     # the simulator's option
    res = backend.run(build.graph, x, numerics=build.target.numerics,
                      source=build.netx_source(), progress=True, **options)
    spikes, wall = res.values, res.wall_s
    from snncompile.verify.compare import decision
    out_spikes = spikes[out]
    pred = decision(build.graph.node(out), out_spikes)
    graded = out_spikes.dtype != bool
    from .cli_checks import default_run_output
    dest = (Path(args.output) if args.output
            else default_run_output(args.inputs, args.build, args.backend))
    if dest.suffix != ".npz":
        raise InputFileError(f"{dest}: output must be an .npz file")
    arrays = {"output_spikes": out_spikes.astype(np.int32 if graded else np.uint8),
              "predictions": pred}
    from .safe_io import atomic_path
    with atomic_path(dest) as tmp:
        np.savez_compressed(tmp, **arrays)
    print(f"{args.backend}: {len(x)} samples x {x.shape[1]} steps in {wall:.2f} s; "
          f"output layer {out}: {int(np.count_nonzero(out_spikes)):,} "
          f"{'graded spikes (int32 values)' if graded else 'spikes'}")
    if labels is not None:
        print(f"accuracy: {(pred == labels).mean():.2%} ({int((pred == labels).sum())}"
              f"/{len(labels)})")
    print(f"wrote {dest} (output_spikes, predictions)")
    return 0


def _backend_list(text: str | None) -> tuple[str, ...] | None:
    """`--backends a,b,...` -> names (None: verify's default); at least two different
    registered names, else one line naming them."""
    if text is None:
        return None
    names = backend_names()
    backends = tuple(b.strip() for b in text.split(",") if b.strip())
    if any(b not in names for b in backends) or len(backends) < 2 \
            or len(set(backends)) != len(backends):
        raise InputFileError(f"--backends: need at least two different ones of "
                             f"{', '.join(names)}, got '{text}'")
    return backends


def cmd_verify(args) -> int:
    from snncompile.verify.compare import verify

    backends = _backend_list(args.backends)
    tol = _tolerance(args)
    from .data import is_dataset
    if is_dataset(args.inputs):
        from .scale import dataset_report
        report = dataset_report(args, backends, tol)
    else:
        _one_file_only(args)
        build, out, x, labels = _load(args.build, args.inputs, args.limit)
        report = verify(build, x, labels, backends, progress=True, tolerance=tol,
                        lava_samples=args.lava_samples, sensitivity=args.sensitivity)
    print(report.text())
    for name in _source_backends_not_run(args.build, report.backends):
        print(f"tip: this build comes from a netx file; add '{name}' to --backends to "
              "compare with lava-dl's own netx loader in Lava too")
    if args.json:
        _write_json(args.json, report.to_json())
        print(f"wrote {args.json}")
    for line in report.summary():      # what failed, or could not be checked
        print(f"snncompile: verify: {line}", file=sys.stderr)
    return report.exit_code()


def _source_backends_not_run(build_dir, ran) -> list[str]:
    """Backends that run only a build with a netx source (netx), when this build has one
    and they were not among `ran`."""
    from .pipeline import NETX_SOURCE
    source = Path(build_dir) / NETX_SOURCE
    if not source.is_file():
        return []
    rest = [b for b in backend_names() if b not in ran]
    from .build import Build
    graph = Build.load(build_dir).graph if rest else None
    return [b for b in rest if get_backend(b).unsupported(graph, None)
            and not get_backend(b).unsupported(graph, source)]


def cmd_energy(args) -> int:
    from snncompile.energy.run import energy_report, price

    from .data import is_dataset
    if is_dataset(args.inputs):
        build, x, events, note, bad = _energy_dataset(args)
        report, mapping = price(build, events, energy_table=args.energy_table,
                                chips=args.chips, replace=args.replace)
        report.notes.append(note)
    else:
        bad = []
        _one_file_only(args)
        build, out, x, labels = _load(args.build, args.inputs, args.limit)
        report, mapping = energy_report(build, x, energy_table=args.energy_table,
                                        chips=args.chips, replace=args.replace)
    print(mapping.table())
    print()
    if args.backend != "sanafe":
        print(report.table())
    doc = report.to_json()
    if args.backend != "model":
        from snncompile.energy.run import sanafe_compare
        sf, text = sanafe_compare(build, x, report, mapping, energy_table=args.energy_table,
                                  max_samples=args.sanafe_samples)
        print(text)
        doc["sanafe"] = sf.to_json()
    if args.json:
        _write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.plot:
        from .safe_io import atomic_path
        with atomic_path(args.plot) as tmp:
            report.plot(tmp, model=Path(str(build.report.get("source", ""))).name)
        print(f"wrote {args.plot}")
    return 2 if bad else 0     # as verify: a data set with shards left out


def _one_file_only(args) -> None:
    if args.workers or args.scheduler or args.fresh:
        raise InputFileError("--workers, --scheduler and --fresh apply to a data set (a "
                             f"directory or glob of .npz shards); --inputs {args.inputs} is "
                             "one file")


def _energy_dataset(args):
    """`energy --inputs DATA_SET`: (build, the first usable shard's inputs for SANA-FE,
    the summed event counts); bad shards named on stderr, the report notes them."""
    from .build import Build
    from .cli_checks import check_build_dir
    from .data import load_inputs, shard_paths
    from .scale import cache_dir_for, check_dataset_flags, energy_dataset

    check_dataset_flags(args)
    check_build_dir(args.build)
    events, used, bad = energy_dataset(args.build, args.inputs, args.energy_table,
                                       workers=args.workers, scheduler=args.scheduler,
                                       fresh=args.fresh,
                                       cache_dir=cache_dir_for(args.build, args.json))
    for row in bad:
        _warn(f"energy: shard {row['shard']} not counted: {row['error']}")
    build = Build.load(args.build)
    x = None
    if args.backend != "model":    # SANA-FE simulates a few samples: the first shard's
        first = next(p for p in shard_paths(args.inputs) if p.name == used[0])
        x, _ = load_inputs(first, build.graph.input_node())
    note = f"data set {args.inputs}: {len(used)} shard(s), {events['samples']} samples " \
           "counted on the simulator shard by shard and summed"
    if bad:
        note += f"; NOT COUNTED: {len(bad)} shard(s) (" + ", ".join(r["shard"] for r in bad) \
                + ")"
    return build, x, events, note, bad


def cmd_export(args) -> int:
    from .build import Build
    from .safe_io import atomic_path
    from .cli_checks import EXPORT_SUFFIXES, check_build_dir, check_suffix

    check_suffix("-o", args.output, EXPORT_SUFFIXES[args.format], f"a {args.format} export")
    check_build_dir(args.build)
    build = Build.load(args.build)
    if args.format == "nir":
        from snncompile.formats.nir.write import write_nir
        if build.float_graph is None:
            raise InputFileError(f"{args.build}: has no float graph (it was imported in "
                                 "fixed point); NIR export needs one")
        with atomic_path(args.output) as tmp:
            write_nir(build.float_graph, tmp, dt=args.dt)
    else:
        from snncompile.formats.netx.write import export_netx
        export_netx(build.graph, args.output)  # atomic itself
    print(f"wrote {args.output} ({args.format})")
    return 0


def _write_json(path, doc) -> None:
    from .safe_io import write_json
    write_json(path, doc)


# ------------------------------------------------------------------ report, inspect, --version
def _add_version(p) -> None:
    from . import __version__
    p.add_argument("--version", action="version", version=f"snncompile {__version__}")


def _add_report_parsers(sub, fmt) -> None:
    """`report` and `inspect`: what a researcher sees of a build (snncompile.report.html)."""
    rp = sub.add_parser("report", help="write one self-contained HTML page (and/or PNGs) "
                        "about a build", formatter_class=fmt, description=textwrap.dedent("""\
        One HTML page per build that opens without network access (inline CSS, figures as
        PNG inside the page): compile summary, layer table with labelled counts,
        quantisation, fidelity (when the build records it), core map on the mesh with
        traffic, co-processor partition (attention models), and the verify verdicts (from
        --verify-json, else BUILD/verify.json, BUILD.verify.json or NAME.verify.json beside
        NAME.build), with the first divergence drawn. With --inputs also spike rasters,
        firing rates (float vs compiled), membrane traces, and the energy and latency
        breakdown. --png-dir writes the same figures as PNGs."""),
        epilog=EPILOG)
    rp.add_argument("build", help="build directory")
    rp.add_argument("--inputs", help="inputs .npz: run float model, simulator and energy "
                    "model on them")
    rp.add_argument("--limit", type=positive_int, default=64,
                    help="use only the first N input samples (default: 64)")
    rp.add_argument("--verify-json", help="verify report (`snncompile verify --json`) to "
                    "show (default: the one beside the build, if any)")
    rp.add_argument("-o", "--output", help="HTML file to write (.html)")
    rp.add_argument("--png-dir", help="also write every figure as a PNG into this folder")
    _quiet_arg(rp)

    ip = sub.add_parser("inspect", help="what a build expects as input, its target, cores "
                        "and verdicts so far", formatter_class=fmt)
    ip.add_argument("build", help="build directory")
    ip.add_argument("--verify-json", help="verify report to read (default: the one beside "
                    "the build, as for `report`)")
    ip.add_argument("--json", action="store_true", help="print JSON instead of text")

    np_ = sub.add_parser("nodes", help="which node types every stage (simulator, reference, "
                         "Lava, mapping, energy, exporters, ...) has a rule for",
                         formatter_class=fmt, description="Each stage keeps one table of "
                         "rules keyed on node type (snncompile/ir/registry.py); this prints "
                         "them as one matrix: x = the stage handles that node type.")
    np_.add_argument("--json", action="store_true", help="print {stage: [node types]}")


def cmd_report(args) -> int:
    from .build import Build
    from snncompile.report.html import build_page

    if not args.output and not args.png_dir:
        raise InputFileError("report: give -o FILE.html and/or --png-dir DIR (nothing to "
                             "write otherwise)")
    if args.output and Path(args.output).suffix.lower() not in (".html", ".htm"):
        raise InputFileError(f"-o {args.output}: the report is an HTML page; name it .html")
    x = labels = None
    total = None
    if args.inputs:
        build, out, x_all, labels = _load(args.build, args.inputs, None)
        total = len(x_all)
        x = x_all[:args.limit]
        labels = None if labels is None else labels[:args.limit]
    else:
        from .cli_checks import check_build_dir
        check_build_dir(args.build)
        build = Build.load(args.build)
    page = build_page(build, x, labels, inputs_name=Path(args.inputs).name if args.inputs
                      else "", verify_json=args.verify_json, total_samples=total)
    for w in page.warnings:
        print(f"snncompile: warning: {w}", file=sys.stderr)
    if args.output:
        page.write_html(args.output)
        print(f"wrote {args.output} ({len(page.figures)} figures)")
    if args.png_dir:
        paths = page.write_pngs(args.png_dir)
        print(f"wrote {len(paths)} PNGs to {args.png_dir}/: "
              + ", ".join(p.name for p in paths))
    return 0


def cmd_inspect(args) -> int:
    import json

    from .build import Build
    from snncompile.report.html import describe, describe_text

    from .cli_checks import check_build_dir
    check_build_dir(args.build)
    d = describe(Build.load(args.build), args.verify_json)
    print(json.dumps(d, indent=1) if args.json else describe_text(d))
    return 0


def cmd_nodes(args) -> int:
    import json

    from .ir.registry import support_matrix, support_table
    print(json.dumps(support_matrix(), indent=1) if args.json else support_table())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
