"""Layers fed by several synapses (a residual block's body and shortcut adding into one
LIF): the mapper charges every synapse ending on a block. Each block's neurons, synapses,
input axons and output axons in the mapping are compared with a count made here, straight
from the graph's weights (a conv unfolded to its connections), and every core stays within
every per-core limit, also where the second synapse alone pushes a layer over one."""
from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings

from snncompile.ir import FxConv2d, FxDense, FxLIF, Graph, Input, Output
from snncompile.ir.timing import balance
from snncompile.mapping.place import map_graph
from snncompile.mapping.split import (RESOURCES, _ConvSum, _ConvSyn, _conv_fanin_per_neuron,
                                      _source_of, core_role, split_graph)
from snncompile.target import load_target

from hypothesis_profile import examples
from strategies import residual_networks


def _with_limits(target: str, **limits):
    spec = load_target(target)
    return dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, **limits))


def _dense_block(n=4):
    """in -> fc1 -> lif1 -> fc2 -> lif2, plus a shortcut `skip` from the input into lif2."""
    w = np.full((n, n), 40, np.int32)
    g = Graph()
    g.add(Input("in", shape=(n,)))
    g.add(FxDense("fc1", weight=w, sign_mode="excitatory"), ["in"])
    g.add(FxLIF("lif1", shape=(n,), du=4095, dv=4095, vth=30), ["fc1"])
    g.add(FxDense("fc2", weight=w // 2, sign_mode="excitatory"), ["lif1"])
    g.add(FxDense("skip", weight=np.eye(n, dtype=np.int32) * 60, sign_mode="excitatory"),
          ["in"])
    g.add(FxLIF("lif2", shape=(n,), du=4095, dv=4095, vth=90), ["fc2", "skip"])
    g.add(Output("out"), ["lif2"])
    balance(g)
    return g


def _conv_block(c=2, hw=4, short_kernel=3):
    """A conv residual block (Att_Res_SNN style): c1 -> l1 -> c2 and a conv shortcut from
    the input (through delay neurons after `balance`), both into l2."""
    g = Graph()
    g.add(Input("in", shape=(c, hw, hw)))
    w = np.full((c, c, 3, 3), 10, np.int32)
    g.add(FxConv2d("c1", weight=w, padding=(1, 1)), ["in"])
    g.add(FxLIF("l1", shape=(c, hw, hw), vth=25, du=2000, dv=100), ["c1"])
    g.add(FxConv2d("c2", weight=w, padding=(1, 1)), ["l1"])
    k = short_kernel
    g.add(FxConv2d("short", weight=np.full((c, c, k, k), 30, np.int32),
                   padding=(k // 2, k // 2)), ["in"])
    g.add(FxLIF("l2", shape=(c, hw, hw), vth=40, du=1000, dv=500), ["c2", "short"])
    g.add(Output("out"), ["l2"])
    balance(g)
    return g


def _connections(graph: Graph, syn: str) -> np.ndarray:
    """(out, in) bool: which source neuron each target neuron has a synapse from (dense:
    the non-zero weights; conv: every kernel tap that lands inside the input, as the chip
    stores the kernel)."""
    node = graph.node(syn)
    if isinstance(node, FxDense):
        return np.asarray(node.weight) != 0
    cin, hin, win = graph.shape(graph.inputs(syn)[0])
    o, ipg, kh, kw = node.weight.shape
    c, h, w = graph.shape(syn)
    (sy, sx), (py, px), opg = node.stride, node.padding, o // node.groups
    m = np.zeros((c * h * w, cin * hin * win), bool)
    for oc, y, x, ci, i, j in itertools.product(range(c), range(h), range(w), range(ipg),
                                                 range(kh), range(kw)):
        r, q = y * sy - py + i, x * sx - px + j
        if 0 <= r < hin and 0 <= q < win:
            m[(oc * h + y) * w + x, ((oc // opg) * ipg + ci) * hin * win + r * win + q] = True
    return m


def _block_neurons(blk, shape) -> np.ndarray:
    if blk.tile is None:
        return np.arange(blk.start, blk.stop)
    c0, c1, y0, y1, x0, x1 = blk.tile
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    return idx[c0:c1, y0:y1, x0:x1].ravel()


def _feeds(graph: Graph, layer: str) -> list[tuple[str, str]]:
    """(synapse, source layer) of every feed-forward synapse into neuron `layer`."""
    out = []
    for i in graph.inputs(layer):
        if core_role(graph, i) == "synapse":
            out.append((i, _source_of(graph, graph.inputs(i)[0])))
    return out


def _recount(graph: Graph, mapping) -> dict[int, dict]:
    """Per block: neurons, synapses and input axons counted from the weights, and output
    axons: per neuron, the blocks of each consuming synapse's layer it has a synapse into
    (one axon per (neuron, destination block, synapse), as the mapper charges)."""
    blocks = mapping.blocks
    by_layer: dict[str, list] = {}
    for b in blocks:
        by_layer.setdefault(b.layer, []).append(b)
    want = {b.index: dict(neurons=b.n_neurons, synapses=0, input_axons=0, output_axons=0)
            for b in blocks}
    for layer, blks in by_layer.items():
        shape = graph.shape(layer)
        for syn, src in _feeds(graph, layer):
            conn = _connections(graph, syn)
            bias = int(graph.node(syn).bias_mant is not None)
            src_blocks = by_layer.get(src, [])
            for b in blks:
                rows = conn[_block_neurons(b, shape)]
                want[b.index]["synapses"] += int(rows.sum())
                want[b.index]["input_axons"] += int(rows.any(0).sum()) + bias
                reached = rows.any(0)   # source neurons with a synapse into b
                for s in src_blocks:
                    ids = _block_neurons(s, graph.shape(src))
                    want[s.index]["output_axons"] += int(reached[ids].sum())
    return want


def _check(graph, spec, **kw):
    mapping = map_graph(graph, spec, **kw)
    want = _recount(graph, mapping)
    for b in mapping.blocks:
        got = dict(neurons=b.n_neurons, synapses=b.synapses,
                   input_axons=b.usage["input_axons"], output_axons=b.usage["output_axons"])
        assert got == want[b.index], (b.layer, b.index, got, want[b.index])
        assert b.usage["neurons"] == b.n_neurons
    lim = spec.limits
    for c in mapping.cores:
        for r in RESOURCES:
            assert c.usage[r] <= lim.limit(r), (c.index, r, c.usage[r], lim.limit(r))
            assert c.usage[r] == sum(mapping.blocks[b].usage[r] for b in c.blocks)
    assert mapping.lower_bound["cores"] <= mapping.n_cores
    return mapping


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_a_shortcut_synapse_is_charged_to_its_layers_blocks(target):
    g = _dense_block()
    m = _check(g, load_target(target))
    lif2 = [b for b in m.blocks if b.layer == "lif2"]
    assert sum(b.synapses for b in lif2) == 16 + 4            # fc2 and the identity skip
    assert sum(b.usage["input_axons"] for b in lif2) == 8     # lif1's 4 and the input's 4
    assert m.layers["lif2"]["synapse_nodes"] == ["fc2", "skip"]
    assert m.layers["lif2"]["synapses"] == 20


def test_the_second_synapse_alone_pushes_the_layer_over_a_core():
    """6 input axons per core: fc2 alone (4 axons) fits lif2 in one block; with the
    shortcut (4 more) it does not, so lif2 must be cut, every block within the limit."""
    spec = _with_limits("loihi2", input_axons=6)
    m = _check(_dense_block(), spec)
    lif2 = [b for b in m.blocks if b.layer == "lif2"]
    assert len(lif2) >= 2
    assert all(b.usage["input_axons"] <= 6 for b in lif2)


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
@pytest.mark.parametrize("short_kernel", [1, 3])
def test_a_conv_shortcut_is_charged_tile_by_tile(target, short_kernel):
    g = _conv_block(short_kernel=short_kernel)
    m = _check(g, load_target(target))
    assert m.layers["l2"]["synapse_nodes"] == ["c2", "short"]
    # a tight core: the shortcut's halo must be counted or the tiles would overflow
    spec = _with_limits(target, input_axons=40)
    m = _check(g, spec)
    assert len([b for b in m.blocks if b.layer == "l2"]) > 1


@pytest.mark.parametrize("objective", ["cores", "latency"])
def test_residual_conv_block_on_a_small_core_under_both_objectives(objective):
    g = _conv_block(c=4, hw=6)
    spec = _with_limits("loihi2", neurons=40, input_axons=120)
    m = _check(g, spec, objective=objective)
    work = {b.index: b.work for b in m.blocks}
    rates = m.rates
    for b in m.blocks:   # work: every synapse's synapses x its own source's rate
        if b.layer == "l2":
            nz = {s: _connections(g, s)[_block_neurons(b, g.shape("l2"))].sum()
                  for s, _ in _feeds(g, "l2")}
            srcs = dict(_feeds(g, "l2"))
            expect = sum(float(n) * rates.get(srcs[s], 1.0) for s, n in nz.items())
            assert work[b.index] == pytest.approx(expect)


@settings(max_examples=examples(15), deadline=None)
@given(residual_networks(max_layers=4))
def test_random_residual_graphs_are_charged_every_synapse(case):
    graph, _ = case
    balance(graph)
    for spec in (load_target("loihi1"), _with_limits("loihi2", input_axons=12, neurons=6)):
        try:
            _check(graph, spec)
        except Exception as exc:   # a single neuron over the tight limit: refused cleanly
            from snncompile.errors import ResourceLimitError
            assert isinstance(exc, ResourceLimitError), exc
            assert "one neuron" in str(exc)


def _conv_pair(hin, k1, k2, limits):
    spec = _with_limits("loihi1", **limits)
    parts = []
    for k in (k1, k2):
        node = FxConv2d("c", weight=np.ones((2, 2, k, k), np.int32), padding=(k // 2, k // 2))
        parts.append(_ConvSyn(node, (2, hin, hin), (2, hin, hin), spec))
    return _ConvSum("l", parts), spec.limits


@pytest.mark.parametrize("hin,k1,k2", [(5, 3, 1), (6, 3, 3), (4, 3, 1)])
@pytest.mark.parametrize("limits", [dict(neurons=6, input_axons=40),
                                    dict(neurons=16, input_axons=60)])
def test_two_conv_synapses_halo_bound_is_at_most_any_rectangle(hin, k1, k2, limits):
    """The lower bound's input axons per neuron of a layer fed by two convs (the parts'
    halo terms added) is never above that of any tile fitting one core, both parts'
    inputs counted."""
    info, lim = _conv_pair(hin, k1, k2, limits)
    bound = sum(_conv_fanin_per_neuron(q, lim) for q in info.parts)
    best = np.inf
    for c0, c1 in itertools.combinations(range(info.c + 1), 2):
        for y0, y1 in itertools.combinations(range(info.h + 1), 2):
            for x0, x1 in itertools.combinations(range(info.w + 1), 2):
                n = (c1 - c0) * (y1 - y0) * (x1 - x0)
                fan = 0
                for q in info.parts:
                    ci0, ci1, r0, r1, q0, q1 = q.region(c0, c1, y0, y1, x0, x1)
                    fan += (ci1 - ci0) * max(r1 - r0, 0) * max(q1 - q0, 0)
                if n <= lim.neurons and fan <= lim.input_axons:
                    best = min(best, fan / n)
    assert best < np.inf and bound <= best + 1e-12


def test_compiled_residual_checkpoint_mapping_counts_its_shortcut(tmp_path):
    """Through the compiler: a conv residual checkpoint's mapping.json lists both synapses
    of the block's LIF, and every block's counts equal the recount from the build's graph;
    no warning about uncharged synapses is left to print."""
    from snncompile.nn import save_checkpoint
    from snncompile.pipeline import compile_model
    from test_residual_layers import CONV_CFG, _model   # conv body, 1x1 conv shortcut
    save_checkpoint(_model(CONV_CFG, 2, 1.5), tmp_path / "res.pt")
    calib = (np.random.default_rng(2).random((8, 6, 2, 6, 6)) < 0.4).astype(np.int64)
    build = compile_model(tmp_path / "res.pt", "loihi2", calib=calib)
    doc = build.extra_files["mapping.json"]
    assert doc["layers"]["after"]["synapse_nodes"] == ["res.body2", "res.shortcut0"]
    assert "warnings" not in build.report["mapping"]
    assert "not charged" not in build.report_md
    from snncompile.mapping.place import Mapping
    mapping = Mapping.from_json(json.loads(json.dumps(doc)))
    want = _recount(build.graph, mapping)
    for b in mapping.blocks:
        got = dict(neurons=b.n_neurons, synapses=b.synapses,
                   input_axons=b.usage["input_axons"], output_axons=b.usage["output_axons"])
        assert got == want[b.index], (b.layer, got, want[b.index])


def test_a_gated_conv_layers_blocks_are_charged_their_conv_and_gains_exactly():
    """A conv layer with attention gains (TCSA): each block's synapse memory is the conv's
    (kernel per tap group, neuron state) plus one GAIN_BITS synapse list per gain element
    reaching the block, and its input axons the conv's halo plus those elements. (The conv
    was once costed with the target's limits, not the layer's with the gains' reserve, so
    the reserve's per-neuron bits were taken back off bits never added.)"""
    from test_attention_compile import compiled

    from snncompile.mapping.split import GAIN_BITS, _layers, _sat, axon_bits
    graph = compiled("tcsa", True, 0)[0].graph
    spec = load_target("loihi2")
    m = map_graph(graph, spec)
    lim = spec.limits
    checked = 0
    for name, layer in _layers(graph)[0].items():
        if not layer.gains or not isinstance(layer.syn, FxConv2d):
            continue
        node, shape = layer.syn, graph.shape(name)
        conv = _ConvSyn(node, graph.shape(graph.inputs(node.name)[0]), shape, spec)
        sat = _sat(np.zeros(shape, np.int64))
        for b in (b for b in m.blocks if b.layer == name):
            tile = [np.array([v]) for v in b.tile]
            _, fan, _, bits = (int(v[0]) for v in conv.costs(*tile, sat))
            c0, c1, y0, y1, x0, x1 = b.tile
            gain_axons = gain_bits = 0
            for g in layer.gains:    # (C, H, W) gains, each axis 1 or the layer's size
                assert all(gd in (1, sd) for gd, sd in zip(g, shape))
                ids = [np.arange(lo, hi) if gd > 1 else np.zeros(hi - lo, int)
                       for gd, lo, hi in zip(g, (c0, y0, x0), (c1, y1, x1))]
                elem = (ids[0][:, None, None] * g[1] + ids[1][None, :, None]) * g[2] \
                    + ids[2][None, None, :]
                _, counts = np.unique(elem, return_counts=True)
                gain_axons += counts.size
                gain_bits += int(axon_bits(counts, GAIN_BITS, lim).sum())
            assert b.usage["input_axons"] == fan + gain_axons, (name, b.index)
            assert b.usage["synapse_bits"] == bits + gain_bits, (name, b.index)
            checked += 1
    assert checked


@pytest.mark.parametrize("make", [_dense_block, _conv_block])
def test_energy_prices_the_shortcuts_synaptic_events(make):
    """The neuron layer's synaptic events are those of every synapse into it: with the
    shortcut's own events counted, lif2's synops equal fc2's plus skip's (simulator
    counts), and the whole estimate's synops exceed what the body alone would give."""
    from snncompile.backends.sim import Simulator
    from snncompile.energy.model import estimate_energy
    g = make()
    spec = load_target("loihi2")
    x = (np.random.default_rng(4).random((2, 8) + g.shape("in")) < 0.5).astype(np.int64)
    sim = Simulator(g, spec.numerics).run(x)
    counts = dict(sim.counts)
    counts["in"] = {"spikes": int(x.sum())}
    m = map_graph(g, spec)
    est = estimate_energy(g, m, counts, spec, samples=2, steps=8)
    layer = "lif2" if "lif2" in g else "l2"
    feeds = [s for s, _ in _feeds(g, layer)]
    assert len(feeds) == 2 and all(sim.counts[s]["synops"] > 0 for s in feeds)
    per_inference = {s: sim.counts[s]["synops"] / 2 for s in feeds}
    got = est.to_json()["events"][layer]["synops"]
    assert got == pytest.approx(sum(per_inference.values()))
    assert got > max(per_inference.values())
