"""Writing netx HDF5 test files from slayer blocks."""
from __future__ import annotations

import h5py
import numpy as np


def export_blocks(blocks, path, x) -> None:
    """Run slayer blocks once on `x` (they learn their shapes) and write netx HDF5."""
    import torch

    with torch.no_grad():
        for block in blocks:
            x = block(x)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(f"{i}"))


def add_dataset(path, name: str, data) -> None:
    """Create (or replace) dataset `name` in an HDF5 file."""
    with h5py.File(path, "a") as f:
        if name in f:
            del f[name]
        f.create_dataset(name, data=np.asarray(data))
