"""The README's screenshots, made by the commands a user runs: compile the committed
`digits_conv` checkpoint for loihi2, verify it (integer reference vs simulator), write its
`snncompile report` page and PNGs, and photograph the page in headless Chromium.

    .venv/bin/python examples/screenshots.py        # or: make screenshots

Writes docs/report.png (the top of the page) and docs/energy.png of digits_conv, and
docs/core_map.png of a wider conv network (2x32x32 spikes, conv 16 - conv 32 - dense 128 -
dense 11; random weights, untrained: digits_conv fits one core, and only the size matters
for a map); intermediate files go to out/screenshots/.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snncompile.cli import main as cli  # noqa: E402
from snncompile.data import save_inputs  # noqa: E402
from examples.datasets.digits import digits  # noqa: E402


def run(*args) -> None:
    if cli([str(a) for a in args]) != 0:
        raise SystemExit(f"snncompile {' '.join(map(str, args))} failed")


WIDE = {"input": {"shape": [2, 32, 32], "encoding": "spikes"}, "layers": [
    {"type": "conv2d", "out": 16, "kernel": 3, "padding": 1, "name": "conv1"},
    {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5, "name": "lif1"},
    {"type": "sumpool2d", "kernel": 2},
    {"type": "conv2d", "out": 32, "kernel": 3, "padding": 1, "name": "conv2"},
    {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5, "name": "lif2"},
    {"type": "sumpool2d", "kernel": 2}, {"type": "flatten"},
    {"type": "dense", "out": 128, "name": "fc3"},
    {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5, "name": "lif3"},
    {"type": "dense", "out": 11, "name": "fc4"},
    {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5, "name": "lif4"}]}


def wide_network(out: Path) -> Path:
    """Compile the untrained wide network (calibrated on random 10% spikes)."""
    import numpy as np
    import torch

    from snncompile.nn import SNN, save_checkpoint
    torch.manual_seed(0)
    model = SNN(WIDE)
    with torch.no_grad():
        model.layers[0].module.weight.mul_(3.0)
    save_checkpoint(model, out / "wide_untrained.pt")
    x = (np.random.default_rng(0).random((16, 16, 2, 32, 32)) < 0.1).astype(np.uint8)
    save_inputs(out / "wide_calib.npz", x)
    run("compile", out / "wide_untrained.pt", "--calib", out / "wide_calib.npz", "-o",
        out / "wide.build", "--quiet")
    return out / "wide.build"


def main() -> int:
    out = ROOT / "out" / "screenshots"
    docs = ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(exist_ok=True)
    xtr, ytr, xte, yte = digits(steps=16, image=True, spikes=True)
    save_inputs(out / "train.npz", xtr[:256], ytr[:256])
    save_inputs(out / "test.npz", xte[:64], yte[:64])
    build = out / "digits_conv.build"
    run("compile", ROOT / "examples/checkpoints/digits_conv.pt", "--target", "loihi2",
        "--calib", out / "train.npz", "-o", build, "--quiet")
    # verify exits 1 on a mismatch: the page then shows it, which is what it is for
    cli(["verify", str(build), "--inputs", str(out / "test.npz"), "--backends",
         "reference,sim", "--json", str(out / "digits_conv.verify.json")])
    run("report", build, "--inputs", out / "test.npz", "-o", out / "report.html",
        "--png-dir", out / "png")
    shutil.copyfile(out / "png" / "energy.png", docs / "energy.png")
    wide = wide_network(out)
    run("report", wide, "--png-dir", out / "wide_png")
    shutil.copyfile(out / "wide_png" / "core_map.png", docs / "core_map.png")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not found (apt-get install chromium): docs/report.png not updated",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={docs / 'report.png'}",
                        "--window-size=1280,1500", (out / "report.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
    print("wrote docs/report.png, docs/core_map.png, docs/energy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
