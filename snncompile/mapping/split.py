"""Split every neuron layer of a fixed-stage graph into core-sized blocks.

A *layer* is one neuron node (`FxLIF`, `FxSigmaDelta`) together with every synapse node
(`FxDense` / `FxConv2d`) that feeds it (a residual block's body and shortcut both end on
the block's LIF: each is charged its input axons and synapse memory, `_StackedSyn` /
`_ConvSum`): a core holds neurons and the synapses that end on them. What each node type costs on a core is its rule in the `SPLIT` table (`CoreCost`: a
neuron has blocks of its own, a synapse and a gate are folded into the layer they feed, a
Flatten into its consumers, co-processor nodes hold no neurocore); a node type without a
rule is refused. Every block honours each per-core limit of the target (`spec.limits`):

* ``neurons``       compartments in the block;
* ``input_axons``   distinct presynaptic neurons with at least one synapse into the block;
* ``output_axons``  sum over the block's neurons of the number of destination blocks they
                    reach (one axon per (neuron, destination core), as nengo-loihi counts);
* ``synapse_bits``  synapse memory as Loihi encodes it: each input axon stores its synapses
                    in groups of ``synapse_group_size``, a group costs
                    ``n * bits_per_synapse + synapse_group_header_bits`` rounded up to whole
                    ``synapse_word_bits`` words (nengo-loihi ``bits_per_axon``);
                    ``bits_per_synapse`` is the layer's ``num_weight_bits`` (dense layers
                    without zeros) or that plus ``synapse_index_bits_sparse`` (layers with
                    zeros). A conv block with ``conv_weight_sharing`` stores its kernel once:
                    one group list per (input channel, kernel tap) holding the block's output
                    channels. ``neuron_state_bits`` per neuron are added where state shares
                    the synapse memory (Loihi 2).

Algorithm. Layers are split consumers first (reverse topological order), because a neuron's
output axons depend on how many blocks of the next layer it reaches.

* Dense-fed layers are cut into contiguous neuron ranges. From each start the longest
  feasible range is found by binary search (every resource grows monotonically with the
  range), which gives the fewest blocks any contiguous split can have; the ranges are then
  evened out to equal sizes when that stays feasible (equal blocks balance the per-step
  work).
* Conv-fed layers are cut into regular tiles (channels x rows x columns) whose input region
  is a rectangle of the input. All tile sizes are ranked by block count (ties: more
  channels per tile, which sends fewer messages) and the first that fits in every tile wins.

Everything is vectorised over neurons (cumulative sums, summed-area tables); Python loops
run over blocks only, so a 1M-neuron / 100M-synapse network splits in about a second.
Weights given as zero-stride arrays (``np.broadcast_to(np.int8(1), (out, in))``) are read as
"all connected" without ever being materialised: benchmarks can describe huge layers by
shape.

The blocks are then packed onto cores, best-fit decreasing over every resource, adding
their resources (conservative: two blocks that share a source are charged two input axons).
When that packing is above the lower bound, the layers are re-split within shares of a
core (`_share_candidates`: each layer's cores' worth / K of every limit, for a few K) so
that pieces of several layers fill each core, and the packing with the fewest cores wins.

    >>> split = split_graph(graph, load_target("loihi1"))  # doctest: +SKIP
    >>> split.n_cores, split.lower_bound["cores"]           # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from snncompile.errors import ResourceLimitError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import (Flatten, FxConv1d, FxConv2d, FxCoproc, FxCoprocOut, FxDelay,
                                 FxDense, FxGate, FxLI, FxLIF, FxSigmaDelta, Input, Output,
                                 FxRecDense)
from snncompile.ir.registry import Rules
from snncompile.target import Limits, TargetSpec

RESOURCES = Limits.RESOURCES
_WHAT = {"neurons": "neurons", "input_axons": "input axons", "output_axons": "output axons",
         "synapse_bits": "synapse memory"}


@dataclass
class Block:
    """A set of neurons of one layer, with the synapses that end on them.

    `start`/`stop` index the layer's neurons in C order (dense-fed layers); conv-fed layers
    use `tile` = (c0, c1, y0, y1, x0, x1) of the (C, H, W) output instead.
    """

    index: int
    layer: str
    synapse: str | None
    n_neurons: int
    synapses: int  # connections ending on the block (for per-core work)
    usage: dict[str, int]
    start: int = 0
    stop: int = 0
    tile: tuple[int, ...] | None = None
    work: float = 0.0  # synaptic ops per step: synapses x the source layer's firing rate

    def to_json(self) -> dict:
        d = {"index": self.index, "layer": self.layer, "synapse": self.synapse,
             "neurons": self.n_neurons, "synapses": self.synapses,
             "work": float(self.work),
             "usage": {k: int(v) for k, v in self.usage.items()}}
        if self.tile is not None:
            d["tile"] = [int(t) for t in self.tile]
        else:
            d["range"] = [int(self.start), int(self.stop)]
        return d


@dataclass
class LayerBlocks:
    """How one layer (or the graph input) was split into blocks."""

    name: str
    neurons: int
    synapse: str | None
    synapses: int
    blocks: list[int]  # global block indices
    owner: np.ndarray = field(repr=False)  # local block index of every neuron (layer shape)
    relay_of: str | None = None  # relay neurons of a gated LIF's current (attention)
    synapse_nodes: list = field(default_factory=list)  # every synapse ending on it


@dataclass
class Split:
    """Result of `split_graph`: blocks, their grouping into cores, and traffic edges.

    `edges[i] = (src_block, dst_block, n)`: `n` neurons of `src_block` (-1: the graph input)
    have synapses into `dst_block`; every spike of one of them sends one message there.
    """

    target: str
    blocks: list[Block]
    cores: list[list[int]]  # block indices per core
    core_usage: np.ndarray  # (n_cores, len(RESOURCES)) int64
    limits: dict[str, int]
    lower_bound: dict
    layers: dict[str, LayerBlocks]
    edges: np.ndarray  # (n_edges, 3) int64
    input_name: str
    work_cap: float | None = None  # synaptic ops per step per block and core (latency)
    coproc_io: dict = field(default_factory=dict)  # attention traffic (see _attention_io)

    @property
    def n_cores(self) -> int:
        return len(self.cores)


# ------------------------------------------------------------------ per node type: core cost
ROLES = {
    "input": "the graph input: sends messages (output axons), holds no core",
    "neuron": "a layer: blocks of its own (its neurons, the input axons and synapse memory "
              "of the synapses ending on them, the output axons to the blocks they reach)",
    "synapse": "folded into the neuron layer it feeds (input axons, synapse memory)",
    "recurrent": "folded into the neuron layer it reads and feeds, on that layer's own core "
                 "(input axons and synapse memory, one output axon per neuron it reads)",
    "gate": "folded into the neuron layer it feeds (an input axon and synapses per gain "
            "element reaching a block)",
    "reshape": "no resources: its consumers read its source",
    "output": "no resources: marks the network's output",
    "coproc": "runs on the co-processor: nothing on neurocores",
}
"""What each mapping role costs on a neurocore."""


@dataclass(frozen=True)
class CoreCost:
    """The mapping rule of one node type: its `role` (a key of ROLES: where its resources
    are charged) and, for synapse types, `connectivity(node, graph, out_shape, spec, lim)`,
    which builds the object that counts the fan-in, synapse memory and traffic of the
    neuron layer the synapse feeds and cuts that layer into blocks."""

    role: str
    connectivity: Callable | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise TypeError(f"mapping role '{self.role}' is not one of {', '.join(ROLES)}")


SPLIT = Rules("mapping")
"""Node type -> its `CoreCost`. A node type without one cannot be mapped."""


def _trait_role(node_type: type) -> str:
    """The role the node type's traits give it (neurons, synapses, co-processor nodes)."""
    if node_type.on_coproc:
        return "coproc"
    if node_type.is_neuron:
        return "neuron"
    if node_type.is_synapse:
        return "synapse"
    raise TypeError(f"{node_type.__name__}: no trait says its mapping role; register one")


SPLIT.add(Input, CoreCost("input"))
SPLIT.add(Flatten, CoreCost("reshape"))
SPLIT.add(Output, CoreCost("output"))
for _t in (FxLIF, FxSigmaDelta, FxCoproc, FxCoprocOut):
    SPLIT.add(_t, CoreCost(_trait_role(_t)))
SPLIT.add(FxLI, CoreCost(_trait_role(FxLI)))   # a readout: compartments, no output axons
SPLIT.add(FxGate, CoreCost("gate"))      # the gated LIF's own programmable neuron applies it
SPLIT.add(FxDelay, CoreCost("coproc"))   # a loop delay buffers on the x86 core
SPLIT.add(FxRecDense, CoreCost("recurrent"))   # charged with its layer (_StackedSyn)
# FxDense and FxConv2d: next to their connectivity (_DenseSyn, _ConvSyn) below


def core_role(graph: Graph, name: str) -> str | None:
    """The mapping role of node `name` (None when the mapping has no rule for its type)."""
    rule = SPLIT.get(graph.node(name))
    return rule.role if rule is not None else None


def _names(*roles: str) -> str:
    """The registered node types with one of `roles`, for messages."""
    return ", ".join(t.__name__ for t in SPLIT.types if SPLIT.get(t).role in roles)


def _refuse_unmappable(graph: Graph) -> None:
    """The table's one-line refusal of the first node the mapping has no rule for."""
    for name in graph.order():
        node = graph.node(name)
        if not SPLIT.supports(node):
            raise UnsupportedError(f"{SPLIT.refusal(node)}; mapping needs a fixed-stage "
                                   "graph (run quantize first)")


# ------------------------------------------------------------------ graph structure
@dataclass
class _Layer:
    """One neuron layer (or the graph input) and every feed-forward synapse ending on it:
    `syns` = [(synapse node, the node sending it messages)], first the one through its
    first input (a residual block's body), then the others (its shortcut, ...)."""

    name: str
    shape: tuple
    syns: list = field(default_factory=list)  # [(syn_node, src_name)]
    consumers: list = field(default_factory=list)  # [(syn_node, dst_layer_name, part)]
    relay_of: str | None = None  # attention: relay neurons of this gated LIF's current
    gains: list = field(default_factory=list)  # attention: gain shapes applied to the LIF
    rec: object = None  # its recurrent synapse (FxRecDense), on the layer's own core

    @property
    def syn(self):
        """The first synapse node (None: no synaptic input)."""
        return self.syns[0][0] if self.syns else None

    @property
    def src(self) -> str | None:
        return self.syns[0][1] if self.syns else None

    @property
    def sources(self) -> list[str]:
        return [src for _, src in self.syns]


def _source_of(graph: Graph, name: str) -> str:
    """Walk back through reshapes (Flatten) to the node sending the messages (the graph
    input or a neuron)."""
    while True:
        here = core_role(graph, name)
        if here in ("input", "neuron"):
            return name
        ins = graph.inputs(name)
        if here != "reshape" or len(ins) != 1:
            raise UnsupportedError(
                f"{name}: {type(graph.node(name)).__name__} cannot feed a synapse layer on a "
                f"core; supported sources are {_names('input', 'neuron')} and "
                f"{_names('reshape')} of them")
        name = ins[0]


