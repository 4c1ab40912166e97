"""The main job end to end on scikit-learn's 8x8 digits (ships offline): train (or load the
committed checkpoints), compile for loihi2 (and loihi1 where the model fits it), verify
integer reference == simulator == Lava and the compiled network against the float model,
map onto cores and estimate energy.

    make demo                     # or: .venv/bin/python examples/demo.py [--retrain]

Models: `digits_mlp` (graded pixel input, 64-128-10 LIF; graded spikes exist on Loihi 2
only) and `digits_conv` (rate-coded spike input, conv 8x3x3 - sum pool - dense 10).
Everything it writes goes to out/ (inputs, build directories, verify/energy reports).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snncompile.build import Build  # noqa: E402
from snncompile.data import save_inputs  # noqa: E402
from examples.datasets.digits import digits  # noqa: E402
from snncompile.energy.run import energy_report  # noqa: E402
from snncompile.nn import SNN, load_checkpoint, save_checkpoint  # noqa: E402
from snncompile.nn.train import accuracy, fit  # noqa: E402
from snncompile.pipeline import FidelityWarning, compile_model  # noqa: E402
from snncompile.report.compile import table  # noqa: E402
from snncompile.report.html import build_page  # noqa: E402
from snncompile.verify.compare import verify  # noqa: E402

STEPS = 16
MODELS = {
    "digits_mlp": {
        "data": {"image": False, "spikes": False},
        "targets": ["loihi2"],
        "train": {"epochs": 60, "lr": 2e-3, "first_layer_scale": 1 / 16},
        "config": {
            "input": {"shape": [64], "encoding": "graded", "bits": 5},   # pixels 0..16
            "layers": [
                {"type": "dense", "out": 128, "name": "fc1"},
                {"type": "lif", "du": 0.25, "dv": 0.1, "vth": 1.0, "bias": True,
                 "name": "lif1"},
                {"type": "dense", "out": 10, "name": "fc2"},
                {"type": "lif", "du": 0.25, "dv": 0.1, "vth": 1.0, "name": "lif2"}]}},
    "digits_conv": {
        "data": {"image": True, "spikes": True},
        "targets": ["loihi2", "loihi1"],
        "train": {"epochs": 30, "lr": 5e-3, "first_layer_scale": 1.0},
        "config": {
            "input": {"shape": [1, 8, 8], "encoding": "spikes"},        # rate-coded pixels
            "layers": [
                {"type": "conv2d", "out": 8, "kernel": 3, "padding": 1, "name": "conv1"},
                {"type": "lif", "du": 0.5, "dv": 0.2, "vth": 1.0, "name": "lif1"},
                {"type": "sumpool2d", "kernel": 2, "name": "pool1"},
                {"type": "flatten", "name": "flat"},
                {"type": "dense", "out": 10, "name": "fc2"},
                {"type": "lif", "du": 0.5, "dv": 0.2, "vth": 1.0, "name": "lif2"}]}},
}


def train(spec: dict, xtr, ytr) -> SNN:
    torch.manual_seed(0)
    model = SNN(spec["config"])
    with torch.no_grad():  # graded inputs are 0..16: start with small first-layer weights
        model.layers[0].module.weight.mul_(spec["train"]["first_layer_scale"])
    fit(model, xtr, ytr, epochs=spec["train"]["epochs"], lr=spec["train"]["lr"])
    return model


def step(msg: str):
    print(f"\n== {msg}", flush=True)


def run_model(name: str, spec: dict, args, out: Path) -> list[dict]:
    kind = "rate-coded spikes" if spec["data"]["spikes"] else "graded pixel values"
    step(f"{name}: digits as {kind} over {STEPS} steps, stratified 80/20 split")
    xtr, ytr, xte, yte = digits(steps=STEPS, **spec["data"])
    xte, yte = xte[:args.samples], yte[:args.samples]
    save_inputs(out / f"{name}_train.npz", xtr, ytr)
    save_inputs(out / f"{name}_test.npz", xte, yte)
    ckpt = ROOT / "examples" / "checkpoints" / f"{name}.pt"
    if args.retrain or not ckpt.exists():
        print(f"training {name} ({spec['train']['epochs']} epochs, surrogate gradients)")
        model = train(spec, xtr, ytr)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, ckpt, {"dataset": "sklearn digits", "steps": STEPS})
    else:
        model, _ = load_checkpoint(ckpt)
        print(f"loaded {ckpt.relative_to(ROOT)} (--retrain to train it again)")
    print(f"float model (PyTorch) test accuracy: {accuracy(model, xte, yte):.2%}")
    rows = []
    for target in spec["targets"]:
        step(f"{name} -> {target}: compile (calibrated on 256 training samples)")
        build = compile_model(ckpt, target, calib=out / f"{name}_train.npz")
        bdir = build.save(out / f"{name}.{target}.build")
        for line in build.report["fidelity"]["warnings"]:
            print(f"  warning: {line}")
        for q in build.report["quantization"]:
            print(f"  {q['layer']}: scale {q['scale']:.4g}, weight exp {q['weight_exp']}, vth "
                  f"{q['vth']}, du/dv {q['du']}/{q['dv']}, weight error "
                  f"{q['weight_rel_error']:.2%}, limited by {q['limited_by']}")
        print(f"  wrote {_shown(bdir)}/ (report.md, report.json, mapping.json)")

        step(f"{name} -> {target}: verify on {len(xte)} held-out samples: integer "
             "reference vs simulator vs Lava (Loihi2SimCfg fixed_pt), and compiled vs float")
        rep = verify(build, xte, yte, progress=True)
        (out / f"{name}.{target}.verify.json").write_text(json.dumps(rep.to_json(), indent=1))
        print(rep.text())

        step(f"{name} -> {target}: core mapping and energy per inference")
        energy, mapping = energy_report(build, xte)
        print(mapping.table())
        print(energy.table())
        ej = energy.to_json()
        (out / f"{name}.{target}.energy.json").write_text(json.dumps(ej, indent=1))
        energy.plot(out / f"{name}.{target}.energy.png", model=f"{name}.pt")
        page = build_page(Build.load(bdir), xte[:64], yte[:64], f"{name}_test.npz",
                          total_samples=len(xte))   # finds the verify.json beside the build
        print(f"  wrote {_shown(page.write_html(out / f'{name}.{target}.report.html'))}"
              " (snncompile report)")
        rows.append({"model": name, "target": target, "float": rep.accuracy["float"],
                     "compiled": rep.accuracy["compiled"], "mismatches": rep.mismatches,
                     "fidelity": rep.fidelity.verdict, "worst": rep.fidelity.worst,
                     "samples": rep.samples, "cores": mapping.n_cores,
                     "energy_j": ej["energy_per_inference_j"],
                     "latency_s": ej["latency_per_inference_s"]})
    return rows


def _shown(path: Path) -> str:
    """`path` relative to the repository when inside it (--out may point elsewhere)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _fidelity_cell(r: dict) -> str:
    w = r["worst"]
    worst = f" ({w['layer']} {w['difference']:+.1%})" if w else ""
    return r["fidelity"] + worst


