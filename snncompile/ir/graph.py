"""The intermediate graph: typed nodes on a networkx DiGraph, edges carrying shape and
signal kind, written to disk as `graph.json` + `arrays.npz`.

On-disk format (version 1), documented for people and programs:

    graph.json = {
      "format": "snncompile-graph", "version": 1, "stage": "float" | "fixed",
      "nodes": [{"name": str, "op": NodeClass, "attrs": {field: value},
                 "arrays": {field: key-in-arrays.npz}, "inputs": [str], "shape": [int]}],
                                    # in insertion order: inputs first, except that a loop
                                    # delay (FxDelay, Delay) is read before the node that
                                    # feeds it
      "edges": [{"src": str, "dst": str, "shape": [int], "kind": "spikes|graded|real"}],
      "meta":  {...}                                            # free-form, JSON only
    }

Arrays are stored under `<node>/<field>` in `arrays.npz` (no pickles). `Graph.load` rebuilds
an equal graph; `graphs_equal` compares two graphs field by field.
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import networkx as nx
import numpy as np

from ..errors import GraphError, InputFileError
from .nodes import FIXED_TYPES, FLOAT_TYPES, NODE_TYPES, Input, Node, Output, node_fields

FORMAT = "snncompile-graph"
VERSION = 1

NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}"
"""Node names: identifier-like (letters, digits, `_`, `.`, `-`; not starting with `.`; at
most 128 characters). Names come from files and become file names in a build
(`coproc/NAME.coproc.onnx`) and keys in `arrays.npz`, so `/`, `..`, spaces and control
characters are refused when a node enters a graph (`Graph.add`), the one boundary every
frontend and `Graph.load` pass through."""
_NAME_RE = re.compile(NAME_PATTERN)


class _DiGraph(nx.DiGraph):
    """A networkx DiGraph that counts its structural changes, so that `Graph` can cache its
    topological order and depths and drop them whenever a node or an edge changes."""

    version = 0

    def _changed(self):
        self.version += 1

    def add_node(self, *a, **k):
        self._changed()
        return super().add_node(*a, **k)

    def add_nodes_from(self, *a, **k):
        self._changed()
        return super().add_nodes_from(*a, **k)

    def add_edge(self, *a, **k):
        self._changed()
        return super().add_edge(*a, **k)

    def add_edges_from(self, *a, **k):
        self._changed()
        return super().add_edges_from(*a, **k)

    def remove_node(self, *a, **k):
        self._changed()
        return super().remove_node(*a, **k)

    def remove_nodes_from(self, *a, **k):
        self._changed()
        return super().remove_nodes_from(*a, **k)

    def remove_edge(self, *a, **k):
        self._changed()
        return super().remove_edge(*a, **k)

    def remove_edges_from(self, *a, **k):
        self._changed()
        return super().remove_edges_from(*a, **k)

    def clear(self):
        self._changed()
        return super().clear()


def _inputs_first(entries: list) -> list:
    """The node entries of a graph document in an order that adds each node after its
    inputs (loop delays, added before their input exists, count as ready), ties kept in
    file order. A file lists nodes in insertion order, which `ir.timing.balance` breaks: it
    inserts relay stages in front of a synapse that is already in the graph."""
    import heapq
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return entries
    index = {}
    for i, e in enumerate(entries):
        index.setdefault(e.get("name"), i)
    loop = {i for i, e in enumerate(entries) if getattr(NODE_TYPES.get(e.get("op")),
                                                          "closes_loop", False)}
    waits = [set() if i in loop else
             {index[s] for s in e.get("inputs") or () if isinstance(s, str) and s in index
              and index[s] != i} for i, e in enumerate(entries)]
    readers: dict[int, list[int]] = {}
    for i, w in enumerate(waits):
        for j in w:
            readers.setdefault(j, []).append(i)
    ready = [i for i, w in enumerate(waits) if not w]
    heapq.heapify(ready)
    out, done = [], set()
    while ready:
        i = heapq.heappop(ready)
        out.append(entries[i])
        done.add(i)
        for r in readers.get(i, ()):
            waits[r].discard(i)
            if not waits[r] and r not in done:
                heapq.heappush(ready, r)
    # a cycle or an unknown input: leave the rest in file order, `add` names the problem
    return out + [e for i, e in enumerate(entries) if i not in done]


class Graph:
    """A DAG of `Node`s. Build with `add` (which infers shapes) or `Graph.sequential`."""

    def __init__(self, meta: dict | None = None):
        self.g = _DiGraph()
        self.meta: dict = dict(meta or {})

    # ------------------------------------------------------------ construction
    def _check_name(self, name) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            src = self.meta.get("source") or "graph"
            shown = repr(name)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise GraphError(f"{src}: layer/node name {shown} is not allowed; names must "
                             f"match {NAME_PATTERN} (letters, digits, _ . -)")

    def add(self, node: Node, inputs: list[str] | tuple[str, ...] = ()) -> Node:
        self._check_name(node.name)
        if node.name in self.g:
            raise GraphError(f"duplicate node name '{node.name}'")
        for src in inputs:
            if src not in self.g:
                raise GraphError(f"{node.name}: input '{src}' is not in the graph")
        in_shapes = [self.shape(s) for s in inputs]
        in_kinds = [self.kind(s) for s in inputs]
        shape = tuple(int(x) for x in node.out_shape(in_shapes))
        kind = node.out_kind(in_kinds)
        self.g.add_node(node.name, op=node, shape=shape, kind=kind)
        for src in inputs:
            self.g.add_edge(src, node.name, shape=self.shape(src), kind=self.kind(src))
        return node

    def add_delay(self, node: Node, shape: tuple[int, ...]) -> Node:
        """Add a loop delay (a node that `closes_loop`: FxDelay, Delay) before its input
        exists (close the loop with `connect`)."""
        self._check_name(node.name)
        if node.name in self.g:
            raise GraphError(f"duplicate node name '{node.name}'")
        self.g.add_node(node.name, op=node, shape=tuple(int(x) for x in shape), kind=node.kind)
        return node

    def connect(self, src: str, delay: str) -> None:
        """Feed a loop delay from `src` (a later node): the loop's back edge."""
        if not self.node(delay).closes_loop or self.inputs(delay):
            raise GraphError(f"{delay}: only a loop delay (FxDelay, Delay) without input can "
                             "close a loop")
        if self.shape(src) != self.shape(delay):
            raise GraphError(f"{delay}: fed with {self.shape(src)}, declared {self.shape(delay)}")
        self.g.add_edge(src, delay, shape=self.shape(src), kind=self.kind(src))

    def _forward(self) -> nx.DiGraph:
        """The graph without the edges out of loop delays (the back edges)."""
        back = [(u, v) for u, v in self.g.edges if self.node(u).closes_loop]
        if not back:
            return self.g
        fwd = self.g.copy()
        fwd.remove_edges_from(back)
        return fwd

    @classmethod
    def sequential(cls, nodes: list[Node], meta: dict | None = None) -> "Graph":
        graph = cls(meta)
        prev: list[str] = []
        for node in nodes:
            graph.add(node, prev)
            prev = [node.name]
        return graph

    # ------------------------------------------------------------ queries
    def __contains__(self, name: str) -> bool:
        return name in self.g

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def node(self, name: str) -> Node:
        return self.g.nodes[name]["op"]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.g.nodes[name]["shape"]

    def kind(self, name: str) -> str:
        return self.g.nodes[name]["kind"]

    def inputs(self, name: str) -> list[str]:
        return list(self.g.predecessors(name))

    def outputs(self, name: str) -> list[str]:
        return list(self.g.successors(name))

    def _cached(self, key: str, compute):
        """A structural result cached until a node or an edge changes: order and depths are
        computed once, not once per query (validating a 3,000-layer network was
        quadratic: every depth recomputed the topological order)."""
        stamp = (id(self.g), getattr(self.g, "version", None))
        if stamp[1] is None:   # a plain networkx graph put in by hand: no caching
            return compute()
        cache = self.__dict__.setdefault("_structure_cache", {})
        if cache.get("stamp") != stamp:
            cache.clear()
            cache["stamp"] = stamp
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def order(self) -> list[str]:
        """Node names in a deterministic topological order (ties broken by insertion);
        edges out of loop delays (FxDelay, Delay) are ignored."""
        return list(self._cached("order", self._topological_order))

    def _topological_order(self) -> tuple[str, ...]:
        index = {n: i for i, n in enumerate(self.g.nodes)}
        try:
            return tuple(nx.lexicographical_topological_sort(self._forward(),
                                                             key=lambda n: index[n]))
        except nx.NetworkXUnfeasible:
            raise GraphError("graph has a cycle without a loop delay (FxDelay) or a "
                             "recurrent synapse (RecDense, FxRecDense)") from None

    def nodes(self, cls: type | tuple = Node) -> list[Node]:
        return [self.node(n) for n in self.order() if isinstance(self.node(n), cls)]

    def loop_delays(self) -> list[Node]:
        """The nodes that close a loop (`closes_loop`: FxDelay, Delay), in order."""
        return [self.node(n) for n in self.order() if self.node(n).closes_loop]

    def input_node(self) -> Input:
        ins = self.nodes(Input)
        if len(ins) != 1:
            raise GraphError(f"graph needs exactly one Input node, has {len(ins)}")
        return ins[0]

    def output_node(self) -> Output:
        outs = self.nodes(Output)
        if len(outs) != 1:
            raise GraphError(f"graph needs exactly one Output node, has {len(outs)}")
        return outs[0]

    @property
    def stage(self) -> str:
        if any(isinstance(n, FLOAT_TYPES) for n in self.nodes()):
            return "float"
        return "fixed"

    def depth(self, name: str) -> int:
        """Global steps from the input to `name`'s output: the longest path, counting each
        node's `output_delay` (1 per synapse, plus its path-balancing `align`). Where a
        node's inputs arrive at different steps (a residual block before
        `ir.timing.balance`), its depth is the latest arrival; `misaligned` lists the rest."""
        depths, _ = self._cached("depths", self._depths)
        if name in depths:
            return depths[name] + self.node(name).output_delay()
        raise GraphError(f"no node '{name}'")

    def misaligned(self) -> list[tuple[str, str, int]]:
        """(source, node, steps): every edge whose value arrives `steps` global steps before
        the node's latest input does (what `ir.timing.balance` must delay)."""
        return list(self._cached("depths", self._depths)[1])

    def _depths(self) -> tuple[dict[str, int], tuple]:
        """Input delay of every node (its latest input's arrival), in one pass over the
        order, and the edges that arrive earlier than that."""
        depths: dict[str, int] = {}
        early = []
        for n in self.order():
            ins = [i for i in self.inputs(n) if not self.node(i).closes_loop]
            arrive = {i: depths[i] + self.node(i).output_delay() for i in ins}
            depths[n] = max(arrive.values(), default=0)
            early += [(i, n, depths[n] - a) for i, a in arrive.items() if a < depths[n]]
        return depths, tuple(early)

    def validate(self) -> None:
        if not nx.is_directed_acyclic_graph(self._forward()):
            raise GraphError("graph has a cycle without a loop delay (FxDelay) or a "
                             "recurrent synapse (RecDense, FxRecDense)")
        for d in self.loop_delays():
            if len(self.inputs(d.name)) != 1:
                raise GraphError(f"{d.name}: a loop delay needs exactly one input")
            if d.is_synapse and self.outputs(d.name) != self.inputs(d.name):
                raise GraphError(f"{d.name}: a recurrent synapse must feed the one neuron "
                                 f"layer it reads ({self.inputs(d.name)[0]}), not "
                                 f"{', '.join(self.outputs(d.name)) or 'nothing'}")
        self.input_node()
        self.output_node()
        self.bias_fed()
        for n in self.order():
            self.depth(n)

    def bias_fed(self) -> set[str]:
        """The FxLIF nodes whose bias a bias-encoded Input drives (see `Input`); empty for
        other inputs. Raises GraphError unless each consumer of such an Input is an FxLIF
        with no other input."""
        inp = self.input_node()
        if not inp.is_bias:
            return set()
        fed = set(self.outputs(inp.name))
        for n in fed:
            if not self.node(n).takes_bias_frames or len(self.inputs(n)) != 1:
                raise GraphError(f"{n}: a bias input ('{inp.name}') can only drive FxLIF "
                                 f"nodes with no other input, not {type(self.node(n)).__name__}"
                                 f" with {len(self.inputs(n))} input(s)")
        return fed

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        nodes = []
        for name in self.g.nodes:  # insertion order: inputs first, but for loop delays
            op = self.node(name)
            attrs, arr = {}, {}
            omit = getattr(op, "omit_when_default", {})
            for key, value in node_fields(op).items():
                if key == "name" or (key in omit and value == omit[key]):
                    continue
                if isinstance(value, np.ndarray):
                    arrays[f"{name}/{key}"] = value
                    arr[key] = f"{name}/{key}"
                elif isinstance(value, dict) and value and all(
                        isinstance(v, np.ndarray) for v in value.values()):
                    arr[key] = {k: f"{name}/{key}/{k}" for k in sorted(value)}
                    arrays.update({f"{name}/{key}/{k}": v for k, v in value.items()})
                else:
                    attrs[key] = _jsonable(value)
            nodes.append({"name": name, "op": type(op).__name__, "attrs": attrs,
                          "arrays": arr, "inputs": self.inputs(name),
                          "shape": list(self.shape(name))})
        edges = [{"src": s, "dst": d, "shape": list(a["shape"]), "kind": a["kind"]}
                 for s, d, a in self.g.edges(data=True)]
        doc = {"format": FORMAT, "version": VERSION, "stage": self.stage, "nodes": nodes,
               "edges": edges, "meta": self.meta}
        return doc, arrays

    def save(self, directory: str | Path) -> None:
        """Write `graph.json` and `arrays.npz` into `directory` (deterministic bytes)."""
        directory = Path(directory)
        doc, arrays = self.to_dict()
        (directory / "graph.json").write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        save_npz_deterministic(directory / "arrays.npz", arrays)

    @classmethod
    def from_dict(cls, doc: dict, arrays: dict[str, np.ndarray], where: str = "graph") -> "Graph":
        if not isinstance(doc, dict) or doc.get("format") != FORMAT \
                or doc.get("version") != VERSION:
            raise InputFileError(f"{where}: not a {FORMAT} version {VERSION} document")
        meta = doc.get("meta", {})
        if not isinstance(meta, dict):
            raise InputFileError(f"{where}: 'meta' must be an object")
        graph = cls(meta)
        loops: list = []
        try:
            for entry in _inputs_first(doc["nodes"]):
                op_cls = NODE_TYPES.get(entry["op"])
                if op_cls is None:
                    raise InputFileError(f"{where}: unknown node type '{entry['op']}'")
                kwargs = dict(entry["attrs"])
                for key, ak in entry["arrays"].items():
                    refs = ak if isinstance(ak, dict) else {None: ak}
                    for ref in refs.values():
                        if ref not in arrays:
                            raise InputFileError(f"{where}: array '{ref}' is missing")
                    kwargs[key] = ({k: arrays[r] for k, r in refs.items()}
                                   if isinstance(ak, dict) else arrays[ak])
                for key, value in list(kwargs.items()):
                    if isinstance(value, list) and key != "doc":
                        kwargs[key] = tuple(value)
                node = op_cls(name=entry["name"], **kwargs)
                if op_cls.closes_loop:  # its input comes later: close the loop afterwards
                    graph.add_delay(node, tuple(entry["shape"]))
                    loops.append((entry["inputs"], node.name))
                else:
                    graph.add(node, entry["inputs"])
            for inputs, name in loops:
                if len(inputs) != 1:
                    raise InputFileError(f"{where}: loop delay '{name}' needs one input")
                graph.connect(inputs[0], name)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                ArithmeticError) as exc:  # ArithmeticError: e.g. a conv stride of 0
            raise InputFileError(f"{where}: malformed graph document ({exc!r})") from None
        except GraphError as exc:
            raise InputFileError(f"{where}: invalid graph ({exc})") from None
        return graph

    @classmethod
    def load(cls, directory: str | Path) -> "Graph":
        directory = Path(directory)
        gpath = directory / "graph.json"
        try:
            doc = json.loads(gpath.read_text())
        except FileNotFoundError:
            raise InputFileError(f"{gpath}: not found (is {directory} a build directory?)") \
                from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputFileError(f"{gpath}: corrupt JSON ({exc})") from None
        arrays = load_npz(directory / "arrays.npz")
        return cls.from_dict(doc, arrays, where=str(gpath))


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez writes zip timestamps; write members ourselves with a fixed date."""
    import io

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an .npz without pickles; corrupt files raise InputFileError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputFileError(f"{path}: not found") from None
    except Exception as exc:  # noqa: BLE001 - zip/zlib/npy raise many types on bad bytes
        msg = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputFileError(f"{path}: corrupt or not an .npz file ({msg})") from None


def graphs_equal(a: Graph, b: Graph) -> bool:
    if a.order() != b.order() or a.meta != b.meta:
        return False
    for name in a.order():
        na, nb = a.node(name), b.node(name)
        if type(na) is not type(nb) or a.inputs(name) != b.inputs(name):
            return False
        if not na.same_as(nb):
            return False
        if a.shape(name) != b.shape(name) or a.kind(name) != b.kind(name):
            return False
    return True
