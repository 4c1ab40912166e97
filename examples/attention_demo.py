"""Attention SNNs end to end: for each committed attention checkpoint and the same
architecture trained without attention, compile for loihi2 (the ANN attention branch on the
co-processor partition), verify integer reference (co-processor through its ONNX model) ==
simulator == Lava, spikes and every value crossing the partition boundary, check the
compiled network against the float model (per-layer spike counts), and print accuracy,
both verdicts, firing rate per layer and spikes per inference.

    .venv/bin/python examples/attention_demo.py [--samples 100]      (part of `make demo`)

The checkpoints come from `examples/train_attention.py --save` (digits as Bernoulli spikes;
a generated event data set whose classes differ in when things happen).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snncompile.data import save_inputs  # noqa: E402
from examples.datasets.events import digits_images, event_timing  # noqa: E402
from snncompile.errors import SnnCompileError  # noqa: E402
from snncompile.nn import load_checkpoint  # noqa: E402
from snncompile.nn.train import accuracy  # noqa: E402
from snncompile.pipeline import FidelityWarning, compile_model  # noqa: E402
from snncompile.report.compile import table  # noqa: E402
from snncompile.verify.compare import verify  # noqa: E402

STEPS = 16
MODELS = [  # (label, checkpoint stem, data set)
    ("digits, no attention", "attention_digits_plain", "digits"),
    ("digits, CA (causal)", "attention_digits_ca_causal", "digits"),
    ("digits, TCSA (causal)", "attention_digits_tcsa_causal", "digits"),
    ("digits, HTDA", "attention_digits_htda", "digits"),
    ("events, no attention", "attention_events_plain", "events"),
    ("events, TA (causal, 4 steps)", "attention_events_ta_causal", "events"),
    ("events, TA (whole window)", "attention_events_ta_window", "events"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100, help="test samples to verify")
    ap.add_argument("--out", default=str(ROOT / "out"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore", FidelityWarning)   # printed where they arise
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"digits": digits_images(steps=STEPS, encoding="bernoulli"),
            "events": event_timing(steps=STEPS, seed=0)}
    files = {}   # the exact inputs used here, so every result can be re-checked from the CLI
    for ds, (xtr, ytr, xte, yte) in data.items():
        files[ds] = (out / f"attention_{ds}_train.npz", out / f"attention_{ds}_test.npz")
        save_inputs(files[ds][0], xtr[:256], ytr[:256])
        save_inputs(files[ds][1], xte[:args.samples], yte[:args.samples])
    rows, ok, t0 = [], True, time.perf_counter()
    for label, stem, ds in MODELS:
        xtr, ytr, xte, yte = data[ds]
        xte, yte = xte[:args.samples], yte[:args.samples]
        ckpt = ROOT / "examples" / "checkpoints" / f"{stem}.pt"
        model, _ = load_checkpoint(ckpt)
        float_acc = accuracy(model, xte, yte)
        print(f"\n== {label}: {ckpt.relative_to(ROOT)}", flush=True)
        try:
            build = compile_model(ckpt, "loihi2", calib=xtr[:256])
        except SnnCompileError as exc:
            print(f"not compiled: {exc}")
            rows.append([label, f"{float_acc:.1%}", "not compiled", "-", "-", "-", "-", "-",
                         "-", "-"])
            continue
        bdir = build.save(out / f"{stem}.loihi2.build")
        for line in build.report["fidelity"]["warnings"]:
            print(f"compile warning (calibration data): {line}")
        rep = verify(build, xte, yte, progress=True)
        print(rep.text())
        (out / f"{stem}.loihi2.verify.json").write_text(json.dumps(rep.to_json(), indent=1))
        train_f, test_f = (_rel(p) for p in files[ds])
        print(f"re-check from the CLI:\n  snncompile compile {_rel(ckpt)} "
              f"--calib {train_f} -o {_rel(bdir)}\n"
              f"  snncompile verify {_rel(bdir)} --inputs {test_f}")
        from snncompile.build import Build
        from snncompile.report.html import build_page
        page = build_page(Build.load(bdir), xte[:64], yte[:64], "test samples",
                          total_samples=len(xte))
        print(f"wrote {page.write_html(out / f'{stem}.loihi2.report.html')} "
              "(snncompile report)")
        ok &= rep.equivalent and rep.faithful is True
        w = rep.fidelity.worst
        fid = rep.fidelity.verdict + (f" ({w['layer']} {w['difference']:+.1%})" if w else "")
        from snncompile.backends.sim import Simulator
        sim = Simulator(build.graph).run(xte)
        rates = " / ".join(f"{v.mean():.3f}" for v in sim.spikes.values())
        spikes = sum(int(v.sum()) for v in sim.spikes.values()) / len(xte)
        part = build.report.get("partition")
        rows.append([label, f"{float_acc:.1%}", f"{rep.accuracy['compiled']:.1%}",
                     rep.mismatches, fid, rates, f"{spikes:.0f}",
                     f"{part['bytes_per_step']:,}" if part else "0",
                     f"{part['added_latency_per_step_s'] * 1e6:.3g} us" if part else "0",
                     _added_latency(part)])
    print("\n== attention SNNs on loihi2 (compiled = simulator == Lava; float model: compiled "
          "vs float spike counts per layer, worst layer shown; rates and spikes of the "
          "compiled network on the test samples)")
    print(table(["model", "float acc", "compiled acc", "mismatches", "float model",
                 "firing rate per LIF", "spikes/inference", "boundary bytes/step",
                 "co-proc latency/step", "added latency"], rows, "lrrrllrrrr"))
    verdict = ("all compiled models equivalent and faithful" if ok
               else "MISMATCH OR NOT FAITHFUL")
    print(f"\n{verdict}; {time.perf_counter() - t0:.0f} s")
    (out / "attention_summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if ok else 1


def _added_latency(part: dict | None) -> str:
    """What whole-window attention adds to each inference: steps and microseconds."""
    delay = (part or {}).get("window_delay")
    if not delay:
        return "0"
    return (f"{delay['steps']} steps, {delay['seconds'] * 1e6:.3g} us" if "seconds" in delay
            else f"{delay['steps']} steps")


def _rel(path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
