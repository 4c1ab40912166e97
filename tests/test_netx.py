"""netx HDF5 import/export, verified spike for spike against lava-dl's own netx loader.

Alignment used throughout (see `snncompile.formats.netx.read`): the RingBuffer source
sends input frame t at Lava step t + 1 into the first synapse; a layer at depth d (d
synapses from the input) emits the spikes of its local step k at Lava step k + d + 1, i.e.
sink column k + d. netx is built with `reset_interval` longer than the run and
`reset_offset=1`, which zeroes the layer at depth d at Lava step d + 1, when its first input
arrives: with biases, the layers would otherwise integrate bias during the d steps before
that, which our local-time semantics (and the trained model) do not include.
"""
from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

import snncompile  # noqa: F401  (installs the Lava import fix)
from snncompile.errors import InputFileError, UnsupportedError
from snncompile.formats.netx.write import export_netx
from snncompile.formats.netx.read import (import_netx, lava_network_kwargs,
                                              netx_dense_weights)
from snncompile.ir import Flatten, FxConv2d, FxDense, FxLIF, Graph, Input, Output
from snncompile.ir.graph import graphs_equal
from snncompile.backends.sim.simulator import Simulator
from netx_files import export_blocks

torch = pytest.importorskip("torch")
slayer = pytest.importorskip("lava.lib.dl.slayer")

NEURON = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
          "requires_grad": False}


# ------------------------------------------------------------------ helpers
def _export_blocks(blocks, path, x_shape, seed=0):
    """Run the slayer blocks once on random spikes and write netx HDF5."""
    torch.manual_seed(seed)
    export_blocks(blocks, path, (torch.rand(1, *x_shape, 4) < 0.3).float())


def _add_bias(path, layer: int, bias):
    with h5py.File(path, "a") as f:
        f[f"layer/{layer}"].create_dataset("bias", data=np.asarray(bias))


