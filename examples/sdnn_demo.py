"""A sigma-delta network from lava-dl's slayer, end to end: train a `block.sigma_delta`
MLP (64-64-10, ReLU, sigma readout) on scikit-learn's 8x8 digits, export it with slayer's
own `export_hdf5` (a netx `.net` file), compile it with snncompile, and check that the
integer reference, the simulator, our Lava lowering and lava-dl's own netx loader in Lava
give the same graded spikes; then map it and estimate its energy.

    make demo                     # or: .venv/bin/python examples/sdnn_demo.py

Inputs: each image's pixels (0..16) times 15, repeated over 8 steps; the network's delta
encoder sends a pixel once (when it changes by at least the threshold), so later steps
carry almost no messages. The float model is slayer's own (trained with its quantisation
hooks); the compiled class is the argmax of the sigma readout at the last step.
Everything goes to out/sdnn/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import snncompile  # noqa: E402,F401  (installs the Lava import fix before lava-dl)
from snncompile.backends.lava.run import require_lava  # noqa: E402
from snncompile.data import save_inputs  # noqa: E402
from examples.datasets.digits import digits  # noqa: E402
from snncompile.energy.run import energy_report  # noqa: E402
from snncompile.ir import FxSigmaDelta  # noqa: E402
from snncompile.pipeline import compile_model  # noqa: E402
from snncompile.backends.sim import Simulator  # noqa: E402
from snncompile.verify.compare import decision, verify  # noqa: E402

STEPS = 8
PIXEL_SCALE = 15          # integer frames 0..240; slayer sees them / 64 (6 fraction bits)
EPOCHS = 15


def train(xtr, ytr, xte, yte, seed: int = 0):
    """slayer sigma-delta MLP; returns the model and its float test accuracy."""
    from snncompile.third_party import import_quietly
    slayer = import_quietly("lava.lib.dl.slayer")   # no Prophesee / CUDA import noise

    torch.manual_seed(seed)
    neuron = {"threshold": 0.1, "activation": torch.nn.functional.relu,
              "tau_grad": 0.1, "scale_grad": 0.2, "requires_grad": False}
    blocks = torch.nn.ModuleList([
        slayer.block.sigma_delta.Input(neuron),
        slayer.block.sigma_delta.Dense(neuron, 64, 64, weight_scale=2),
        slayer.block.sigma_delta.Output(neuron, 64, 10, weight_scale=2)])

    def forward(x):
        for block in blocks:
            x = block(x)
        return x[..., -1]                      # the sigma readout at the last step

    def tensor(x):                             # (N, T, 64) integers -> (N, 64, T) floats
        return torch.tensor(x / 64.0, dtype=torch.float32).permute(0, 2, 1)

    opt = torch.optim.Adam(blocks.parameters(), lr=3e-3)
    x, y = tensor(xtr), torch.tensor(ytr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(forward(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((forward(tensor(xte)).argmax(1).numpy() == yte).mean())
    return blocks, acc


def export(blocks, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(str(i)))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava-samples", type=int, default=8,
                    help="test samples run on Lava and on netx in Lava (one run each)")
    args = ap.parse_args()
    require_lava()
    out = ROOT / "out" / "sdnn"
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = digits(steps=STEPS)
    xtr, xte = xtr * PIXEL_SCALE, xte * PIXEL_SCALE
    blocks, float_acc = train(xtr, ytr, xte, yte)
    net = export(blocks, out / "digits_sdnn.net")
    print(f"trained slayer sigma-delta 64-64-10 in {time.perf_counter() - t0:.1f} s: float "
          f"test accuracy {float_acc:.2%}; exported {net.relative_to(ROOT)}")

    build = compile_model(net, "loihi2")
    build.save(out / "digits_sdnn.build")
    graph = build.graph
    print(f"compiled {net.name} -> {(out / 'digits_sdnn.build').relative_to(ROOT)} "
          f"({', '.join(n.name + ':' + n.role for n in graph.nodes(FxSigmaDelta))})")
    save_inputs(out / "digits_sdnn_test.npz", xte, yte)

    sim = Simulator(graph, build.target.numerics).run(xte)
    readout = graph.nodes(FxSigmaDelta)[-1]
    compiled_acc = float((decision(readout, sim.spikes[readout.name]) == yte).mean())
    messages = sum(c.get("spikes", 0) for c in sim.counts.values()) / len(xte)
    wide = sum(o.get("message_bits", 0) for o in sim.overflow.values())
    print(f"compiled (simulator, all {len(xte)} test samples): accuracy {compiled_acc:.2%}, "
          f"{messages:.0f} graded spikes per inference, {wide} wider than 16 bits")

    k = min(args.lava_samples, len(xte))
    report = verify(build, xte[:k], yte[:k], ("reference", "sim", "lava", "netx"),
                    progress=True)
    print(report.text())
    full = verify(build, xte, yte, ("reference", "sim"))
    print(f"reference vs simulator on all {len(xte)} test samples: {full.mismatches} "
          "mismatches")
    same = "EQUIVALENT" if report.equivalent and full.equivalent else "NOT EQUIVALENT"
    print(f"verdicts: backends {same}; float model {full.fidelity.verdict} (a netx file is "
          f"fixed point: the build has no float model; slayer's own float accuracy above: "
          f"{float_acc:.2%}, compiled {compiled_acc:.2%})")
    energy, _ = energy_report(build, xte)
    print(energy.table())
    (out / "digits_sdnn.verify.json").write_text(json.dumps(report.to_json(), indent=1))
    from snncompile.build import Build
    from snncompile.report.html import build_page
    page = build_page(Build.load(out / "digits_sdnn.build"), xte[:64], yte[:64],
                      "digits_sdnn_test.npz", total_samples=len(xte))
    print(f"wrote {page.write_html(out / 'digits_sdnn.report.html').relative_to(ROOT)} "
          "(snncompile report)")
    summary = {"float_accuracy": float_acc, "compiled_accuracy": compiled_acc,
               "graded_spikes_per_inference": messages, "wider_than_16_bits": wide,
               "mismatches_4_backends": report.mismatches, "samples_4_backends": k,
               "mismatches_ref_sim_all": full.mismatches, "test_samples": len(xte),
               "fidelity": full.fidelity.verdict, "fidelity_reason": full.fidelity.reason,
               "energy_per_inference_j": energy.energy_per_inference_j}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {(out / 'summary.json').relative_to(ROOT)} in "
          f"{time.perf_counter() - t0:.0f} s")
    return 0 if report.equivalent and full.equivalent else 1


if __name__ == "__main__":
    sys.exit(main())
