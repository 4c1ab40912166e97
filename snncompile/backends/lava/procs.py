"""Custom Lava processes used by the Lava backend.

The recorders replace `Var.get()` for reading values back: Lava's `get` moves one element
per message (512k values took ~10 s), so a recorder keeps every recorded step in its own
worker and writes the whole record once, with `np.save`, at its last recorded step. The
parent process reads that file after the run. Each recorder watches one thing, given to
`watch`: `SpikeRecorder` and `ValueRecorder` an OutPort (spikes bit-packed, values int32),
`VarRecorder` a Var of another process (e.g. a neuron layer's voltage `v`), read whole
through a RefPort after every step.

Import this module only after `snncompile.backends.lava.compat.install()` (importing `snncompile`
does that) and only when Lava is installed: it imports Lava at module level.
"""
from __future__ import annotations

import os

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifResetModelBitAcc
from lava.proc.lif.process import LIFReset

from snncompile.coproc.ops import shift_round  # absolute: see coproc/lava_proc.py


class _Recorder(AbstractProcess):
    def __init__(self, *, shape: tuple[int, ...], path: str, start: int, count: int,
                 name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), path=str(path), start=int(start),
                         count=int(count), name=name)
        self.a_in = InPort(shape=tuple(shape))

    def watch(self, port) -> None:
        """Record what the OutPort (or port view) `port` sends."""
        port.connect(self.a_in)


class SpikeRecorder(_Recorder):
    """Records `count` steps of its input, starting at global time step `start` (Lava's
    `time_step`, counted from 1), into `path` (an .npy file of shape (count, ceil(n / 8))
    uint8: `np.packbits` of each step's C-order flattened input != 0).

    The file appears (atomically, via rename) when step `start + count - 1` has run.
    """


class ValueRecorder(_Recorder):
    """As `SpikeRecorder`, for integer values (a co-processor's outputs): the file holds
    (count, n) int32, each step's C-order flattened input."""