def _run_netx(path, graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """lava-dl's `hdf5.Network` in Lava (fixed_pt) on x (T, *input_shape CHW): each layer's
    spikes in our local time and CHW order, keyed by our node name."""
    from snncompile.formats.netx.run_lava import run_netx
    return run_netx(path, graph, x)


def _compare(path, graph, x, reference: Graph | None = None, names: dict | None = None):
    """Zero mismatches between netx in Lava (file `path`, imported as `graph`) and our
    simulator on `reference` (default: `graph`; `names` maps graph LIFs to its LIFs)."""
    ours = Simulator(reference or graph, strict=False).run(x[None]).spikes
    names = names or {}
    t0 = time.perf_counter()
    lava = _run_netx(path, graph, x)
    wall = time.perf_counter() - t0
    for name, spikes in lava.items():
        mism = int(np.count_nonzero(ours[names.get(name, name)][0] != spikes))
        assert mism == 0, f"{name}: {mism} spike mismatches against netx in Lava"
    total = sum(int(s.sum()) for s in lava.values())
    return total, wall


# ------------------------------------------------------------------ netx in Lava
def test_conv_flatten_dense_matches_netx_in_lava(tmp_path):
    """slayer Input(with neuron) + Conv + Flatten + Dense, random weights plus biases
    written into the file, imported with the input layer skipped on request (netx
    skip_layers=1: spikes into the conv); every layer's spikes equal netx's Lava network's.
    (Kept, the input layer is driven by its bias: tests/test_netx_bias_input.py.)"""
    path = tmp_path / "conv.net"
    torch.manual_seed(0)
    blocks = [
        slayer.block.cuba.Input(NEURON),
        slayer.block.cuba.Conv(NEURON, 2, 4, 3, padding=1, stride=2, weight_scale=3,
                               weight_norm=False),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(NEURON, 4 * 4 * 4, 6, weight_scale=3, weight_norm=False),
    ]
    _export_blocks(blocks, path, (2, 8, 8))
    rng = np.random.default_rng(1)
    _add_bias(path, 1, rng.integers(-20, 40, 4))               # per channel
    _add_bias(path, 3, rng.integers(-10, 30, 6))
    graph = import_netx(path, skip_input_layer=True)
    assert graph.meta["netx"]["skip_layers"] == 1               # input neuron skipped
    assert graph.meta["netx"]["input_layer"] == "skipped"
    assert "SKIPPED" in graph.meta["report_sections"][0]["text"]
    assert [type(n) for n in graph.nodes()] == [Input, FxConv2d, FxLIF, Flatten, FxDense,
                                                FxLIF, Output]
    x = (rng.random((12, 2, 8, 8)) < 0.35).astype(np.uint8)
    total, wall = _compare(path, graph, x)
    assert total > 20, "too few spikes to be a meaningful comparison"
    assert wall < 45


def test_dense_chain_full_bias_matches_netx_in_lava(tmp_path):
    """Two dense layers, no input layer, mixed and excitatory weights, a full bias."""
    path = tmp_path / "dense.net"
    torch.manual_seed(3)
    blocks = [slayer.block.cuba.Dense(NEURON, 10, 8, weight_scale=4, weight_norm=False),
              slayer.block.cuba.Dense(NEURON, 8, 3, weight_scale=4, weight_norm=False)]
    _export_blocks(blocks, path, (10,))
    with h5py.File(path, "a") as f:
        f["layer/1/weight"][...] = np.minimum(np.abs(f["layer/1/weight"][()]) * 3, 250)
    rng = np.random.default_rng(2)
    _add_bias(path, 0, rng.integers(-30, 50, 8))
    graph = import_netx(path)
    assert graph.node("L1_dense").sign_mode == "excitatory"
    x = (rng.random((15, 10)) < 0.4).astype(np.uint8)
    total, _ = _compare(path, graph, x)
    assert total > 10


def test_no_current_decay_and_default_neuron_match_netx_in_lava(tmp_path):
    """iDecay = 0 (du = -1: Lava keeps u whole) and a dense layer without a neuron group
    (netx's default integrator: iDecay 0, vDecay 4096, vThMant 2**17)."""
    path = tmp_path / "defaults.net"
    torch.manual_seed(4)
    blocks = [slayer.block.cuba.Dense(NEURON, 12, 7, weight_scale=2, weight_norm=False),
              slayer.block.cuba.Dense(NEURON, 7, 3, weight_scale=2, weight_norm=False)]
    _export_blocks(blocks, path, (12,))
    with h5py.File(path, "a") as f:
        f["layer/0/neuron/iDecay"][()] = 0
        f["layer/0/neuron/vDecay"][()] = 300
        del f["layer/1/neuron"]
    graph = import_netx(path)
    first, second = graph.node("L0_lif"), graph.node("L1_lif")
    assert (first.du, first.dv) == (-1, 300)
    assert (second.du, second.dv, second.vth) == (-1, 4096, 1 << 17)
    x = (np.random.default_rng(4).random((12, 12)) < 0.3).astype(np.uint8)
    total, _ = _compare(path, graph, x)
    assert total > 5


# ------------------------------------------------------------------ conventions
def test_weight_optimisation_equals_netx():
    """Our replica of netx.optimize_weight_bits followed by Lava's clip/truncate gives what
    Lava's Dense computes with netx's output."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(0)
    cases = [rng.integers(-128, 128, (5, 7)), rng.integers(0, 256, (4, 4)),
             -rng.integers(1, 200, (3, 6)), rng.integers(-64, 64, (6, 3)) * 4,
             rng.integers(-300, 300, (4, 5)), np.array([[0, -3], [2, 1]])]
    for w in cases:
        ours, bits, exp, mode = netx_dense_weights(w)
        wn, bn, en, _ = optimize_weight_bits(w.copy())
        sm = determine_sign_mode(wn)
        ref = truncate_weights(clip_weights(wn, sm, num_bits=8), sm, bn)
        assert (bits, exp) == (bn, en)
        assert mode == sm.name.lower()
        np.testing.assert_array_equal(ours, ref)


# ------------------------------------------------------------------ export round trip
def _fixed_graph():
    rng = np.random.default_rng(5)
    nodes = [Input("in", shape=(2, 6, 6)),
             FxConv2d("c1", weight=rng.integers(-40, 60, (3, 2, 3, 3)).astype(np.int32),
                      stride=(1, 1), padding=(1, 1)),
             FxLIF("l1", shape=(3, 6, 6), du=300, dv=100, vth=90,
                   bias_mant=rng.integers(-2, 3, (3, 6, 6)).astype(np.int32), bias_exp=6),
             Flatten("f"),
             FxDense("d2", weight=rng.integers(-100, 100, (4, 108)).astype(np.int32),
                     weight_exp=1, num_weight_bits=8, sign_mode="mixed"),
             FxLIF("l2", shape=(4,), du=4095, dv=0, vth=200,
                   bias_mant=np.full(4, 128, np.int32), bias_exp=0),
             Output("out")]
    return Graph.sequential(nodes, meta={"source": "hand"})


def test_export_import_round_trip(tmp_path):
    graph = _fixed_graph()
    export_netx(graph, tmp_path / "a.net")
    back = import_netx(tmp_path / "a.net")
    x = (np.random.default_rng(6).random((3, 10, 2, 6, 6)) < 0.4).astype(np.uint8)
    a, b = Simulator(graph).run(x), Simulator(back).run(x)
    assert a.spikes["l2"].sum() > 0
    for na, nb in (("l1", "L1_lif"), ("l2", "L3_lif")):
        np.testing.assert_array_equal(a.spikes[na], b.spikes[nb])
    # import -> export -> import is a fixed point, field for field
    export_netx(back, tmp_path / "b.net")
    again = import_netx(tmp_path / "b.net")
    again.meta["source"] = back.meta["source"]
    assert graphs_equal(back, again)


def test_exported_file_matches_netx_in_lava(tmp_path):
    """A hand-made fixed graph (weight_exp 1, bias_exp 0, input layer without neuron, conv
    first) exported to netx runs in Lava exactly as our simulator runs the original."""
    graph = _fixed_graph()
    path = export_netx(graph, tmp_path / "h.net")
    imported = import_netx(path)
    x = (np.random.default_rng(7).random((10, 2, 6, 6)) < 0.4).astype(np.uint8)
    total, _ = _compare(path, imported, x, reference=graph,
                        names={"L1_lif": "l1", "L3_lif": "l2"})
    assert total > 10


def test_export_refuses_what_netx_cannot_express(tmp_path):
    graph = _fixed_graph()
    graph.node("d2").weight_exp = -2                 # floors partial sums: no netx form
    with pytest.raises(UnsupportedError, match="d2"):
        export_netx(graph, tmp_path / "x.net")
    g2 = _fixed_graph()
    g2.node("l1").bias_mant[0, 0, 0] = 1
    g2.node("l1").bias_exp = 0                       # bias 1 is not a multiple of 2**6
    with pytest.raises(UnsupportedError, match="l1"):
        export_netx(g2, tmp_path / "y.net")
    assert not (tmp_path / "x.net").exists() and not (tmp_path / "y.net").exists()


# ------------------------------------------------------------------ refusals and errors
def _dense_file(path, **neuron_overrides):
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([3]))
        g.create_dataset("weight", data=np.arange(-6, 6).reshape(3, 4).astype(np.float32))
        neuron = {"type": "CUBA", "iDecay": 100, "vDecay": 200, "vThMant": 50,
                  "refDelay": 1, "gradedSpike": False, **neuron_overrides}
        for key, value in neuron.items():
            g.create_dataset(f"neuron/{key}", data=value)
    return path


@pytest.mark.parametrize("override, match", [
    ({"refDelay": 3}, r"layer 0 \(dense\).*refDelay \(3\)"),
    ({"gradedSpike": True}, r"layer 0 \(dense\).*graded spikes"),
    ({"type": "RF_PHASE"}, r"layer 0 \(dense\).*'RF_PHASE' \(resonate-and-fire\).*supported: CUBA"),
    ({"iDecay": 5000}, r"iDecay \(5000\)"),
])
def test_unsupported_neurons(tmp_path, override, match):
    path = _dense_file(tmp_path / "n.net", **override)
    with pytest.raises(UnsupportedError, match=match):
        import_netx(path)


def test_dense_delays_follow_netx_broadcast_and_clamp(tmp_path):
    path = _dense_file(tmp_path / "d.net")
    with h5py.File(path, "a") as f:
        f["layer/0"].create_dataset("delay", data=np.array([0, 2, 70]))  # per output neuron
    d = import_netx(path).node("L0_dense").delay
    assert d.shape == (3, 4) and d[:, 0].tolist() == [0, 2, 62] and (d == d[:, :1]).all()
    with h5py.File(path, "a") as f:
        del f["layer/0/delay"]
        f["layer/0"].create_dataset("delay", data=np.array([-1, 0, 0]))
    with pytest.raises(InputFileError, match="negative delay"):
        import_netx(path)


def test_slayer_network_with_delays_matches_netx_in_lava(tmp_path):
    """Per-synapse delays written into a slayer export: our simulator (DelayDense
    semantics) equals netx's own loader in Lava, every layer, every step."""
    path = tmp_path / "delay.net"
    torch.manual_seed(5)
    blocks = [slayer.block.cuba.Dense(NEURON, 10, 8, weight_scale=3, weight_norm=False),
              slayer.block.cuba.Dense(NEURON, 8, 4, weight_scale=3, weight_norm=False)]
    _export_blocks(blocks, path, (10,))
    rng = np.random.default_rng(6)
    with h5py.File(path, "a") as f:
        f["layer/0"].create_dataset("delay", data=rng.integers(0, 4, (8, 10)))
        f["layer/1"].create_dataset("delay", data=rng.integers(0, 3, (4,)))
    graph = import_netx(path)
    assert graph.node("L0_dense").delay is not None
    export_netx(graph, tmp_path / "once.net")           # delays survive the round trip
    once = import_netx(tmp_path / "once.net")
    export_netx(once, tmp_path / "twice.net")
    twice = import_netx(tmp_path / "twice.net")
    twice.meta["source"] = once.meta["source"]
    assert graphs_equal(once, twice)
    assert np.array_equal(once.node("L1_dense").delay, graph.node("L0_dense").delay)
    x = (rng.random((14, 10)) < 0.5).astype(np.uint8)
    total, _ = _compare(path, graph, x)
    assert total > 5
    undelayed = import_netx(path)
    for n in undelayed.nodes(FxDense):
        n.delay = None
    a = Simulator(graph).run(x[None]).spikes["L1_lif"]
    b = Simulator(undelayed).run(x[None]).spikes["L1_lif"]
    assert not np.array_equal(a, b), "the delays must matter for this test to mean anything"


def test_unsupported_layers(tmp_path):
    path = _dense_file(tmp_path / "d.net")
    with h5py.File(path, "a") as f:
        g = f.create_group("layer/1")
        g.create_dataset("type", (1,), "S10", [b"pool"])
    with pytest.raises(UnsupportedError, match=r"layer 1 \(pool\).*supported: input, dense"):
        import_netx(path)


def test_corrupt_files(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputFileError, match="bad.net: not an HDF5"):
        import_netx(bad)
    with pytest.raises(InputFileError, match="not found"):
        import_netx(tmp_path / "missing.net")
    good = _dense_file(tmp_path / "good.net")
    data = good.read_bytes()
    trunc = tmp_path / "trunc.net"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="trunc.net"):
        import_netx(trunc)
    with h5py.File(good, "a") as f:
        del f["layer/0/neuron/vThMant"]
    with pytest.raises(InputFileError, match=r"layer 0 \(dense\): missing 'vThMant'"):
        import_netx(good)
    with h5py.File(tmp_path / "empty.net", "w") as f:
        f.create_group("other")
    with pytest.raises(InputFileError, match="no 'layer' group"):
        import_netx(tmp_path / "empty.net")


