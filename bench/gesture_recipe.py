"""Is the generated gesture set learnable, and which training recipe learns it? The
measurements behind examples/gesture_networks.py's RECIPE (README "Issue 12's networks").

    .venv/bin/python bench/gesture_recipe.py              # data check + recipe ablations
    .venv/bin/python bench/gesture_recipe.py --only data  # the ANN check alone (seconds)

1. Data: a small ANN (conv 16, conv 32, linear 11; Adam, 30 epochs) on event counts summed
   over 1, 2 or 4 time bins. One bin loses the order of events, so clockwise and
   counter-clockwise circles are confused; more bins separate all 11 classes.
2. Recipe: network A of the example without attention (`--widths`, default 8/16/16/32),
   trained exactly as the example trains (`start_firing`, then `snncompile.nn.train.fit`),
   with one ingredient of the recipe changed per row; test accuracy (float model) printed.
Deterministic for a given machine and thread count (one thread here).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples import gesture_networks as gn  # noqa: E402
from examples.datasets.gestures import gestures  # noqa: E402
from snncompile.nn import SNN  # noqa: E402
from snncompile.nn.layers import LIFLayer  # noqa: E402
from snncompile.nn.train import accuracy, fit  # noqa: E402


def ann_check(steps: int, n_train: int, n_test: int, bins: int, epochs: int = 30) -> tuple:
    xtr, ytr, xte, yte = gestures(n_train=n_train, n_test=n_test, steps=steps, seed=0)

    def counts(x):
        x = torch.as_tensor(x, dtype=torch.float32)
        b, t = x.shape[:2]
        x = x.reshape(b, bins, t // bins, 2, 32, 32).sum(2).reshape(b, bins * 2, 32, 32)
        return torch.nn.functional.avg_pool2d(x, 2)
    ftr, fte = counts(xtr), counts(xte)
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(2 * bins, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(32 * 16, 11))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    yt = torch.as_tensor(ytr)
    for _ in range(epochs):
        perm = torch.randperm(len(ftr))
        for i in range(0, len(ftr), 32):
            idx = perm[i:i + 32]
            loss = nn.functional.cross_entropy(net(ftr[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = net(fte).argmax(1).numpy()
    circles = np.isin(yte, (8, 9))
    return float(np.mean(pred == yte)), float(np.mean(pred[circles] == yte[circles]))


#: (label, changes to the example's recipe)
ABLATIONS = [
    ("example's recipe (RECIPE)", {}),
    ("surrogate slope 10 (the layer default)", {"surrogate_scale": 10.0}),
    ("output start rate 30% (the old start)", {"out_rate": 0.3}),
    ("both (the old recipe)", {"surrogate_scale": 10.0, "out_rate": 0.3}),
    ("output start rate 10%", {"out_rate": 0.1}),
    ("lr 2e-3", {"lr": 2e-3}),
]


def snn_run(widths, data, epochs: int, changes: dict) -> tuple[float, float, list]:
    recipe = dict(gn.RECIPE, **changes)
    xtr, ytr, xte, yte = data
    torch.manual_seed(0)
    model = SNN(copy.deepcopy(gn.gesture_config(widths, None, "causal", False,
                                                xtr.shape[1])))
    for mod in model.modules():
        if isinstance(mod, LIFLayer):
            mod.surrogate_scale = recipe["surrogate_scale"]
    t0 = time.perf_counter()
    gn.start_firing(model, torch.as_tensor(xtr[:16], dtype=torch.float32), recipe["rate"],
                    recipe["out_rate"])
    losses = fit(model, xtr, ytr, epochs=epochs, lr=recipe["lr"],
                 batch_size=recipe["batch_size"], seed=0, progress=False)
    return accuracy(model, xte, yte), time.perf_counter() - t0, losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("data", "recipe"))
    ap.add_argument("--widths", default="8,16,16,32", help="network A widths (c1,c2,c3,fc)")
    ap.add_argument("--train", type=int, default=110)
    ap.add_argument("--test", type=int, default=55)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.only != "recipe":
        print(f"data: ANN on summed event counts, {args.train} train / {args.test} test, "
              f"T = {args.steps}")
        for bins in (1, 2, 4):
            acc, circ = ann_check(args.steps, args.train, args.test, bins)
            print(f"  {bins} time bin(s): test accuracy {acc:.1%} (circles cw/ccw: "
                  f"{circ:.1%})", flush=True)
    if args.only != "data":
        widths = tuple(int(w) for w in args.widths.split(","))
        data = gestures(n_train=args.train, n_test=args.test, steps=args.steps, seed=0)
        print(f"recipe: network A {widths} without attention, {args.train} train / "
              f"{args.test} test, {args.epochs} epochs, T = {args.steps}; RECIPE = "
              f"{gn.RECIPE} (chance 9.1%)")
        for label, changes in ABLATIONS:
            acc, secs, losses = snn_run(widths, data, args.epochs, changes)
            print(f"  {label:40s} test accuracy {acc:6.1%}   final loss {losses[-1]:.3f}   "
                  f"({secs:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
