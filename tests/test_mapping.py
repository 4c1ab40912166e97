"""Splitting into core-sized blocks and placement on the mesh (passes/split.py, place.py)."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from snncompile.errors import ResourceLimitError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import LIF, Dense, Flatten, FxConv2d, FxDense, FxLIF, Input, Output
from snncompile.mapping.place import map_graph
from snncompile.mapping.split import axon_bits, split_graph
from snncompile.target import load_target

LOIHI1 = load_target("loihi1")


def full(n_out, n_in):
    """Shape-only, fully connected weights (no memory)."""
    return np.broadcast_to(np.int8(1), (n_out, n_in))


def dense_net(*sizes, real=False):
    """Input(sizes[0]) -> FxDense -> FxLIF -> ... with every weight non-zero."""
    rng = np.random.default_rng(0)
    nodes = [Input("in", shape=(sizes[0],))]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), 1):
        w = rng.integers(1, 100, (b, a)).astype(np.int32) if real else full(b, a)
        nodes += [FxDense(f"fc{i}", weight=w), FxLIF(f"lif{i}", shape=(b,))]
    return Graph.sequential(nodes + [Output("out")])


def custom_target(tmp_path, **limits):
    text = 'base = "loihi1"\nname = "custom"\n[limits]\n' + "".join(
        f"{k} = {v}\n" for k, v in limits.items())
    path = tmp_path / "custom.toml"
    path.write_text(text)
    return load_target(path)


def layer_blocks(part, name):
    return [b for b in part.blocks if b.layer == name]


# ------------------------------------------------------------------ encoding
def test_axon_bits_follows_nengo_loihi_groups():
    lim = LOIHI1.limits
    # one group: n*8 + 10 header bits, rounded up to 64-bit words
    assert axon_bits(1, 8, lim) == 64
    assert axon_bits(30, 8, lim) == 256       # 250 -> 256
    assert axon_bits(31, 8, lim) == 320       # 258 -> 320
    assert axon_bits(64, 8, lim) == 576       # 522 -> 576
    assert axon_bits(65, 8, lim) == 576 + 64  # a second group of one synapse


# ------------------------------------------------------------------ packing, hand-computed
def test_neuron_limited_layer_packs_to_the_bound():
    # 100 inputs x 1024 neurons: 100 * axon_bits(1024) = 100 * 16 * 576 = 921,600 bits fit
    part = split_graph(dense_net(100, 2048), LOIHI1)
    blocks = layer_blocks(part, "lif1")
    assert [b.n_neurons for b in blocks] == [1024, 1024]
    assert blocks[0].usage == {"neurons": 1024, "input_axons": 100, "output_axons": 0,
                               "synapse_bits": 921_600}
    assert part.n_cores == part.lower_bound["cores"] == 2


def test_synapse_memory_limited_layer():
    # 4096 axons x axon_bits(m) <= 1,048,576 -> axon_bits(m) <= 256 -> m <= 30 neurons
    part = split_graph(dense_net(4096, 4096), LOIHI1)
    blocks = layer_blocks(part, "lif1")
    assert len(blocks) == math.ceil(4096 / 30) == 137
    assert max(b.n_neurons for b in blocks) == 30
    assert all(b.usage["synapse_bits"] <= 1_048_576 for b in blocks)
    assert sum(b.n_neurons for b in blocks) == 4096
    # shape-only and real weights give the same split
    real = split_graph(dense_net(4096, 4096, real=True), LOIHI1)
    assert [b.n_neurons for b in layer_blocks(real, "lif1")] == [b.n_neurons for b in blocks]


def test_output_axons_couple_consecutive_layers():
    # lif2 (fan-in 2048): 2048 * axon_bits(m) <= 2**20 -> m <= 62 -> ceil(8192/62) = 133 blocks;
    # every lif1 neuron reaches all 133 -> 133 output axons each -> 30 per block (3,990)
    part = split_graph(dense_net(16, 2048, 8192), LOIHI1, spread=False)
    lif2 = layer_blocks(part, "lif2")
    lif1 = layer_blocks(part, "lif1")
    assert len(lif2) == 133 and max(b.n_neurons for b in lif2) == 62
    assert len(lif1) == math.ceil(2048 / 30) == 69
    assert max(b.usage["output_axons"] for b in lif1) == 30 * 133
    # re-split within shares of a core, the packing keeps the fewest cores
    spread = split_graph(dense_net(16, 2048, 8192), LOIHI1)
    assert spread.lower_bound["cores"] <= spread.n_cores < part.n_cores


def test_conv_block_stores_kernel_once():
    w = np.ones((16, 1, 3, 3), np.int32)
    g = Graph.sequential([Input("in", shape=(1, 32, 32)),
                          FxConv2d("c", weight=w, padding=(1, 1)),
                          FxLIF("lif", shape=(16, 32, 32)), Output("out")])
    part = split_graph(g, LOIHI1)
    blocks = layer_blocks(part, "lif")
    # 16,384 neurons, 1,024 per core: 16 tiles; of the 16-tile shapes, 16 channels x 8 x 8
    # has the smallest fan-in (10 x 10 inputs inside; 16 x 2 x 32 would read 4 x 32)
    assert len(blocks) == 16
    assert blocks[0].tile == (0, 16, 0, 8, 0, 8)
    # kernel stored once: 9 taps, each one group of 16 weights (16*8 + 10 -> 192 bits)
    assert blocks[0].usage["synapse_bits"] == 9 * 192
    # the corner tile reads input rows and columns 0..8 (padding), the next one 9 x 10
    assert blocks[0].usage["input_axons"] == 9 * 9
    assert blocks[1].tile == (0, 16, 0, 8, 8, 16)
    assert blocks[1].usage["input_axons"] == 9 * 10
    # synapses exclude padding taps: 16 channels x (sum of valid taps over rows and columns)
    assert sum(b.synapses for b in blocks) == 16 * (3 * 32 - 2) ** 2


def test_sparse_weights_count_only_connected_inputs():
    # row i connects to inputs 10i .. 10i+9: 80 distinct sources, one synapse per axon,
    # sparse format: 8 weight + 10 index bits + 10 header bits -> one 64-bit word per axon
    w = np.zeros((8, 100), np.int32)
    for i in range(8):
        w[i, 10 * i:10 * i + 10] = 5
    g = Graph.sequential([Input("in", shape=(100,)), FxDense("fc", weight=w),
                          FxLIF("lif", shape=(8,)), Output("out")])
    (block,) = split_graph(g, LOIHI1).blocks
    assert block.usage["input_axons"] == 80
    assert block.usage["synapse_bits"] == 80 * 64
    assert block.synapses == 80


def test_conv_fan_in_error():
    g = Graph.sequential([Input("in", shape=(512, 4, 4)),
                          FxConv2d("c", weight=np.ones((2, 512, 3, 3), np.int32),
                                   padding=(1, 1)),
                          FxLIF("lif", shape=(2, 4, 4)), Output("out")])
    with pytest.raises(ResourceLimitError, match=r"lif: input axons \(4,608\) for one neuron"):
        split_graph(g, LOIHI1)


def test_small_layers_share_a_core():
    part = split_graph(dense_net(8, 10, 10), LOIHI1)
    assert len(part.blocks) == 2 and part.n_cores == 1
    assert part.core_usage[0, 0] == 20


# ------------------------------------------------------------------ resource errors
def test_fan_in_error_names_layer_resource_need_and_limit():
    with pytest.raises(ResourceLimitError,
                       match=r"lif1: input axons \(5,000\) for one neuron exceeds the per-core "
                             r"limit \(4,096\); reduce fan-in"):
        split_graph(dense_net(5000, 10), LOIHI1)


def test_synapse_memory_error(tmp_path):
    spec = custom_target(tmp_path, synapse_bits=65536)
    with pytest.raises(ResourceLimitError,
                       match=r"lif1: synapse memory \(131,072 bits\) for one neuron exceeds "
                             r"the per-core limit \(65,536 bits\)"):
        split_graph(dense_net(2048, 4), spec)


def test_output_axon_error(tmp_path):
    # lif2 needs 3 cores of 4 neurons; each lif1 neuron would need 3 output axons (limit 2)
    spec = custom_target(tmp_path, neurons=4, output_axons=2)
    with pytest.raises(ResourceLimitError, match=r"lif1: output axons \(3\) .* \(2\)"):
        split_graph(dense_net(4, 4, 12), spec)


def test_too_few_chips():
    g = dense_net(4096, 4096)  # 137 cores > 128 per chip
    with pytest.raises(ResourceLimitError, match=r"cores \(137\) exceeds .*use chips=2"):
        map_graph(g, LOIHI1, chips=1)
    m = map_graph(g, LOIHI1, chips=2)
    assert m.chips == 2
    per_chip = np.bincount([c.chip for c in m.cores])
    assert per_chip.max() <= LOIHI1.chip.cores_per_chip


def test_float_graph_is_rejected():
    g = Graph.sequential([Input("in", shape=(4,)), Dense("d", weight=np.ones((2, 4))),
                          LIF("lif", shape=(2,)), Output("out")])
    with pytest.raises(UnsupportedError, match="fixed-stage"):
        split_graph(g, LOIHI1)


# ------------------------------------------------------------------ placement
def _conv_net():
    rng = np.random.default_rng(1)
    k = lambda s: rng.integers(1, 9, s).astype(np.int32)  # noqa: E731
    return Graph.sequential([
        Input("in", shape=(2, 32, 32)),
        FxConv2d("c1", weight=k((16, 2, 3, 3)), padding=(1, 1)),
        FxLIF("lif1", shape=(16, 32, 32)),
        FxConv2d("c2", weight=k((32, 16, 3, 3)), stride=(4, 4), padding=(1, 1)),
        FxLIF("lif2", shape=(32, 8, 8)),
        Flatten("flat"),
        FxDense("d1", weight=k((256, 2048))),
        FxLIF("lif3", shape=(256,)),
        FxDense("d2", weight=k((10, 256))),
        FxLIF("lif4", shape=(10,)),
        Output("out"),
    ])


def test_mapping_is_valid_deterministic_and_json_safe():
    g = _conv_net()
    m1 = map_graph(g, LOIHI1)
    m2 = map_graph(g, LOIHI1)
    assert m1.to_json() == m2.to_json()
    doc = json.loads(json.dumps(m1.to_json()))
    assert doc["cores"] == m1.n_cores >= doc["lower_bound_cores"]
    # every core within every limit, one core per slot
    for c in m1.cores:
        assert all(c.usage[r] <= LOIHI1.limits.limit(r) for r in c.usage)
    slots = {(c.chip, c.tile, c.slot) for c in m1.cores}
    assert len(slots) == m1.n_cores
    assert all(0 <= c.tile[0] < LOIHI1.chip.mesh_x and 0 <= c.tile[1] < LOIHI1.chip.mesh_y
               for c in m1.cores)
    # every neuron in exactly one block
    for name, info in m1.layers.items():
        if name != "in":
            assert sum(b.n_neurons for b in m1.blocks if b.layer == name) == info["neurons"]
    # local improvement never makes the traffic worse
    assert m1.placement_cost["final_j_per_step"] <= m1.placement_cost["initial_j_per_step"]
    text = m1.table()
    assert "lif3" in text and "lower bound" in text


def test_rates_weight_traffic():
    g = _conv_net()
    with pytest.raises(UnsupportedError, match="rates: 'nope'"):
        map_graph(g, LOIHI1, rates={"nope": 0.1})
    m = map_graph(g, LOIHI1, rates={"in": 0.5, "lif1": 0.05})
    assert m.rates["lif1"] == 0.05 and m.rates["lif2"] == 1.0


def test_loihi2_has_larger_cores():
    g = _conv_net()
    assert map_graph(g, load_target("loihi2")).n_cores < map_graph(g, LOIHI1).n_cores


@pytest.mark.slow
def test_million_neurons_map_in_seconds():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_mapping import build

    g = build(256)  # 1.6M neurons, 136M synapses
    t0 = time.perf_counter()
    m = map_graph(g, LOIHI1)
    assert time.perf_counter() - t0 < 60
    assert sum(v["neurons"] for k, v in m.layers.items() if k != "in") > 1_000_000
    assert sum(v["synapses"] for v in m.layers.values()) > 100_000_000