def _through_gates(graph: Graph, name: str) -> tuple[str, list[tuple]]:
    """A neuron's synapse, walking back through gates (attention gains applied by the
    neuron's own programmable neuron: same core, no extra synapses), and the shapes of the
    gains those gates apply."""
    gains = []
    while core_role(graph, name) == "gate":
        gains.append(tuple(graph.shape(graph.inputs(name)[1])))
        name = graph.inputs(name)[0]
    if core_role(graph, name) == "coproc":
        # whole-window attention: the gates read the current the co-processor buffered
        # and sends back delayed; it is the synapse's current (through the relay layer).
        # The layer keeps the synapse as in causal mode, so its synapses are counted on
        # the neuron's cores too (an overestimate: only the relay copy is needed)
        name = graph.inputs(graph.inputs(name)[0])[0]
    return name, gains


def _neuron_layer(graph: Graph, name: str) -> list[_Layer]:
    """The layer of neuron `name` (every synapse feeding it, each synapse's source, the
    gains applied), and its relay layer when a synapse's current also leaves for the
    co-processor."""
    ins = graph.inputs(name)
    syns, gains, rec = [], [], []
    for k, i in enumerate(ins):
        role = core_role(graph, i)
        if role == "recurrent":
            rec.append(graph.node(i))
            continue
        if k and role not in ("synapse", "gate"):
            continue
        syn, g = _through_gates(graph, i)
        if core_role(graph, syn) == "input":
            continue  # a delta encoder reads the input frames directly
        if core_role(graph, syn) != "synapse":
            raise UnsupportedError(f"{name}: an {type(graph.node(name)).__name__} must be fed "
                                   f"by {_names('synapse')}, not "
                                   f"{type(graph.node(syn)).__name__}")
        gains += g
        syns.append((graph.node(syn), _source_of(graph, graph.inputs(syn)[0])))
    layers = [_Layer(name, graph.shape(name), syns, gains=gains, rec=rec[0] if rec else None)]
    relayed = [(node, src) for node, src in syns
               if any(graph.node(o).on_coproc for o in graph.outputs(node.name))]
    if relayed:
        # the current leaves for the co-processor: relay neurons with a copy of the
        # synapses, sending it each step as a graded spike (see _attention_io)
        layers.append(_Layer(f"{name}.relay", graph.shape(name), relayed, relay_of=name))
    return layers


def _layers(graph: Graph) -> tuple[dict[str, _Layer], str]:
    """Every layer (the graph input and each neuron node with its synapse) by name, in
    graph order, each with its consumers; and the input's name."""
    _refuse_unmappable(graph)
    inp = graph.input_node().name
    layers = {inp: _Layer(inp, graph.shape(inp))}
    for name in graph.order():
        if core_role(graph, name) == "neuron":
            layers.update((lay.name, lay) for lay in _neuron_layer(graph, name))
    for layer in layers.values():
        for part, (syn, src) in enumerate(layer.syns):
            layers[src].consumers.append((syn, layer.name, part))
    return layers, inp


