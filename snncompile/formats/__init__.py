"""File formats other tools write and read: lava-dl netx HDF5 (netx/), NIR (nir/), and the
guarded HDF5 reader both use (h5safe.py)."""
