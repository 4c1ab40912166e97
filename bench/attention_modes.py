"""How far the causal attention variants are from the released whole-window form, with the
same weights: for each kind whose weights have the same shapes in both modes (CA, SA and
the combinations of them; TA's MLP differs in shape: window T -> T, causal w -> 1), build
the window-mode layer, copy its weights into a causal one, and compare the outputs
ReLU(g * X) on the same input currents X.

    .venv/bin/python bench/attention_modes.py [--steps 16] [--seeds 5]

Input X: non-negative currents with a slowly drifting per-channel level and sparse spatial
bumps (B=8, C=16, 8x8), so that pooling over the whole window and pooling per step see
different statistics, as they would on event data. Prints, per kind, the relative L1
difference of the outputs |causal - window|_1 / |window|_1 (mean and range over seeds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snncompile.nn.attention import AttentionLayer  # noqa: E402

KINDS = ("ca", "sa", "csa")


def currents(rng, b: int, t: int, c: int, h: int, w: int) -> torch.Tensor:
    level = np.cumsum(rng.normal(0, 0.3, (b, t, c, 1, 1)), axis=1) + 1.0
    bumps = (rng.random((b, t, c, h, w)) < 0.1) * rng.gamma(2.0, 1.0, (b, t, c, h, w))
    return torch.tensor(np.maximum(level, 0) * 0.2 + bumps, dtype=torch.float32)


def difference(kind: str, steps: int, seed: int) -> float:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    shape = (16, 8, 8)
    window = AttentionLayer({"kind": kind, "mode": "window"}, shape, steps, "att").eval()
    causal = AttentionLayer({"kind": kind, "mode": "causal"}, shape, steps, "att").eval()
    causal.load_state_dict(window.state_dict())
    x = currents(rng, 8, steps, *shape)
    with torch.no_grad():
        yw, yc = window(x), causal(x)
    return float((yc - yw).abs().sum() / yw.abs().sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    print(f"causal vs released (window) attention, same weights, T={args.steps}, "
          f"{args.seeds} seeds: relative L1 difference of ReLU(g * X)")
    for kind in KINDS:
        d = [difference(kind, args.steps, s) for s in range(args.seeds)]
        print(f"  {kind:4s} mean {np.mean(d):6.1%}   range {min(d):6.1%} .. {max(d):6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
