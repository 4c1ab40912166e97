"""Write a netx file shaped like lava-dl's PilotNet LIF network, and bias frames for it.

The layers are those of lava-dl's PilotNet LIF tutorial (`tutorials/lava/lib/dl/netx/
pilotnet_snn`, its printed layer table): an input layer with a CUBA neuron over a 3x66x200
image (39,600 neurons, driven through its bias), five conv layers and four dense layers,
built from slayer `cuba` blocks and written with their own `export_hdf5`. The weights are
random (the trained file is not shipped), so only the structure and the arithmetic mean
anything. The frames are made as the tutorial's data loader makes them,
`int32(2 * weight * pixel - weight + bias)` with netx's input transform (here netx's
defaults, weight 64 and bias 0) and random pixels in [0, 1], each held for 16 steps.

    .venv/bin/python examples/netx_pilotnet_shape.py out/pilotnet
    snncompile compile out/pilotnet/pilotnet.net --calib out/pilotnet/frames.npz \
        -o out/pilotnet/build
    snncompile verify out/pilotnet/build --inputs out/pilotnet/frames.npz --limit 1 \
        --backends reference,sim,lava,netx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import snncompile  # noqa: E402,F401  (installs the Lava import fix before lava-dl)

NEURON = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
          "requires_grad": False}
STEPS = 16          # the tutorial's steps_per_sample


def write(out: Path, samples: int = 3, seed: int = 0) -> tuple[Path, Path]:
    import h5py
    from snncompile.third_party import import_quietly
    slayer = import_quietly("lava.lib.dl.slayer")   # no Prophesee / CUDA import noise

    c = slayer.block.cuba
    torch.manual_seed(seed)
    blocks = [c.Input(NEURON),
              c.Conv(NEURON, 3, 24, 3, stride=2, weight_scale=2, weight_norm=False),
              c.Conv(NEURON, 24, 36, 3, stride=2, weight_scale=2, weight_norm=False),
              c.Conv(NEURON, 36, 48, 3, stride=2, weight_scale=2, weight_norm=False),
              c.Conv(NEURON, 48, 64, 3, stride=(2, 1), padding=(1, 0), weight_scale=2,
                     weight_norm=False),
              c.Conv(NEURON, 64, 64, 3, stride=1, weight_scale=2, weight_norm=False),
              c.Flatten(),
              c.Dense(NEURON, 64 * 2 * 20, 100, weight_scale=2, weight_norm=False),
              c.Dense(NEURON, 100, 50, weight_scale=2, weight_norm=False),
              c.Dense(NEURON, 50, 10, weight_scale=2, weight_norm=False),
              c.Dense(NEURON, 10, 1, weight_scale=2, weight_norm=False)]
    x = (torch.rand(1, 3, 66, 200, 2) < 0.3).float()
    with torch.no_grad():             # the blocks learn their shapes on a first pass
        for block in blocks:
            x = block(x)
    out.mkdir(parents=True, exist_ok=True)
    net = out / "pilotnet.net"
    with h5py.File(net, "w") as f:
        layer = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(f"{i}"))
    weight, bias = 64, 0              # netx's input transform defaults (no entry written)
    pixels = np.random.default_rng(seed).random((samples, 1, 3, 66, 200))
    frames = (2 * weight * pixels - weight + bias).astype(np.int32)
    inputs = out / "frames.npz"
    np.savez_compressed(inputs, inputs=np.repeat(frames, STEPS, axis=1))
    return net, inputs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(ROOT / "out" / "pilotnet"))
    p.add_argument("--samples", type=int, default=3)
    args = p.parse_args()
    net, inputs = write(Path(args.out), args.samples)
    print(f"wrote {net} and {inputs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