# ------------------------------------------------------------------ synapse encoding
def axon_bits(n, bits_per_synapse: int, lim: Limits):
    """Synapse memory of one input axon with `n` synapses in the block (vectorised)."""
    n = np.asarray(n, dtype=np.int64)
    size, head, word = (lim.synapse_group_size, lim.synapse_group_header_bits,
                        lim.synapse_word_bits)

    def words(k):
        return -(-(k * bits_per_synapse + head) // word) * word

    full, rem = np.divmod(n, size)
    return full * words(size) + np.where(rem > 0, words(rem), 0)


@dataclass(frozen=True)
class _BoundShare:
    """One layer's share of the lower bound: input axons and synapse bits no mapping goes
    below, the fewest input axons any piece needs; all-to-all layers also the most neurons
    one core holds (`kmax`) and the cores that takes (`cores`)."""

    input_axons: float
    synapse_bits: float
    min_fanin: int
    kmax: int | None = None
    cores: int = 0


class _DenseSyn:
    """Connectivity of a dense-fed layer; `nz` is None when every weight is non-zero."""

    def __init__(self, node, n_out: int, lim: Limits):
        self.lim = lim
        self.n_out = n_out
        self.nz = None
        if node is None:  # a LIF without incoming synapses
            self.n_in, self.bpw = 0, 0
        elif all(s == 0 for s in node.weight.strides):  # shape only: one repeated value
            w = node.weight
            self.n_in = int(w.shape[1]) if w.size and w.flat[0] != 0 else 0
        else:
            w = node.weight
            self.n_in = int(w.shape[1])
            if int(np.count_nonzero(w)) < w.size:   # no mask (w.size bytes) when all-to-all
                self.nz = w != 0
        if self.nz is not None:
            self.row_nnz = self.nz.sum(1, dtype=np.int64)
        else:
            self.row_nnz = np.full(n_out, self.n_in, np.int64)
        if node is not None:
            self.bpw = int(node.num_weight_bits) + (0 if self.nz is None
                                                     else lim.synapse_index_bits_sparse)
        self.syn_cum = np.concatenate([[0], np.cumsum(self.row_nnz)])
        # a synapse bias is one more input axon per block, with a synapse on every neuron
        self.bias_axon = int(getattr(node, "bias_mant", None) is not None)

    #: most elements of a block's running column counts kept (`prefix`), int32
    PREFIX_ELEMENTS = 1 << 23

    def prefix(self, a: int, hi: int) -> None:
        """Keep the running per-input synapse counts of rows a .. hi-1, so that `fanin` and
        `bits` of any block (a, b) with b <= hi cost O(inputs), not O(rows x inputs): the
        packer probes many ends b for one start a. Skipped when it would be large."""
        self._prefix = None
        if self.nz is not None and (hi - a) * self.n_in <= self.PREFIX_ELEMENTS:
            self._prefix = (a, hi, np.cumsum(self.nz[a:hi], axis=0, dtype=np.int32))

    def _counts(self, a: int, b: int) -> np.ndarray:
        """Synapses per input axon in the block of rows a .. b-1."""
        pre = getattr(self, "_prefix", None)
        if pre is not None and pre[0] == a and a < b <= pre[1]:
            return pre[2][b - a - 1]
        return self.nz[a:b].sum(0)

    def fanin(self, a: int, b: int) -> int:
        if self.nz is None:
            return self.n_in + self.bias_axon
        return int(np.count_nonzero(self._counts(a, b))) + self.bias_axon

    def bits(self, a: int, b: int) -> int:
        bias = self.bias_axon * int(axon_bits(b - a, self.bpw, self.lim))
        if self.nz is None:
            return int(self.n_in * axon_bits(b - a, self.bpw, self.lim)) + bias
        cnt = self._counts(a, b)
        return int(axon_bits(cnt[cnt > 0], self.bpw, self.lim).sum()) + bias

    def one_neuron(self) -> tuple[int, int]:
        """(fan-in, synapse bits) of the most connected single neuron."""
        worst = (int(self.row_nnz.max()) if self.n_out else 0) + self.bias_axon
        return worst, int(worst * axon_bits(1, self.bpw, self.lim))

    def single(self, out_ax: np.ndarray, lim: Limits) -> np.ndarray:
        """The most any one neuron of the layer uses of each resource (RESOURCES order)."""
        fan1, bits1 = self.one_neuron()
        return np.array([1, fan1, int(out_ax.max()) if self.n_out else 0,
                         bits1 + lim.neuron_state_bits], np.int64)

    @property
    def total_synapses(self) -> int:
        return int(self.syn_cum[-1]) if self.n_in else 0

    def bound_share(self, n: int, synapses: int, lim: Limits) -> "_BoundShare":
        """This layer's share of the lower bound's totals (see `_lower_bound`)."""
        state = lim.neuron_state_bits * n
        if self.n_in and self.nz is None:  # all-to-all
            kmax, bits_per_neuron = _kmax_full(self.n_in, self.bpw, lim)
            kmax = max(kmax, 1)
            cores = -(-n // kmax)
            bits = (n * bits_per_neuron if math.isfinite(bits_per_neuron)
                    else state + n * self.n_in * self.bpw)
            return _BoundShare(cores * self.n_in, bits, self.n_in, kmax, cores)
        bits = state
        if self.n_in:
            j = np.arange(1, lim.synapse_group_size + 1)
            bits += synapses * float((axon_bits(j, self.bpw, lim) / j).min())
        return _BoundShare(self.one_neuron()[0], bits,
                           int(self.row_nnz.min()) if self.n_in and n else 0)

    def split(self, name: str, syn_name: str | None, out_ax: np.ndarray, lim: Limits,
              max_syn: int | None) -> tuple[list[Block], np.ndarray]:
        """The layer's blocks (contiguous neuron ranges) and the block of every neuron."""
        ranges, usages, syns, owner = _split_dense(name, self, out_ax, lim, max_syn)
        use = np.array(usages).tolist()
        blocks = [Block(-1, name, syn_name, u[0], s, dict(zip(RESOURCES, u)),
                        start=a, stop=b) for (a, b), u, s in zip(ranges, use, syns)]
        return blocks, owner

    def dest_counts(self, blocks: list[Block], part: int = 0) -> np.ndarray:
        """Per source neuron: how many of `blocks` (this layer's) it has synapses into
        (`part`: which of the layer's synapses; one here)."""
        if self.nz is None:
            return len(blocks) if self.n_in else 0
        starts = np.array([b.start for b in blocks])
        return np.logical_or.reduceat(self.nz, starts, axis=0).sum(0)

    def sources(self, blk: Block, src_owner: np.ndarray, n_src: int,
                part: int = 0) -> np.ndarray | None:
        """Per source block: how many of its neurons have synapses into `blk` (None: the
        layer has no synaptic input)."""
        if self.n_in == 0:
            return None
        if self.nz is None:
            return np.bincount(src_owner.ravel(), minlength=n_src)
        return np.bincount(src_owner.ravel()[self.nz[blk.start:blk.stop].any(0)],
                           minlength=n_src)


    def block_synapses(self, blk: Block) -> list[int]:
        """Synapses ending on `blk`, per synapse of the layer (one here)."""
        return [blk.synapses]


def _dense_connectivity(node: FxDense, graph: Graph, shape, spec: TargetSpec,
                        lim: Limits) -> _DenseSyn:
    return _DenseSyn(node, int(np.prod(shape)), lim)


SPLIT.add(FxDense, CoreCost(_trait_role(FxDense), _dense_connectivity))


@dataclass(frozen=True)
class _Stacked:
    """Several dense synapses' weights side by side (a neuron layer's feed-forward ones,
    then its recurrent one): its input axons are each source's neurons in turn."""

    weight: np.ndarray
    num_weight_bits: int
    bias_mant: object = None


class _StackedSyn(_DenseSyn):
    """Connectivity of a dense-fed layer with several synapses ending on it (a residual
    block's body and shortcut, recurrent weights): fan-in, synapse memory and synapse
    counts of all of them (the columns of part i are the neurons of its source, the
    recurrent part's the layer's own, one more input axon per neuron it reads), while
    traffic from one source (`sources`, `dest_counts` with `part`) reads its columns only.
    A source feeding the layer through two synapses is charged two input axons (each
    synapse keeps its own synapse list; conservative)."""

    def __init__(self, nodes: list, rec, n_out: int, lim: Limits):
        ws = [np.asarray(n.weight) for n in nodes]
        if rec is not None:
            ws.append(np.asarray(rec.weight))
        self.offsets = np.concatenate([[0], np.cumsum([w.shape[1] for w in ws])]).astype(int)
        bits = max(int(n.num_weight_bits) for n in nodes + ([rec] if rec is not None else []))
        super().__init__(_Stacked(np.hstack(ws), bits), n_out, lim)
        self.bias_axon = sum(int(getattr(n, "bias_mant", None) is not None) for n in nodes)
        self.n_parts = len(nodes)
        if rec is not None:
            self.n_fwd = int(self.offsets[-2])
            self.rec_sources = (ws[-1] != 0).any(0).astype(np.int64)
        # synapses of each part (recurrent last) in the first r rows: part_cum[i][r]
        self.part_cum = [np.concatenate([[0], np.cumsum(
            self._columns(slice(a, b), b - a).row_nnz)]) for a, b in
            zip(self.offsets[:-1], self.offsets[1:])]

    def _columns(self, cols: slice, n_in: int) -> _DenseSyn:
        view = object.__new__(_DenseSyn)
        view.__dict__.update(self.__dict__)
        view.n_in = n_in
        view.nz = None if self.nz is None else self.nz[:, cols]
        view.row_nnz = (np.full(self.n_out, n_in, np.int64) if view.nz is None
                        else view.nz.sum(1, dtype=np.int64))
        return view

    def part(self, i: int) -> _DenseSyn:
        """The columns of part `i` alone (its source's traffic into this layer); made once
        (`_traffic` asks for it per block)."""
        views = self.__dict__.setdefault("_parts", {})
        if i not in views:
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            views[i] = self._columns(slice(a, b), b - a)
        return views[i]

    def recurrent(self) -> _DenseSyn:
        """The recurrent columns alone: the layer's traffic to itself (`sources`)."""
        return self.part(self.n_parts)

    def dest_counts(self, blocks, part: int = 0):
        return _DenseSyn.dest_counts(self.part(part), blocks)

    def sources(self, blk, src_owner, n_src, part: int = 0):
        return _DenseSyn.sources(self.part(part), blk, src_owner, n_src)

    def block_synapses(self, blk: Block) -> list[int]:
        return [int(c[blk.stop] - c[blk.start]) for c in self.part_cum]


class _ConvSyn:
    """Geometry of a conv-fed layer: tiles of the output map to rectangles of the input."""

    def __init__(self, node: FxConv2d, in_shape, out_shape, spec: TargetSpec,
                 lim: Limits | None = None):
        self.lim = spec.limits if lim is None else lim   # the layer's (reserves included)
        self.cin, self.hin, self.win = in_shape
        self.c, self.h, self.w = out_shape
        o, self.ipg, self.kh, self.kw = node.weight.shape
        self.groups = int(node.groups)
        self.opg = o // self.groups
        self.sy, self.sx = node.stride
        self.py, self.px = node.padding
        self.bpw = spec.numerics.weight_bits  # Lava's Conv keeps full 8-bit mantissas
        self.bias_axon = int(node.bias_mant is not None)   # one more axon per tile
        # kernel taps that land inside the input, per output row / column (exact synapse count)
        vh = np.array([sum(0 <= y * self.sy - self.py + i < self.hin for i in range(self.kh))
                       for y in range(self.h)], np.int64)
        vw = np.array([sum(0 <= x * self.sx - self.px + j < self.win for j in range(self.kw))
                       for x in range(self.w)], np.int64)
        self.cvh = np.concatenate([[0], np.cumsum(vh)])
        self.cvw = np.concatenate([[0], np.cumsum(vw)])

    @property
    def total_synapses(self) -> int:
        return int(self.c * self.ipg * self.cvh[-1] * self.cvw[-1])

    @property
    def taps(self) -> int:
        """Synapses of one neuron away from the padding (its kernel)."""
        return self.ipg * self.kh * self.kw

    def block_synapses(self, blk: Block) -> list[int]:
        """Synapses ending on `blk`, per synapse of the layer (one here)."""
        return [blk.synapses]

    def region(self, c0, c1, y0, y1, x0, x1):
        """Input rectangle (ci0, ci1, r0, r1, q0, q1) read by an output tile (vectorised)."""
        ci0 = (c0 // self.opg) * self.ipg
        ci1 = ((c1 - 1) // self.opg + 1) * self.ipg
        r0 = np.maximum(0, y0 * self.sy - self.py)
        r1 = np.minimum(self.hin, (y1 - 1) * self.sy - self.py + self.kh)
        q0 = np.maximum(0, x0 * self.sx - self.px)
        q1 = np.minimum(self.win, (x1 - 1) * self.sx - self.px + self.kw)
        return ci0, ci1, r0, r1, q0, q1

    def synapses(self, c0, c1, y0, y1, x0, x1):
        return (c1 - c0) * self.ipg * (self.cvh[y1] - self.cvh[y0]) * (self.cvw[x1] - self.cvw[x0])

    def bound_share(self, n: int, synapses: int, lim: Limits) -> "_BoundShare":
        """This layer's share of the lower bound's totals: the halo's input axons, the
        kernel once per output channel (when the target shares conv weights)."""
        kern = (self.c * self.ipg * self.kh * self.kw if lim.conv_weight_sharing
                else self.total_synapses)
        return _BoundShare(max(self.ipg * self.kh * self.kw,
                               n * _conv_fanin_per_neuron(self, lim)),
                           lim.neuron_state_bits * n + kern * self.bpw, 1)

    def split(self, name: str, syn_name: str | None, out_ax: np.ndarray, lim: Limits,
              max_syn: int | None) -> tuple[list[Block], np.ndarray]:
        """The layer's blocks (tiles of the output map) and the block of every neuron."""
        tiles, usages, syns, owner = _split_conv(name, self, out_ax, lim, max_syn)
        blocks = [Block(-1, name, syn_name, u[0], s, dict(zip(RESOURCES, u)),
                        tile=tuple(p)) for p, u, s in zip(tiles, np.array(usages).tolist(), syns)]
        return blocks, owner

    def dest_counts(self, blocks: list[Block], part: int = 0) -> np.ndarray:
        """Per source neuron: how many of `blocks` (this layer's) read it (a difference
        array over the input rectangles the tiles read)."""
        diff = np.zeros((self.cin + 1, self.hin + 1, self.win + 1), np.int64)
        t = np.array([b.tile for b in blocks]).T
        ci0, ci1, r0, r1, q0, q1 = self.region(*t)
        for sign, (c, r, q) in (
                (1, (ci0, r0, q0)), (-1, (ci1, r0, q0)), (-1, (ci0, r1, q0)),
                (-1, (ci0, r0, q1)), (1, (ci1, r1, q0)), (1, (ci1, r0, q1)),
                (1, (ci0, r1, q1)), (-1, (ci1, r1, q1))):
            np.add.at(diff, (c, r, q), sign)
        return diff.cumsum(0).cumsum(1).cumsum(2)[:-1, :-1, :-1].ravel()

    def sources(self, blk: Block, src_owner: np.ndarray, n_src: int,
                part: int = 0) -> np.ndarray:
        """Per source block: how many of its neurons `blk` reads (its input rectangle)."""
        ci0, ci1, r0, r1, q0, q1 = self.region(*blk.tile)
        return np.bincount(src_owner.reshape(self.cin, self.hin, self.win)
                           [ci0:ci1, r0:r1, q0:q1].ravel(), minlength=n_src)

    def single(self, out_ax: np.ndarray, lim: Limits, sat=None) -> np.ndarray:
        """The most any one neuron uses of each resource: fan-in and bits over the
        positions of channel 0 (every channel reads as many inputs), output axons over
        all neurons."""
        if sat is None:   # output axons are out_ax.max(); the table only has to exist
            sat = np.zeros((2, self.h + 1, self.w + 1), np.int64)
        y, x = np.meshgrid(np.arange(self.h), np.arange(self.w), indexing="ij")
        y, x, z = y.ravel(), x.ravel(), np.zeros(y.size, np.int64)
        single = np.stack(self.costs(z, z + 1, y, y + 1, x, x + 1, sat)).max(1)
        single[2] = out_ax.max() if out_ax.size else 0
        return single

    def costs(self, c0, c1, y0, y1, x0, x1, out_sat):
        """Resource use of tiles (vectorised): neurons, input axons, output axons, bits."""
        lim = self.lim
        ci0, ci1, r0, r1, q0, q1 = self.region(c0, c1, y0, y1, x0, x1)
        neurons = (c1 - c0) * (y1 - y0) * (x1 - x0)
        fanin = (ci1 - ci0) * np.maximum(r1 - r0, 0) * np.maximum(q1 - q0, 0)
        if lim.conv_weight_sharing:
            g0, g1 = c0 // self.opg, (c1 - 1) // self.opg
            n_first = np.minimum(c1, (g0 + 1) * self.opg) - c0
            n_last = c1 - g1 * self.opg
            per_tap = (axon_bits(n_first, self.bpw, lim)
                       + np.where(g1 > g0, axon_bits(n_last, self.bpw, lim), 0)
                       + np.maximum(g1 - g0 - 1, 0) * axon_bits(self.opg, self.bpw, lim))
            bits = self.ipg * self.kh * self.kw * per_tap
        else:  # every input axon holds its own copy: about synapses/fan-in per axon
            syn = self.synapses(c0, c1, y0, y1, x0, x1)
            per_axon = -(-syn // np.maximum(fanin, 1))
            bits = fanin * axon_bits(per_axon, self.bpw + lim.synapse_index_bits_sparse, lim)
        bits = bits + lim.neuron_state_bits * neurons
        if self.bias_axon:   # the bias axon: one synapse on every neuron of the tile
            fanin = fanin + 1
            bits = bits + axon_bits(neurons, self.bpw, lim)
        out = _sat_sum(out_sat, c0, c1, y0, y1, x0, x1)
        return np.broadcast_arrays(neurons, fanin, out, bits)


def _conv_connectivity(node: FxConv2d, graph: Graph, shape, spec: TargetSpec,
                       lim: Limits) -> _ConvSyn:
    return _ConvSyn(node, graph.shape(graph.inputs(node.name)[0]), shape, spec, lim)


SPLIT.add(FxConv2d, CoreCost(_trait_role(FxConv2d), _conv_connectivity))


def _conv1d_connectivity(node: FxConv1d, graph: Graph, shape, spec: TargetSpec,
                         lim: Limits) -> _ConvSyn:
    """A Conv1d-fed layer is tiled as the height-1 image it is: (O, 1, L')."""
    return _ConvSyn(node, node.image_shape(graph.shape(graph.inputs(node.name)[0])),
                    node.image_shape(shape), spec, lim)


class _ConvSum:
    """Connectivity of a conv-fed layer with several conv synapses ending on it (a
    residual block's body and conv shortcut): tiles of the common output, each charged
    the input axons and synapse memory of every part (their inputs are different axons),
    the neurons, their state and output axons once; traffic per part."""

    def __init__(self, name: str, parts: list[_ConvSyn]):
        p = parts[0]
        for q in parts[1:]:
            if (q.c, q.h, q.w) != (p.c, p.h, p.w):   # pragma: no cover - the graph's shapes
                raise UnsupportedError(f"{name}: its conv synapses' outputs differ")
        self.parts, self.lim = parts, p.lim
        self.c, self.h, self.w = p.c, p.h, p.w
        self.bpw = p.bpw
        self.bias_axon = sum(q.bias_axon for q in parts)

    @property
    def total_synapses(self) -> int:
        return sum(q.total_synapses for q in self.parts)

    @property
    def taps(self) -> int:
        return sum(q.taps for q in self.parts)

    def synapses(self, *tile):
        return sum(q.synapses(*tile) for q in self.parts)

    def costs(self, c0, c1, y0, y1, x0, x1, out_sat):
        neurons, fanin, out, bits = self.parts[0].costs(c0, c1, y0, y1, x0, x1, out_sat)
        state = self.lim.neuron_state_bits * neurons
        for q in self.parts[1:]:
            _, f, _, b = q.costs(c0, c1, y0, y1, x0, x1, out_sat)
            fanin, bits = fanin + f, bits + b - state
        return np.broadcast_arrays(neurons, fanin, out, bits)

    single = _ConvSyn.single
    split = _ConvSyn.split

    def bound_share(self, n: int, synapses: int, lim: Limits) -> "_BoundShare":
        """The parts' shares added (each part's inputs are axons of its own; the neuron
        state once), the input axons at least the most one neuron reads."""
        shares = [q.bound_share(n, synapses, lim) for q in self.parts]
        state = lim.neuron_state_bits * n
        one = int(self.single(np.zeros(0, np.int64), lim)[1])
        halo = sum(n * _conv_fanin_per_neuron(q, lim) for q in self.parts)
        return _BoundShare(max(one, halo, max(s.input_axons for s in shares)),
                           state + sum(s.synapse_bits - state for s in shares), 1)

    def dest_counts(self, blocks: list[Block], part: int = 0) -> np.ndarray:
        return self.parts[part].dest_counts(blocks)

    def sources(self, blk: Block, src_owner: np.ndarray, n_src: int, part: int = 0):
        return self.parts[part].sources(blk, src_owner, n_src)

    def block_synapses(self, blk: Block) -> list[int]:
        return [int(q.synapses(*blk.tile)) for q in self.parts]


SPLIT.add(FxConv1d, CoreCost(_trait_role(FxConv1d), _conv1d_connectivity))


def _sat(a: np.ndarray) -> np.ndarray:
    """Summed-area table of a 3-D array, padded with a leading zero plane per axis."""
    s = np.zeros(tuple(d + 1 for d in a.shape), np.int64)
    s[1:, 1:, 1:] = a.cumsum(0).cumsum(1).cumsum(2)
    return s


def _sat_sum(s, c0, c1, y0, y1, x0, x1):
    return (s[c1, y1, x1] - s[c0, y1, x1] - s[c1, y0, x1] - s[c1, y1, x0]
            + s[c0, y0, x1] + s[c0, y1, x0] + s[c1, y0, x0] - s[c0, y0, x0])


# ------------------------------------------------------------------ errors
def _too_big(layer: str, resource: str, value: int, limit: int, what: str, fix: str):
    unit = " bits" if resource == "synapse_bits" else ""
    return ResourceLimitError(
        f"{layer}: {_WHAT[resource]} ({int(value):,}{unit}) for {what} exceeds the per-core "
        f"limit ({int(limit):,}{unit}); {fix}")


_FIX = {"neurons": "the target allows no neurons per core",
        "input_axons": "reduce fan-in",
        "output_axons": "reduce fan-out (fewer or larger blocks in the next layers)",
        "synapse_bits": "reduce fan-in or the weight bits"}


# ------------------------------------------------------------------ dense-fed layers
def _split_dense(name: str, syn: _DenseSyn, out_ax: np.ndarray, lim: Limits,
                 max_syn: int | None = None):
    n = syn.n_out
    lims = np.array([lim.limit(r) for r in RESOURCES], np.int64)
    out_cum = np.concatenate([[0], np.cumsum(out_ax, dtype=np.int64)])
    state = lim.neuron_state_bits
    for r, v in zip(RESOURCES, syn.single(out_ax, lim).tolist()):
        if v > lim.limit(r):
            raise _too_big(name, r, v, lim.limit(r), "one neuron", _FIX[r])

    def cost(a, b):
        return np.array([b - a, syn.fanin(a, b), out_cum[b] - out_cum[a],
                         syn.bits(a, b) + state * (b - a)], np.int64)

    if max_syn is not None:  # latency objective: at most this many synapses per block
        max_syn = max(int(max_syn), int(syn.row_nnz.max()) if n else 0)

    def fits(a, b):
        if max_syn is not None and syn.syn_cum[b] - syn.syn_cum[a] > max_syn:
            return False
        return bool(np.all(cost(a, b) <= lims))

    if syn.nz is None:   # all-to-all: every resource but output axons is a function of b - a
        return _split_all_to_all(syn, out_cum, lims, lim, max_syn)
    table = axon_bits(np.arange(min(n, lim.neurons) + 1), syn.bpw, lim)   # [0] = 0
    # the usage of each block as the search found it (None: to be counted)
    search = _longest_first_compiled if map_kernel(n * syn.n_in) else _longest_first
    cuts, found = search(syn, lim, lims, out_cum, state, max_syn, table, fits)
    syn._prefix = None
    k = len(cuts) - 1
    usages = None
    if k > 1:  # even out the block sizes when that still fits
        even = [int(round(i * n / k)) for i in range(k + 1)]
        if max_syn is None or bool(np.all(np.diff(syn.syn_cum[even]) <= max_syn)):
            use = _block_usage(syn, even, out_cum, state, table, lims)
            if use is False:
                pass                                   # a block does not fit
            elif use is not None:
                cuts, usages = even, list(use)
            elif all(fits(even[i], even[i + 1]) for i in range(k)):
                cuts = even
    ranges = [(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1)]
    if usages is None:
        usages = [u if u is not None else cost(a, b) for u, (a, b) in zip(found, ranges)] \
            if len(found) == len(ranges) else [cost(a, b) for a, b in ranges]
    synapses = [int(syn.syn_cum[b] - syn.syn_cum[a]) if syn.n_in else 0 for a, b in ranges]
    owner = np.repeat(np.arange(len(ranges), dtype=np.int32), [b - a for a, b in ranges])
    return ranges, usages, synapses, owner


def _longest_first(syn: _DenseSyn, lim: Limits, lims, out_cum, state: int, max_syn,
                   table, fits):
    """(cuts, usages) of `_split_dense`'s search in numpy: from each start the largest end
    that fits (`_last_fit` on every end at once, or a bisection with `fits` when the block
    would be too large to count that way); a usage is None where it was not counted."""
    n = syn.n_out
    cuts, found = [0], []
    a = 0
    while a < n:
        hi = min(n, a + lim.neurons,
                 int(np.searchsorted(out_cum, out_cum[a] + lim.output_axons, "right")) - 1)
        hi = max(_end_bound(syn, a, hi, lim, max_syn), a + 1)
        if (hi - a) * syn.n_in <= _LAST_FIT_ELEMENTS:
            b, use = _last_fit(syn, a, hi, lims, out_cum, state, max_syn, table)
            cuts.append(b)
            found.append(use)
            a = b
            continue
        syn.prefix(a, hi)
        if fits(a, hi):
            b = hi
        else:  # largest feasible end in (a, hi)
            lo = a + 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(a, mid):
                    lo = mid
                else:
                    hi = mid
            b = lo
        cuts.append(b)
        found.append(None)
        a = b
    return cuts, found


def _longest_first_compiled(syn: _DenseSyn, lim: Limits, lims, out_cum, state: int,
                            max_syn, table, fits):
    """`_longest_first` as one compiled pass over the connectivity (mapping/kernels.py):
    the same cuts, every usage counted."""
    from snncompile.mapping.kernels import greedy_cuts
    syn_cap = lim.synapse_bits // max(syn.bpw, 1) if syn.n_in else -1
    cuts, use = greedy_cuts(syn.nz.view(np.uint8), lims, out_cum,
                            np.asarray(table, np.int64), syn.syn_cum,
                            -1 if max_syn is None else int(max_syn), int(syn_cap),
                            int(syn.bias_axon), int(state))
    return cuts.tolist(), list(use)


def _block_usage(syn: _DenseSyn, cuts, out_cum: np.ndarray, state: int,
                 table: np.ndarray, lims: np.ndarray):
    """`cost(a, b)` of every block between consecutive `cuts` (increasing, from 0 to the
    last row) as rows of one array, or False as soon as one exceeds `lims` (the rest is
    then not counted): the per-input synapse counts of a batch of blocks (about 2**22
    mask elements) by one `np.add.reduceat`. None when a block is empty (`reduceat`
    would not count it as empty)."""
    cuts = np.asarray(cuts, np.int64)
    starts, stops = cuts[:-1], cuts[1:]
    k = stops - starts
    if k.size and k.min() < 1:
        return None
    if k.size and k.max() >= len(table):
        table = axon_bits(np.arange(int(k.max()) + 1), syn.bpw, syn.lim)
    use = np.empty((len(k), 4), np.int64)
    use[:, 0] = k
    use[:, 2] = out_cum[stops] - out_cum[starts]
    if np.any(use[:, 0] > lims[0]) or np.any(use[:, 2] > lims[2]):
        return False
    rows = syn.nz.view(np.uint8)
    per = max(1, (1 << 22) // max(syn.n_in * int(k.mean()) if k.size else 1, 1))
    for i in range(0, len(k), per):
        j = min(i + per, len(k))
        counts = np.add.reduceat(rows[starts[i]:stops[j - 1]], starts[i:j] - starts[i],
                                 axis=0, dtype=np.int32)
        use[i:j, 1] = np.count_nonzero(counts, axis=1) + syn.bias_axon
        use[i:j, 3] = (table[counts].sum(1) + syn.bias_axon * table[k[i:j]]
                       + state * k[i:j])
        if np.any(use[i:j] > lims):
            return False
    return use


MAP_KERNEL_ELEMENTS = 1 << 22
"""Dense layers with zeros of at least this many weights (outputs x inputs) are cut by the
compiled search (mapping/kernels.py, numba) instead of numpy: below it, numba's first
compile in a fresh checkout (about a second) would cost more than it saves.
SNNCOMPILE_MAP_KERNEL=numpy keeps numpy for every layer, =numba uses the kernel for every
layer (the tests compare the two)."""


def map_kernel(elements: int) -> bool:
    """Whether a dense layer of `elements` weights is cut by the compiled search."""
    choice = os.environ.get("SNNCOMPILE_MAP_KERNEL", "")
    if choice not in ("", "numpy", "numba"):
        raise UnsupportedError(f"SNNCOMPILE_MAP_KERNEL={choice!r}: choose numpy or numba")
    return choice == "numba" or (choice == "" and elements >= MAP_KERNEL_ELEMENTS)


_LAST_FIT_ELEMENTS = 1 << 26   # rows x inputs one `_last_fit` reads at most (as uint8)
_FIT_ROWS = 32                 # its coarse step


def _last_fit(syn: _DenseSyn, a: int, hi: int, lims: np.ndarray, out_cum: np.ndarray,
              state: int, max_syn: int | None, table: np.ndarray):
    """(end, usage) of the block starting at row `a` as `_split_dense`'s search finds it:
    the largest b in (a, hi] whose block fits (a + 1 when none does), from every end at
    once, and its `cost(a, b)` (None for a + 1 when nothing fits).

    Every resource grows with b, so the ends that fit are a run from a + 1: they are
    counted on the ends every `_FIT_ROWS` rows (the per-input synapse counts of whole
    32-row chunks, summed), then on each end inside the first chunk that fails. The
    integers are those of `cost` (synapse bits by `axon_bits`, looked up in `table`)."""
    rows = syn.nz[a:hi].view(np.uint8)
    m, g = hi - a, _FIT_ROWS

    def fitting(ends: np.ndarray, counts: np.ndarray):   # how many lead ends fit, usages
        k = ends - a
        use = np.stack([k, np.count_nonzero(counts, axis=1) + syn.bias_axon,
                        out_cum[ends] - out_cum[a],
                        table[counts].sum(1) + syn.bias_axon * table[k] + state * k],
                       1).astype(np.int64)
        ok = np.all(use <= lims, axis=1)
        if max_syn is not None:
            ok &= syn.syn_cum[ends] - syn.syn_cum[a] <= max_syn
        return (int(np.argmin(ok)) if not ok.all() else len(ok)), use

    q = m // g
    coarse = np.cumsum(rows[:q * g].reshape(q, g, syn.n_in).sum(1, dtype=np.int32), axis=0,
                       dtype=np.int32)
    f, use_c = fitting(a + g * np.arange(1, q + 1), coarse)
    base = coarse[f - 1] if f else np.zeros(syn.n_in, np.int32)
    fine = base + np.cumsum(rows[g * f:min(g * f + g, m)], axis=0, dtype=np.int32)
    r, use_f = fitting(a + g * f + np.arange(1, len(fine) + 1), fine)
    if r:
        return a + g * f + r, use_f[r - 1]
    if f:
        return a + g * f, use_c[f - 1]
    return a + 1, None


def _split_all_to_all(syn: _DenseSyn, out_cum: np.ndarray, lims: np.ndarray, lim: Limits,
                      max_syn: int | None):
    """`_split_dense` for a layer whose every neuron reads all `n_in` inputs, in closed
    form: the same blocks, usages and synapse counts as its search, without probing.

    There a block (a, b) fits when its size k = b - a fits (neurons, fan-in, synapse bits
    and the work cap depend on k only) and its output axons out_cum[b] - out_cum[a] do.
    The search's first end `hi` already meets the output axons and the neuron limit, so
    the end it finds is a + max(1, min(hi - a, kfit)) with kfit the largest size that
    fits; the evening-out and the usages are the same formulas over all blocks at once."""
    n, n_in = syn.n_out, syn.n_in
    state = lim.neuron_state_bits
    k = np.arange(1, max(min(n, lim.neurons), 1) + 1, dtype=np.int64)

    def usage(k):   # cost(a, a + k) without the output axons (column 2 left 0)
        ax = axon_bits(k, syn.bpw, lim)
        return np.stack([k, np.full(k.shape, syn.fanin(0, 0), np.int64), np.zeros_like(k),
                         n_in * ax + syn.bias_axon * ax + state * k], 1).astype(np.int64)

    ok = np.all(usage(k) <= lims, axis=1)
    if max_syn is not None:
        ok &= syn.syn_cum[k] - syn.syn_cum[0] <= max_syn
    bad = np.flatnonzero(~ok)     # every resource grows with k: ok is a prefix
    kfit = int(bad[0]) if bad.size else int(k[-1])
    cuts = [0]
    a = 0
    while a < n:
        hi = min(n, a + lim.neurons,
                 int(np.searchsorted(out_cum, out_cum[a] + lim.output_axons, "right")) - 1)
        hi = max(_end_bound(syn, a, hi, lim, max_syn), a + 1)
        b = a + max(1, min(hi - a, kfit))
        cuts.append(b)
        a = b
    nb = len(cuts) - 1
    if nb > 1:  # even out the block sizes when that still fits
        even = np.array([int(round(i * n / nb)) for i in range(nb + 1)], np.int64)
        size = np.diff(even)
        if np.all(size <= kfit) and np.all(out_cum[even[1:]] - out_cum[even[:-1]]
                                           <= lim.output_axons):
            cuts = even.tolist()
    cuts = np.asarray(cuts, np.int64)
    starts, stops = cuts[:-1], cuts[1:]
    use = usage(stops - starts)
    use[:, 2] = out_cum[stops] - out_cum[starts]
    ranges = list(zip(starts.tolist(), stops.tolist()))
    synapses = ((syn.syn_cum[stops] - syn.syn_cum[starts]).tolist() if n_in
                else [0] * len(ranges))
    owner = np.repeat(np.arange(len(ranges), dtype=np.int32), stops - starts)
    return ranges, list(use), synapses, owner


def _end_bound(syn: _DenseSyn, a: int, hi: int, lim: Limits, max_syn: int | None) -> int:
    """No block starting at row `a` that fits ends after this: its synapses stay under the
    work cap and, at `bpw` bits or more each, under the core's synapse memory. (Every
    resource grows with the block's end, so the packer's search over ends is unchanged;
    it only probes, and keeps running counts for, fewer rows.)"""
    cap = lim.synapse_bits // max(syn.bpw, 1) if syn.n_in else None
    if max_syn is not None:
        cap = max_syn if cap is None else min(cap, max_syn)
    if cap is None:
        return hi
    end = int(np.searchsorted(syn.syn_cum, syn.syn_cum[a] + cap, "right")) - 1
    return min(hi, end)


# ------------------------------------------------------------------ conv-fed layers
def _edges(n: int, step: int) -> np.ndarray:
    return np.append(np.arange(0, n, step), n)


def _tile_grid(cs: _ConvSyn, cc: int, rh: int, cw: int):
    ce, ye, xe = _edges(cs.c, cc), _edges(cs.h, rh), _edges(cs.w, cw)
    c0, y0, x0 = np.meshgrid(ce[:-1], ye[:-1], xe[:-1], indexing="ij")
    c1, y1, x1 = np.meshgrid(ce[1:], ye[1:], xe[1:], indexing="ij")
    return [a.ravel() for a in (c0, c1, y0, y1, x0, x1)]


def _split_conv(name: str, cs: _ConvSyn, out_ax: np.ndarray, lim: Limits,
                max_syn: int | None = None):
    lims = np.array([lim.limit(r) for r in RESOURCES], np.int64)
    sat = _sat(out_ax.reshape(cs.c, cs.h, cs.w))
    # a single neuron at the worst position must fit, else no tiling can
    single = cs.single(out_ax, lim, sat)
    for i, r in enumerate(RESOURCES):
        if single[i] > lims[i]:
            raise _too_big(name, r, single[i], lims[i], "one neuron", _FIX[r])
    if max_syn is not None:  # a single neuron always meets the work cap
        max_syn = max(int(max_syn), cs.taps)
    # candidate tile sizes: channels x rows at full width; channels x few rows x columns
    cc, rh = np.meshgrid(np.arange(1, cs.c + 1), np.arange(1, cs.h + 1), indexing="ij")
    cand = [(cc.ravel(), rh.ravel(), np.full(cc.size, cs.w))]
    if cs.w > 1:
        cc, rh, cw = np.meshgrid(np.arange(1, cs.c + 1), np.arange(1, min(cs.h, 8) + 1),
                                 np.arange(1, cs.w), indexing="ij")
        cand.append((cc.ravel(), rh.ravel(), cw.ravel()))
    cc, rh, cw = (np.concatenate(x) for x in zip(*cand))
    neurons = np.minimum(cc, cs.c) * np.minimum(rh, cs.h) * np.minimum(cw, cs.w)
    keep = neurons <= lim.neurons
    cc, rh, cw = cc[keep], rh[keep], cw[keep]
    blocks = -(-cs.c // cc) * -(-cs.h // rh) * -(-cs.w // cw)
    # necessary condition, vectorised: the tile at the origin and the second tile along
    # rows and columns (an interior tile, free of padding effects, where one exists) fit
    ok = np.ones(cc.size, bool)
    fanin = np.zeros(cc.size, np.int64)
    for ky in (0, 1):
        for kx in (0, 1):
            y0 = np.minimum(ky * rh, np.maximum(cs.h - rh, 0))
            x0 = np.minimum(kx * cw, np.maximum(cs.w - cw, 0))
            z = np.zeros_like(cc)
            use = np.stack(cs.costs(z, np.minimum(cc, cs.c), y0, np.minimum(y0 + rh, cs.h),
                                    x0, np.minimum(x0 + cw, cs.w), sat))
            ok &= np.all(use <= lims[:, None], axis=0)
            fanin = np.maximum(fanin, use[1])
            if max_syn is not None:
                ok &= cs.synapses(z, np.minimum(cc, cs.c), y0, np.minimum(y0 + rh, cs.h),
                                  x0, np.minimum(x0 + cw, cs.w)) <= max_syn
    # fewest blocks; then the smallest fan-in per tile (= fewest input axons and messages in
    # total); then most channels per tile
    order = np.lexsort((-cw, -rh, -cc, fanin, blocks))
    for i in order[ok[order]]:
        tiles = _tile_grid(cs, int(cc[i]), int(rh[i]), int(cw[i]))
        use = np.stack(cs.costs(*tiles, sat))
        if np.all(use <= lims[:, None]) and (
                max_syn is None or np.all(cs.synapses(*tiles) <= max_syn)):
            break
    else:  # pragma: no cover - single-neuron tiles always fit after the check above
        raise ResourceLimitError(f"{name}: no tiling fits the per-core limits")
    c0, c1, y0, y1, x0, x1 = tiles
    syn = cs.synapses(c0, c1, y0, y1, x0, x1)
    ny, nx = -(-cs.h // int(rh[i])), -(-cs.w // int(cw[i]))
    ic = np.arange(cs.c) // int(cc[i])
    iy = np.arange(cs.h) // int(rh[i])
    ix = np.arange(cs.w) // int(cw[i])
    owner = (ic[:, None, None] * (ny * nx) + iy[None, :, None] * nx
             + ix[None, None, :]).astype(np.int32)
    tile_list = list(zip(*(t.tolist() for t in tiles)))
    return tile_list, list(use.T), [int(s) for s in syn], owner


# ------------------------------------------------------------------ fan-out bookkeeping
def _dest_counts(src_shape, consumers, layer_blocks: dict, infos: dict) -> np.ndarray:
    """Per source neuron: number of destination blocks it reaches (its output axons)."""
    total = np.zeros(int(np.prod(src_shape)), np.int64)
    for _, dst, part in consumers:
        total += infos[dst].dest_counts(layer_blocks[dst], part)
    return total


def _traffic(src: LayerBlocks, dst: LayerBlocks, info, blocks: list[Block],
             part: int = 0) -> list:
    """Edges (src_block, dst_block, n_source_neurons) of one projection (`part`: which of
    `dst`'s synapses)."""
    src_ids = np.array(src.blocks)
    out = []
    for gid in dst.blocks:
        cnt = info.sources(blocks[gid], src.owner, len(src.blocks), part)
        if cnt is None:
            continue
        nzi = np.nonzero(cnt)[0]
        out.extend(zip(src_ids[nzi].tolist(), [gid] * len(nzi), cnt[nzi].tolist()))
    return out


# ------------------------------------------------------------------ packing onto cores
def _pack(blocks: list[Block], lims: np.ndarray, work_cap: float | None = None,
          max_cores: int | None = None) -> tuple[list[list[int]], np.ndarray] | None:
    """Pack blocks onto cores: best-fit decreasing vector bin packing over every per-core
    resource (adding the blocks' resources: conservative, two blocks that read one source
    are charged two input axons). Blocks are taken largest first (by their largest share of
    any limit) and each goes to the fullest core it still fits in, so blocks heavy in
    different resources (a fan-out-heavy conv tile and a fan-in-heavy dense block) share a
    core. `work_cap` (latency objective) also caps each core's synaptic ops per step.
    None when the blocks take more than `max_cores` cores."""
    use = np.array([[b.usage[r] for r in RESOURCES] for b in blocks], np.int64).reshape(
        len(blocks), len(RESOURCES))
    work = np.array([b.work for b in blocks], float)
    frac = (use / lims).max(1) if len(blocks) else np.zeros(0)
    order = np.lexsort((np.arange(len(blocks)), -frac))
    bins = np.zeros((len(blocks), len(RESOURCES)), np.int64)
    bins_work = np.zeros(len(blocks), float)
    members: list[list[int]] = []
    cap = np.inf if work_cap is None else float(work_cap)
    for i in order.tolist():
        n = len(members)
        ok = np.all(bins[:n] + use[i] <= lims, axis=1)
        if work_cap is not None:
            ok &= bins_work[:n] + work[i] <= cap * (1 + 1e-9)
        fit = np.nonzero(ok)[0]
        if len(fit):
            fullness = ((bins[fit] + use[i]) / lims).sum(1)
            j = int(fit[np.argmax(fullness)])
        else:
            if max_cores is not None and n >= max_cores:
                return None   # more cores than the caller can use
            j = n
            members.append([])
        members[j].append(i)
        bins[j] += use[i]
        bins_work[j] += work[i]
    # keep cores in network order (first block's index) so placement sees layers in order
    k = len(members)
    order_c = sorted(range(k), key=lambda c: min(members[c]))
    cores = [sorted(members[c]) for c in order_c]
    return cores, bins[order_c].reshape(-1, len(RESOURCES))


# ------------------------------------------------------------------ attention traffic
GAIN_BITS = 8  # FxCoprocOut gains are unsigned 8-bit


def _gain_ids(layer: _Layer, shape) -> list[np.ndarray]:
    """Per gate: the gain element (flat index) that scales each neuron of the layer; a
    gain smaller than the layer along an axis covers equal runs of it (broadcast when 1,
    nearest-neighbour upsampling otherwise, trailing axes aligned)."""
    out = []
    for g in layer.gains:
        g = (1,) * (len(shape) - len(g)) + tuple(g)
        idx = np.zeros(shape, np.int64)
        for d, (gd, sd) in enumerate(zip(g, shape)):
            ax = np.minimum(np.arange(sd) * gd // max(sd, 1), gd - 1)
            idx = idx * gd + ax.reshape([-1 if i == d else 1 for i in range(len(shape))])
        out.append(idx.ravel())
    return out


def _gain_reserve(lim: Limits, layer: _Layer) -> Limits:
    """Limits for splitting a gated layer, with room kept for the gain axons: every gain
    element may need an input axon on a block, and its synapses cost at most
    GAIN_BITS + (header + word) / group per neuron plus one header and word per axon."""
    if not layer.gains:
        return lim
    import dataclasses
    n_gain = sum(int(np.prod(g)) for g in layer.gains)
    per_neuron = len(layer.gains) * -(-(GAIN_BITS * lim.synapse_group_size
                                        + lim.synapse_group_header_bits + lim.synapse_word_bits)
                                      // lim.synapse_group_size)
    head = n_gain * (lim.synapse_group_header_bits + lim.synapse_word_bits)
    if n_gain >= lim.input_axons or head >= lim.synapse_bits:
        raise ResourceLimitError(
            f"{layer.name}: attention gains ({n_gain:,} elements) leave no input axons or "
            f"synapse memory on a core (limits {lim.input_axons:,} axons, "
            f"{lim.synapse_bits:,} bits); use coarser gains")
    return dataclasses.replace(lim, input_axons=lim.input_axons - n_gain,
                               synapse_bits=lim.synapse_bits - head,
                               neuron_state_bits=lim.neuron_state_bits + per_neuron)


def param_state_bits(node, spec: TargetSpec) -> int:
    """Bits per neuron that a neuron layer's per-neuron du, dv or vth (PLIF) add to its
    state, on targets whose neuron state shares the synapse memory (Loihi 2: a microcoded
    neuron keeps them per neuron): decay_bits for du and dv, vth_mant_bits for vth, each
    only where it differs between neurons. 0 otherwise."""
    if not isinstance(node, FxLIF) or not spec.limits.neuron_state_bits:
        return 0
    num = spec.numerics
    width = {"du": num.decay_bits, "dv": num.decay_bits, "vth": num.vth_mant_bits}
    return sum(int(w) for f, w in width.items()
               if isinstance(getattr(node, f), np.ndarray)
               and np.unique(getattr(node, f)).size > 1)


def _param_reserve(lim: Limits, node, spec: TargetSpec) -> Limits:
    """Limits for splitting a layer whose neurons keep their own du/dv/vth: each neuron's
    state costs `param_state_bits` more of the shared memory."""
    extra = param_state_bits(node, spec)
    if not extra:
        return lim
    import dataclasses
    return dataclasses.replace(lim, neuron_state_bits=lim.neuron_state_bits + extra)


def _charge_gains(layer: _Layer, blocks: list[Block], owner: np.ndarray, lim: Limits):
    """Exact gain cost of a gated layer's blocks (split with `_gain_reserve`'s room): an
    input axon per gain element reaching the block, GAIN_BITS synapses onto the neurons it
    scales; the reserve's per-neuron bits are taken back off."""
    if not layer.gains:
        return
    reserve = _gain_reserve(lim, layer)
    own = owner.ravel().astype(np.int64)
    extra = reserve.neuron_state_bits - lim.neuron_state_bits
    for blk in blocks:
        blk.usage["synapse_bits"] -= extra * blk.n_neurons
    blk_axons = np.zeros(len(blocks), np.int64)
    for ids in _gain_ids(layer, layer.shape):
        n_ids = int(ids.max()) + 1
        pairs, counts = np.unique(own * n_ids + ids, return_counts=True)
        b = pairs // n_ids
        bits = axon_bits(counts, GAIN_BITS, lim)
        np.add.at(blk_axons, b, 1)
        add = np.bincount(b, weights=bits, minlength=len(blocks)).astype(np.int64)
        for i, blk in enumerate(blocks):
            blk.usage["synapse_bits"] += int(add[i])
    for i, blk in enumerate(blocks):
        blk.usage["input_axons"] += int(blk_axons[i])
        blk.gain_axons = int(blk_axons[i])


def _attention_io(layers, layers_split, blocks, spec: TargetSpec) -> dict:
    """How the attention traffic travels, per step and sample: the synaptic current of a
    gated layer cannot leave a neurocore as a current, so relay neurons (one per element,
    with a copy of the layer's synapses, on neurocores: charged neurons, axons, synapse
    memory and cores like any layer) send it as one graded spike each (the target's
    graded_bits) to the co-processor; each gain element comes back as one graded message
    (GAIN_BITS) to every core block holding neurons it scales (an input axon there)."""
    relays = {n: layers_split[n].neurons for n, l in layers.items() if l.relay_of}
    gains = sum(getattr(b, "gain_axons", 0) for b in blocks)
    if not relays and not gains:
        return {}
    bits = int(spec.numerics.graded_bits)
    return {"relay_layers": relays,
            "relay_messages_per_step": int(sum(relays.values())), "relay_bits": bits,
            "gain_messages_per_step": int(gains), "gain_bits": GAIN_BITS,
            "bytes_per_step": int((sum(relays.values()) * bits + gains * GAIN_BITS + 7) // 8)}


# ------------------------------------------------------------------ entry point
def split_graph(graph: Graph, spec: TargetSpec, rates: dict[str, float] | None = None,
                work_cap: float | None = None, spread: bool = True) -> Split:
    """Split every neuron layer of a fixed-stage `graph` into blocks that fit one core of
    `spec` and pack the blocks onto cores. Raises `ResourceLimitError` naming layer,
    resource, need and limit when a single neuron cannot fit.

    `rates` (spikes per neuron per step of each layer and of the input; default 1) give
    each block's work: its synapses x its source's rate, synaptic ops per step.
    `work_cap` (the latency objective) bounds every block's and every core's work; a single
    neuron whose own work exceeds it is still placed (its block then is the busiest).
    Without a work cap, when the packing is above the lower bound, the layers are also
    re-split within shares of a core (`_share_candidates`) and the packing with the fewest
    cores is kept; `spread=False` keeps the first split (every block as large as a core
    allows).

        >>> split = split_graph(graph, load_target("loihi1"))  # doctest: +SKIP
    """
    if spec.limits is None:
        raise UnsupportedError(f"target '{spec.name}' has no [limits] section; mapping needs "
                               "per-core limits")
    lim = spec.limits
    lims = np.array([lim.limit(r) for r in RESOURCES], np.int64)
    layers, inp = _layers(graph)
    names = _network_order(graph, layers)
    best = _split_pack(graph, spec, layers, names, inp, rates, work_cap, None, lims)
    infos, _, all_blocks, layers_split, local, cores, core_use = best
    bound = _lower_bound(layers, infos, layers_split, local, inp, spec)
    if work_cap is None and spread:
        for share in _share_candidates(all_blocks, lims, len(cores), bound["cores"],
                                       bound.get("exclusive_layers", ())):
            trial = _split_pack(graph, spec, layers, names, inp, rates, None, share, lims,
                                max_cores=len(best[5]) - 1)
            if trial is not None:
                best = trial
        infos, _, all_blocks, layers_split, local, cores, core_use = best
    edges = []
    for name in names:
        for _, dst, part in layers[name].consumers:
            edges.extend(_traffic(layers_split[name], layers_split[dst], infos[dst],
                                  all_blocks, part))
        if layers[name].rec is not None:     # its spikes to itself (its own core)
            edges.extend(_traffic(layers_split[name], layers_split[name],
                                  infos[name].recurrent(), all_blocks))
    return Split(
        target=spec.name, blocks=all_blocks, cores=cores, core_usage=core_use,
        limits={r: lim.limit(r) for r in RESOURCES}, lower_bound=bound,
        layers=layers_split, edges=np.array(edges, np.int64).reshape(-1, 3), input_name=inp,
        work_cap=work_cap, coproc_io=_attention_io(layers, layers_split, all_blocks, spec))


def _split_pack(graph, spec, layers, names, inp, rates, work_cap, share, lims,
                max_cores: int | None = None):
    """Split every layer (each within `share` of a core, see `_share_candidates`) and pack
    the blocks: (infos, layer blocks, blocks, layers_split, local, cores, core usage), or
    None when the packing needs more than `max_cores`."""
    infos, layer_blocks, local = _split_layers(graph, spec, layers, names, inp, rates,
                                               work_cap, share)
    all_blocks, layers_split = _number_blocks(layers, names, inp, infos, layer_blocks, local)
    packed = _pack(all_blocks, lims, work_cap, max_cores)
    if packed is None:
        return None
    cores, core_use = packed
    return infos, layer_blocks, all_blocks, layers_split, local, cores, core_use


#: most neurons x candidate splits the cores objective tries beyond the first split
SHARE_BUDGET = 4_000_000
#: spreads tried: every layer within (its cores' worth / K) x (1 + slack) of a core
SHARE_SLACK = (0.0, 0.15)


def _share_candidates(blocks, lims, n_cores: int, bound: int, exclusive=()):
    """Shares of a core per layer to re-split with, when the first packing is above the
    bound and the network has two layers or more. A layer that needs R cores' worth of its
    most used resource (summed over its blocks) is cut into blocks of at most
    R / K x (1 + slack) of every limit (never below one neuron's worth), for core counts K
    between the bound and the packing: every core then has room for a piece of every
    layer (a fan-in-heavy conv tile beside a neuron-heavy one, two dense layers' blocks
    side by side). A second family keeps the layers that hold cores of their own
    (`exclusive`: their fan-in fills the input axons) whole and spreads the rest over the
    cores left, from their summed need up. The two families alternate, first the
    smallest K; at most SHARE_BUDGET / neurons candidates (none for a large network)."""
    if n_cores <= bound or not blocks:
        return []
    neurons = sum(b.n_neurons for b in blocks)
    need: dict[str, np.ndarray] = {}
    for b in blocks:
        u = np.array([b.usage[r] for r in RESOURCES], float) / lims
        need[b.layer] = need.get(b.layer, 0) + u
    if len(need) < 2:
        return []
    excl = set(exclusive)
    shared = {k: v for k, v in need.items() if k not in excl}
    families = [({k: float(v.max()) for k, v in need.items()}, bound, n_cores)]
    if shared:
        k0 = float(np.max(sum(shared.values())))
        k1 = n_cores - sum(math.ceil(float(v.max())) for k, v in need.items() if k in excl)
        families.append(({k: float(v.max()) for k, v in shared.items()}, k0, max(k0, k1)))
    lists = []
    for worth, k0, k1 in families:
        ks = [k0 * (k1 / k0) ** (i / 4) for i in range(5)] if k0 > 0 else []
        lists.append([{n: min(1.0, w * (1 + slack) / k) for n, w in worth.items()}
                      | {"*cores": k} for k in ks for slack in SHARE_SLACK])
    out, seen = [], set()
    for i in range(max(map(len, lists))):
        for cands in lists:
            if i < len(cands):
                key = tuple(sorted((n, round(v, 4)) for n, v in cands[i].items()))
                if key not in seen:
                    seen.add(key)
                    out.append(cands[i])
    return out[:max(0, SHARE_BUDGET // max(neurons, 1))]


def _network_order(graph: Graph, layers: dict[str, _Layer]) -> list[str]:
    """Layer names in graph order, each relay layer right after the layer it relays."""
    names = []
    for n in graph.order():
        if n in layers:
            names.append(n)
            if f"{n}.relay" in layers and layers[f"{n}.relay"].relay_of == n:
                names.append(f"{n}.relay")
    return names


def _split_layers(graph, spec: TargetSpec, layers, names, inp, rates, work_cap,
                  share: dict[str, float] | None = None):
    """Every layer's blocks, consumers first (a neuron's output axons depend on how many
    blocks of the next layers it reaches). Returns, per layer: its connectivity (`infos`),
    its blocks, and (output axons per neuron, block of every neuron) in `local` (the input:
    output axons only)."""
    infos: dict = {}
    layer_blocks: dict[str, list[Block]] = {}
    local: dict[str, tuple] = {}
    for name in reversed(names):
        layer = layers[name]
        out_ax = _dest_counts(layer.shape, layer.consumers, layer_blocks, infos)
        if layer.relay_of:  # one output axon per relay neuron: to the co-processor
            out_ax = out_ax + 1
        if name == inp:
            local[name] = (out_ax,)
            continue
        node = graph.node(name) if name in graph else None
        lim = _param_reserve(_gain_reserve(spec.limits, layer), node, spec)
        src_rates = [float(rates.get(src, 1.0)) if rates else 1.0 for src in layer.sources]
        if layer.rec is not None:   # its recurrent synapses carry its own spikes
            src_rates.append(float(rates.get(name, 1.0)) if rates else 1.0)
        rate = max(src_rates, default=1.0)   # the work cap holds at the busiest source's
        max_syn = (None if work_cap is None else
                   int(work_cap / rate) if rate > 0 else None)
        info = _connectivity(graph, layer, spec, lim)
        if layer.rec is not None:   # one axon to its own core per neuron the synapses read;
            out_ax = out_ax + info.rec_sources    # kept on one core (no latency cut)
            max_syn = None
        syn_name = layer.syn.name if layer.syn is not None else None
        f = share.get(name, 1.0) if share and layer.rec is None else 1.0
        blocks = None
        if f < 1.0:   # within a share of a core (and at least one neuron's worth)
            try:
                part = _param_reserve(_gain_reserve(_scaled(spec.limits, f), layer), node,
                                      spec)
                one = info.single(out_ax, lim)
                raised = any(int(v) > part.limit(r) for r, v in zip(RESOURCES, one.tolist()))
                import dataclasses
                part = dataclasses.replace(part, **{
                    r: min(lim.limit(r), max(part.limit(r), int(v)))
                    for r, v in zip(RESOURCES, one.tolist())})
                blocks, owner = info.split(name, syn_name, out_ax, part, max_syn)
                if raised and len(blocks) > share["*cores"]:
                    blocks = None   # a share below one neuron's worth, in more pieces
            except ResourceLimitError:
                blocks = None
        if blocks is None:
            blocks, owner = info.split(name, syn_name, out_ax, lim, max_syn)
        if layer.rec is not None and len(blocks) > 1:
            raise UnsupportedError(f"{name}: a recurrent layer needs {len(blocks)} cores; a "
                                   "recurrent layer split across cores (its spikes sent to "
                                   "every block of itself) is not mapped yet, at most one "
                                   "core's worth of neurons and synapses")
        _charge_gains(layer, blocks, owner, spec.limits)
        for blk in blocks:
            blk.work = float(sum(n * r for n, r in zip(info.block_synapses(blk),
                                                       src_rates)))
        infos[name] = info
        layer_blocks[name] = blocks
        local[name] = (out_ax, owner.reshape(layer.shape) if owner.ndim > 1 else owner)
    return infos, layer_blocks, local


def _scaled(lim: Limits, f: float) -> Limits:
    """`lim` with every per-core capacity cut to the share `f` (encoding unchanged)."""
    import dataclasses
    return dataclasses.replace(lim, **{r: max(1, int(lim.limit(r) * f)) for r in RESOURCES})


def _connectivity(graph: Graph, layer: _Layer, spec: TargetSpec, lim: Limits):
    """The connectivity of the synapses feeding `layer`, by the synapse type's rule (a
    layer without synapses: a dense layer with no inputs)."""
    n = int(np.prod(layer.shape))
    if not layer.syns:
        return _DenseSyn(None, n, lim)
    nodes = [node for node, _ in layer.syns]
    parts = [SPLIT.rule(node).connectivity(node, graph, layer.shape, spec, lim)
             for node in nodes]
    if len(parts) == 1 and layer.rec is None:
        return parts[0]
    if all(isinstance(p, _DenseSyn) for p in parts):
        return _StackedSyn(nodes, layer.rec, n, lim)
    if layer.rec is not None:
        raise UnsupportedError(f"{layer.name}: a recurrent layer must be fed by dense "
                               f"synapses, not {type(layer.syn).__name__}")
    if all(isinstance(p, _ConvSyn) for p in parts):
        return _ConvSum(layer.name, parts)
    raise UnsupportedError(f"{layer.name}: fed by {', '.join(type(n).__name__ for n in nodes)}"
                           "; a layer fed by dense and conv synapses together is not mapped")


def _number_blocks(layers, names, inp, infos, layer_blocks, local):
    """Number the blocks globally in network order; every layer's `LayerBlocks`."""
    all_blocks: list[Block] = []
    layers_split: dict[str, LayerBlocks] = {}
    for name in names:
        layer = layers[name]
        if name == inp:
            layers_split[name] = LayerBlocks(name, int(np.prod(layer.shape)), None, 0, [-1],
                                             np.zeros(layer.shape, np.int32))
            continue
        ids = []
        for b in layer_blocks[name]:
            b.index = len(all_blocks)
            ids.append(b.index)
            all_blocks.append(b)
        layers_split[name] = LayerBlocks(name, int(np.prod(layer.shape)),
                                         layer.syn.name if layer.syn else None,
                                         infos[name].total_synapses, ids, local[name][1],
                                         relay_of=layer.relay_of,
                                         synapse_nodes=[n.name for n, _ in layer.syns])
    return all_blocks, layers_split


def _kmax_full(n_in: int, bpw: int, lim: Limits) -> tuple[int, float]:
    """For a layer fed all-to-all by `n_in` inputs: the most neurons one core can hold
    (neurons, input axons and synapse memory as encoded, state included) and the smallest
    synapse bits per neuron over the block sizes that fit. (0, inf) if none fits."""
    if n_in > lim.input_axons:
        return 0, math.inf
    k = np.arange(1, lim.neurons + 1, dtype=np.int64)
    bits = n_in * axon_bits(k, bpw, lim) + lim.neuron_state_bits * k
    ok = bits <= lim.synapse_bits
    if not ok.any():
        return 0, math.inf
    kmax = int(k[ok].max())
    return kmax, float((bits[:kmax] / k[:kmax]).min())


def _subadditive(bpw: int, kmax: int, lim: Limits) -> bool:
    """axon_bits(a + b) <= axon_bits(a) + axon_bits(b) for a + b <= kmax: then one block of
    a + b neurons of all-to-all layers with equal fan-in is never dearer than two."""
    # axon_bits(q * S + r) = q * axon_bits(S) + axon_bits(r) for r < S (S: the group
    # size), so axon_bits(a) + axon_bits(b) - axon_bits(a + b) depends on the residues
    # ra, rb of a and b only, and residues ra, rb occur with a + b <= kmax exactly when
    # ra + rb <= kmax: checking a, b < S is the whole check (O(S^2), not O(kmax^2))
    k = np.arange(0, min(kmax, lim.synapse_group_size - 1) + 1, dtype=np.int64)
    a, b = np.meshgrid(k, k, indexing="ij")
    m = a + b <= kmax
    return bool(np.all(axon_bits((a + b)[m], bpw, lim)
                       <= axon_bits(a[m], bpw, lim) + axon_bits(b[m], bpw, lim)))


def _axis_reads(n_out: int, stride: int, pad: int, k: int, n_in: int):
    """Input index ranges [lo, hi) that each output index reads along one axis."""
    i = np.arange(n_out)
    return (np.maximum(0, i * stride - pad),
            np.maximum(np.minimum(n_in, i * stride - pad + k), np.maximum(0, i * stride - pad)))


def _nested_reads(lo: np.ndarray, hi: np.ndarray, t_max: int | None = None):
    """Along one axis: (d, u) where u[t] = inputs read by the first t outputs, d[x] = the
    inputs output x reads that output x - 1 does not, in the end-first order for which
    every run of t <= t_max outputs from the end reads the fewest inputs of any t outputs
    (exact dynamic programme over sets of outputs); None when neither end's runs are."""
    n = lo.size
    t_max = n if t_max is None else min(n, t_max)
    big = np.iinfo(np.int64).max // 4
    for lo_, hi_ in ((lo, hi), (-hi[::-1], -lo[::-1])):   # from the start, from the end
        d = np.r_[hi_[0] - lo_[0], np.maximum(0, hi_[1:] - np.maximum(lo_[1:], hi_[:-1]))]
        u = np.r_[0, np.cumsum(d)]
        length = (hi_ - lo_).astype(np.int64)
        # fewest inputs any t outputs ending at b read: sorted ranges add, each, what the
        # previous chosen one does not cover; one g or more before b covers none of it
        first_free = np.searchsorted(lo_, hi_, "left")   # first range starting past a's
        g = int(max(1, (first_free - np.arange(n)).max()))
        g = min(g, n)
        best = length.copy()
        ok = best.min() == u[1]
        for t in range(2, t_max + 1):
            if not ok:
                break
            nxt = np.full(n, big, np.int64)
            pm = np.minimum.accumulate(best)
            if g < n:   # a far enough back: the whole range of b is new
                nxt[g:] = pm[:n - g] + length[g:]
            for o in range(1, g):   # a = b - o: what a's range leaves of b's
                b = np.arange(o, n)
                add = np.maximum(0, hi_[b] - np.maximum(lo_[b], hi_[b - o]))
                nxt[o:] = np.minimum(nxt[o:], best[:n - o] + add)
            best = nxt
            ok = best.min() == u[t]
        if ok:
            return d, u
    return None


#: most (rows x columns x positions) the staircase programme of the halo bound evaluates
HALO_WORK = 120_000_000


def _conv_fanin_per_neuron(info: "_ConvSyn", lim: Limits) -> float:
    """The fewest input axons per neuron of any set of the layer's neurons that fits the
    neuron and input-axon limits of one core (conv halos: every block reads more inputs
    than it has neurons' worth of kernel taps).

    A set at m output positions holds at most min(C x m, neurons) neurons and reads at
    least ipg x |inputs the m positions read|. That count never grows when the positions
    of each column are moved to a run from one end (their rows read are then nested and,
    checked exactly per axis by `_nested_reads`, no t rows read fewer than such a run),
    nor of each row likewise; so the fewest inputs of m positions is reached by a
    staircase (column heights nonincreasing from a corner), found by a dynamic programme
    over columns. Falls back to the kernel taps of one neuron over the neuron limit when
    an axis fails the check or the programme would be too large. The bias axon (one more
    per block) is left out. tests/test_mapping_bound.py checks this against every subset
    of small layers."""
    ipg, n_lim = info.ipg, lim.neurons
    m_max = int(min(lim.input_axons // max(ipg, 1), n_lim, info.h * info.w))
    rows = _nested_reads(*_axis_reads(info.h, info.sy, info.py, info.kh, info.hin), m_max)
    cols = _nested_reads(*_axis_reads(info.w, info.sx, info.px, info.kw, info.win), m_max)
    (ylo, yhi), (xlo, xhi) = (_axis_reads(info.h, info.sy, info.py, info.kh, info.hin),
                              _axis_reads(info.w, info.sx, info.px, info.kw, info.win))
    single = ipg * int((yhi - ylo).min()) * int((xhi - xlo).min())  # one neuron, at best
    if rows is None or cols is None or m_max < 1 or (
            min(info.h, m_max) * min(info.w, m_max) * (m_max + 1) > HALO_WORK):
        return single / n_lim if single <= lim.input_axons else 0.0
    (_, uy), (dx, _) = rows, cols
    hmax, wmax = min(info.h, m_max), min(info.w, m_max)
    inf = np.iinfo(np.int64).max // 4
    # nxt[h][a]: fewest inputs of columns x+1.. with heights <= h and area a
    nxt = np.full((hmax + 1, m_max + 1), inf, np.int64)
    nxt[:, 0] = 0
    for x in range(wmax - 1, -1, -1):
        cur = np.empty_like(nxt)
        cur[0] = nxt[0]
        for h in range(1, hmax + 1):
            take = np.full(m_max + 1, inf, np.int64)
            take[h:] = nxt[h][:m_max + 1 - h] + dx[x] * uy[h]
            cur[h] = np.minimum(cur[h - 1], take)
        nxt = cur
    f = nxt[hmax].astype(float)        # fewest inputs read by m positions, m = 0..m_max
    m = np.arange(1, m_max + 1)
    fan = ipg * f[1:]
    ok = fan <= lim.input_axons
    if not ok.any():   # not even one neuron fits (the split refuses the layer)
        return 0.0
    return float((fan[ok] / np.minimum(info.c * m[ok], n_lim)).min())


def _layer_shares(layers, infos, layers_split, local, lim: Limits):
    """Per layer: its share of every total no mapping goes below (see `_lower_bound`) and
    the fewest input axons any piece of it needs; the groups of all-to-all layers by
    (fan-in, weight bits): [neurons, kmax, layer names]."""
    per: dict[str, dict[str, float]] = {}
    full_cores: dict[str, int] = {}
    groups: dict[tuple[int, int], list] = {}
    min_fanin: dict[str, int] = {}
    for name, info in infos.items():
        n = layers_split[name].neurons
        share = info.bound_share(n, layers_split[name].synapses, lim)
        t = per[name] = dict.fromkeys(RESOURCES, 0.0)
        t["neurons"] = n
        t["input_axons"] = share.input_axons
        t["synapse_bits"] = share.synapse_bits
        min_fanin[name] = share.min_fanin
        if share.kmax is not None:  # all-to-all
            full_cores[name] = share.cores
            group = groups.setdefault((info.n_in, info.bpw), [0, share.kmax, []])
            group[0] += n
            group[2].append(name)
    for name in infos:
        full = [dst for _, dst, _ in layers[name].consumers if dst in full_cores]
        other = len(layers[name].consumers) > len(full)
        per[name]["output_axons"] = layers_split[name].neurons * sum(full_cores[d]
                                                                     for d in full)
        if other and not full:
            per[name]["output_axons"] += int(np.count_nonzero(local[name][0]))
    return per, groups, min_fanin


def _lower_bound(layers, infos, layers_split, local, inp, spec: TargetSpec) -> dict:
    """Cores that no split and packing can go below (every resource as encoded).

    Per resource, ceil(total / limit) over totals no mapping goes below:

    * neurons: all of them;
    * input axons: an all-to-all layer occupies at least ceil(n / kmax) cores (kmax: the
      most of its neurons one core holds) and each of them needs all its inputs; a conv
      layer at least its neurons x the fewest input axons per neuron of any set of its
      neurons that fits a core (the halo, `_conv_fanin_per_neuron`); other layers the
      fan-in of their most connected neuron;
    * output axons: a neuron feeding an all-to-all layer reaches every core of it (at least
      ceil(n / kmax)); any other neuron with consumers at least one;
    * synapse memory: all-to-all layers at their cheapest bits per neuron of any block size
      that fits (group headers and word rounding included); sparse layers at the cheapest
      bits per synapse of any group; conv kernels once per output channel; neuron state.

    And, per group of all-to-all layers with equal fan-in and weight bits:
    ceil(their neurons / kmax) (blocks of several such layers on one core could be merged
    into one block: never dearer, checked). When a group's fan-in leaves no input axon for
    a piece of any other layer, its cores hold nothing else: those cores plus the bound of
    the other layers. The bound is the largest of all these.
    """
    lim = spec.limits
    per, groups, min_fanin = _layer_shares(layers, infos, layers_split, local, lim)

    def bound(names) -> dict[str, int]:
        return {r: math.ceil(round(sum(per[n][r] for n in names), 6) / lim.limit(r))
                for r in RESOURCES}

    cores = bound(list(infos))
    group_bound = exclusive = 0
    excl_names: list[str] = []
    for (n_in, bpw), (n, kmax, names) in groups.items():
        if not _subadditive(bpw, kmax, lim):
            continue
        g = -(-n // kmax)
        group_bound = max(group_bound, g)
        others = [min_fanin[m] for m in infos if m not in names]
        if others and n_in + min(others) > lim.input_axons:
            # a core holding any of these neurons has no input axon left for anything else
            exclusive += g
            excl_names += names
    cores["all_to_all_groups"] = group_bound
    extra = {"exclusive_layers": sorted(excl_names)} if excl_names else {}
    if exclusive:
        rest = [m for m in infos if m not in excl_names]
        cores["exclusive_groups_plus_rest"] = exclusive + (max(bound(rest).values())
                                                           if rest else 0)
    tot = {r: int(math.ceil(round(sum(p[r] for p in per.values()), 6))) for r in RESOURCES}
    return {"totals": tot, "cores_by_resource": cores, "cores": max(1, max(cores.values())),
            **extra}