def read_record(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """Unpack a `SpikeRecorder` file into a bool array (count, *shape)."""
    packed = np.load(path, allow_pickle=False)
    n = int(np.prod(shape))
    bits = np.unpackbits(packed, axis=1, count=n).astype(bool)
    return bits.reshape((packed.shape[0],) + tuple(shape))


class _RecorderModel(PyLoihiProcessModel):
    """Stores each recorded step in a preallocated buffer (`_row` encodes one step) and
    saves the buffer once, atomically, at the last recorded step."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._path = proc_params["path"]
        self._start = proc_params["start"]
        self._count = proc_params["count"]
        self._n = int(np.prod(proc_params["shape"]))
        self._buf = None

    def run_spk(self) -> None:
        self._store(self.a_in.recv())  # always drain the channel, recorded or not

    def _store(self, s) -> None:
        k = self.time_step - self._start
        if 0 <= k < self._count:
            row = self._row(np.asarray(s).reshape(-1))
            if self._buf is None:
                self._buf = np.zeros((self._count, row.size), dtype=row.dtype)
            self._buf[k] = row
            if k == self._count - 1:
                tmp = self._path + ".part.npy"
                np.save(tmp, self._buf, allow_pickle=False)
                os.replace(tmp, self._path)


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PySpikeRecorderModel(_RecorderModel):
    """Bit-packed spikes."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def _row(self, s):
        return np.packbits(s != 0)


def read_values(path: str, shape: tuple[int, ...]) -> np.ndarray:
    data = np.load(path, allow_pickle=False)
    return data.reshape((data.shape[0],) + tuple(shape))


@implements(proc=ValueRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PyValueRecorderModel(_RecorderModel):
    """int32 values."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32)

    def _row(self, s):
        return s.astype(np.int32)


class VarRecorder(AbstractProcess):
    """As `ValueRecorder`, for a Var of another process (a neuron layer's `v`, say): after
    each time step t in [start, start + count) it reads the whole Var through a RefPort
    (its value at the end of step t) into row t - start of an (count, n) int32 file."""

    def __init__(self, *, shape: tuple[int, ...], path: str, start: int, count: int,
                 name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), path=str(path), start=int(start),
                         count=int(count), name=name)
        self.ref = RefPort(shape=tuple(shape))

    def watch(self, var) -> None:
        """Record the Var `var` (same shape as this recorder)."""
        self.ref.connect_var(var)


@implements(proc=VarRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PyVarRecorderModel(_RecorderModel):
    """int32 values of the watched Var, read in the management phase after each step."""

    ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32, precision=32)

    def run_spk(self) -> None:
        pass

    def post_guard(self) -> bool:
        k = self.time_step - self._start
        return 0 <= k < self._count

    def run_post_mgmt(self) -> None:
        self._store(self.ref.read())

    def _row(self, s):
        return s.astype(np.int32)


class GateProcess(AbstractProcess):
    """Attention gain applied by the LIF's programmable neuron (FxGate): each step,
    out = (a * g[gidx]) / 2**shift rounded as `rounding` says (floor: >> shift;
    nearest_even: to nearest, ties to even, see snncompile.coproc.ops.shift_round),
    max(out, 0) if relu, in the same time step.
    a_in: the synapse current (any shape); g_in: the co-processor's gains; gidx: for each
    C-order element of a_in, the C-order index of its gain (the broadcast, in Lava layout).
    """

    def __init__(self, *, shape: tuple[int, ...], gain_shape: tuple[int, ...],
                 gidx: np.ndarray, shift: int, relu: bool, rounding: str = "floor",
                 name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), gidx=np.asarray(gidx, np.int64),
                         shift=int(shift), relu=bool(relu), rounding=str(rounding),
                         name=name)
        self.a_in = InPort(shape=tuple(shape))
        self.g_in = InPort(shape=tuple(gain_shape))
        self.a_out = OutPort(shape=tuple(shape))


@implements(proc=GateProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGateModel(PyLoihiProcessModel):
    """Bit-accurate model of `GateProcess` (the arithmetic of snncompile.ir.FxGate)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32)
    g_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._shape = tuple(proc_params["shape"])
        self._gidx = proc_params["gidx"]
        self._shift = proc_params["shift"]
        self._relu = proc_params["relu"]
        self._rounding = proc_params["rounding"]

    def run_spk(self) -> None:
        a = np.asarray(self.a_in.recv(), np.int64).reshape(-1)
        g = np.asarray(self.g_in.recv(), np.int64).reshape(-1)
        out = shift_round(a * g[self._gidx], self._shift, self._rounding)
        if self._relu:
            out = np.maximum(out, 0)
        self.a_out.send(out.reshape(self._shape).astype(np.int32))


class DelayProcess(AbstractProcess):
    """The delay closing a top-down loop (FxDelay) in a chained run of samples of `period`
    steps. At Lava time step t the gated node's local step is
    (t - target_depth - 1) mod period; for local steps < latency it sends `init`, otherwise
    the value it received `steps` time steps earlier. It sends before it receives, so the
    loop never waits on itself."""

    def __init__(self, *, shape: tuple[int, ...], steps: int, latency: int,
                 target_depth: int, init: int, period: int, name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), steps=int(steps), latency=int(latency),
                         target_depth=int(target_depth), init=int(init), period=int(period),
                         name=name)
        self.s_in = InPort(shape=tuple(shape))
        self.s_out = OutPort(shape=tuple(shape))


@implements(proc=DelayProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayModel(PyLoihiProcessModel):
    """Bit-accurate model of `DelayProcess` (the semantics of snncompile.ir.FxDelay)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self._shape, self._steps, self._latency = p["shape"], p["steps"], p["latency"]
        self._first, self._init, self._period = p["target_depth"] + 1, p["init"], p["period"]
        self._buf: dict[int, np.ndarray] = {}

    def run_spk(self) -> None:
        t = self.time_step
        old = self._buf.pop(t - self._steps, None)
        local = (t - self._first) % self._period
        if t < self._first or local < self._latency or old is None:
            out = np.full(self._shape, self._init, np.int32)
        else:
            out = old
        self.s_out.send(out)
        self._buf[t] = np.asarray(self.s_in.recv(), np.int32).copy()


class SoftLIF(LIFReset):
    """Lava's LIFReset with the spiking options of `FxLIF`: `reset` "zero", "subtract"
    (v -= vth << 6 where it spiked) or "threshold" (v = vth << 6 there) and `fire_at` ">"
    or ">=" (spike where v >= vth << 6). Everything else (u, v, bias, the reset interval)
    is LIFReset's; the model reuses Lava's bit-accurate arithmetic and changes only the
    compare and the reset, as a Loihi 2 microcoded neuron would.

    du, dv and vth are per-neuron Vars of the layer's shape (LIFReset's are one value per
    layer): a scalar is repeated, an array (PLIF, per-channel leaks) is kept per neuron, as
    a microcoded neuron keeps them in its own state."""

    def __init__(self, *, reset: str = "zero", fire_at: str = ">", du=0, dv=0, vth=10,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        shape = kwargs["shape"]
        self.proc_params["reset"] = str(reset)
        self.proc_params["fire_at"] = str(fire_at)
        for key, value in (("du", du), ("dv", dv), ("vth", vth)):
            per = np.broadcast_to(np.asarray(value, np.int32), shape).copy()
            setattr(self, key, Var(shape=shape, init=per))   # replaces LIFReset's (1,) Var


@implements(proc=SoftLIF)
class PySoftLIFModel(PyLifResetModelBitAcc):
    """PyLifResetModelBitAcc with `fire_at` and `reset` from the process parameters."""

    implements_process = None   # inherited from LIFReset's model; `implements` sets ours
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)    # per neuron
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._ge = proc_params["fire_at"] == ">="
        self._reset = proc_params["reset"]

    def spiking_activation(self):
        if self._ge:
            return self.v >= self.effective_vth
        return self.v > self.effective_vth

    def reset_voltage(self, spike_vector: np.ndarray):
        vth = self.effective_vth[spike_vector]          # each spiking neuron's own
        if self._reset == "subtract":
            self.v[spike_vector] -= vth
        else:
            self.v[spike_vector] = vth if self._reset == "threshold" else 0


MODELS = {SpikeRecorder: PySpikeRecorderModel, ValueRecorder: PyValueRecorderModel,
          VarRecorder: PyVarRecorderModel, GateProcess: PyGateModel,
          DelayProcess: PyDelayModel, SoftLIF: PySoftLIFModel}
"""Our processes -> their bit-accurate models (to pin in `exception_proc_model_map`)."""
