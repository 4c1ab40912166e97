"""The main job end to end: train (or load the committed) LIF SNN on scikit-learn's 8x8
digits, compile it for loihi2, run it, and verify reference == simulator == Lava.

    make demo                     # or: .venv/bin/python examples/demo.py [--retrain]

Everything it writes goes to out/ (inputs, the build directory, the verify report).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snncompile.data import save_inputs  # noqa: E402
from snncompile.datasets import digits  # noqa: E402
from snncompile.nn import SNN, load_checkpoint, save_checkpoint  # noqa: E402
from snncompile.nn.train import accuracy, fit  # noqa: E402
from snncompile.pipeline import compile_model  # noqa: E402
from snncompile.verify import verify  # noqa: E402

STEPS = 16
CHECKPOINT = ROOT / "examples" / "checkpoints" / "digits_mlp.pt"
CONFIG = {
    "input": {"shape": [64], "encoding": "graded", "bits": 5},   # pixel values 0..16
    "layers": [
        {"type": "dense", "out": 128, "name": "fc1"},
        {"type": "lif", "du": 0.25, "dv": 0.1, "vth": 1.0, "bias": True, "name": "lif1"},
        {"type": "dense", "out": 10, "name": "fc2"},
        {"type": "lif", "du": 0.25, "dv": 0.1, "vth": 1.0, "name": "lif2"},
    ],
}


def train(xtr, ytr, epochs: int = 60) -> SNN:
    torch.manual_seed(0)
    model = SNN(CONFIG)
    with torch.no_grad():  # inputs are 0..16: start with small first-layer weights
        model.layers[0].module.weight.mul_(1 / 16)
    fit(model, xtr, ytr, epochs=epochs, lr=2e-3, progress=True)
    return model


def step(msg: str):
    print(f"\n== {msg}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="snncompile demo on the digits data set")
    ap.add_argument("--retrain", action="store_true", help="train instead of loading the "
                    "committed checkpoint")
    ap.add_argument("--samples", type=int, default=360,
                    help="held-out samples to verify (default: all 360)")
    ap.add_argument("--out", default=str(ROOT / "out"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    step("data: scikit-learn 8x8 digits, graded input repeated over "
         f"{STEPS} steps, stratified 80/20 split")
    xtr, ytr, xte, yte = digits(steps=STEPS)
    xte, yte = xte[:args.samples], yte[:args.samples]
    save_inputs(out / "digits_train.npz", xtr, ytr)
    save_inputs(out / "digits_test.npz", xte, yte)
    print(f"train {len(xtr)} samples, test {len(xte)} samples -> {out}/digits_*.npz")

    if args.retrain or not CHECKPOINT.exists():
        step("train: 64-128-10 LIF SNN with surrogate gradients")
        model = train(xtr, ytr)
        CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, CHECKPOINT, {"dataset": "sklearn digits", "steps": STEPS})
    else:
        step(f"load committed checkpoint {CHECKPOINT.relative_to(ROOT)} (--retrain to train)")
        model, _ = load_checkpoint(CHECKPOINT)
    print(f"float model (PyTorch) test accuracy: {accuracy(model, xte, yte):.2%}")

    step("compile for loihi2 (calibrated on 256 training samples)")
    build = compile_model(CHECKPOINT, "loihi2", calib=out / "digits_train.npz")
    build.save(out / "digits_mlp.build")
    for q in build.report["quantization"]:
        print(f"  {q['layer']}: scale {q['scale']:.4g}, weight exp {q['weight_exp']}, "
              f"vth {q['vth']}, du/dv {q['du']}/{q['dv']}, weight error "
              f"{q['weight_rel_error']:.2%}, limited by {q['limited_by']}")
    print(f"build written to {out / 'digits_mlp.build'} (see report.md there)")

    step(f"verify on {len(xte)} held-out samples: integer reference vs simulator vs Lava "
         "(Loihi2SimCfg fixed_pt)")
    report = verify(build, xte, yte, progress=True)
    (out / "verify.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
    print(report.text())

    step("summary")
    acc = report.accuracy
    print(f"float accuracy     {acc['float']:.2%}")
    print(f"compiled accuracy  {acc['compiled']:.2%}  (float/compiled predictions agree on "
          f"{acc['agreement']:.1%})")
    print(f"equivalence        {'all three agree' if report.equivalent else 'MISMATCH'}: "
          f"{report.mismatches} mismatching spikes over {report.samples} samples "
          f"x {report.steps} steps")
    print(f"total time         {time.perf_counter() - t_start:.0f} s")
    return 0 if report.equivalent else 1


if __name__ == "__main__":
    sys.exit(main())