def main() -> int:
    ap = argparse.ArgumentParser(description="snncompile demo on the digits data set")
    ap.add_argument("--retrain", action="store_true",
                    help="train instead of loading the committed checkpoints")
    ap.add_argument("--samples", type=int, default=360,
                    help="held-out samples to verify (default: all 360)")
    ap.add_argument("--out", default=str(ROOT / "out"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore", FidelityWarning)   # printed where they arise
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for name, spec in MODELS.items():
        rows += run_model(name, spec, args, out)

    step("summary (backends: reference, simulator and Lava compared on every spike of every "
         "layer; float model: compiled vs float spike counts per layer, worst layer shown)")
    print(table(["model", "target", "float acc", "compiled acc", "mismatches", "samples",
                 "backends", "float model", "cores", "energy/inference",
                 "latency/inference"],
                [[r["model"], r["target"], f"{r['float']:.2%}", f"{r['compiled']:.2%}",
                  r["mismatches"], r["samples"],
                  "EQUIVALENT" if r["mismatches"] == 0 else "NOT EQUIVALENT",
                  _fidelity_cell(r), r["cores"], f"{r['energy_j'] * 1e6:.3g} uJ",
                  f"{r['latency_s'] * 1e6:.3g} us"] for r in rows], "llrrrrllrrr"))
    equivalent = all(r["mismatches"] == 0 for r in rows)
    faithful = all(r["fidelity"] == "FAITHFUL" for r in rows)
    ok = equivalent and faithful
    print(f"\n{'all builds equivalent' if equivalent else 'MISMATCH'}, "
          f"{'all faithful to their float models' if faithful else 'NOT ALL FAITHFUL'}; "
          f"total time {time.perf_counter() - t0:.0f} s; reports in {out}/")
    (out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
