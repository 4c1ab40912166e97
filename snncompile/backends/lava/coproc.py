"""`CoprocProcess`: a `CoprocGraph` as a Lava process (the embedded x86 core's job).

One InPort per graph input (`in0`, `in1`, ... in the graph's input order) and one OutPort
per graph output (`out0`, ...); `in_port(name)` / `out_port(name)` find them by value name.
The bit-accurate model (`PyCoprocModel`, LoihiProtocol, CPU, tag fixed_pt) runs, in
`run_spk` of every time step:

    receive every input (int32 messages) -> CoprocGraph.run_step for one sample -> send
    every output (int32)

so its outputs leave in the SAME time step as its inputs arrived, as a LIF's spikes do:
Lava runs `run_spk` of all processes concurrently and a recv blocks until its sender has
sent this step's message, so a feed-forward chain resolves within one step. A Dense ->
CoprocProcess -> sink chain therefore shows Dense's one-step delay and nothing more
(tests/test_coproc.py::test_lava_same_step checks both chains). A loop through the
process would need a delay element somewhere (Lava would deadlock otherwise).

State (Window/History) lives in the model and is carried across steps; it is reset (to
`CoprocGraph.init_state(1)`) before the step whenever `reset_interval > 0` and
`time_step % reset_interval == reset_offset % reset_interval` (Lava counts time steps from
1, so reset_interval=T, reset_offset=1 resets at each sample's first step when samples run
back to back from step 1; the same rule as lava's LIFReset).

Window mode (`window` = T > 0, whole-window attention; `snncompile.ir.timing`): from Lava
step `buffer_start` on, step k of every T-step window is stored in a buffer; when the
buffer is full the graph runs once on it (inputs (1, T, *shape)), and row j of every
output is sent at the step `1 + latency + j` after (zeros at steps with nothing to send).
Ports then carry one step: an input port one step of the window, an output port one row.

Inputs outside their declared width (or any other failure of `run_step`) are an error,
but raising inside `run_spk` would
deadlock Lava (the downstream processes wait forever for this step's message; observed
with lava-nc 0.10). So the model instead records the first failing time step in its Var
`error_step` (0: none), sends zeros for that step and keeps its state; call
`check_errors(procs)` after the run (before `stop()`) to turn it into a BackendError.
Port shapes may differ from the graph's value shapes when the element count matches:
values are reshaped in C order (e.g. a flat Dense output feeding a (C, H, W) input), after
an optional permutation per port (`in_perms` / `out_perms`: value name -> flat index array,
Lava element j = graph element perm[j]), e.g. for Lava's (W, H, C) layout of conv outputs.

Model selection: Lava's compiler looks the process INSTANCE up in
`exception_proc_model_map` first (lava/magma/compiler/compiler_graphs.py:1031) and, on a
miss, scans this package's directory exec'ing every .py file as a top-level module, which
fails on our relative imports. `model_map(procs)` returns {instance: model class} for
every CoprocProcess given; merge it into the run config's map, as
`snncompile.backends.lava.run` does for its processes.

Import this module only when Lava is installed (it imports Lava at module level) and
after `import snncompile` (which installs the Python 3.11 fix).

Example::

    proc = CoprocProcess(cgraph)
    src.s_out.connect(proc.in_port("x")); proc.out_port("gain").connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=model_map([proc]))
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from snncompile.errors import BackendError, GraphError
from snncompile.coproc.graph import CoprocGraph

PORT_BITS = 32  # Lava message dtype int32


def _port_shapes(kind: str, specs: dict, given) -> dict[str, tuple[int, ...]]:
    given = dict(given or {})
    extra = set(given) - set(specs)
    if extra:
        raise GraphError(f"CoprocProcess: {kind} shapes name unknown value(s) "
                         f"{sorted(extra)}; {kind}s are {list(specs)}")
    out = {}
    for name, spec in specs.items():
        shape = tuple(int(s) for s in given.get(name, spec.shape)) or (1,)
        if int(np.prod(shape)) != spec.size:
            raise GraphError(f"CoprocProcess: {kind} '{name}' port shape {shape} does not "
                             f"hold {spec.size} elements of {spec.shape}")
        if spec.bits > PORT_BITS or (not spec.signed and spec.bits >= PORT_BITS):
            raise GraphError(f"CoprocProcess: {kind} '{name}' ({spec.bits} bits) does not "
                             f"fit an int32 message")
        out[name] = shape
    return out


def _one_step(spec):
    """The ValueSpec of one step (one row) of a window partition's (T or 1, *shape) value."""
    from snncompile.coproc.ops import ValueSpec
    return ValueSpec(spec.shape[1:], spec.bits, spec.signed)


