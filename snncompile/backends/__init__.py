"""Backends that execute a compiled (fixed-stage) graph, behind one interface (base.py):
the integer reference (reference.py, PyTorch int64, written independently of the
simulator), the simulator (sim/, numpy + numba kernels), Lava (lava/, optional: it raises
BackendError if Lava is missing) and lava-dl's netx loader in Lava
(`snncompile.formats.netx.run_lava`). `float_model.py` evaluates the float graph."""
from .base import Backend, Run, backend_names, get_backend, register_backend

__all__ = ["Backend", "Run", "backend_names", "get_backend", "register_backend"]