def test_cli_compiles_and_verifies_a_slayer_network(tmp_path):
    """A slayer-exported .net goes through `snncompile compile` (no re-quantisation) and
    `snncompile verify` (reference, simulator, our Lava lowering) with zero mismatches."""
    import json

    from cli_inprocess import run_cli
    from snncompile.data import save_inputs

    path = tmp_path / "dense.net"
    torch.manual_seed(3)
    blocks = [slayer.block.cuba.Dense(NEURON, 10, 8, weight_scale=3, weight_norm=False),
              slayer.block.cuba.Dense(NEURON, 8, 4, weight_scale=3, weight_norm=False)]
    _export_blocks(blocks, path, (10,))
    rng = np.random.default_rng(4)
    save_inputs(tmp_path / "x.npz", (rng.random((6, 9, 10)) < 0.4).astype(np.uint8))

    def cli(*args):
        rc, out, err = run_cli(*args)
        assert rc == 0, out + err
        return out
    cli("compile", path, "-o", tmp_path / "b", "--calib", tmp_path / "x.npz", "--quiet")
    assert not (tmp_path / "b" / "float").exists()
    out = cli("verify", tmp_path / "b", "--inputs", tmp_path / "x.npz", "--json",
              tmp_path / "v.json")
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["equivalent"] and report["backends"]["lava"]["spikes"] > 0, out