class CoprocProcess(AbstractProcess):
    """Runs `cgraph` (a `CoprocGraph`) once per time step for one sample; see the module
    docstring. in_shapes / out_shapes: optional value name -> port shape (default: the
    value's shape; () becomes (1,))."""

    def __init__(self, cgraph: CoprocGraph, in_shapes: dict | None = None,
                 out_shapes: dict | None = None, *, reset_interval: int = 0,
                 reset_offset: int = 1, in_perms: dict | None = None,
                 out_perms: dict | None = None, name: str | None = None,
                 window: int = 0, latency: int = 0, buffer_start: int = 1) -> None:
        outs = {o: cgraph.specs[o] for o in cgraph.outputs}
        in_specs = {k: _one_step(v) for k, v in cgraph.inputs.items()} if window \
            else cgraph.inputs
        in_sh = _port_shapes("input", in_specs, in_shapes)
        out_sh = _port_shapes("output", {k: _one_step(v) for k, v in outs.items()}
                              if window else outs, out_shapes)
        if int(reset_interval) < 0:
            raise GraphError(f"CoprocProcess: reset_interval ({reset_interval}) < 0")
        doc, arrays = cgraph.to_dict()  # plain data in proc_params, rebuilt in the model
        super().__init__(graph_doc=doc, graph_arrays=arrays,
                         in_names=list(in_sh), out_names=list(out_sh),
                         in_shapes=[in_sh[k] for k in in_sh],
                         out_shapes=[out_sh[k] for k in out_sh],
                         reset_interval=int(reset_interval), reset_offset=int(reset_offset),
                         in_perms=[(in_perms or {}).get(k) for k in in_sh],
                         out_perms=[(out_perms or {}).get(k) for k in out_sh],
                         window=int(window), latency=int(latency),
                         buffer_start=int(buffer_start), name=name)
        self.input_names, self.output_names = list(in_sh), list(out_sh)
        self.error_step = Var(shape=(1,), init=0)
        for i, nm in enumerate(in_sh):
            setattr(self, f"in{i}", InPort(shape=in_sh[nm]))
        for j, nm in enumerate(out_sh):
            setattr(self, f"out{j}", OutPort(shape=out_sh[nm]))

    def in_port(self, name: str) -> InPort:
        if name not in self.input_names:
            raise GraphError(f"CoprocProcess: no input '{name}' (inputs: {self.input_names})")
        return getattr(self, f"in{self.input_names.index(name)}")

    def out_port(self, name: str) -> OutPort:
        if name not in self.output_names:
            raise GraphError(f"CoprocProcess: no output '{name}' (outputs: "
                             f"{self.output_names})")
        return getattr(self, f"out{self.output_names.index(name)}")


