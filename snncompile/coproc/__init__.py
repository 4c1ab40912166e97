"""Co-processor side of attention SNNs: the non-spiking gain branch (MA-SNN TA/CA/SA,
HTDA top-down attention) as deterministic integer ops for a Loihi 2 embedded x86 core.

* `ops`: the integer op set (exact semantics in each docstring), with the
  stateful `Window`, `History` and `Accumulate`;
* `graph`: `CoprocGraph`, the per-step function with state, costs and (de)serialisation;
* `onnx_export`: `export_onnx`, the same per-step function as an integer-only ONNX model
  (imports `onnx` when used);
* `lava_proc`: `CoprocProcess`, a Lava process running the graph bit-accurately in the
  same time step (import it explicitly; it imports Lava).

Example::

    from snncompile.coproc import CoprocGraph, ValueSpec, ReduceMean, SigmoidLUT
"""
from .graph import CoprocGraph, IoBytes
from .ops import (OP_TYPES, Accumulate, Add, Concat, Conv2d, History, Linear, Mul, Op,
                  OpCounts, ReduceMax, ReduceMean, Relu, Reshape, SigmoidLUT, ValueSpec,
                  Window, make_sigmoid_table)

__all__ = ["CoprocGraph", "IoBytes", "OP_TYPES", "Accumulate", "Add", "Concat", "Conv2d",
           "History", "Linear", "Mul", "Op", "OpCounts", "ReduceMax", "ReduceMean", "Relu",
           "Reshape", "SigmoidLUT", "ValueSpec", "Window", "make_sigmoid_table",
           "export_onnx"]

def __getattr__(name):
    if name == "export_onnx":  # onnx is optional: import it only when asked for
        from .onnx_export import export_onnx
        return export_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
