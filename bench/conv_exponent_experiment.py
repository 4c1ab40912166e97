"""Experiment (not the compiler's behaviour): would weight exponents on convs make a build
more faithful? README "Issue 12's networks" quotes one run of it.

    .venv/bin/python bench/conv_exponent_experiment.py CKPT --calib CAL.npz --inputs X.npz

Lava's Conv model ignores `weight_exp`, so the compiler gives every conv exponent 0 and a
conv's scale is limited by its largest weight. Lava's Conv does not clip its weights
either, so a conv whose mantissas m carry an exponent e could run exactly as the integers
m << e. This script compiles CKPT for loihi2 twice, as the compiler does and with that
change patched in (the conv rule's exponent range [0, 7], weights stored as m << e, the
weight-range check of convs lifted), verifies both on the simulator against the float
model and prints both fidelity tables and each layer's scale.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import snncompile.ir.limits as limits  # noqa: E402
import snncompile.passes.quantize as quantize  # noqa: E402
from snncompile.ir.nodes import FxConv2d  # noqa: E402
from snncompile.pipeline import FidelityWarning, compile_model  # noqa: E402
from snncompile.verify.compare import verify  # noqa: E402


def _with_conv_exponents():
    rule = quantize._ConvRule
    lower = rule.lower
    rule.exponent_range = lambda self, num: (0, num.weight_exp_max)
    rule.lower = lambda self, syn, wq, e, mode, bits, num: lower(
        self, syn, (wq.astype(np.int64) << e).astype(np.int32), e, mode, bits, num)
    limits._CHECKS[FxConv2d] = lambda *a: None


def _run(label, args, x, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidelityWarning)
        build = compile_model(args.checkpoint, "loihi2", calib=args.calib)
    print(f"== {label}")
    print("scale per layer: " + ", ".join(f"{q['layer']} {q['scale']:.0f} ({q['limited_by']})"
                                          for q in build.report["quantization"]))
    rep = verify(build, x, labels, backends=("sim",), sensitivity=0)
    print(rep.fidelity.text(), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--calib", required=True, help="calibration .npz ('inputs')")
    ap.add_argument("--inputs", required=True, help="test .npz ('inputs', 'labels')")
    args = ap.parse_args(argv)
    with np.load(args.inputs) as f:
        x = f["inputs"]
        labels = f["labels"] if "labels" in f.files else None
    _run("as compiled (convs at exponent 0)", args, x, labels)
    _with_conv_exponents()
    _run("experiment: convs with exponents 0..7, stored as mantissa << exponent", args, x,
         labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