class PyCoprocModel(PyLoihiProcessModel):
    """Behaviour shared by the per-arity models (`model_class`), which add the ports:
    Lava requires one LavaPyType class attribute per process port."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._graph = CoprocGraph.from_dict(proc_params["graph_doc"],
                                            proc_params["graph_arrays"])
        self._in_names = proc_params["in_names"]
        self._out_names = proc_params["out_names"]
        self._out_shapes = proc_params["out_shapes"]
        self._interval = proc_params["reset_interval"]
        self._offset = proc_params["reset_offset"]
        self._state = self._graph.init_state(1)
        self._in_perms = proc_params.get("in_perms") or [None] * len(self._in_names)
        self._out_perms = proc_params.get("out_perms") or [None] * len(self._out_names)
        self._window = proc_params.get("window", 0)
        self._latency = proc_params.get("latency", 0)
        self._buffer_start = proc_params.get("buffer_start", 1)
        self._buf = {nm: np.zeros(self._graph.inputs[nm].shape, np.int64)
                     for nm in self._in_names} if self._window else {}
        self._sched: dict[int, dict] = {}   # window mode: time step -> the rows to send

    def run_spk(self) -> None:
        if self._interval and \
                self.time_step % self._interval == self._offset % self._interval:
            self._state = self._graph.init_state(1)
        lead = 1 if self._window else 0
        xs = {}
        for i, nm in enumerate(self._in_names):
            msg = np.asarray(getattr(self, f"in{i}").recv(), dtype=np.int64).reshape(-1)
            perm = self._in_perms[i]
            if perm is not None:  # Lava layout -> the graph's C-order layout
                ours = np.empty_like(msg)
                ours[perm] = msg
                msg = ours
            xs[nm] = msg.reshape((1,) + self._graph.inputs[nm].shape[lead:])
        try:
            if self._window:
                outs = self._window_step(xs)
            else:
                outs, self._state = self._graph.run_step(xs, self._state)
        except Exception:  # see the module docstring: raising here would deadlock
            if self.error_step[0] == 0:
                self.error_step[0] = self.time_step
            outs = None
        for j, nm in enumerate(self._out_names):
            if outs is None:
                y = np.zeros(self._out_shapes[j], dtype=np.int32)
            else:
                y = outs[nm].astype(np.int32).reshape(-1)
                if self._out_perms[j] is not None:  # graph layout -> Lava layout
                    y = y[self._out_perms[j]]
                y = y.reshape(self._out_shapes[j])
            getattr(self, f"out{j}").send(y)


    def _window_step(self, xs: dict) -> dict | None:
        """Window mode: store this step in the buffer; when the window is complete, run
        the graph on it and schedule its rows; return the rows due now (None: zeros)."""
        from snncompile.ir.timing import window_row

        k = self.time_step - self._buffer_start
        if k >= 0:
            k %= self._window
            for nm, x in xs.items():
                self._buf[nm][k] = x[0]
            if k == self._window - 1:
                outs, _ = self._graph.run_step({nm: b[None] for nm, b in self._buf.items()})
                first = self.time_step + 1 + self._latency
                for j in range(self._window):
                    self._sched[first + j] = {o: window_row(v, j) for o, v in outs.items()}
        return self._sched.pop(self.time_step, None)


_MODELS: dict[tuple[int, int], type] = {}


def model_class(n_in: int, n_out: int) -> type:
    """The bit-accurate model class for a CoprocProcess with n_in inputs, n_out outputs
    (created once per arity and cached)."""
    key = (int(n_in), int(n_out))
    if key not in _MODELS:
        attrs = {f"in{i}": LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=PORT_BITS)
                 for i in range(key[0])}
        attrs.update({f"out{j}": LavaPyType(PyOutPort.VEC_DENSE, np.int32,
                                            precision=PORT_BITS) for j in range(key[1])})
        attrs["error_step"] = LavaPyType(np.ndarray, np.int32)
        attrs["__module__"] = __name__
        attrs["__doc__"] = f"PyCoprocModel with {key[0]} InPort(s), {key[1]} OutPort(s)."
        cls = type(f"PyCoprocModel_{key[0]}in_{key[1]}out", (PyCoprocModel,), attrs)
        cls = implements(proc=CoprocProcess, protocol=LoihiProtocol)(
            requires(CPU)(tag("fixed_pt")(cls)))
        _MODELS[key] = cls
    return _MODELS[key]


def model_map(procs) -> dict:
    """{process instance: model class} for every CoprocProcess in `procs` (others are
    skipped): merge into `exception_proc_model_map`."""
    return {p: model_class(len(p.input_names), len(p.output_names))
            for p in procs if isinstance(p, CoprocProcess)}


def check_errors(procs) -> None:
    """Raise BackendError if any CoprocProcess in `procs` saw an invalid input (reads its
    `error_step` Var: call after the run, before `stop()`)."""
    for p in procs:
        if isinstance(p, CoprocProcess):
            step = int(np.asarray(p.error_step.get()).reshape(-1)[0])
            if step:
                raise BackendError(f"{p.name}: CoprocProcess failed at time step {step} "
                                   "(an input outside its declared width?); it sent "
                                   "zeros at each failing step")
