"""`CoprocGraph`: the integer per-step function that runs on a Loihi 2 embedded x86 core.

A graph has named inputs (`ValueSpec`: per-sample shape, bit width, signedness), ops in
topological order (each op's output value carries the op's name, each op names the values
it reads) and named outputs. One call of `run_step` is one time step for N samples at
once; stateful ops (`Window`, `History`, `Accumulate`) keep per-sample state across
calls, and a fresh state (`init_state`) is a reset.

Example::

    g = CoprocGraph({"x": ValueSpec((8, 4, 4), 8)},
                    [ReduceMean("avg", "x", axes=(1, 2)), ...], outputs=["gain"])
    out, state = g.run_step({"x": x_t}, state)      # x_t: (N, 8, 4, 4) integers
    seq = g.run({"x": x})                            # x: (N, T, 8, 4, 4)
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GraphError
from .ops import OP_TYPES, Op, OpCounts, ValueSpec, op_fields

FORMAT = "snncompile-coproc-graph"
VERSION = 1


@dataclass(frozen=True)
class IoBytes:
    """Bytes moved per time step per sample, values bit-packed: ceil(size * bits / 8) per
    input or output value (what a mesh message carrying the value needs at minimum)."""

    inp: int
    out: int

    @property
    def total(self) -> int:
        return self.inp + self.out


def _packed_bytes(spec: ValueSpec) -> int:
    return (spec.size * spec.bits + 7) // 8


class CoprocGraph:
    """An integer dataflow graph; see the module docstring."""

    def __init__(self, inputs: dict[str, ValueSpec], ops: list[Op], outputs: list[str]):
        self.inputs: dict[str, ValueSpec] = {}
        for name, spec in dict(inputs).items():
            if not isinstance(spec, ValueSpec):
                spec = ValueSpec(*spec) if isinstance(spec, (tuple, list)) else spec
            if not isinstance(spec, ValueSpec):
                raise GraphError(f"input '{name}': spec must be a ValueSpec, got {spec!r}")
            if not 1 <= spec.bits <= 32:
                raise GraphError(f"input '{name}': bits ({spec.bits}) outside [1, 32]")
            self.inputs[str(name)] = spec
        self.ops: list[Op] = list(ops)
        self.outputs: list[str] = [str(o) for o in outputs]
        self.specs: dict[str, ValueSpec] = {}
        self._validate()

    # ------------------------------------------------------------ structure
    def _validate(self) -> None:
        specs = dict(self.inputs)
        for op in self.ops:
            if not isinstance(op, Op):
                raise GraphError(f"{op!r}: not a coproc Op")
            if op.name in specs:
                raise GraphError(f"{op.name}: value name already defined")
            missing = [i for i in op.inputs if i not in specs]
            if missing:
                raise GraphError(f"{op.name}: reads undefined value(s) {missing}; ops must "
                                 "be in topological order and name graph inputs or "
                                 "earlier ops")
            specs[op.name] = op.infer([specs[i] for i in op.inputs])
        if not self.outputs:
            raise GraphError("coproc graph: no outputs")
        for o in self.outputs:
            if o not in specs:
                raise GraphError(f"output '{o}': no such value")
            if specs[o].bits > 32:
                raise GraphError(f"output '{o}': {specs[o].bits} bits exceeds 32")
        if len(set(self.outputs)) != len(self.outputs):
            raise GraphError(f"coproc graph: outputs {self.outputs} repeat a name")
        self.specs = specs

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise GraphError(f"{name}: no such op")

    @property
    def stateful_ops(self) -> list[Op]:
        return [op for op in self.ops if op.stateful]

    # ------------------------------------------------------------ running
    def init_state(self, n: int) -> dict[str, np.ndarray]:
        """Fresh (reset) state for n samples: op name -> array."""
        return {op.name: op.init_state([self.specs[i] for i in op.inputs], int(n))
                for op in self.stateful_ops}

    def _check_inputs(self, inputs: dict, lead: int) -> tuple[dict, tuple[int, ...]]:
        extra = set(inputs) - set(self.inputs)
        if extra:
            raise GraphError(f"coproc graph: unknown input(s) {sorted(extra)}; inputs are "
                             f"{list(self.inputs)}")
        vals, leads = {}, set()
        for name, spec in self.inputs.items():
            if name not in inputs:
                raise GraphError(f"input '{name}': missing")
            x = np.asarray(inputs[name])
            if x.ndim != lead + len(spec.shape) or tuple(x.shape[lead:]) != spec.shape:
                raise GraphError(f"input '{name}': shape {x.shape} does not end in "
                                 f"{spec.shape} after {lead} leading axes")
            if x.dtype == bool:
                x = x.astype(np.int64)
            if not np.issubdtype(x.dtype, np.integer):
                raise GraphError(f"input '{name}': dtype {x.dtype} is not an integer type")
            x = x.astype(np.int64)
            if x.size and (x.min() < spec.lo or x.max() > spec.hi):
                raise GraphError(f"input '{name}': values [{x.min()}, {x.max()}] outside "
                                 f"{spec.describe()} range [{spec.lo}, {spec.hi}]")
            vals[name] = x
            leads.add(tuple(x.shape[:lead]))
        if len(leads) > 1:
            raise GraphError(f"coproc graph: inputs disagree on leading axes {sorted(leads)}")
        return vals, leads.pop()

    def run_step(self, inputs: dict[str, np.ndarray], state: dict | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One time step for N samples: inputs name -> (N, *shape) integers within their
        widths; state from `init_state(N)` or the previous call (None: fresh). Returns
        (outputs name -> (N, *shape) in the spec's dtype, new state). Does not modify
        `state`."""
        vals, (n,) = self._check_inputs(inputs, 1)
        if state is None:
            state = self.init_state(n)
        new_state = {}
        for op in self.ops:
            st = None
            if op.stateful:
                st = state.get(op.name)
                want = (n,) + op.state_shape(self.specs[op.inputs[0]])
                if st is None or tuple(np.shape(st)) != want:
                    raise GraphError(f"{op.name}: state shape {np.shape(st)} is not {want}")
                st = np.asarray(st, dtype=np.int64)
            y, st = op.forward([vals[i] for i in op.inputs], st)
            vals[op.name] = y
            if op.stateful:
                new_state[op.name] = st
        outs = {o: vals[o].astype(self.specs[o].dtype) for o in self.outputs}
        return outs, new_state

    def run(self, inputs: dict[str, np.ndarray], state: dict | None = None
            ) -> dict[str, np.ndarray]:
        """All T steps: inputs name -> (N, T, *shape); outputs name -> (N, T, *shape).
        Starts from `state` (None: reset, i.e. every sample starts fresh)."""
        vals, (n, t_len) = self._check_inputs(inputs, 2)
        outs = {o: np.zeros((n, t_len) + self.specs[o].shape, self.specs[o].dtype)
                for o in self.outputs}
        for t in range(t_len):
            y, state = self.run_step({k: v[:, t] for k, v in vals.items()}, state)
            for o in self.outputs:
                outs[o][:, t] = y[o]
        return outs

    # ------------------------------------------------------------ costs
    def op_counts(self) -> OpCounts:
        """Operations per time step per sample (sum over ops; see `ops.OpCounts`)."""
        total = OpCounts()
        for op in self.ops:
            total = total + op.counts([self.specs[i] for i in op.inputs],
                                      self.specs[op.name])
        return total

    def op_counts_by_op(self) -> dict[str, OpCounts]:
        return {op.name: op.counts([self.specs[i] for i in op.inputs], self.specs[op.name])
                for op in self.ops}

    def io_bytes(self) -> IoBytes:
        """Bit-packed bytes in (all inputs) and out (all outputs) per step per sample."""
        return IoBytes(sum(_packed_bytes(s) for s in self.inputs.values()),
                       sum(_packed_bytes(self.specs[o]) for o in self.outputs))

    def state_bytes(self) -> int:
        """Bytes of state per sample, values stored at their width (bit-packed)."""
        return sum(op.state_bytes(self.specs[op.inputs[0]]) for op in self.stateful_ops)

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able document, arrays). Arrays are keyed "<op>.<field>"; no pickles."""
        arrays: dict[str, np.ndarray] = {}
        ops = []
        for op in self.ops:
            fields = {}
            for key, value in op_fields(op).items():
                if isinstance(value, np.ndarray):
                    ref = f"{op.name}.{key}"
                    arrays[ref] = value
                    fields[key] = {"array": ref}
                else:
                    fields[key] = _jsonable(value)
            ops.append({"type": type(op).__name__, "fields": fields})
        doc = {"format": FORMAT, "version": VERSION,
               "inputs": [{"name": k, "shape": list(s.shape), "bits": s.bits,
                           "signed": s.signed} for k, s in self.inputs.items()],
               "ops": ops, "outputs": list(self.outputs)}
        return doc, arrays

    @classmethod
    def from_dict(cls, doc: dict, arrays: dict[str, np.ndarray],
                  where: str = "coproc graph") -> "CoprocGraph":
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise GraphError(f"{where}: not a {FORMAT} document")
        if doc.get("version") != VERSION:
            raise GraphError(f"{where}: version {doc.get('version')} is not {VERSION}")
        try:
            inputs = {d["name"]: ValueSpec(tuple(d["shape"]), d["bits"], d["signed"])
                      for d in doc["inputs"]}
            ops = []
            for d in doc["ops"]:
                typ = OP_TYPES.get(d["type"])
                if typ is None:
                    raise GraphError(f"{where}: unknown op type '{d['type']}' (known: "
                                     f"{', '.join(OP_TYPES)})")
                kwargs = {}
                names = {f.name for f in dataclasses.fields(typ)}
                for key, value in d["fields"].items():
                    if key not in names:
                        raise GraphError(f"{where}: {d['type']} has no field '{key}'")
                    if isinstance(value, dict) and set(value) == {"array"}:
                        if value["array"] not in arrays:
                            raise GraphError(f"{where}: array '{value['array']}' missing")
                        value = np.asarray(arrays[value["array"]])
                    kwargs[key] = value
                ops.append(typ(**kwargs))
            return cls(inputs, ops, doc["outputs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphError(f"{where}: malformed document ({type(exc).__name__}: "
                             f"{exc})") from None

    def save(self, path: str | Path) -> None:
        """One .npz file: the JSON document as a uint8 array plus the arrays."""
        doc, arrays = self.to_dict()
        blob = np.frombuffer(json.dumps(doc, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(Path(path), __doc__=blob, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "CoprocGraph":
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        blob = arrays.pop("__doc__", None)
        if blob is None:
            raise GraphError(f"{path}: no coproc graph document inside")
        return cls.from_dict(json.loads(blob.tobytes().decode()), arrays, where=str(path))

    def summary(self) -> str:
        lines = [f"input {k}: {s.describe()}" for k, s in self.inputs.items()]
        for op in self.ops:
            lines.append(f"{op.name} = {type(op).__name__}({', '.join(op.inputs)}) "
                         f"{op.summary()} -> {self.specs[op.name].describe()}")
        lines.append(f"outputs: {', '.join(self.outputs)}")
        return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value
