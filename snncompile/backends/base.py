"""One interface for every backend that executes a compiled graph, and one result type.

    from snncompile.backends import get_backend
    run = get_backend("sim").run(graph, inputs, numerics=target.numerics)
    run.values["lif1"]          # (N, T, *shape) in the node's local time
    run.boundary                # what crossed the neurocore / co-processor boundary
    run.wall_s

`run`, `verify`, `energy`, the CLI and the benchmarks look backends up here by name; the
names the CLI accepts are `backend_names()`. A backend module registers itself with
`register_backend` when it is imported; `get_backend` imports the built-in ones lazily, so
importing this module imports neither Lava nor torch.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import UnsupportedError


@dataclasses.dataclass
class Run:
    """What one backend computed for N samples of T steps.

    values: every neuron node (`is_neuron`) -> (N, T, *shape) in the node's local time:
      bool spikes (FxLIF), int32 graded spikes (FxSigmaDelta), int32 voltages (readouts).
    boundary: values crossing the partition, (N, T, *shape), local time: an FxCoprocOut
      name -> what the co-processor sent; "coproc<-src" -> what it received from `src`.
    state: FxLIF name -> (u, v) int arrays (N, T, *shape) when recorded, else None.
    counts / overflow: per-node event and wrap/saturation counts where the backend counts
      them (the simulator), else empty.
    """

    values: dict[str, np.ndarray]
    samples: int
    steps: int
    wall_s: float
    backend: str = ""
    boundary: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    state: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    overflow: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    kernel: str = ""          # the simulator's path: "numba" or "numpy"

    @property
    def spikes(self) -> dict[str, np.ndarray]:
        """Older name of `values` (it holds graded values and voltages too)."""
        return self.values

    def predictions(self, output: str) -> np.ndarray:
        """Class = argmax of spike counts (ties: lowest index); for a sigma-delta or
        readout output use `snncompile.verify.compare.decision`, which knows their rules."""
        counts = self.values[output].reshape(self.samples, self.steps, -1).sum(1)
        return counts.argmax(1)


@runtime_checkable
class Backend(Protocol):
    """An executor of compiled graphs."""

    name: str            # what the CLI and verify call it
    description: str     # one line for --help
    is_lava: bool        # runs in Lava (slow: verify runs it on fewer samples)

    def unsupported(self, graph, source=None) -> str | None:
        """Why this backend cannot run `graph` (None: it can). `source`: the build's netx
        source copy, for backends that need one."""

    def run(self, graph, inputs: np.ndarray, *, numerics=None, source=None,
            progress: bool = False, **options) -> Run:
        """Run every sample of `inputs` (N, T, *input shape) and return a Run."""


_REGISTRY: dict[str, Backend] = {}
_BUILTIN = {   # name -> module that registers it (imported on first use)
    "reference": "snncompile.backends.reference",
    "sim": "snncompile.backends.sim.simulator",
    "lava": "snncompile.backends.lava.run",
    "netx": "snncompile.formats.netx.run_lava",
}


def register_backend(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def backend_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY]))


def get_backend(name: str) -> Backend:
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise UnsupportedError(f"unknown backend '{name}'; choose from "
                               f"{', '.join(backend_names())}")
    return _REGISTRY[name]
